// A Hugging Face tokenizer (tokenizer.json, tokenizer_config.json, config.json) as the `tokenizer.*` GGUF metadata
// llama.cpp's converter writes for it (convert_hf_to_gguf.py: get_vocab_base / _set_vocab_gpt2, _set_vocab_llama_hf,
// _create_vocab_sentencepiece; gguf-py's SpecialVocab), including the chkhsh test that names the BPE pre-tokenizer.
// Portable (no file system: the caller hands in parsed JSON). Not the model tensors: see convert.ts.
import { GgufStringArray, GgufType, type GgufKv } from "../gguf/types.js";
import { tokenizerFromGguf } from "../tokenizer/index.js";
import { KEY as TOK } from "../tokenizer/vocab.js";
import { TokenType } from "../tokenizer/vocab.js";

/** JSON as parsed; fields are checked where they are used. */
type Json = Record<string, unknown>;

export interface HfTokenizerFiles {
  /** tokenizer.json */
  tokenizer: Json;
  /** tokenizer_config.json, if the folder has one */
  tokenizerConfig?: Json;
  /** config.json */
  config: Json;
  /** chat_template.jinja (or chat_template.json's chat_template) when the folder has one */
  chatTemplateFile?: string | { name: string; template: string }[];
  /** where the files came from, for error messages */
  dir: string;
}

/** How the vocabulary is laid out in GGUF. */
export type VocabStyle =
  /** byte-level BPE, tokenizer.ggml.model "gpt2" (_set_vocab_gpt2) */
  | "gpt2"
  /** BPE with byte fallback read as SentencePiece with every score -1000, tokenizer.ggml.model "llama" (LlamaHfVocab) */
  | "llama-hf"
  /** SentencePiece rebuilt from tokenizer.json with scores that order merges as its merge list does (see spmFromJson) */
  | "spm";

export interface VocabResult {
  kv: GgufKv[];
  style: VocabStyle;
  /** number of tokens written */
  size: number;
  /** tokenizer.ggml.pre */
  pre: string;
  /** things the user should know (written to stderr by the CLI) */
  notes: string[];
}

const str = (key: string, value: string): GgufKv => ({ key, type: GgufType.STRING, value });
const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.UINT32, value });
const bool = (key: string, value: boolean): GgufKv => ({ key, type: GgufType.BOOL, value });

class ConvertError extends Error {}

function fail(files: HfTokenizerFiles, what: string): never {
  throw new ConvertError(`${files.dir}: ${what}`);
}

function model(files: HfTokenizerFiles): Json {
  const m = files.tokenizer.model;
  if (!m || typeof m !== "object") fail(files, `tokenizer.json has no "model" object`);
  return m as Json;
}

function vocabMap(files: HfTokenizerFiles): Record<string, number> {
  const v = model(files).vocab;
  if (!v || typeof v !== "object" || Array.isArray(v)) fail(files, `tokenizer.json "model.vocab" must be an object of token → id`);
  return v as Record<string, number>;
}

interface AddedToken { id: number; content: string; special: boolean; normalized: boolean }

function addedTokens(files: HfTokenizerFiles): AddedToken[] {
  const a = files.tokenizer.added_tokens ?? [];
  if (!Array.isArray(a)) fail(files, `tokenizer.json "added_tokens" must be an array`);
  return (a as Json[]).map((t, i) => {
    if (typeof t.id !== "number" || typeof t.content !== "string") fail(files, `tokenizer.json added_tokens[${i}] needs a numeric "id" and a string "content"`);
    return { id: t.id as number, content: t.content as string, special: t.special === true, normalized: t.normalized !== false };
  });
}

/** The style llama.cpp's converter picks for this tokenizer.json, in its order of attempts. */
export function detectVocabStyle(files: HfTokenizerFiles): "gpt2" | "llama-hf" | undefined {
  const m = model(files);
  const decoder = (files.tokenizer.decoder ?? {}) as Json;
  if (m.type !== "BPE") return undefined;
  // LlamaHfVocab refuses Llama-3-style files (ignore_merges without byte fallback) and wants a Sequence decoder
  if (m.byte_fallback === true && decoder.type === "Sequence") return "llama-hf";
  if (m.byte_fallback !== true) return "gpt2";
  return undefined;
}

/** does_token_look_special: added tokens the converter treats as control even when not marked special */
function looksSpecial(t: string): boolean {
  return ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
    (t.startsWith("<|") && t.endsWith("|>")) || (t.startsWith("<｜") && t.endsWith("｜>")) ||
    (t.startsWith("<unused") && t.endsWith(">"));
}

function vocabSizeOf(files: HfTokenizerFiles, tokenizerSize: number): number {
  const n = files.config.vocab_size ?? (files.config.text_config as Json | undefined)?.vocab_size;
  if (n === undefined) return tokenizerSize;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) fail(files, `config.json "vocab_size" must be a positive integer, got ${JSON.stringify(n)}`);
  return n;
}

/** id → text over the base vocabulary and the added tokens (HF's get_vocab) */
function reverseVocab(files: HfTokenizerFiles): Map<number, string> {
  const rev = new Map<number, string>();
  for (const [text, id] of Object.entries(vocabMap(files))) {
    if (!Number.isInteger(id) || id < 0) fail(files, `tokenizer.json vocab entry ${JSON.stringify(text)} has id ${id}`);
    rev.set(id, text);
  }
  for (const t of addedTokens(files)) rev.set(t.id, t.content);
  return rev;
}

// ---------------------------------------------------------------------------------------------------------------
// gpt2: get_vocab_base + _set_vocab_gpt2

function gpt2Tokens(files: HfTokenizerFiles): { tokens: string[]; types: number[] } {
  const rev = reverseVocab(files);
  let maxId = -1;
  for (const id of rev.keys()) if (id > maxId) maxId = id;
  const n = vocabSizeOf(files, rev.size);
  if (maxId >= n) fail(files, `token id ${maxId} does not fit config.json vocab_size ${n}`);
  const added = new Map(addedTokens(files).map((t) => [t.id, t]));
  const tokens: string[] = new Array(n);
  const types: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const text = rev.get(i);
    if (text === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TokenType.Unused;
      continue;
    }
    const a = added.get(i);
    if (a) {
      if (a.special || looksSpecial(text)) {
        tokens[i] = text;
        types[i] = TokenType.Control;
      } else {
        tokens[i] = text.replaceAll("\u2581", " "); // pre-normalize user-defined spaces
        types[i] = TokenType.UserDefined;
      }
    } else {
      tokens[i] = text;
      types[i] = TokenType.Normal;
    }
  }
  return { tokens, types };
}

/** tokenizer.json merges as llama.cpp stores them: "left right", spaces inside a part written as U+0120 */
function mergesOf(files: HfTokenizerFiles): string[] {
  const m = model(files).merges;
  if (!Array.isArray(m) || m.length === 0) return [];
  if (typeof m[0] === "string") return m as string[];
  return (m as unknown[]).map((pair, i) => {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      fail(files, `tokenizer.json model.merges[${i}] must be a string or a pair of strings`);
    }
    return (pair as string[]).map((p) => p.replaceAll(" ", "\u0120")).join(" ");
  });
}

// The check text and the hashes of llama.cpp's get_vocab_base_pre for the pre-tokenizers we implement: the hash is
// sha256 of str(tokenizer.encode(chktxt)) with the model's own Hugging Face tokenizer.
const CHKTXT = "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

/** chkhsh → tokenizer.ggml.pre, the entries of llama.cpp's table whose pre-tokenizer edgeprune implements */
export const CHKHSH: Readonly<Record<string, string>> = {
  "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe", // meta-llama/Meta-Llama-3-8B
  "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe", // abacusai/Smaug-Llama-3-70B-Instruct
  "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
  "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2", // Qwen/Qwen1.5-7B
  "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2", // Qwen/Qwen3-Embedding-0.6B
  "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
  "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm", // HuggingFaceTB/SmolLM-135M
  "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34": "starcoder", // bigcode/starcoder2-3b
  "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2", // openai-community/gpt2
  "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",
  "fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085": "phi-2", // microsoft/phi-2
  "32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3": "stablelm2",
  "d4c8f286ea6b520b3d495c4455483cfa2302c0cfcd4be05d781b6a8a0a7cdaf1": "megrez",
  "b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166": "mpt",
  "6221ad2852e85ce96f791f476e0b390cf9b474c9e3d1362f53a24a06dc8220ff": "refact",
  "9c2227e4dd922002fb81bde4fc02b0483ca4f12911410dee2255e4987644e3f8": "command-r",
  "a8594e3edff7c29c003940395316294b2c623e09894deebbc65f33f1515df79e": "dbrx",
};

/** One pre-tokenizer per way of splitting, the flags it brings matched to tokenizer.json where they differ. */
function splitCandidates(files: HfTokenizerFiles): string[] {
  const ignoreMerges = model(files).ignore_merges === true;
  return [ignoreMerges ? "llama-bpe" : "smaug-bpe", "qwen2", "smollm", "gpt-2", "default"];
}

/** Whether the Hugging Face tokenizer's post-processor puts a BOS first (TemplateProcessing), and its id. */
function postProcessorBos(files: HfTokenizerFiles): number | undefined {
  const pp = files.tokenizer.post_processor as Json | null | undefined;
  if (!pp) return undefined;
  const procs = (pp.type === "Sequence" ? (pp.processors as Json[]) : [pp]) ?? [];
  for (const p of procs) {
    if (p.type !== "TemplateProcessing") continue;
    const single = p.single as Json[] | undefined;
    const first = single?.[0]?.SpecialToken as Json | undefined;
    if (!first || typeof first.id !== "string") continue;
    const sp = (p.special_tokens as Record<string, Json> | undefined)?.[first.id as string];
    const ids = sp?.ids as number[] | undefined;
    if (ids?.length) return ids[0];
    const t = addedTokens(files).find((a) => a.content === first.id);
    if (t) return t.id;
  }
  return undefined;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * llama.cpp's get_vocab_base_pre: hash the ids of its check text and look the hash up. The Hugging Face tokenizer is
 * not available here, so each way of splitting we implement tokenizes the check text on this vocabulary (after
 * tokenizer.json's NFC normalizer and with its post-processor's BOS, as Hugging Face would); the name is the one
 * llama.cpp's table gives to a hash that one of them reproduces.
 */
async function detectPre(files: HfTokenizerFiles, baseKv: GgufKv[]): Promise<{ pre: string; chkhsh: string[] }> {
  const normalizer = files.tokenizer.normalizer as Json | null | undefined;
  const nfc = normalizer?.type === "NFC" || (normalizer?.type === "Sequence" && (normalizer.normalizers as Json[]).some((n) => n.type === "NFC"));
  const text = nfc ? CHKTXT.normalize("NFC") : CHKTXT;
  const bos = postProcessorBos(files);
  const seen: string[] = [];
  for (const cand of splitCandidates(files)) {
    const kv = new Map(baseKv.map((e) => [e.key, e]));
    kv.set(TOK.pre, str(TOK.pre, cand));
    const tok = tokenizerFromGguf(kv);
    const ids = tok.encode(text, { addBos: false, parseSpecial: false });
    if (bos !== undefined) ids.unshift(bos);
    const hash = await sha256Hex(`[${ids.join(", ")}]`);
    seen.push(hash);
    const name = CHKHSH[hash];
    if (name) return { pre: name, chkhsh: seen };
  }
  return { pre: "", chkhsh: seen };
}

// ---------------------------------------------------------------------------------------------------------------
// SentencePiece-style vocabularies from tokenizer.json

/** LlamaHfVocab: base tokens (byte tokens BYTE, special ones CONTROL), then added tokens past the base; every score -1000 */
function llamaHfTokens(files: HfTokenizerFiles): { tokens: string[]; types: number[]; scores: number[] } {
  const vocab = vocabMap(files);
  const base = Object.keys(vocab).length;
  const rev = new Map<number, string>();
  for (const [t, id] of Object.entries(vocab)) rev.set(id, t);
  const added = addedTokens(files);
  const specialIds = new Set(specialTokenIds(files));
  const tokens: string[] = [];
  const types: number[] = [];
  for (let i = 0; i < base; i++) {
    const t = rev.get(i);
    if (t === undefined) fail(files, `tokenizer.json vocab has no token with id ${i} (ids must be 0..${base - 1})`);
    tokens.push(t);
    types.push(/^<0x[0-9A-Fa-f]{2}>$/.test(t) ? TokenType.Byte : specialIds.has(i) ? TokenType.Control : TokenType.Normal);
  }
  for (const a of added.filter((x) => x.id >= base).sort((x, y) => x.id - y.id)) {
    if (a.id !== tokens.length) fail(files, `added token ${JSON.stringify(a.content)} has id ${a.id}, expected ${tokens.length} (added tokens must follow the vocabulary)`);
    tokens.push(a.content);
    types.push(specialIds.has(a.id) ? TokenType.Control : TokenType.UserDefined);
  }
  return { tokens, types, scores: tokens.map(() => -1000) };
}

/** The ids transformers counts as all_special_ids: bos/eos/unk/sep/pad/cls/mask and additional_special_tokens. */
function specialTokenIds(files: HfTokenizerFiles): number[] {
  const tc = files.tokenizerConfig ?? {};
  const byContent = new Map<string, number>();
  for (const [t, id] of Object.entries(vocabMap(files))) byContent.set(t, id);
  for (const a of addedTokens(files)) byContent.set(a.content, a.id);
  const out: number[] = [];
  const take = (e: unknown) => {
    const c = typeof e === "string" ? e : e && typeof e === "object" ? (e as Json).content : undefined;
    if (typeof c === "string" && byContent.has(c)) out.push(byContent.get(c)!);
  };
  for (const k of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) take(tc[k]);
  for (const e of (tc.additional_special_tokens as unknown[] | undefined) ?? []) take(e);
  if (out.length === 0 && model(files).unk_token) take(model(files).unk_token);
  return out;
}

/**
 * What _create_vocab_sentencepiece would read from the tokenizer.model that tokenizer.json was made from: pieces
 * by id, <0xNN> pieces BYTE and the unknown piece UNKNOWN, then tokenizer_config's added_tokens_decoder (CONTROL
 * when special or special-looking, else USER_DEFINED with U+2581 turned into spaces; score -1000). A SentencePiece
 * BPE model's scores are not in tokenizer.json, but their order is: Hugging Face lists a piece's merges at its score's
 * rank. So a normal piece scores minus the rank of its first merge, and llama.cpp's SentencePiece merging by score
 * picks the merges in the order Hugging Face's BPE does. Pieces no merge produces score below all of them.
 */
function spmTokens(files: HfTokenizerFiles): { tokens: string[]; types: number[]; scores: number[] } {
  const vocab = vocabMap(files);
  const rev = new Map<number, string>();
  for (const [t, id] of Object.entries(vocab)) rev.set(id, t);
  const base = rev.size;
  const n = vocabSizeOf(files, base);
  const rank = new Map<string, number>();
  const merges = mergesOf(files);
  merges.forEach((m, r) => {
    const sp = m.indexOf(" ", 1);
    const piece = (m.slice(0, sp) + m.slice(sp + 1)).replaceAll("\u0120", " ");
    if (!rank.has(piece)) rank.set(piece, r);
  });
  const unk = typeof model(files).unk_token === "string" ? model(files).unk_token as string : undefined;
  const tokens: string[] = [];
  const types: number[] = [];
  const scores: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = rev.get(i);
    if (t === undefined) {
      tokens.push(`[PAD${i}]`);
      types.push(TokenType.Unused);
      scores.push(-10000);
      continue;
    }
    tokens.push(t);
    if (/^<0x[0-9A-Fa-f]{2}>$/.test(t)) {
      types.push(TokenType.Byte);
      scores.push(0);
    } else if (t === unk) {
      types.push(TokenType.Unknown);
      scores.push(0);
    } else {
      types.push(TokenType.Normal);
      scores.push(-(rank.get(t) ?? merges.length + i));
    }
  }
  const decoder = (files.tokenizerConfig?.added_tokens_decoder ?? {}) as Record<string, Json>;
  const entries: [number, { content: string; special: boolean }][] = Object.keys(decoder).length > 0
    ? Object.entries(decoder).map(([id, d]) => [Number(id), { content: String(d.content), special: d.special === true }])
    : addedTokens(files).map((a) => [a.id, { content: a.content, special: a.special }]);
  for (const [id, d] of entries) {
    if (!(id >= 0 && id < n)) continue; // the converter ignores ids past vocab_size
    let text = d.content;
    if (d.special || looksSpecial(text)) {
      types[id] = TokenType.Control;
    } else {
      text = text.replaceAll("\u2581", " ");
      types[id] = TokenType.UserDefined;
    }
    scores[id] = -1000;
    tokens[id] = text;
  }
  return { tokens, types, scores };
}

// ---------------------------------------------------------------------------------------------------------------
// SpecialVocab (gguf-py/gguf/vocab.py)

const SPECIAL_KEY: Record<string, string> = {
  bos: TOK.bos, eos: TOK.eos, unk: TOK.unk, sep: TOK.sep, pad: TOK.pad, mask: TOK.mask, eot: TOK.eot, eom: TOK.eom,
};
const ADD_KEY: Record<string, string> = { bos: TOK.addBos, eos: TOK.addEos, sep: "tokenizer.ggml.add_sep_token" };

/** SpecialVocab.add_to_gguf: merges, special token ids, add_*_token flags and the chat template. */
function specialVocab(files: HfTokenizerFiles, opts: { loadMerges: boolean; nVocab?: number }): GgufKv[] {
  const out: GgufKv[] = [];
  const ids = new Map<string, number>();
  const add = new Map<string, boolean>();
  const types = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
  const setId = (typ: string, id: unknown) => {
    if (typeof id !== "number" || !Number.isInteger(id)) return;
    if (id < 0) fail(files, `invalid value for special token type ${typ}: ${id}`);
    if (opts.nVocab !== undefined && id >= opts.nVocab) return;
    if (!ids.has(typ)) ids.set(typ, id);
  };
  const tc = files.tokenizerConfig ? { ...files.tokenizerConfig } : undefined;
  const added = addedTokens(files);
  // post-processor: TemplateProcessing's leading (and trailing) special token turns add_bos (add_eos) on
  const pp = files.tokenizer.post_processor as Json | null | undefined;
  if (pp) {
    let bosText = tc?.bos_token as string | undefined;
    const eosText = tc?.eos_token as string | undefined;
    for (const p of (pp.type === "Sequence" ? (pp.processors as Json[]) : [pp])) {
      if (p.type === "RobertaProcessing") {
        add.set("bos", true); add.set("eos", true); add.set("sep", true);
        continue;
      }
      if (p.type !== "TemplateProcessing") continue;
      const single = (p.single as Json[] | undefined) ?? [];
      if (single.length > 1) {
        const first = (single[0].SpecialToken as Json | undefined)?.id as string | undefined;
        if (first) {
          if (!tc) bosText = first;
          else if (first !== bosText && !bosText) tc.bos_token = bosText = first;
          add.set("bos", first === bosText);
        }
        const last = (single[single.length - 1].SpecialToken as Json | undefined)?.id as string | undefined;
        if (last) add.set("eos", last === eosText);
      }
    }
  }
  if (tc) {
    for (const typ of types) {
      const a = tc[`add_${typ}_token`];
      if (typeof a === "boolean") add.set(typ, a);
      const e = tc[`${typ}_token`];
      const content = typeof e === "string" ? e : e && typeof e === "object" && typeof (e as Json).content === "string" ? (e as Json).content as string : undefined;
      if (content === undefined) continue;
      setId(typ, added.find((t) => t.content === content)?.id);
    }
  }
  for (const typ of types) setId(typ, files.config[`${typ}_token_id`] ?? (files.config.text_config as Json | undefined)?.[`${typ}_token_id`]);

  if (opts.loadMerges) {
    const merges = mergesOf(files);
    if (merges.length) out.push({ key: TOK.merges, type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: GgufStringArray.from(merges) } });
  }
  for (const [typ, id] of ids) if (SPECIAL_KEY[typ]) out.push(u32(SPECIAL_KEY[typ], id));
  for (const [typ, v] of add) if (ADD_KEY[typ]) out.push(bool(ADD_KEY[typ], v));
  const template = tc ? (tc.chat_template ?? files.chatTemplateFile) : undefined;
  if (typeof template === "string") {
    out.push(str("tokenizer.chat_template", template));
  } else if (Array.isArray(template)) {
    const names: string[] = [];
    let def: string | undefined;
    for (const c of template as Json[]) {
      const name = String(c.name ?? "").replace(/[^A-Za-z0-9]/g, "_");
      if (!name || typeof c.template !== "string") continue;
      if (name === "default") def = c.template;
      else {
        names.push(name);
        out.push(str(`tokenizer.chat_template.${name}`, c.template));
      }
    }
    if (names.length) out.push({ key: "tokenizer.chat_templates", type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: names } });
    if (def !== undefined) out.push(str("tokenizer.chat_template", def));
  }
  return out;
}

function arrays(tokens: string[], types: number[], scores?: number[]): GgufKv[] {
  const out: GgufKv[] = [{ key: TOK.tokens, type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: GgufStringArray.from(tokens) } }];
  if (scores) out.push({ key: TOK.scores, type: GgufType.ARRAY, value: { itemType: GgufType.FLOAT32, items: Float32Array.from(scores) } });
  out.push({ key: TOK.tokenType, type: GgufType.ARRAY, value: { itemType: GgufType.INT32, items: Int32Array.from(types) } });
  return out;
}

/**
 * The tokenizer metadata for `style`. gpt2 names the pre-tokenizer by llama.cpp's chkhsh and fails, as llama.cpp's
 * converter does, when the hash is not one we implement.
 */
export async function convertVocab(files: HfTokenizerFiles, style: VocabStyle): Promise<VocabResult> {
  const notes: string[] = [];
  if (style === "gpt2") {
    const { tokens, types } = gpt2Tokens(files);
    const head: GgufKv[] = [str(TOK.model, "gpt2")];
    const body = arrays(tokens, types);
    const special = specialVocab(files, { loadMerges: true });
    const { pre, chkhsh } = await detectPre(files, [...head, ...body, ...special]);
    if (!pre) {
      fail(files, `the BPE pre-tokenizer was not recognized (chkhsh ${chkhsh.join(" / ")}); edgeprune converts the pre-tokenizers ${[...new Set(Object.values(CHKHSH))].join(", ")}`);
    }
    return { kv: [...head, str(TOK.pre, pre), ...body, ...special], style, size: tokens.length, pre, notes };
  }
  const { tokens, types, scores } = style === "llama-hf" ? llamaHfTokens(files) : spmTokens(files);
  if (style === "spm") notes.push("SentencePiece scores rebuilt from tokenizer.json's merge order (no tokenizer.model is read)");
  const kv = [str(TOK.model, "llama"), str(TOK.pre, "default"), ...arrays(tokens, types, scores),
    ...specialVocab(files, { loadMerges: false, nVocab: tokens.length })];
  return { kv, style, size: tokens.length, pre: "default", notes };
}
