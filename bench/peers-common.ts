// Shared by the bench/peers runners: the run protocol (a 128-token prompt that every runtime tokenizes the same
// way, 128 greedy tokens), the per-run result a child prints, and medians. Not a runner itself.
import { readGgufHeader } from "../src/gguf/reader.js";
import { FileSource } from "../src/node/files.js";
import { tokenizerFromGguf, type Tokenizer } from "../src/tokenizer/index.js";

export const PROMPT_TOKENS = 128;
export const GEN_TOKENS = 128;

/** One timed run: prefill of the prompt, then greedy decoding. Rates in tokens per second. */
export interface RunResult {
  prefillTokS: number;
  decodeTokS: number;
  /** wall-clock of the whole run in ms */
  wallMs: number;
  /** tokens the runtime says it evaluated as the prompt, and generated: the driver checks both are the protocol's */
  promptTokens: number;
  genTokens: number;
}

/** What a runner child prints as the last line of stdout. */
export interface RunnerReport {
  runtime: string;
  model: string;
  /** threads the runtime actually ran on (what it reports), not what was asked for */
  threads: number;
  runs: RunResult[];
  /** e.g. the kernel build, wllama's own timings next to the page's wall clock */
  notes?: Record<string, unknown>;
  peakRssBytes?: number;
  error?: string;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A prompt text of PROMPT_TOKENS - 1 words that the synthetic vocabulary (src/commands/synth.ts) keeps as one
 * token each ("▁" + two lower-case letters), so with BOS it is exactly PROMPT_TOKENS tokens in every runtime.
 */
export function benchText(): string {
  const letters = "etaoinshrdlcumwfgypbvkjxqz";
  const words: string[] = [];
  for (let i = 0; words.length < PROMPT_TOKENS - 1; i++) words.push(letters[(i * 7) % 26] + letters[(i * 11 + 3) % 26]);
  return words.join(" ");
}

/** Our token ids for benchText() with BOS, checked to be PROMPT_TOKENS long. */
export function benchTokens(tok: Tokenizer, modelPath: string): number[] {
  const tokens = tok.encode(benchText(), { addBos: true });
  if (tokens.length !== PROMPT_TOKENS) throw new Error(`${modelPath}: the bench prompt is ${tokens.length} tokens, not ${PROMPT_TOKENS} (not a synth vocabulary?)`);
  return tokens;
}

/**
 * benchText() and its token ids, for runners that have no tokenizer of ours: reads the file's header for it.
 * (The edgeprune runner uses its loaded model's tokenizer instead, so its peak memory holds one vocabulary.)
 */
export function benchPrompt(modelPath: string): { text: string; tokens: number[] } {
  const src = new FileSource(modelPath);
  let file;
  try { file = readGgufHeader(src, modelPath); } finally { src.close(); }
  return { text: benchText(), tokens: benchTokens(tokenizerFromGguf(file.kv), modelPath) };
}

export function printReport(r: RunnerReport): void {
  process.stdout.write(`\n${JSON.stringify(r)}\n`);
}
