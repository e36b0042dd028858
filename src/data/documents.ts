// Calibration and evaluation text: splitting a file into documents (TinyStories' `<|endoftext|>` lines), the
// calibration/evaluation split, and cutting token streams into windows. Portable; reading files is the caller's.
import type { Tokenizer } from "../tokenizer/index.js";

/** The line that ends each story in the TinyStories validation file. */
export const END_OF_TEXT = "<|endoftext|>";

/** Documents of a text: split on `<|endoftext|>` lines when present, else the whole text is one document. */
export function splitDocuments(text: string): string[] {
  const parts = text.split(/^<\|endoftext\|>[ \t]*$/m);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * Calibrate on the first 80% of the documents and evaluate on the last 20% (for the 1000-story TinyStories file:
 * stories 1–800 and 801–1000), so the two never overlap. A single document is split by characters instead.
 */
export function calibrationSplit(docs: string[]): { calib: string[]; eval: string[] } {
  if (docs.length >= 2) {
    const cut = Math.round(docs.length * 0.8);
    return { calib: docs.slice(0, cut), eval: docs.slice(cut) };
  }
  const text = docs[0] ?? "";
  const cut = Math.round(text.length * 0.8);
  return { calib: [text.slice(0, cut)], eval: [text.slice(cut)] };
}

/** Each document as BOS (when the tokenizer wants one) + its tokens. */
export function tokenizeDocuments(tokenizer: Tokenizer, docs: string[]): number[][] {
  return docs.map((d) => tokenizer.encode(d, { addBos: tokenizer.addBos }));
}

/**
 * Concatenate documents and cut the stream into windows of `windowTokens`, at most `maxTokens` in all; the last
 * partial window is dropped. Each window starts with BOS in place of its first token (llama.cpp's perplexity
 * convention), so every window is a well-formed sequence.
 */
export function tokenWindows(docs: number[][], windowTokens: number, maxTokens: number, bos: number | undefined): number[][] {
  if (!(Number.isInteger(windowTokens) && windowTokens >= 2)) throw new Error(`invalid window length ${windowTokens}: expected an integer ≥ 2`);
  const windows: number[][] = [];
  let current: number[] = [];
  outer: for (const doc of docs) {
    for (const id of doc) {
      current.push(id);
      if (current.length === windowTokens) {
        if (bos !== undefined) current[0] = bos;
        windows.push(current);
        current = [];
        if ((windows.length + 1) * windowTokens > maxTokens) break outer;
      }
    }
  }
  return windows;
}

/** Calibration tokens when the user gives none: enough for H of a 192-wide layer to be well conditioned. */
export const DEFAULT_CALIB_TOKENS = 4096;
/**
 * Longest calibration window. Every window re-runs the layers before the one being quantized, and attention
 * over long windows dominates that cost; on stories-deep-16L windows of 128, 256 and 512 tokens gave the same
 * held-out perplexity (docs/gptq.md) at 42, 59 and 100 s.
 */
export const MAX_CALIB_WINDOW = 128;

export interface CalibrationWindows {
  windows: number[][];
  /** tokens in all windows */
  tokens: number;
  /** documents calibration drew from (the first 80%) and how many the text has */
  calibDocuments: number;
  documents: number;
}

/**
 * Windows of the first 80% of the text's documents (each document BOS + its tokens, concatenated, cut into
 * windows that start with BOS), nTokens in all, rounded down to whole windows. Throws one line when the text
 * is too short.
 */
export function calibrationWindows(tokenizer: Tokenizer, text: string, nTokens: number, contextLength: number, maxWindow = MAX_CALIB_WINDOW): CalibrationWindows {
  if (!(Number.isInteger(nTokens) && nTokens >= 2)) throw new Error(`--tokens must be an integer ≥ 2, got ${nTokens}`);
  const docs = splitDocuments(text);
  const { calib } = calibrationSplit(docs);
  const window = Math.min(nTokens, maxWindow, contextLength);
  const want = Math.floor(nTokens / window);
  const windows = tokenWindows(tokenizeDocuments(tokenizer, calib), window, want * window, tokenizer.addBos ? tokenizer.bosId : undefined);
  if (windows.length < want) {
    const have = tokenizeDocuments(tokenizer, calib).reduce((a, d) => a + d.length, 0);
    const part = docs.length > 1 ? `its first ${calib.length} of ${docs.length} documents` : "the first 80% of its single document";
    throw new Error(`calibration text too short: ${part} hold ${have} tokens, fewer than --tokens ${nTokens} (in windows of ${window})`);
  }
  return { windows, tokens: want * window, calibDocuments: calib.length, documents: docs.length };
}
