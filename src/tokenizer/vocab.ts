// Vocabulary built from GGUF `tokenizer.ggml.*` metadata, with the defaults and special-token
// handling of llama.cpp's llama_vocab::impl::load (src/llama-vocab.cpp).
// Not the tokenization algorithms themselves: see spm.ts and bpe.ts.
import type { GgufKv, GgufStringArray } from "../gguf/types.js";
import { metaBool, metaNumber, metaNumberArray, metaString, metaStringArray } from "../gguf/metadata.js";
import { preTokenizer, preTokenizerNames } from "./pre.js";
import { normalizeStrings, TextIndex } from "./table.js";

type Kv = Map<string, GgufKv>;

/** GGUF token types (tokenizer.ggml.token_type), as llama.cpp's llama_token_type */
export const enum TokenType {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
}

/** llama.cpp's llama_token_attr bits */
export const enum Attr {
  Undefined = 0, Unknown = 1 << 0, Unused = 1 << 1, Normal = 1 << 2, Control = 1 << 3,
  UserDefined = 1 << 4, Byte = 1 << 5, Normalized = 1 << 6, Lstrip = 1 << 7, Rstrip = 1 << 8,
}

export const NULL_ID = -1;

export const KEY = {
  model: "tokenizer.ggml.model",
  pre: "tokenizer.ggml.pre",
  tokens: "tokenizer.ggml.tokens",
  scores: "tokenizer.ggml.scores",
  tokenType: "tokenizer.ggml.token_type",
  merges: "tokenizer.ggml.merges",
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  eot: "tokenizer.ggml.eot_token_id",
  eom: "tokenizer.ggml.eom_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  sep: "tokenizer.ggml.seperator_token_id", // sic: llama.cpp's key name
  pad: "tokenizer.ggml.padding_token_id",
  mask: "tokenizer.ggml.mask_token_id",
  fimPre: "tokenizer.ggml.fim_pre_token_id",
  fimSuf: "tokenizer.ggml.fim_suf_token_id",
  fimMid: "tokenizer.ggml.fim_mid_token_id",
  fimPad: "tokenizer.ggml.fim_pad_token_id",
  fimRep: "tokenizer.ggml.fim_rep_token_id",
  fimSep: "tokenizer.ggml.fim_sep_token_id",
  prefixOld: "tokenizer.ggml.prefix_token_id",
  suffixOld: "tokenizer.ggml.suffix_token_id",
  middleOld: "tokenizer.ggml.middle_token_id",
  addBos: "tokenizer.ggml.add_bos_token",
  addEos: "tokenizer.ggml.add_eos_token",
  addSpacePrefix: "tokenizer.ggml.add_space_prefix",
} as const;

export type VocabModel = "llama" | "gpt2";

export class Vocab {
  readonly model: VocabModel;
  readonly pre: string;
  /** token texts as UTF-8 (shared with the GGUF metadata they were read from; JS strings only on demand) */
  readonly tokens: GgufStringArray;
  readonly scores: Float32Array;
  readonly attrs: Uint16Array;
  readonly tokenToId: TextIndex;

  bos = NULL_ID;
  eos = NULL_ID;
  eot = NULL_ID;
  eom = NULL_ID;
  unk = NULL_ID;
  sep = NULL_ID;
  pad = NULL_ID;
  mask = NULL_ID;
  fimPre = NULL_ID;
  fimSuf = NULL_ID;
  fimMid = NULL_ID;
  fimPad = NULL_ID;
  fimRep = NULL_ID;
  fimSep = NULL_ID;

  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
  /** clean_up_tokenization_spaces: applied by detokenize (BPE "gpt-2" style vocabularies) */
  cleanSpaces: boolean;
  /** llama3-style: a pre-token that is itself a vocab entry is emitted without merging */
  ignoreMerges = false;
  readonly eog = new Set<number>();
  /** ids of control / user-defined / unknown tokens, longest text first (tokenizer_st_partition order) */
  readonly specialTokens: number[];

  constructor(kv: Kv) {
    const model = metaString(kv, KEY.model);
    if (model !== "llama" && model !== "gpt2") {
      throw new Error(`unsupported tokenizer model "${model}" in GGUF key "${KEY.model}" (supported: "llama" (SentencePiece), "gpt2" (byte-level BPE))`);
    }
    this.model = model;
    this.pre = metaString(kv, KEY.pre, "");

    if (model === "llama") {
      this.bos = 1; this.eos = 2; this.unk = 0;
      this.addSpacePrefix = true;
      this.cleanSpaces = false;
      this.addBos = true;
      this.addEos = false;
    } else {
      this.bos = 11; this.eos = 11;
      this.addSpacePrefix = false;
      this.cleanSpaces = true;
      this.addBos = false;
      this.addEos = false;
      const pre = preTokenizer(this.pre);
      if (!pre) {
        throw new Error(`unsupported pre-tokenizer "${this.pre}" in GGUF key "${KEY.pre}" for tokenizer model "gpt2" (supported: ${preTokenizerNames().join(", ")})`);
      }
      this.cleanSpaces = pre.cleanSpaces;
      this.ignoreMerges = pre.ignoreMerges;
      this.addBos = pre.addBos;
    }
    this.addSpacePrefix = metaBool(kv, KEY.addSpacePrefix, this.addSpacePrefix);

    // llama.cpp names an empty token "[EMPTY_<id>]"
    this.tokens = normalizeStrings(metaStringArray(kv, KEY.tokens), (i, b) => (b.length === 0 ? `[EMPTY_${i}]` : undefined));
    const n = this.tokens.length;
    if (kv.has(KEY.scores)) {
      const s = metaNumberArray(kv, KEY.scores);
      if (s.length < n) throw new Error(`GGUF key "${KEY.scores}" has ${s.length} entries, fewer than the ${n} tokens`);
      // f32 scores as read are used in place (read-only here), not copied
      this.scores = s instanceof Float32Array ? s.subarray(0, n) : Float32Array.from({ length: n }, (_, i) => s[i]);
    } else {
      this.scores = new Float32Array(n);
    }
    this.attrs = new Uint16Array(n).fill(Attr.Normal);
    if (kv.has(KEY.tokenType)) {
      const t = metaNumberArray(kv, KEY.tokenType);
      if (t.length < n) throw new Error(`GGUF key "${KEY.tokenType}" has ${t.length} entries, fewer than the ${n} tokens`);
      for (let i = 0; i < n; i++) this.attrs[i] = typeToAttr(t[i]);
    }
    this.tokenToId = new TextIndex(this.tokens, {
      onDuplicate: (first, i) => {
        throw new Error(`duplicate token in GGUF key "${KEY.tokens}": "${this.tokens.get(i)}" has ids ${first} and ${i}`);
      },
    });

    // special token ids: defaults out of range are disabled; out-of-range metadata ids are ignored
    const setId = (key: string, cur: number): number => {
      if (cur >= n) cur = NULL_ID;
      if (!kv.has(key)) return cur;
      const v = metaNumber(kv, key);
      return v >= 0 && v < n && Number.isInteger(v) ? v : cur;
    };
    this.bos = setId(KEY.bos, this.bos);
    this.eos = setId(KEY.eos, this.eos);
    this.eot = setId(KEY.eot, this.eot);
    this.eom = setId(KEY.eom, this.eom);
    this.unk = setId(KEY.unk, this.unk);
    this.sep = setId(KEY.sep, this.sep);
    this.pad = setId(KEY.pad, this.pad);
    this.mask = setId(KEY.mask, this.mask);
    this.fimPre = setId(KEY.fimPre, this.fimPre);
    this.fimSuf = setId(KEY.fimSuf, this.fimSuf);
    this.fimMid = setId(KEY.fimMid, this.fimMid);
    this.fimPad = setId(KEY.fimPad, this.fimPad);
    this.fimRep = setId(KEY.fimRep, this.fimRep);
    this.fimSep = setId(KEY.fimSep, this.fimSep);
    this.fimPre = setId(KEY.prefixOld, this.fimPre);
    this.fimSuf = setId(KEY.suffixOld, this.fimSuf);
    this.fimMid = setId(KEY.middleOld, this.fimMid);

    this.addBos = metaBool(kv, KEY.addBos, this.addBos);
    this.addEos = metaBool(kv, KEY.addEos, this.addEos);
    if (this.addBos && this.bos === NULL_ID) throw new Error(`${KEY.addBos} is true, but ${KEY.bos} is not set`);
    if (this.addEos && this.eos === NULL_ID) throw new Error(`${KEY.addEos} is true, but ${KEY.eos} is not set`);

    this.detectSpecialTokens();

    const special: number[] = [];
    for (let i = 0; i < n; i++) {
      if (this.attrs[i] & (Attr.Control | Attr.UserDefined | Attr.Unknown)) special.push(i);
    }
    // llama.cpp uses an unstable std::sort by text length (descending); ties here go by id
    special.sort((a, b) => this.tokens.byteLength(b) - this.tokens.byteLength(a) || a - b);
    this.specialTokens = special;
    this.setStripAttributes(kv);
  }

  /** llama.cpp's per-model token attributes (impl::load, "set attributes by model/tokenizer/architecture name") */
  private setStripAttributes(kv: Kv): void {
    const name = metaString(kv, "general.name", "").toLowerCase();
    const arch = metaString(kv, "general.architecture", "");
    const set = (text: string, attr: Attr, on: boolean) => {
      const id = this.tokenToId.get(text);
      // llama.cpp looks these up with token_to_id.at(), which throws: such a file does not load there
      if (id === undefined) throw new Error(`general.name "${name}" makes llama.cpp set attributes on token "${text}", which the vocabulary lacks (llama.cpp refuses this file too)`);
      this.attrs[id] = on ? this.attrs[id] | attr : this.attrs[id] & ~attr;
    };
    if (["jina-v2-de", "jina-v2-es", "jina-v2-code"].some((p) => this.pre.includes(p)) || ["nomic-bert-moe", "jina-bert-v3"].some((a) => arch.includes(a))) {
      if (this.tokenToId.has("<mask>")) set("<mask>", Attr.Lstrip, true);
    } else if (name.includes("phi-3") || name.includes("phi3")) {
      for (const id of this.specialTokens) this.attrs[id] |= Attr.Rstrip;
      set("</s>", Attr.Rstrip, true);
      for (const t of ["<unk>", "<s>", "<|endoftext|>"]) set(t, Attr.Rstrip, false);
    } else if (name.includes("modern-bert")) {
      if (this.tokenToId.has("[MASK]")) set("[MASK]", Attr.Lstrip, true);
    }
  }

  get size(): number {
    return this.tokens.length;
  }

  /** token id's text as stored */
  text(id: number): string {
    return this.tokens.get(id);
  }

  /** auto-detection of EOT/EOM/FIM tokens by text and the end-of-generation set (llama-vocab.cpp) */
  private detectSpecialTokens(): void {
    const markControl = (id: number) => {
      this.attrs[id] |= Attr.Control;
    };
    const find = (cur: number, texts: string[]): number => {
      if (cur !== NULL_ID) return cur;
      for (const t of texts) {
        const id = this.tokenToId.get(t);
        if (id !== undefined) {
          markControl(id);
          return id;
        }
      }
      return cur;
    };
    // llama.cpp iterates an unordered map and takes whichever matches first; with several
    // candidates present the choice there is unspecified, here it is the list order.
    this.eot = find(this.eot, ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
      "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"]);
    this.eom = find(this.eom, ["<|eom_id|>"]);
    this.fimPre = find(this.fimPre, ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]);
    this.fimSuf = find(this.fimSuf, ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]);
    this.fimMid = find(this.fimMid, ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]);
    this.fimPad = find(this.fimPad, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]);
    this.fimRep = find(this.fimRep, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]);
    this.fimSep = find(this.fimSep, ["<|file_sep|>"]);

    for (let i = 0; i < this.size; i++) {
      if ((this.attrs[i] & Attr.Control) && !(this.attrs[i] & Attr.Unused) && this.text(i).includes("unused")) {
        this.attrs[i] |= Attr.Unused;
      }
    }

    const eog = this.eog;
    for (const id of [this.fimPad, this.fimRep, this.fimSep]) if (id !== NULL_ID) eog.add(id);
    for (const t of EOG_TEXTS) {
      const id = this.tokenToId.get(t);
      if (id !== undefined) {
        eog.add(id);
        markControl(id);
      }
    }
    for (const t of ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]) {
      const id = this.tokenToId.get(t);
      if (id !== undefined) this.attrs[id] = Attr.UserDefined;
    }
    for (const id of [this.eos, this.eot, this.eom]) if (id !== NULL_ID) eog.add(id);

    // o200k_harmony / solar-open: "<|end|>" is not end-of-generation when "<|return|>"+"<|call|>" (or "<|calls|>"+"<|flush|>") exist
    const has = (t: string) => { const id = this.tokenToId.get(t); return id !== undefined && eog.has(id); };
    const endId = this.tokenToId.get("<|end|>");
    if (endId !== undefined && eog.has(endId) &&
        ((has("<|return|>") && (has("<|call|>") || has("<|calls|>"))) || ((has("<|call|>") || has("<|calls|>")) && has("<|flush|>")))) {
      eog.delete(endId);
      this.attrs[endId] = Attr.UserDefined;
    }
    // gemma4 / paddleocr: "</s>" is not end-of-generation when "<|tool_response>" is
    const sId = this.tokenToId.get("</s>");
    if (sId !== undefined && eog.has(sId) && has("<|tool_response>")) {
      eog.delete(sId);
      this.attrs[sId] = Attr.Normal;
    }
  }
}

const EOG_TEXTS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
  "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["];

function typeToAttr(t: number): number {
  switch (t) {
    case TokenType.Unknown: return Attr.Unknown;
    case TokenType.Unused: return Attr.Unused;
    case TokenType.Normal: return Attr.Normal;
    case TokenType.Control: return Attr.Control;
    case TokenType.UserDefined: return Attr.UserDefined;
    case TokenType.Byte: return Attr.Byte;
    default: return Attr.Undefined;
  }
}
