// Tokenizers built from GGUF metadata that reproduce llama.cpp (src/llama-vocab.cpp): SentencePiece-style
// ("llama") and GPT-2 byte-level BPE ("gpt2"), with special tokens, BOS/EOS, detokenization and EOG.
// Not a GGUF parser (see gguf/reader.ts) and no Node built-ins: TextEncoder/TextDecoder only.
import type { GgufKv } from "../gguf/types.js";
import { BpeTokenizer } from "./bpe.js";
import { SpmTokenizer } from "./spm.js";
import { UNICODE_TO_BYTE, utf8Encoder } from "./unicode.js";
import { Attr, NULL_ID, Vocab } from "./vocab.js";

export { Vocab } from "./vocab.js";

export interface EncodeOptions {
  /** prepend BOS; default: the model's `tokenizer.ggml.add_bos_token` (llama.cpp's add_special) */
  addBos?: boolean;
  /** append EOS; default: the model's `tokenizer.ggml.add_eos_token`, unless addBos is false (then no EOS),
   *  so that `{ addBos: false }` behaves like llama.cpp's add_special = false */
  addEos?: boolean;
  /** recognise control/unknown token texts (e.g. "<s>") in the input as those tokens; default false.
   *  User-defined tokens are always recognised, as in llama.cpp. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** drop one leading space from the first token's piece (llama.cpp does this for vocabularies with
   *  add_space_prefix, i.e. SPM); default: the vocabulary's add_space_prefix */
  removeLeadingSpace?: boolean;
  /** render control/unknown tokens as their text instead of nothing; default false */
  special?: boolean;
  /** drop a leading BOS / trailing EOS when the model adds them (llama.cpp's remove_special); default false */
  removeSpecial?: boolean;
  /** clean_up_tokenization_spaces (" ." -> ".", " 's" -> "'s", ...); default: on for GPT-2 style BPE, as llama.cpp */
  cleanSpaces?: boolean;
}

export interface Tokenizer {
  readonly model: "llama" | "gpt2";
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** whether encode adds BOS by default */
  readonly addBos: boolean;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  /** raw bytes of one token's text (control tokens -> empty), for streaming with TextDecoder({stream: true}) */
  tokenBytes(id: number): Uint8Array;
  /** the vocab string as stored */
  tokenText(id: number): string;
  isEog(id: number): boolean;
}

type Fragment = { token: number } | { text: string };

interface TrieNode { rank: number; next?: Map<number, TrieNode> }
interface SpecialTrie { root: Map<number, TrieNode>; order: number[] }

/** C's isspace in the "C" locale (llama.cpp strips with it, byte by byte) */
function isAsciiSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

const EMPTY = new Uint8Array(0);

export class GgufTokenizer implements Tokenizer {
  readonly vocab: Vocab;
  private readonly spm?: SpmTokenizer;
  private readonly bpe?: BpeTokenizer;
  /** token_to_piece results of the tokens seen so far (a generation touches few of the vocabulary) */
  private readonly pieces = new Map<number, Uint8Array>();
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // a leading U+FEFF is text, not a BOM
  private trieUser?: SpecialTrie;
  private trieAll?: SpecialTrie;

  constructor(kv: Map<string, GgufKv>) {
    this.vocab = new Vocab(kv);
    if (this.vocab.model === "llama") this.spm = new SpmTokenizer(this.vocab);
    else this.bpe = new BpeTokenizer(this.vocab, kv);
  }

  get model(): "llama" | "gpt2" { return this.vocab.model; }
  get vocabSize(): number { return this.vocab.size; }
  get bosId(): number { return this.vocab.bos; }
  get eosId(): number { return this.vocab.eos; }
  get unkId(): number { return this.vocab.unk; }
  get addBos(): boolean { return this.vocab.addBos; }
  get addEos(): boolean { return this.vocab.addEos; }
  get addSpacePrefix(): boolean { return this.vocab.addSpacePrefix; }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const v = this.vocab;
    const addBos = opts.addBos ?? v.addBos;
    const addEos = opts.addEos ?? (opts.addBos === undefined ? v.addEos : opts.addBos && v.addEos);
    if (addBos && v.bos === NULL_ID) throw new Error("addBos requested, but the model has no BOS token");
    if (addEos && v.eos === NULL_ID) throw new Error("addEos requested, but the model has no EOS token");

    const fragments = text.length > 0 ? this.partition(text, opts.parseSpecial ?? false) : [];
    const out: number[] = [];
    if (addBos) out.push(v.bos);
    if (this.spm) {
      let prevSpecial = true; // the first text fragment gets the space prefix
      for (const f of fragments) {
        if ("token" in f) {
          out.push(f.token);
          prevSpecial = true;
        } else {
          const t = v.addSpacePrefix && prevSpecial ? " " + f.text : f.text;
          this.spm.tokenize(t.replaceAll(" ", "\u2581"), out);
          prevSpecial = false;
        }
      }
    } else {
      for (const f of fragments) {
        if ("token" in f) out.push(f.token);
        else this.bpe!.tokenize(f.text, out);
      }
    }
    if (addEos) out.push(v.eos);
    return out;
  }

  /**
   * llama.cpp's tokenizer_st_partition: for each special token, longest first, split every remaining text fragment
   * at the token's leftmost non-overlapping occurrences (dropping whitespace next to it for LSTRIP/RSTRIP tokens).
   * Rather than rescanning the text once per special token (Gemma has 6415 of them), one pass over a trie finds every
   * occurrence of every token; the tokens then claim their occurrences in llama.cpp's order, an occurrence counting
   * only if none of its characters was claimed (or stripped) before, which is exactly what the repeated splitting does.
   */
  private partition(text: string, parseSpecial: boolean): Fragment[] {
    const v = this.vocab;
    const trie = parseSpecial ? (this.trieAll ??= this.buildTrie(true)) : (this.trieUser ??= this.buildTrie(false));
    if (trie.order.length === 0) return [{ text }];
    const n = text.length;
    // occurrences per token (by its rank in llama.cpp's order), ascending positions
    const occ: number[][] = [];
    let any = false;
    for (let p = 0; p < n; p++) {
      let node = trie.root.get(text.charCodeAt(p));
      for (let q = p + 1; node; q++) {
        if (node.rank >= 0) {
          (occ[node.rank] ??= []).push(p);
          any = true;
        }
        if (q >= n || !node.next) break;
        node = node.next.get(text.charCodeAt(q));
      }
    }
    if (!any) return [{ text }];
    // 0: free text, 1: inside a special token, 2: whitespace stripped away by an LSTRIP/RSTRIP token
    const state = new Uint8Array(n);
    const tokenAt = new Int32Array(n).fill(-1);
    for (let r = 0; r < trie.order.length; r++) {
      const starts = occ[r];
      if (!starts) continue;
      const id = trie.order[r];
      const len = v.tokens.get(id).length;
      const attr = v.attrs[id];
      for (const p of starts) {
        let free = true;
        for (let k = p; k < p + len; k++) if (state[k] !== 0) { free = false; break; }
        if (!free) continue;
        state.fill(1, p, p + len);
        tokenAt[p] = id;
        if (attr & Attr.Lstrip) for (let k = p - 1; k >= 0 && state[k] === 0 && isAsciiSpace(text.charCodeAt(k)); k--) state[k] = 2;
        if (attr & Attr.Rstrip) for (let k = p + len; k < n && state[k] === 0 && isAsciiSpace(text.charCodeAt(k)); k++) state[k] = 2;
      }
    }
    const frags: Fragment[] = [];
    let runStart = -1;
    for (let p = 0; p <= n; p++) {
      const s = p < n ? state[p] : 1;
      if (s === 0) {
        if (runStart < 0) runStart = p;
        continue;
      }
      if (runStart >= 0) {
        frags.push({ text: text.slice(runStart, p) });
        runStart = -1;
      }
      if (p < n && tokenAt[p] >= 0) frags.push({ token: tokenAt[p] });
    }
    return frags;
  }

  /** A trie over the UTF-16 units of the special tokens that partition() looks for, with each token's rank in order. */
  private buildTrie(withControl: boolean): SpecialTrie {
    const v = this.vocab;
    const order = v.specialTokens.filter((id) => withControl || !(v.attrs[id] & (Attr.Control | Attr.Unknown)));
    const root = new Map<number, TrieNode>();
    order.forEach((id, rank) => {
      const t = v.tokens.get(id);
      if (t.length === 0) return;
      let level = root;
      let node: TrieNode | undefined;
      for (let i = 0; i < t.length; i++) {
        const c = t.charCodeAt(i);
        node = level.get(c);
        if (!node) level.set(c, (node = { rank: -1 }));
        if (i + 1 < t.length) level = node.next ??= new Map();
      }
      // the same text twice cannot happen (duplicate tokens are refused); keep the first rank regardless
      if (node!.rank < 0) node!.rank = rank;
    });
    return { root, order };
  }

  /** llama.cpp's token_to_piece with special = true (the cached piece) */
  private piece(id: number): Uint8Array {
    const cached = this.pieces.get(id);
    if (cached) return cached;
    const v = this.vocab;
    const attr = v.attrs[id];
    let bytes: Uint8Array = EMPTY;
    if (attr & (Attr.Unknown | Attr.Control | Attr.UserDefined)) {
      bytes = v.tokens.bytesOf(id).slice(); // the text's UTF-8 (stored normalised); a copy callers may keep
    } else if (attr & Attr.Normal) {
      bytes = v.model === "llama" ? spaceFor2581(v.tokens.bytesOf(id)) : gpt2DecodeText(v.text(id));
    } else if (attr & Attr.Byte) {
      bytes = Uint8Array.of(parseInt(v.text(id).substring(3, 5), 16) & 0xff);
    }
    this.pieces.set(id, bytes);
    return bytes;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab.size) {
      throw new RangeError(`token id ${id} is out of range (vocabulary size ${this.vocab.size})`);
    }
  }

  tokenBytes(id: number, special = false): Uint8Array {
    this.checkId(id);
    if (!special && (this.vocab.attrs[id] & (Attr.Unknown | Attr.Control))) return EMPTY;
    return this.piece(id);
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.vocab.text(id);
  }

  isEog(id: number): boolean {
    return this.vocab.eog.has(id);
  }

  /** the raw bytes of llama.cpp's llama_detokenize, before UTF-8 decoding */
  decodeBytes(ids: ArrayLike<number>, opts: DecodeOptions = {}): Uint8Array {
    const v = this.vocab;
    let removeSpace = opts.removeLeadingSpace ?? v.addSpacePrefix;
    let from = 0;
    let to = ids.length;
    if (opts.removeSpecial && v.addBos && to > 0 && ids[0] === v.bos) {
      removeSpace = false;
      from++;
    }
    if (opts.removeSpecial && v.addEos && to > from && ids[to - 1] === v.eos) to--;

    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = from; i < to; i++) {
      let p = this.tokenBytes(ids[i], opts.special ?? false);
      if (removeSpace && p.length > 0 && p[0] === 0x20) p = p.subarray(1);
      removeSpace = false;
      parts.push(p);
      total += p.length;
    }
    let buf: Uint8Array = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      buf.set(p, o);
      o += p.length;
    }
    if (opts.cleanSpaces ?? v.cleanSpaces) buf = cleanSpaces(buf);
    return buf;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    return this.decoder.decode(this.decodeBytes(ids, opts));
  }
}

/** A copy of UTF-8 `text` with each U+2581 (E2 96 81), SentencePiece's escaped space, turned into " ". */
function spaceFor2581(text: Uint8Array): Uint8Array {
  const out = new Uint8Array(text.length);
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === 0xe2 && text[i + 1] === 0x96 && text[i + 2] === 0x81) {
      out[o++] = 0x20;
      i += 2;
    } else {
      out[o++] = text[i];
    }
  }
  return o === out.length ? out : out.slice(0, o);
}

/** llama_decode_text: GPT-2 byte characters back to bytes; unknown characters as llama.cpp marks them */
function gpt2DecodeText(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = UNICODE_TO_BYTE.get(ch.codePointAt(0)!);
    if (b !== undefined) {
      out.push(b);
    } else {
      const hex = Array.from(utf8Encoder.encode(ch), (x) => x.toString(16).padStart(2, "0")).join("");
      for (const x of utf8Encoder.encode(`[UNK_BYTE_0x${hex}${text}]`)) out.push(x);
    }
  }
  return Uint8Array.from(out);
}

/** The three clean-up passes of llama.cpp's detokenize (clean_spaces), in place on bytes. */
function cleanSpaces(text: Uint8Array): Uint8Array {
  const SP = 0x20, AP = 0x27;
  // pass 1: " ?", " !", " .", " ," -> drop the space
  const total1 = text.length;
  let total = total1 ? 1 : 0;
  for (let i = 1; i < total1; i++) {
    const x = text[i];
    if (text[i - 1] === SP && (x === 0x3f || x === 0x21 || x === 0x2e || x === 0x2c)) total--;
    text[total++] = x;
  }
  // pass 2: " ' " -> "'"
  const total2 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < total2; i++) {
    const x = text[i];
    if (x === AP && i + 1 < total2 && text[i - 1] === SP && text[i + 1] === SP) {
      total--;
      text[++i] = 0;
    }
    text[total++] = x;
  }
  // pass 3: " 's", " 'm", " 're", " 've" -> drop the space
  const total3 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < total3; i++) {
    const x = text[i];
    if (text[i - 1] === SP && x === AP && i + 1 < total3) {
      const x1 = text[i + 1];
      if (x1 === 0x73 || x1 === 0x6d) {
        total--;
      } else if (x1 !== 0x74 && x1 !== 0x64 && i + 2 < total3) {
        const x2 = text[i + 2];
        if ((x1 === 0x72 && x2 === 0x65) || (x1 === 0x76 && x2 === 0x65)) total--;
      }
    }
    text[total++] = x;
  }
  return text.subarray(0, total);
}

/** Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata. */
export function tokenizerFromGguf(kv: Map<string, GgufKv>): GgufTokenizer {
  return new GgufTokenizer(kv);
}
