// An independent float64 llama forward pass for tests: embeddings, RMSNorm, RoPE, grouped-query causal attention,
// SwiGLU and the classifier, written from the model's definition, sharing no code with src/model or src/prune.
// It reads weights through a tensor getter (GGUF name -> float64 values + row-major shape), so the same code runs
// on a GGUF file (ggufTensors: src/gguf/reader.ts parses the header, src/quant/ref.ts dequantizes blocks) or on a
// safetensors folder mapped to GGUF names. Whole sequences at once, no KV cache; slow and plain on purpose.
// Not a test by itself, and not a runtime: nothing in src/ may import it.
import { readGgufHeader, type GgufFile, type GgufKv } from "../../src/gguf/reader.js";

/** A tensor as float64 values, row-major, shape outermost first (a matrix is [rows, rowLength]). */
export interface RefTensor {
  data: Float64Array;
  shape: number[];
}

/** GGUF tensor name ("blk.3.attn_q.weight") -> the tensor, or undefined when the file does not have it. */
export type TensorGetter = (name: string) => RefTensor | undefined;

/**
 * How RoPE angles are formed. "exact": θ_i = pos · base^(−2i/ropeDim) in float64, the definition. "ggml": ggml's
 * convention, θ_0 = pos and θ_{i+1} = θ_i · f32(base^(−2/ropeDim)) in float32 steps, which llama.cpp (and our
 * kernel) use; the two differ by ~1e-7 relative per step.
 */
export type RopeAngles = "exact" | "ggml";

export interface RefConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headSize: number;
  vocabSize: number;
  /** leading dims of each head that RoPE rotates */
  ropeDim: number;
  ropeFreqBase: number;
  /** "norm": pairs (2i, 2i+1), GGUF llama's layout; "neox": pairs (i, i + ropeDim/2), Hugging Face's rotate_half */
  ropeStyle: "norm" | "neox";
  rmsEps: number;
  ropeAngles?: RopeAngles;
}

function kvNumber(kv: Map<string, GgufKv>, key: string, fallback?: number): number {
  const e = kv.get(key);
  if (!e) {
    if (fallback === undefined) throw new Error(`ref-forward: GGUF key ${key} is missing`);
    return fallback;
  }
  if (typeof e.value === "number") return e.value;
  if (typeof e.value === "bigint") return Number(e.value);
  throw new Error(`ref-forward: GGUF key ${key} is not a number`);
}

/** Hyperparameters read straight from GGUF metadata (llama only), with llama.cpp's defaults. */
export function refConfigFromGguf(file: GgufFile): RefConfig {
  const arch = file.kv.get("general.architecture")?.value;
  if (arch !== "llama") throw new Error(`ref-forward: architecture ${String(arch)} is not llama`);
  const k = (key: string, fallback?: number) => kvNumber(file.kv, `llama.${key}`, fallback);
  const dim = k("embedding_length");
  const nHeads = k("attention.head_count");
  const embd = file.tensors.find((t) => t.name === "token_embd.weight");
  if (!embd) throw new Error("ref-forward: token_embd.weight is missing");
  return {
    dim, hiddenDim: k("feed_forward_length"), nLayers: k("block_count"), nHeads, nKvHeads: k("attention.head_count_kv", nHeads),
    headSize: dim / nHeads, vocabSize: embd.shape[0], ropeDim: k("rope.dimension_count", dim / nHeads),
    ropeFreqBase: k("rope.freq_base", 10000), ropeStyle: "norm", rmsEps: k("attention.layer_norm_rms_epsilon"),
  };
}

/** A tensor getter over a GGUF file's bytes: every tensor dequantized by its format's reference (quant/ref.ts). */
export function ggufTensors(bytes: Uint8Array, file: GgufFile = readGgufHeader(bytes)): TensorGetter {
  const cache = new Map<string, RefTensor>();
  return (name) => {
    const hit = cache.get(name);
    if (hit) return hit;
    const t = file.tensors.find((x) => x.name === name);
    if (!t) return undefined;
    if (!t.format.dequantize) throw new Error(`ref-forward: no reference dequantizer for ${t.format.name} (${name})`);
    const start = file.dataOffset + t.offset;
    const f32 = new Float32Array(t.nElements);
    t.format.dequantize(bytes.subarray(start, start + t.byteSize), f32);
    const r = { data: Float64Array.from(f32), shape: t.shape.slice() };
    cache.set(name, r);
    return r;
  };
}

/** What to leave out of a forward pass: whole layers, or the attention or FFN half of a layer. */
export interface RefSkip {
  layers?: ReadonlySet<number>;
  attention?: ReadonlySet<number>;
  ffn?: ReadonlySet<number>;
}

export interface RefForwardOptions extends RefSkip {
  /** compute the logits of every position (default true) */
  logits?: boolean;
  /** called after each layer that ran, with (t, dim) residual streams entering it, between its halves, leaving it */
  onLayer?: (layer: number, xIn: Float64Array, xMid: Float64Array, xOut: Float64Array) => void;
  /**
   * called with the input (t rows) of each layer's linear maps: the normed stream q/k/v read ("attn_qkv"), the
   * attention output attn_output reads, the normed stream gate/up read, the SwiGLU product ffn_down reads
   */
  onLinear?: (layer: number, site: "attn_qkv" | "attn_output" | "ffn_gate_up" | "ffn_down", x: Float64Array) => void;
}

/** y (t, rows) = x (t, n) · Wᵀ for W (rows, n), in float64. */
function linear(x: Float64Array, t: number, w: RefTensor): Float64Array {
  const [rows, n] = w.shape;
  if (x.length !== t * n) throw new Error(`ref-forward: input has ${x.length / t} columns, the matrix ${n}`);
  const y = new Float64Array(t * rows);
  const W = w.data;
  // row-outer: one weight row is read once for every token (the matrix streams through the cache once)
  for (let r = 0; r < rows; r++) {
    const wo = r * n;
    for (let j = 0; j < t; j++) {
      const xo = j * n;
      let s = 0;
      for (let i = 0; i < n; i++) s += x[xo + i] * W[wo + i];
      y[j * rows + r] = s;
    }
  }
  return y;
}

/** x / sqrt(mean(x²) + eps) · w, per row. */
function rmsNorm(x: Float64Array, t: number, dim: number, w: RefTensor, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let j = 0; j < t; j++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[j * dim + i] ** 2;
    const s = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[j * dim + i] = x[j * dim + i] * s * w.data[i];
  }
  return y;
}

/** RoPE angle of pair i at position pos (see RopeAngles). */
export function ropeAngle(c: RefConfig, pos: number, i: number): number {
  if ((c.ropeAngles ?? "exact") === "exact") return pos * Math.pow(c.ropeFreqBase, (-2 * i) / c.ropeDim);
  const fr = Math.fround;
  const scale = fr(Math.pow(fr(c.ropeFreqBase), fr(-2 / c.ropeDim)));
  let theta = fr(pos);
  for (let k = 0; k < i; k++) theta = fr(theta * scale);
  return theta;
}

/** Rotate every head of x (t, heads·headSize) in place; row j is at position j. */
function rope(x: Float64Array, t: number, heads: number, c: RefConfig): void {
  const half = c.ropeDim / 2;
  for (let j = 0; j < t; j++) {
    for (let i = 0; i < half; i++) {
      const th = ropeAngle(c, j, i);
      const cos = Math.cos(th), sin = Math.sin(th);
      for (let h = 0; h < heads; h++) {
        const base = (j * heads + h) * c.headSize;
        const a = base + (c.ropeStyle === "neox" ? i : 2 * i);
        const b = base + (c.ropeStyle === "neox" ? i + half : 2 * i + 1);
        const x0 = x[a], x1 = x[b];
        x[a] = x0 * cos - x1 * sin;
        x[b] = x0 * sin + x1 * cos;
      }
    }
  }
}

/** Causal attention: query head h reads kv head floor(h / (nHeads/nKvHeads)); softmax(q·k/√headSize) · v. */
function attention(q: Float64Array, k: Float64Array, v: Float64Array, t: number, c: RefConfig): Float64Array {
  const hs = c.headSize, kvDim = c.nKvHeads * hs, qDim = c.nHeads * hs;
  const group = c.nHeads / c.nKvHeads;
  const out = new Float64Array(t * qDim);
  const s = new Float64Array(t);
  for (let j = 0; j < t; j++) {
    for (let h = 0; h < c.nHeads; h++) {
      const qo = j * qDim + h * hs, ko = Math.floor(h / group) * hs;
      let max = -Infinity;
      for (let p = 0; p <= j; p++) {
        let d = 0;
        for (let i = 0; i < hs; i++) d += q[qo + i] * k[p * kvDim + ko + i];
        s[p] = d / Math.sqrt(hs);
        if (s[p] > max) max = s[p];
      }
      let sum = 0;
      for (let p = 0; p <= j; p++) sum += (s[p] = Math.exp(s[p] - max));
      for (let p = 0; p <= j; p++) {
        const a = s[p] / sum;
        for (let i = 0; i < hs; i++) out[qo + i] += a * v[p * kvDim + ko + i];
      }
    }
  }
  return out;
}

function add(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}

/** The llama model over a tensor getter. */
export class RefLlama {
  constructor(readonly config: RefConfig, readonly tensors: TensorGetter) {
    const c = config;
    if (c.dim !== c.nHeads * c.headSize) throw new Error("ref-forward: dim must be nHeads · headSize");
    if (c.nHeads % c.nKvHeads !== 0) throw new Error("ref-forward: nHeads must be a multiple of nKvHeads");
  }

  /** From the bytes of a llama GGUF file. */
  static fromGguf(bytes: Uint8Array, ropeAngles: RopeAngles = "exact"): RefLlama {
    const file = readGgufHeader(bytes);
    return new RefLlama({ ...refConfigFromGguf(file), ropeAngles }, ggufTensors(bytes, file));
  }

  /** The same weights with another RoPE angle convention. */
  withRopeAngles(ropeAngles: RopeAngles): RefLlama {
    return new RefLlama({ ...this.config, ropeAngles }, this.tensors);
  }

  private need(name: string): RefTensor {
    const t = this.tensors(name);
    if (!t) throw new Error(`ref-forward: tensor ${name} is missing`);
    return t;
  }

  /**
   * Runs tokens at positions 0 … t−1; returns the logits (t, vocabSize) unless opts.logits is false. Layers whose
   * attention (or FFN) tensors are absent, as in a sub-block-pruned file, skip that half.
   */
  forward(tokens: ArrayLike<number>, opts: RefForwardOptions = {}): Float64Array {
    const c = this.config, t = tokens.length, dim = c.dim;
    const embd = this.need("token_embd.weight");
    const x = new Float64Array(t * dim);
    for (let j = 0; j < t; j++) {
      const id = tokens[j];
      if (!(Number.isInteger(id) && id >= 0 && id < c.vocabSize)) throw new Error(`ref-forward: token ${id} is outside the vocabulary`);
      x.set(embd.data.subarray(id * dim, (id + 1) * dim), j * dim);
    }
    for (let l = 0; l < c.nLayers; l++) {
      if (opts.layers?.has(l)) continue;
      const blk = (s: string) => this.tensors(`blk.${l}.${s}.weight`);
      const xIn = opts.onLayer ? x.slice() : x;
      const wq = blk("attn_q");
      if (wq && !opts.attention?.has(l)) {
        const xb = rmsNorm(x, t, dim, this.need(`blk.${l}.attn_norm.weight`), c.rmsEps);
        opts.onLinear?.(l, "attn_qkv", xb);
        const q = linear(xb, t, wq), k = linear(xb, t, this.need(`blk.${l}.attn_k.weight`)), v = linear(xb, t, this.need(`blk.${l}.attn_v.weight`));
        rope(q, t, c.nHeads, c);
        rope(k, t, c.nKvHeads, c);
        const att = attention(q, k, v, t, c);
        opts.onLinear?.(l, "attn_output", att);
        add(x, linear(att, t, this.need(`blk.${l}.attn_output.weight`)));
      }
      const xMid = opts.onLayer ? x.slice() : x;
      const wg = blk("ffn_gate");
      if (wg && !opts.ffn?.has(l)) {
        const xb = rmsNorm(x, t, dim, this.need(`blk.${l}.ffn_norm.weight`), c.rmsEps);
        opts.onLinear?.(l, "ffn_gate_up", xb);
        const g = linear(xb, t, wg), u = linear(xb, t, this.need(`blk.${l}.ffn_up.weight`));
        for (let i = 0; i < g.length; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
        opts.onLinear?.(l, "ffn_down", g);
        add(x, linear(g, t, this.need(`blk.${l}.ffn_down.weight`)));
      }
      opts.onLayer?.(l, xIn, xMid, x.slice());
    }
    if (opts.logits === false) return new Float64Array(0);
    const xn = rmsNorm(x, t, dim, this.need("output_norm.weight"), c.rmsEps);
    return linear(xn, t, this.tensors("output.weight") ?? embd);
  }
}

/** softmax of row j of logits (t, n), in float64. */
export function refSoftmaxRow(logits: Float64Array, j: number, n: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[j * n + i]);
  const p = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (p[i] = Math.exp(logits[j * n + i] - max));
  for (let i = 0; i < n; i++) p[i] /= sum;
  return p;
}

/** The next-token distribution after each prefix tokens[0..j], j ≥ from (teacher forcing). */
export function refTeacherForced(model: RefLlama, tokens: number[], from = 0): Float64Array[] {
  const logits = model.forward(tokens);
  const n = model.config.vocabSize;
  const out: Float64Array[] = [];
  for (let j = from; j < tokens.length; j++) out.push(refSoftmaxRow(logits, j, n));
  return out;
}

/** log p(target) under softmax of row j of logits (t, n), in float64. */
export function refLogProb(logits: Float64Array, j: number, n: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[j * n + i]);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[j * n + i] - max);
  return logits[j * n + target] - max - Math.log(sum);
}

/**
 * Perplexity by llama-perplexity's method, written from its description: non-overlapping windows of ctx tokens
 * (the tail that does not fill one is dropped), the first token of each replaced by BOS, only the predictions of
 * tokens ctx/2+1 … ctx−1 scored; exp(mean negative log-likelihood).
 */
export function refPerplexity(model: RefLlama, tokens: number[], ctx: number, bos: number, maxChunks = Infinity): { perplexity: number; scored: number } {
  const chunks = Math.min(Math.floor(tokens.length / ctx), maxChunks);
  const n = model.config.vocabSize;
  let nll = 0, scored = 0;
  for (let ch = 0; ch < chunks; ch++) {
    const w = tokens.slice(ch * ctx, (ch + 1) * ctx);
    w[0] = bos;
    const logits = model.forward(w);
    for (let j = ctx >> 1; j < ctx - 1; j++) {
      nll -= refLogProb(logits, j, n, w[j + 1]);
      scored++;
    }
  }
  return { perplexity: Math.exp(nll / scored), scored };
}

/**
 * Held-out evaluation as the studies describe it: each document (BOS + tokens, cut to maxTokens) is its own
 * sequence, every position predicts the next token; exp(mean negative log-likelihood over all of them).
 */
export function refDocumentsPerplexity(model: RefLlama, docs: number[][], skip: RefSkip = {}, maxTokens = 512): number {
  const n = model.config.vocabSize;
  let nll = 0, count = 0;
  for (const d of docs) {
    const doc = d.slice(0, maxTokens);
    const logits = model.forward(doc, skip);
    for (let j = 0; j + 1 < doc.length; j++) { nll -= refLogProb(logits, j, n, doc[j + 1]); count++; }
  }
  return Math.exp(nll / count);
}
