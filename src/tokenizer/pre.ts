// The BPE pre-tokenizers we implement, keyed by the `tokenizer.ggml.pre` names llama.cpp maps to them
// (llama-vocab.cpp: llm_tokenizer_bpe's regex_exprs and the flags set next to each name in impl::load).
// Not the splitting itself (unicode.ts) nor the merges (bpe.ts).
import { splitDigits, splitGpt2, splitLlama3, splitNumberRuns, splitQwen2, splitRegex } from "./unicode.js";

/** Takes codepoints and the lengths of the pieces so far; returns the lengths of the refined pieces. */
export type Splitter = (cpts: number[], offsets: number[]) => number[];

export interface PreTokenizer {
  /** applied in order, each refining the previous split (llama.cpp's regex_exprs) */
  split: Splitter[];
  /** clean_up_tokenization_spaces on detokenize (llama.cpp's clean_spaces; BPE default true) */
  cleanSpaces: boolean;
  /** a pre-token that is itself a vocab entry is emitted without merging */
  ignoreMerges: boolean;
  /** BOS added by default (before tokenizer.ggml.add_bos_token overrides it) */
  addBos: boolean;
}

const GPT2: Splitter[] = [splitGpt2];
const LLAMA3: Splitter[] = [splitLlama3];
const QWEN2: Splitter[] = [splitQwen2];
/** "\p{N}" then the GPT-2 regex: every digit is its own piece (StarCoder, SmolLM, Command-R, ...) */
const STARCODER: Splitter[] = [splitDigits, splitGpt2];
/** LLAMA_VOCAB_PRE_TYPE_DEFAULT: four regexes, each refining the previous split.
 *  \p{P} comes from the JS engine's Unicode version, which may be newer than llama.cpp's 15.1. */
const DEFAULT: Splitter[] = [
  (c, o) => splitRegex(c, o, /[\p{P}$+<=>^~|]+/gu),
  splitGpt2,
  splitNumberRuns,
  (c, o) => splitRegex(c, o, /[0-9][0-9][0-9]/gu),
];

const table = new Map<string, PreTokenizer>();
function add(names: string[], split: Splitter[], flags: Partial<Omit<PreTokenizer, "split">> = {}): void {
  for (const n of names) table.set(n, { split, cleanSpaces: flags.cleanSpaces ?? true, ignoreMerges: flags.ignoreMerges ?? false, addBos: flags.addBos ?? false });
}

add(["", "default"], DEFAULT);
add(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"], LLAMA3, { ignoreMerges: true, addBos: true });
add(["smaug-bpe", "dbrx"], LLAMA3);
add(["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert",
  "mpt", "olmo", "jais", "exaone4"], GPT2);
add(["trillion", "granite-docling"], GPT2, { cleanSpaces: false });
add(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"], QWEN2, { cleanSpaces: false });
add(["megrez", "stablelm2"], QWEN2);
add(["smollm", "command-r"], STARCODER, { cleanSpaces: false });
add(["starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"], STARCODER);

/** The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` = name, or undefined when we do not implement it. */
export function preTokenizer(name: string): PreTokenizer | undefined {
  return table.get(name);
}

/** Every name preTokenizer() knows. */
export function preTokenizerNames(): string[] {
  return [...table.keys()].filter((n) => n !== "");
}
