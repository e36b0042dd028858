// The llama forward pass over a KV cache, as a list of wasm kernel calls (llama2.c's forward()), for a batch of
// tokens at once (prefill) or one (decode). It exposes the residual stream entering, inside and leaving every
// layer, and can skip whole layers or either half, which pruning builds on. Not sampling, not tokenizing.
import { activationFormat, formatByName, FormatName, MAX_ACTIVATION_BYTES_PER_VALUE, rowBytes } from "../quant/formats.js";
import { attentionScratch, convertActivations, type Kernels, type WasmRuntime } from "../wasm.js";
import type { ThreadPool } from "../threads/pool.js";
import type { LlamaConfig } from "./config.js";
import type { Tensor, Weights } from "./weights.js";

/**
 * Called after each layer with the residual stream (t rows of dim floats, wasm pointers) entering the layer,
 * between its attention and FFN halves, and leaving it. Valid only during the call.
 */
export type LayerObserver = (layer: number, xIn: number, xMid: number, xOut: number, nTokens: number) => void;

/** Where a linear layer reads its input: the sites GPTQ collects calibration statistics at. */
export type LinearSite = "attn_qkv" | "attn_output" | "ffn_gate_up" | "ffn_down";

/**
 * Called with the input (t rows of n floats, a wasm pointer) of the linear layers at `site` of `layer`, just
 * before they multiply it. An observer may rewrite the weights in place (GPTQ's true-sequential order).
 */
export type LinearObserver = (layer: number, site: LinearSite, x: number, n: number, nTokens: number) => void;

export interface ForwardOptions {
  /** which logits to compute: the last token's (default), every token's, or none (warming the cache) */
  logits?: "last" | "all" | "none";
  /** layers to skip entirely, as if they were absent from the file */
  skipLayers?: ReadonlySet<number>;
  /** layers whose attention half is skipped */
  skipAttention?: ReadonlySet<number>;
  /** layers whose FFN half is skipped */
  skipFfn?: ReadonlySet<number>;
  onLayer?: LayerObserver;
  onLinearInput?: LinearObserver;
  /** stop after this many layers (layers ≥ it are not run; no logits): calibration of early layers */
  stopAfterLayer?: number;
  /**
   * write the logits into this array (at least as long as they are) and return it (a subarray when longer),
   * instead of a new array per call: a decode loop then makes no garbage of vocabSize floats per token, which
   * V8 frees only at its next GC (it counts it as external memory, up to tens of MiB before collecting)
   */
  out?: Float32Array;
}

/** What one call of Context.layer may skip or observe. */
export interface LayerOptions {
  skipAttention?: boolean;
  skipFfn?: boolean;
  onLayer?: LayerObserver;
  onLinearInput?: LinearObserver;
  /** end the layer right after this site's input was handed to onLinearInput (the rest is not run) */
  stopAfterSite?: LinearSite;
}

export interface ContextOptions {
  /** KV cache length in tokens (default: the model's context length, at most 2048) */
  contextSize?: number;
  /** tokens per forward call; longer inputs are split (default 64) */
  batchSize?: number;
}

const EMPTY = new Set<number>();

/** Bytes a context of this size needs in wasm memory (for planning before the runtime exists). */
export function contextBytes(c: LlamaConfig, contextSize: number, batchSize: number): number {
  const f32 = 4;
  const maxN = Math.max(c.dim, c.hiddenDim);
  const rows = batchSize * f32;
  let total = 0;
  total += 2 * c.nLayers * contextSize * c.kvDim * f32; // KV cache
  total += rows * (c.dim * 6 + c.hiddenDim * 2); // x, xb (= att), xb2, q, the two traces (when observed), hb, hb2
  total += attentionScratch(c.nHeads, c.nKvHeads, contextSize); // scores
  total += rows * c.vocabSize; // logits
  total += Math.ceil(batchSize * maxN * MAX_ACTIVATION_BYTES_PER_VALUE) * 3 + 64 * 16; // activation buffers (upper bound) and alignment
  return total;
}

/** One sequence's KV cache and scratch buffers, over a loaded model's weights. */
export class Context {
  readonly contextSize: number;
  readonly batchSize: number;
  /** tokens already in the KV cache */
  nPast = 0;

  private readonly k: Kernels;
  // every pointer below is a byte offset into wasm memory; shapes in rows × columns
  private readonly x: number; // (batchSize, dim) residual stream
  private readonly xb: number; // (batchSize, dim) normed input of a half-layer
  private readonly xb2: number; // (batchSize, dim) output of a half-layer
  private readonly q: number; // (batchSize, dim)
  private readonly att: number; // (batchSize, dim); the same memory as xb, whose values are dead once q, k, v exist
  // (batchSize, dim) residual entering a layer and between its halves, for onLayer observers: allocated by the
  // first eval that has one (only Block Influence scoring does), so generation does not carry them. A caller that
  // releases wasm memory to a mark must create the context after that mark (prune/stats.ts does).
  private traceIn = 0;
  private traceMid = 0;
  private readonly hb: number; // (batchSize, hiddenDim)
  private readonly hb2: number; // (batchSize, hiddenDim)
  private readonly kCache: number; // (nLayers, contextSize, kvDim)
  private readonly vCache: number; // (nLayers, contextSize, kvDim)
  private readonly scores: number; // (threads, nHeads/nKvHeads, contextSize rounded up to 4) attention scratch
  private readonly scoresStride: number; // bytes of one thread's scores scratch
  private readonly logitsPtr: number; // (batchSize, vocabSize)
  /** activation buffers per converted format, (batchSize, max(dim, hiddenDim)) in that format */
  private readonly actBuf = new Map<FormatName, number>();
  /** which input each activation buffer currently holds, so q/k/v (and gate/up) convert their input once */
  private readonly actOf = new Map<FormatName, number>();

  constructor(readonly rt: WasmRuntime, readonly config: LlamaConfig, readonly weights: Weights, opts: ContextOptions = {},
              /** worker threads sharing rt's memory: matmuls and attention are split across them */
              readonly pool?: ThreadPool) {
    const c = config;
    this.contextSize = opts.contextSize ?? Math.min(c.trainContext, 2048);
    this.batchSize = Math.min(opts.batchSize ?? 64, this.contextSize);
    if (!(this.contextSize >= 1)) throw new Error(`context size must be at least 1, got ${opts.contextSize}`);
    if (!(this.batchSize >= 1)) throw new Error(`batch size must be at least 1, got ${opts.batchSize}`);
    this.k = rt.k;
    const rows = (n: number) => rt.alloc(this.batchSize * n * 4);
    this.x = rows(c.dim);
    this.xb = rows(c.dim);
    this.xb2 = rows(c.dim);
    this.q = rows(c.dim);
    this.att = this.xb;
    this.hb = rows(c.hiddenDim);
    this.hb2 = rows(c.hiddenDim);
    this.kCache = rt.alloc(c.nLayers * this.contextSize * c.kvDim * 4);
    this.vCache = rt.alloc(c.nLayers * this.contextSize * c.kvDim * 4);
    this.scoresStride = attentionScratch(c.nHeads, c.nKvHeads, this.contextSize);
    this.scores = rt.alloc(this.scoresStride * (pool?.size ?? 1));
    this.logitsPtr = rows(c.vocabSize);
    const maxN = Math.max(c.dim, c.hiddenDim);
    const tensors = [weights.output, ...weights.layers.flatMap((l) => Object.values(l) as Tensor[])];
    for (const t of tensors) {
      const act = activationFormat(t.format, rt.simd);
      if (!act || act === "F32" || this.actBuf.has(act)) continue;
      const f = formatByName(act)!;
      // a row of maxN values in the activation format; maxN is a multiple of the block whenever a weight needs it
      const bytes = Math.ceil(maxN / f.blockSize) * f.typeSize;
      this.actBuf.set(act, rt.alloc(this.batchSize * bytes));
    }
  }

  /** Forget the cache (start a new sequence). */
  reset(): void {
    this.nPast = 0;
  }

  /** Keep only the first n cached tokens. */
  truncate(n: number): void {
    if (n < 0 || n > this.nPast) throw new Error(`cannot truncate a ${this.nPast}-token cache to ${n}`);
    this.nPast = n;
  }

  /**
   * Run tokens through the model at positions nPast, nPast+1, … and append them to the cache.
   * Returns a copy of the requested logits: vocabSize floats for "last", tokens×vocabSize for "all" (in opts.out
   * when given).
   */
  eval(tokens: ArrayLike<number>, opts: ForwardOptions = {}): Float32Array {
    const c = this.config;
    const mode = (opts.stopAfterLayer ?? Infinity) < c.nLayers ? "none" : opts.logits ?? "last";
    const n = tokens.length;
    if (n === 0) throw new Error("eval needs at least one token");
    if (this.nPast + n > this.contextSize) {
      throw new Error(`context is full: ${this.nPast} cached + ${n} new tokens > context size ${this.contextSize}`);
    }
    for (let i = 0; i < n; i++) {
      const id = tokens[i];
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
    }
    const need = mode === "all" ? n * c.vocabSize : mode === "last" ? c.vocabSize : 0;
    if (opts.out && opts.out.length < need) throw new Error(`eval: opts.out holds ${opts.out.length} floats, the logits need ${need}`);
    const out = !opts.out ? new Float32Array(need) : opts.out.length === need ? opts.out : opts.out.subarray(0, need);
    for (let start = 0; start < n; start += this.batchSize) {
      const t = Math.min(this.batchSize, n - start);
      const isLast = start + t === n;
      const batchMode = mode === "all" ? "all" : mode === "last" && isLast ? "last" : "none";
      this.forwardBatch(tokens, start, t, batchMode, opts);
      if (batchMode === "all") out.set(this.rt.f32At(this.logitsPtr, t * c.vocabSize), start * c.vocabSize);
      else if (batchMode === "last") out.set(this.rt.f32At(this.logitsPtr, c.vocabSize));
    }
    return out;
  }

  private forwardBatch(tokens: ArrayLike<number>, start: number, t: number, mode: "last" | "all" | "none", opts: ForwardOptions): void {
    const c = this.config;
    const skipLayers = opts.skipLayers ?? EMPTY;
    const nRun = Math.min(c.nLayers, opts.stopAfterLayer ?? c.nLayers);
    this.embed(tokens, start, t);
    for (let l = 0; l < nRun; l++) {
      if (skipLayers.has(l)) continue;
      this.layer(l, t, { skipAttention: opts.skipAttention?.has(l), skipFfn: opts.skipFfn?.has(l), onLayer: opts.onLayer, onLinearInput: opts.onLinearInput });
    }
    this.advance(t);
    if (mode === "none" || nRun < c.nLayers) return;
    this.head(t, mode);
  }

  // ---- stage access: tools that study a model (GPTQ, Block Influence over a layer stream) drive these ----------

  /** (batchSize, dim) f32 rows in wasm: the residual stream that embed writes and layer reads and updates in place */
  get residual(): number {
    return this.x;
  }

  /** (batchSize, vocabSize) f32 rows in wasm: what head writes */
  get logitsBuffer(): number {
    return this.logitsPtr;
  }

  /** Token embeddings of tokens[start, start + t) into the residual stream's first t rows. */
  embed(tokens: ArrayLike<number>, start: number, t: number): void {
    const { rt, config: c, weights: w } = this;
    const embd = w.tokenEmbd;
    const embdRow = rowBytes(embd.format, c.dim);
    for (let j = 0; j < t; j++) {
      const id = tokens[start + j];
      embd.format.dequantize!(rt.u8At(embd.ptr + id * embdRow, embdRow), rt.f32At(this.x + j * c.dim * 4, c.dim));
    }
  }

  /**
   * Layer l over the first t rows of the residual stream, in place, at positions nPast … nPast + t − 1 (its keys and
   * values go to row l of the cache). stopAfterSite ends the layer right after that site's input was observed.
   */
  layer(l: number, t: number, opts: LayerOptions = {}): void {
    const { k, rt, config: c } = this;
    const lw = this.weights.layers[l];
    const pos0 = this.nPast;
    const dim = c.dim;
    const rowBytesF32 = dim * 4;
    if (t > this.batchSize) throw new Error(`layer: ${t} rows exceed the batch size ${this.batchSize}`);
    const observe = opts.onLayer;
    if (observe && !this.traceIn) {
      this.traceIn = rt.alloc(this.batchSize * dim * 4);
      this.traceMid = rt.alloc(this.batchSize * dim * 4);
    }
    const linear = opts.onLinearInput;
    const stop = opts.stopAfterSite;
    if (observe) rt.u8.copyWithin(this.traceIn, this.x, this.x + t * rowBytesF32);

    if (lw.wq && !opts.skipAttention) {
      const cacheRow = (l * this.contextSize + pos0) * c.kvDim * 4;
      const kRows = this.kCache + cacheRow;
      const vRows = this.vCache + cacheRow;
      k.rmsnorm(this.xb, this.x, lw.attnNorm!.ptr, dim, c.rmsEps, t);
      this.newInput();
      linear?.(l, "attn_qkv", this.xb, dim, t);
      if (stop === "attn_qkv") return;
      this.matmul(this.q, this.xb, lw.wq, t);
      this.matmul(kRows, this.xb, lw.wk!, t);
      this.matmul(vRows, this.xb, lw.wv!, t);
      const rope = c.ropeStyle === "neox" ? k.rope_neox : k.rope_norm;
      rope(this.q, c.nHeads, c.headSize, c.ropeDim, pos0, c.ropeFreqBase, t);
      rope(kRows, c.nKvHeads, c.headSize, c.ropeDim, pos0, c.ropeFreqBase, t);
      const kc = this.kCache + l * this.contextSize * c.kvDim * 4, vc = this.vCache + l * this.contextSize * c.kvDim * 4;
      if (this.pool) this.pool.attention(this.att, this.q, kc, vc, this.scores, this.scoresStride, c.nHeads, c.nKvHeads, c.headSize, pos0, t);
      else k.attention(this.att, this.q, kc, vc, this.scores, c.nHeads, c.nKvHeads, c.headSize, pos0, t);
      this.newInput();
      linear?.(l, "attn_output", this.att, dim, t);
      if (stop === "attn_output") return;
      this.matmul(this.xb2, this.att, lw.wo!, t);
      k.add(this.x, this.x, this.xb2, t * dim);
    }
    if (observe) rt.u8.copyWithin(this.traceMid, this.x, this.x + t * rowBytesF32);

    if (lw.wGate && !opts.skipFfn) {
      k.rmsnorm(this.xb, this.x, lw.ffnNorm!.ptr, dim, c.rmsEps, t);
      this.newInput();
      linear?.(l, "ffn_gate_up", this.xb, dim, t);
      if (stop === "ffn_gate_up") return;
      this.matmul(this.hb, this.xb, lw.wGate, t);
      this.matmul(this.hb2, this.xb, lw.wUp!, t);
      k.swiglu(this.hb, this.hb, this.hb2, t * c.hiddenDim);
      this.newInput();
      linear?.(l, "ffn_down", this.hb, c.hiddenDim, t);
      if (stop === "ffn_down") return;
      this.matmul(this.xb2, this.hb, lw.wDown!, t);
      k.add(this.x, this.x, this.xb2, t * dim);
    }
    if (observe) observe(l, this.traceIn, this.traceMid, this.x, t);
  }

  /** The t rows just run become part of the cache: the next batch starts at position nPast + t. */
  advance(t: number): void {
    this.nPast += t;
  }

  /** The classifier on the residual stream: final norm, then output (or the tied embedding) for the last row or all t. */
  head(t: number, mode: "last" | "all"): void {
    const { k, config: c, weights: w } = this;
    const rowsOut = mode === "all" ? t : 1;
    const from = this.x + (t - rowsOut) * c.dim * 4;
    k.rmsnorm(this.xb, from, w.outputNorm.ptr, c.dim, c.rmsEps, rowsOut);
    this.newInput();
    this.matmul(this.logitsPtr, this.xb, w.output, rowsOut);
  }

  /** The next matmuls read a different input: converted activations must be redone. */
  private newInput(): void {
    // overwrite, not clear(): once the Map lives in V8's old space, every clear() allocates its new backing table
    // there too, ~10 times per token, and a server's RSS grew by the old-space garbage between full GCs
    for (const a of this.actOf.keys()) this.actOf.set(a, -1);
  }

  /** out (t, rows of w) = x (t, n) · wᵀ, converting x to the weight's activation format once per input. */
  private matmul(out: number, x: number, w: Tensor, t: number): void {
    const [d, n] = w.shape;
    const f = w.format;
    let act = x;
    const a = activationFormat(f, this.rt.simd)!;
    if (a !== "F32") {
      act = this.actBuf.get(a)!;
      if (this.actOf.get(a) !== x) {
        convertActivations(this.k, a, act, x, n, t);
        this.actOf.set(a, x);
      }
    }
    if (this.pool) {
      const xRow = a === "F32" ? n * 4 : rowBytes(formatByName(a)!, n);
      this.pool.matmul(f.matmul!, out, act, w.ptr, n, d, t, rowBytes(f, n), xRow);
    } else {
      this.k[f.matmul!](out, act, w.ptr, n, d, t);
    }
  }
}
