// Perplexity of a model on a token stream, by llama.cpp's llama-perplexity method so numbers are comparable:
// the text is tokenized once (with BOS), cut into non-overlapping windows of `contextSize` tokens (the tail that
// does not fill a window is dropped), each window starts a fresh cache with its first token replaced by BOS, and
// only the second half of each window is scored: the predictions of tokens contextSize/2+1 … contextSize-1, each
// of which sees at least contextSize/2 tokens of context. perplexity = exp(mean negative log-likelihood).
import type { ForwardOptions } from "./model/forward.js";
import type { Model } from "./model/model.js";

export interface PerplexityOptions {
  /** window length in tokens (default 512, capped by the model's context length) */
  contextSize?: number;
  /** score at most this many windows (default: all) */
  maxChunks?: number;
  /** forward options applied to every window (e.g. skipped layers for pruning studies) */
  forward?: Omit<ForwardOptions, "logits">;
  onProgress?: (doneChunks: number, totalChunks: number) => void;
}

export interface PerplexityResult {
  perplexity: number;
  /** mean negative log-likelihood in nats per scored token */
  nll: number;
  scoredTokens: number;
  chunks: number;
  contextSize: number;
}

/** Log-probability of `target` under softmax(logits), in float64. */
export function logSoftmaxAt(logits: Float32Array, offset: number, n: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[offset + i] > max) max = logits[offset + i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[offset + i] - max);
  return logits[offset + target] - max - Math.log(sum);
}

/**
 * How many windows of n tokens llama-perplexity scores in a text of nTokens tokens (the tail that does not fill a
 * window is dropped), at most maxChunks; throws when not even one fits.
 */
export function windowCount(nTokens: number, n: number, maxChunks?: number): number {
  if (!(Number.isInteger(n) && n >= 4)) throw new Error(`invalid context size ${n}: expected an integer ≥ 4`);
  const chunks = Math.floor(nTokens / n);
  if (chunks < 1) throw new Error(`the text has ${nTokens} tokens, fewer than one window of ${n}; use a longer file or a smaller --ctx`);
  return maxChunks !== undefined ? Math.min(chunks, maxChunks) : chunks;
}

/** Window c: tokens c·n … (c+1)·n − 1, its first token replaced by BOS when the model wants one. */
export function windowAt(tokens: ArrayLike<number>, c: number, n: number, bos: number | undefined): number[] {
  const w = Array.from({ length: n }, (_, i) => tokens[c * n + i]);
  if (bos !== undefined) w[0] = bos;
  return w;
}

/** The first scored position of a window of n: positions n/2 … n−2 predict tokens n/2+1 … n−1. */
export function firstScored(n: number): number {
  return n >> 1;
}

export function perplexity(model: Model, tokens: number[], opts: PerplexityOptions = {}): PerplexityResult {
  const n = opts.contextSize ?? Math.min(512, model.config.trainContext);
  if (n > model.config.trainContext) throw new Error(`context size ${n} exceeds the model's context length ${model.config.trainContext}`);
  const chunks = windowCount(tokens.length, n, opts.maxChunks);
  const vocab = model.config.vocabSize;
  const bos = model.tokenizer.addBos ? model.tokenizer.bosId : undefined;
  const ctx = model.createContext({ contextSize: n });
  const first = firstScored(n);
  let nll = 0;
  let scored = 0;
  for (let c = 0; c < chunks; c++) {
    const window = windowAt(tokens, c, n, bos);
    ctx.reset();
    const logits = ctx.eval(window, { ...opts.forward, logits: "all" });
    for (let j = first; j < n - 1; j++) {
      nll -= logSoftmaxAt(logits, j * vocab, vocab, window[j + 1]);
      scored++;
    }
    opts.onProgress?.(c + 1, chunks);
  }
  const mean = nll / scored;
  return { perplexity: Math.exp(mean), nll: mean, scoredTokens: scored, chunks, contextSize: n };
}
