// Sentence embeddings from a decoder model, as llama.cpp computes them with a pooling type: the final-normed hidden
// state (llama.cpp's result_norm) of the last token, or its mean over every token, then normalized as
// llama-server's embd_normalize says (2, Euclidean, by default). Drives the forward pass's stages (embed, each
// layer, the final norm); not tokenizing (the caller gives token ids) and not HTTP.
import type { Context } from "./model/forward.js";

export type Pooling = "mean" | "last";
export const POOLINGS: readonly Pooling[] = ["mean", "last"];

export interface EmbeddingOptions {
  pooling: Pooling;
  /**
   * llama-server's embd_normalize: -1 none, 0 max-absolute scaled to the int16 range, 1 taxicab, 2 Euclidean
   * (default), p > 2 the p-norm
   */
  normalize?: number;
}

/** Scale `v` in place by llama.cpp's common_embd_normalize rule (see EmbeddingOptions.normalize). */
export function normalizeEmbedding(v: Float32Array, norm = 2): Float32Array {
  if (!Number.isInteger(norm) || norm < -1) throw new Error(`embedding normalization must be an integer ≥ -1, got ${norm}`);
  let sum = 0;
  if (norm === -1) sum = 1;
  else if (norm === 0) {
    for (const x of v) sum = Math.max(sum, Math.abs(x));
    sum /= 32760;
  } else if (norm === 2) {
    for (const x of v) sum += Math.fround(x * x);
    sum = Math.sqrt(sum);
  } else {
    for (const x of v) sum += Math.abs(x) ** norm;
    sum = sum ** (1 / norm);
  }
  const scale = Math.fround(sum > 0 ? 1 / sum : 0);
  for (let i = 0; i < v.length; i++) v[i] = Math.fround(v[i] * scale);
  return v;
}

/**
 * The pooled, normalized embedding of `tokens` (include BOS yourself, as llama-server's tokenizer does). The
 * context's cache is cleared first and holds the tokens afterwards.
 */
export function embedTokens(ctx: Context, tokens: ArrayLike<number>, opts: EmbeddingOptions): Float32Array {
  const n = tokens.length, c = ctx.config;
  if (n === 0) throw new Error("an embedding needs at least one token");
  if (n > ctx.contextSize) throw new Error(`the input has ${n} tokens, more than the context's ${ctx.contextSize}`);
  if (!POOLINGS.includes(opts.pooling)) throw new Error(`pooling must be one of ${POOLINGS.join(", ")}, got ${String(opts.pooling)}`);
  for (let i = 0; i < n; i++) {
    const id = tokens[i];
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
  }
  ctx.reset();
  const sum = opts.pooling === "mean" ? new Float64Array(c.dim) : undefined;
  const out = new Float32Array(c.dim);
  for (let start = 0; start < n; start += ctx.batchSize) {
    const t = Math.min(ctx.batchSize, n - start);
    ctx.embed(tokens, start, t);
    for (let l = 0; l < c.nLayers; l++) ctx.layer(l);
    const last = start + t === n;
    if (sum) {
      const rows = ctx.normed("all");
      for (let j = 0; j < t; j++) for (let i = 0; i < c.dim; i++) sum[i] += rows[j * c.dim + i];
    } else if (last) {
      out.set(ctx.normed("last"));
    }
    ctx.advance();
  }
  if (sum) for (let i = 0; i < c.dim; i++) out[i] = sum[i] / n;
  return normalizeEmbedding(out, opts.normalize ?? 2);
}
