// The forward pass over a KV cache, as a list of wasm kernel calls (llama2.c's forward()), for a batch of tokens
// at once (prefill) or one (decode), for every family in arch.ts: one generic block whose optional steps (biases,
// q/k norms, query pre-scaling, post-norms, GeGLU, fused projections, sliding windows, soft-capping) the config and
// the tensors present switch on. Its three stages (embed, one layer, head) are public so that tools that study a
// model (Block Influence, GPTQ, healing) drive them; eval() runs them in order, can skip whole layers or either
// half, and exposes the residual stream entering, inside and leaving every layer. Not sampling, not tokenizing.
//
// Each layer runs through its LayerSlot: its kernels, scratch, weights, KV cache and RoPE constants in one place,
// so a range of layers can live in another wasm runtime (issue 14's shards): the residual stream is handed over at
// the boundary, a few KiB per token.
import { activationFormat, activationRows, prefillActivationFormat, DEFAULT_KV_CACHE_TYPE, formatByName, FormatName, kvCacheFormat, MAX_ACTIVATION_BYTES_PER_VALUE, rowBytes, type KvCacheType, type QuantFormat } from "../quant/formats.js";
import { attentionScratch, convertActivations, type Kernels, type WasmRuntime } from "../wasm.js";
import type { ThreadPool } from "../threads/pool.js";
import { splitsByRows } from "../threads/share.js";
import type { LinearSite } from "./arch.js";
import type { ModelConfig } from "./config.js";
import type { LayerWeights, Tensor, Weights } from "./weights.js";

export type { LinearSite } from "./arch.js";

/**
 * Called after each layer with the residual stream (t rows of dim floats, wasm pointers) entering the layer,
 * between its attention and FFN halves, and leaving it. Valid only during the call.
 */
export type LayerObserver = (layer: number, xIn: number, xMid: number, xOut: number, nTokens: number) => void;

/**
 * Called with the input (t rows of n floats, a wasm pointer) of the linear layers at `site` of `layer`, just
 * before they multiply it. An observer may rewrite the weights in place (GPTQ's true-sequential order).
 */
export type LinearObserver = (layer: number, site: LinearSite, x: number, n: number, nTokens: number) => void;

export interface ForwardOptions {
  /** which logits to compute: the last token's (default), every token's, or none (warming the cache) */
  logits?: "last" | "all" | "none";
  /** layers to skip entirely, as if they were absent from the file (a Set or an array of layer indices) */
  skipLayers?: ReadonlySet<number> | readonly number[];
  /** layers whose attention half is skipped */
  skipAttention?: ReadonlySet<number> | readonly number[];
  /** layers whose FFN half is skipped */
  skipFfn?: ReadonlySet<number> | readonly number[];
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

/** Options of one layer() call. */
export interface LayerOptions {
  skipAttention?: boolean;
  skipFfn?: boolean;
  onLinearInput?: LinearObserver;
  /** keep copies of the stream entering the layer and between its halves (Context.traces()) */
  trace?: boolean;
  /** end the layer right after this site's input was handed to onLinearInput (the rest is not run) */
  stopAfterSite?: LinearSite;
}

export interface ContextOptions {
  /** KV cache length in tokens (default: the model's context length, at most 2048) */
  contextSize?: number;
  /** tokens per forward call; longer inputs are split (default 64) */
  batchSize?: number;
  /** type of the cached keys: "f16" (default, as llama.cpp's), "q8_0" or "f32" (llama.cpp's --cache-type-k) */
  cacheTypeK?: KvCacheType;
  /** type of the cached values (llama.cpp's --cache-type-v), as cacheTypeK */
  cacheTypeV?: KvCacheType;
}

/** The K and V cache formats a context of these options uses, checked against the model's head size. */
export interface KvFormats {
  k: QuantFormat;
  v: QuantFormat;
  /**
   * Walsh-Hadamard rotations (0: none) llama.cpp applies around a quantized cache (llama-kv-cache.cpp attn_rot_k /
   * attn_rot_v, when the head size is a multiple of 64): q and k in chunks of kRot before K is stored (the largest
   * power of two dividing the head size), v in chunks of vRot = 64 before V is stored and the attention output
   * after. Rotations spread outliers over a block, so its quantization loses less; dot products are unchanged.
   */
  kRot: number;
  vRot: number;
}

/**
 * The cache formats of these options (F16 when not given), or a clear refusal: a block type needs whole blocks
 * per head (llama.cpp refuses the same: "K cache type q8_0 with block size 32 does not divide n_embd_head_k").
 */
export function kvFormats(c: ModelConfig, opts: Pick<ContextOptions, "cacheTypeK" | "cacheTypeV"> = {}): KvFormats {
  const pick = (type: string | undefined, option: string) => {
    const f = kvCacheFormat(type ?? DEFAULT_KV_CACHE_TYPE, option);
    if (c.headSize % f.blockSize !== 0) {
      throw new Error(`${option} ${f.name.toLowerCase()}: its blocks of ${f.blockSize} values do not divide this model's head size ${c.headSize} (llama.cpp refuses it too); use f16 or f32`);
    }
    return f;
  };
  const k = pick(opts.cacheTypeK, "cacheTypeK (--cache-type-k)"), v = pick(opts.cacheTypeV, "cacheTypeV (--cache-type-v)");
  const rotates = (f: QuantFormat) => f.blockSize > 1 && c.headSize % 64 === 0;
  let kRot = 0;
  if (rotates(k)) for (kRot = 64; c.headSize % (2 * kRot) === 0;) kRot *= 2;
  return { k, v, kRot, vRot: rotates(v) ? 64 : 0 };
}

const EMPTY: ReadonlySet<number> = new Set<number>();

/** A skip option as a set of layer indices; anything else is an error naming the option. */
function layerSet(v: ReadonlySet<number> | readonly number[] | undefined, name: string, nLayers: number): ReadonlySet<number> {
  if (v === undefined || v === null) return EMPTY;
  const set = v instanceof Set ? v : Array.isArray(v) ? new Set(v as number[]) : undefined;
  if (!set) throw new Error(`${name} must be a Set or an array of layer indices, got ${typeof v}`);
  for (const l of set) if (!Number.isInteger(l) || l < 0 || l >= nLayers) throw new Error(`${name}: ${String(l)} is not a layer index (0..${nLayers - 1})`);
  return set;
}
const F32 = 4;

/** The scratch one runtime needs for a batch, in floats per token row (shared by planning and allocation). */
function scratchWidths(c: ModelConfig) {
  const qkv = c.qDim + 2 * c.kvDim;
  const fused = c.arch.layer.some((r) => r.key === "attnQkv");
  const ffnRows = c.arch.fusedGateUp ? 2 * c.hiddenDim : c.hiddenDim;
  return {
    x: c.dim, // residual stream
    xb: Math.max(c.dim, c.qDim), // normed input of a half; also the attention output (its values are dead by then)
    xb2: c.dim, // output of a half
    q: c.qDim,
    // a fused q|k|v projection before it is split; without one, the k and v rows of a batched decode (decodeBatch)
    // before they go to their sequences' caches
    qkv: fused ? qkv : 2 * c.kvDim,
    hb: ffnRows, // gate (or fused gate|up)
    hb2: c.hiddenDim, // up (or the fused GLU's output)
    /** the widest input a matmul converts */
    actIn: Math.max(c.dim, c.qDim, c.hiddenDim),
  };
}

/**
 * The cache the tools that study a model use (Block Influence and the other metrics, healing, the layer stream of
 * GPTQ and BI, the studies' evaluations): F32, so that their figures are the float64 references' up to float32
 * noise whatever the serving default; a calibration window's cache is small. The tests that compare at F32
 * tightness (against the float64 references, or llama.cpp with its F32 cache) ask for it too.
 */
export const STUDY_CACHE = { cacheTypeK: "f32", cacheTypeV: "f32" } as const satisfies Pick<ContextOptions, "cacheTypeK" | "cacheTypeV">;

/** Layers that have attention weights (only they need a KV cache). */
function attentionLayers(c: ModelConfig): number {
  return c.nLayers - c.removedAttention.size;
}

/** Bytes of one position's keys (or values) in one layer's cache of format f. */
export function kvRowBytes(c: ModelConfig, f: QuantFormat): number {
  return rowBytes(f, c.kvDim);
}

/**
 * Bytes of the KV cache (keys and values of every layer with attention) a context of contextSize tokens allocates;
 * with `layers` [start, end), of those layers only (one shard's).
 */
export function kvCacheBytes(c: ModelConfig, contextSize: number, types: Pick<ContextOptions, "cacheTypeK" | "cacheTypeV"> = {}, layers?: readonly [number, number]): number {
  const f = kvFormats(c, types);
  let n = attentionLayers(c);
  if (layers) {
    n = 0;
    for (let l = layers[0]; l < layers[1]; l++) if (!c.removedAttention.has(l)) n++;
  }
  return n * contextSize * (kvRowBytes(c, f.k) + kvRowBytes(c, f.v));
}

/** Bytes of the scratch typed caches add per batch row: k and v in F32 before their conversion, q in K's type. */
function kvScratchBytes(c: ModelConfig, f: KvFormats): number {
  const typed = f.k.name !== "F32" || f.v.name !== "F32";
  return (typed ? 2 * c.kvDim * F32 : 0) + (f.k.name !== "F32" ? rowBytes(f.k, c.qDim) : 0);
}

/** Bytes of one runtime's scratch for a context (its Workspace: batch buffers, traces, scores, activations), no cache or logits. */
export function workspaceBytes(c: ModelConfig, contextSize: number, batchSize: number, types: Pick<ContextOptions, "cacheTypeK" | "cacheTypeV"> = {}): number {
  const w = scratchWidths(c);
  const rows = batchSize * F32;
  let total = batchSize * kvScratchBytes(c, kvFormats(c, types)) + 3 * 64;
  total += rows * (w.x + w.xb + w.xb2 + w.q + w.qkv + w.hb + w.hb2 + 3 * c.dim); // + the traces (when observed)
  total += attentionScratch(c.nHeads, c.nKvHeads, contextSize); // scores
  total += Math.ceil(batchSize * w.actIn * MAX_ACTIVATION_BYTES_PER_VALUE) * 3 + 64 * 20; // activation buffers (upper bound) and alignment
  return total;
}

/** Bytes of a context's logits (batchSize rows of the vocabulary), in the runtime that runs the classifier. */
export function logitsBytes(c: ModelConfig, batchSize: number): number {
  return batchSize * F32 * c.vocabSize;
}

/** Bytes a context of this size needs in wasm memory in one runtime (for planning before the runtime exists). */
export function contextBytes(c: ModelConfig, contextSize: number, batchSize: number, types: Pick<ContextOptions, "cacheTypeK" | "cacheTypeV"> = {}): number {
  return kvCacheBytes(c, contextSize, types) + workspaceBytes(c, contextSize, batchSize, types) + logitsBytes(c, batchSize);
}

/**
 * One runtime's kernels and scratch for a context: the buffers a batch flows through, the activation buffers of
 * the weight formats that runtime's layers use, and the matmul that converts activations once per input.
 */
class Workspace {
  readonly k: Kernels;
  // byte offsets into rt's memory; shapes in rows × columns
  readonly x: number; // (batchSize, dim) residual stream
  readonly xb: number; // (batchSize, max(dim, qDim)) normed input of a half-layer
  readonly xb2: number; // (batchSize, dim) output of a half-layer
  readonly q: number; // (batchSize, qDim)
  readonly qkv: number; // (batchSize, qDim + 2 kvDim) fused projection output; (batchSize, 2 kvDim) without fused layers
  readonly att: number; // (batchSize, qDim); the same memory as xb, whose values are dead once q, k, v exist
  readonly hb: number; // (batchSize, hiddenDim, or 2 hiddenDim when gate and up are fused)
  readonly hb2: number; // (batchSize, hiddenDim)
  readonly scores: number; // (threads, nHeads/nKvHeads, contextSize rounded up to 4) attention scratch
  readonly scoresStride: number; // bytes of one thread's scores scratch
  // typed caches: (batchSize, kvDim) f32 k and v before they are converted into the cache (0 when both are F32),
  // and (batchSize, qDim) q in K's type (0 for an F32 K cache)
  readonly kNew: number;
  readonly vNew: number;
  readonly qK: number;
  // (batchSize, dim) residual entering a layer and between its halves, for observers: allocated by the first
  // layer() that traces (only Block Influence scoring does), so generation does not carry them. A caller that
  // releases wasm memory to a mark must create the context after that mark (prune/stats.ts does).
  traceIn = 0;
  traceMid = 0;
  /** (batchSize, dim) the stream leaving a layer of another shard, copied here for an observer (shard 0 only) */
  traceOut = 0;
  /** activation buffers per converted format, (batchSize, actIn) in that format */
  private readonly actBuf = new Map<FormatName, number>();
  /** which input each activation buffer currently holds, so q/k/v (and gate/up) convert their input once */
  private readonly actOf = new Map<FormatName, number>();

  constructor(readonly rt: WasmRuntime, readonly c: ModelConfig, readonly batchSize: number, contextSize: number,
              tensors: Tensor[], kv: KvFormats, readonly pool?: ThreadPool) {
    this.k = rt.k;
    const w = scratchWidths(c);
    const rows = (n: number) => (n > 0 ? rt.alloc(batchSize * n * F32) : 0);
    this.x = rows(w.x);
    this.xb = rows(w.xb);
    this.xb2 = rows(w.xb2);
    this.q = rows(w.q);
    this.qkv = rows(w.qkv);
    this.att = this.xb;
    this.hb = rows(w.hb);
    this.hb2 = rows(w.hb2);
    this.scoresStride = attentionScratch(c.nHeads, c.nKvHeads, contextSize);
    this.scores = rt.alloc(this.scoresStride * (pool?.size ?? 1));
    const typed = kv.k.name !== "F32" || kv.v.name !== "F32";
    this.kNew = typed ? rows(c.kvDim) : 0;
    this.vNew = typed ? rows(c.kvDim) : 0;
    this.qK = kv.k.name !== "F32" ? rt.alloc(batchSize * rowBytes(kv.k, c.qDim)) : 0;
    for (const t of tensors) {
      // the matrix-vector kernel's format, and the prefill kernel's when it differs (only a batch of tokens uses it)
      const formats = [activationFormat(t.format, rt.simd)];
      if (t.format.prefill && batchSize > 1) formats.push(prefillActivationFormat(t.format, rt.simd));
      for (const act of formats) {
        if (!act || act === "F32" || this.actBuf.has(act)) continue;
        const f = formatByName(act)!;
        // a row of actIn values in the activation format; the widths are multiples of the block whenever a weight needs it
        const bytes = Math.ceil(w.actIn / f.blockSize) * f.typeSize;
        this.actBuf.set(act, rt.alloc(activationRows(f, batchSize) * bytes));
      }
    }
  }

  /** The next matmuls read a different input: converted activations must be redone. */
  newInput(): void {
    // overwrite, not clear(): once the Map lives in V8's old space, every clear() allocates its new backing table
    // there too, ~10 times per token, and a server's RSS grew by the old-space garbage between full GCs
    for (const a of this.actOf.keys()) this.actOf.set(a, -1);
  }

  /** out (t, rows of w) = x (t, n) · wᵀ, converting x to the weight's activation format once per input. */
  matmul(out: number, x: number, w: Tensor, t: number): void {
    const [d, n] = w.shape;
    const f = w.format;
    let act = x;
    // the prefill kernel for a batch, unless threads would cut this matmul by rows (one token per call: the
    // matrix-vector kernel's job, on its own layout; a batch laid out in token groups is cut between groups)
    const pa = t > 1 && f.prefill ? prefillActivationFormat(f, this.rt.simd)! : undefined;
    const group = pa ? formatByName(pa)!.tokenGroup ?? 1 : 1;
    const prefill = !!pa && !(this.pool && splitsByRows(Math.ceil(t / group), this.pool.size));
    const a = (prefill ? pa : activationFormat(f, this.rt.simd))!;
    if (a !== "F32") {
      act = this.actBuf.get(a)!;
      if (this.actOf.get(a) !== x) {
        convertActivations(this.k, a, act, x, n, t);
        this.actOf.set(a, x);
      }
    }
    const kernel = prefill ? f.prefill! : f.matmul!;
    if (this.pool) {
      const af = formatByName(a)!;
      const xRow = a === "F32" ? n * 4 : rowBytes(af, n);
      this.pool.matmul(kernel, out, act, w.ptr, n, d, t, rowBytes(f, n), xRow, af.tokenGroup ?? 1);
    } else {
      this.k[kernel](out, act, w.ptr, n, d, t, d);
    }
  }

  /** out (t, d) = x · wᵀ (+ bias per row) */
  linear(out: number, x: number, w: Tensor, bias: Tensor | undefined, t: number): void {
    this.matmul(out, x, w, t);
    if (bias) this.k.add_rows(out, bias.ptr, w.shape[0], t);
  }

  traces(): void {
    if (this.traceIn) return;
    this.traceIn = this.rt.alloc(this.batchSize * this.c.dim * F32);
    this.traceMid = this.rt.alloc(this.batchSize * this.c.dim * F32);
  }

  /** copies of another shard's traces and output, so that an observer reads every layer in this runtime */
  observe(from: Workspace, t: number): void {
    this.traces();
    if (!this.traceOut) this.traceOut = this.rt.alloc(this.batchSize * this.c.dim * F32);
    const n = t * this.c.dim;
    this.rt.f32At(this.traceIn, n).set(from.rt.f32At(from.traceIn, n));
    this.rt.f32At(this.traceMid, n).set(from.rt.f32At(from.traceMid, n));
    this.rt.f32At(this.traceOut, n).set(from.rt.f32At(from.x, n));
  }
}

/** RoPE constants of one layer, as llama.cpp's graph hands them to ggml_rope_ext. */
interface LayerRope {
  base: number;
  scale: number;
  corrLow: number;
  corrHigh: number;
  /** rope_freqs or the LongRoPE factors in use (a pointer), 0 for none */
  factors: number;
}

/**
 * One runtime of a sharded model (model/shards.ts plans them): layers [start, end) run in it, with their KV caches
 * and its own scratch; `pool` its worker threads. Which shard embeds and which runs the classifier follows from
 * where token_embd and output live (Tensor.shard).
 */
export interface ContextShard {
  rt: WasmRuntime;
  pool?: ThreadPool;
  start: number;
  end: number;
}

/** Everything one layer runs with. */
interface LayerSlot {
  ws: Workspace;
  w: LayerWeights;
  /** (contextSize, kvDim) keys and values of this layer, in ws's memory (0 without attention weights) */
  kCache: number;
  vCache: number;
  rope: LayerRope;
  /** sliding window of this layer (0: global) */
  window: number;
}

/** t rows of n f32 at src converted into format f at dst (ggml's set_rows: F16 round to nearest even, Q8_0 as quantize_row_q8_0); nothing for F32 */
function storeKv(k: Kernels, f: QuantFormat, dst: number, src: number, n: number, t: number): void {
  if (f.name === "F16") k.convert_f16(dst, src, n * t);
  else if (f.name === "Q8_0") k.quantize_q8_0(dst, src, n, t);
}

/** ggml_rope_yarn_corr_dims: the pair range over which YaRN blends interpolated and extrapolated angles. */
function yarnCorrDims(nDims: number, nCtxOrig: number, base: number, betaFast: number, betaSlow: number): [number, number] {
  const fr = Math.fround;
  const corr = (nRot: number) => fr(nDims * fr(Math.log(fr(nCtxOrig / fr(nRot * 2 * fr(Math.PI))))) / fr(2 * fr(Math.log(base))));
  return [Math.max(0, Math.floor(corr(betaFast))), Math.min(nDims - 1, Math.ceil(corr(betaSlow)))];
}

/** One sequence's KV cache and scratch buffers, over a loaded model's weights. */
export class Context {
  readonly contextSize: number;
  readonly batchSize: number;
  /** the K and V cache formats (F16, Q8_0 or F32) */
  readonly kv: KvFormats;
  /** tokens already in the KV cache */
  nPast = 0;

  private readonly slots: LayerSlot[];
  /** one workspace per runtime (shard); observers read every layer's traces in the first one's memory */
  private readonly workspaces: Workspace[];
  /** where the embeddings are written and the classifier runs (the first and last shard's workspace) */
  private readonly input: Workspace;
  private readonly output: Workspace;
  private readonly logitsPtr: number; // (batchSize, vocabSize) in output's memory
  /** the workspace holding the current batch's residual stream, its size and first position */
  private current: Workspace;
  private batchT = 0;
  private batchPos0 = 0;

  /** the first shard's runtime (the only one of a model that fits one memory) */
  readonly rt: WasmRuntime;
  /** the first shard's worker threads */
  readonly pool?: ThreadPool;

  /**
   * Over one runtime (rt, with its optional pool), or over shards: one runtime per contiguous range of layers,
   * covering every layer in order, each tensor in the runtime its Tensor.shard names.
   */
  constructor(rt: WasmRuntime | readonly ContextShard[], readonly config: ModelConfig, readonly weights: Weights, opts: ContextOptions = {},
              /** worker threads sharing rt's memory: matmuls and attention are split across them (one runtime only) */
              pool?: ThreadPool) {
    const c = config;
    this.contextSize = opts.contextSize ?? Math.min(c.trainContext, 2048);
    this.batchSize = Math.min(opts.batchSize ?? 64, this.contextSize);
    if (!(this.contextSize >= 1)) throw new Error(`context size must be at least 1, got ${opts.contextSize}`);
    if (!(this.batchSize >= 1)) throw new Error(`batch size must be at least 1, got ${opts.batchSize}`);
    this.kv = kvFormats(c, opts);
    const shards: readonly ContextShard[] = Array.isArray(rt) ? rt : [{ rt: rt as WasmRuntime, pool, start: 0, end: c.nLayers }];
    shards.forEach((s, i) => {
      if (s.start !== (i === 0 ? 0 : shards[i - 1].end) || s.end < s.start) throw new Error(`shard ${i} holds layers ${s.start}..${s.end - 1}, not the next range`);
    });
    if (shards[shards.length - 1].end !== c.nLayers) throw new Error(`the shards end at layer ${shards[shards.length - 1].end}, the model has ${c.nLayers}`);
    this.rt = shards[0].rt;
    this.pool = shards[0].pool;
    const headShard = weights.output.shard ?? 0;
    this.workspaces = shards.map((s, i) => {
      const tensors = weights.layers.slice(s.start, s.end).flatMap((l) => Object.values(l) as Tensor[]);
      if (i === headShard) tensors.push(weights.output);
      return new Workspace(s.rt, c, this.batchSize, this.contextSize, tensors, this.kv, s.pool);
    });
    this.input = this.current = this.workspaces[weights.tokenEmbd.shard ?? 0];
    this.output = this.workspaces[headShard];
    this.logitsPtr = this.output.rt.alloc(logitsBytes(c, this.batchSize));
    const kBytes = this.contextSize * kvRowBytes(c, this.kv.k), vBytes = this.contextSize * kvRowBytes(c, this.kv.v);
    this.slots = [];
    shards.forEach((s, i) => {
      const ws = this.workspaces[i], r = ws.rt;
      for (let l = s.start; l < s.end; l++) {
        const hasAttention = !c.removedAttention.has(l);
        this.slots.push({
          ws, w: weights.layers[l],
          kCache: hasAttention ? r.alloc(kBytes) : 0,
          vCache: hasAttention ? r.alloc(vBytes) : 0,
          rope: this.layerRope(l, i),
          window: c.swaLayers[l] ? c.slidingWindow : 0,
        });
      }
    });
  }

  /** The runtime layer l runs in (where onLinearInput's pointers for that layer are). */
  layerRuntime(l: number): WasmRuntime {
    const s = this.slots[l];
    if (!s) throw new Error(`layer ${l} does not exist (the model has ${this.slots.length})`);
    return s.ws.rt;
  }

  /** Runtimes this context spans (one per shard). */
  get shardCount(): number {
    return this.workspaces.length;
  }

  /** Layer l's RoPE as llama.cpp picks it: local layers' own base, the context's scaling, rope factors by context size. */
  private layerRope(l: number, shard: number): LayerRope {
    const c = this.config, r = c.rope, w = this.weights;
    const local = c.swaLayers[l];
    const base = local ? r.freqBaseSwa : c.ropeFreqBase;
    const scale = local ? 1 : r.freqScale;
    const [corrLow, corrHigh] = r.extFactor !== 0 ? yarnCorrDims(c.ropeDim, r.origContext, base, r.betaFast, r.betaSlow) : [0, 0];
    // llama_model::get_rope_factors: rope_freqs when present, else LongRoPE's long factors past the original
    // context, which llama.cpp compares with the context size padded to a multiple of 256 (n_ctx_seq)
    const nCtxSeq = Math.ceil(this.contextSize / 256) * 256;
    const factors = w.ropeFreqs ?? (nCtxSeq > r.origContext ? w.ropeFactorsLong : w.ropeFactorsShort);
    // the rope factors are read by every shard's layers: each shard holds its own copy
    return { base, scale, corrLow, corrHigh, factors: factors ? (factors.copies?.[shard] ?? factors.ptr) : 0 };
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
    const skipLayers = layerSet(opts.skipLayers, "skipLayers", c.nLayers), skipAttention = layerSet(opts.skipAttention, "skipAttention", c.nLayers);
    const skipFfn = layerSet(opts.skipFfn, "skipFfn", c.nLayers);
    const nRun = Math.min(c.nLayers, opts.stopAfterLayer ?? c.nLayers);
    const observe = opts.onLayer;
    for (let start = 0; start < n; start += this.batchSize) {
      const t = Math.min(this.batchSize, n - start);
      const isLast = start + t === n;
      const batchMode = mode === "all" ? "all" : mode === "last" && isLast ? "last" : "none";
      this.embed(tokens, start, t);
      for (let l = 0; l < nRun; l++) {
        if (skipLayers.has(l)) continue;
        this.layer(l, { skipAttention: skipAttention.has(l), skipFfn: skipFfn.has(l), onLinearInput: opts.onLinearInput, trace: !!observe });
        if (observe) {
          // observers read every layer in the first runtime's memory, whichever shard ran it
          const ws = this.current, home = this.workspaces[0];
          if (ws === home) observe(l, ws.traceIn, ws.traceMid, ws.x, t);
          else {
            home.observe(ws, t);
            observe(l, home.traceIn, home.traceMid, home.traceOut, t);
          }
        }
      }
      this.advance();
      if (batchMode === "none" || nRun < c.nLayers) continue;
      const logits = this.head(batchMode);
      out.set(logits, batchMode === "all" ? start * c.vocabSize : 0);
    }
    return out;
  }

  /**
   * Stage 1: the embeddings of tokens[start, start + t) become the residual stream of a new batch at positions
   * nPast … nPast + t − 1 (t at most batchSize; ids are not checked here, eval() does).
   */
  embed(tokens: ArrayLike<number>, start = 0, t = tokens.length - start): void {
    const c = this.config, ws = this.input, rt = ws.rt;
    if (!(t >= 1 && t <= this.batchSize)) throw new Error(`a batch holds 1..${this.batchSize} tokens, got ${t}`);
    if (this.nPast + t > this.contextSize) throw new Error(`context is full: ${this.nPast} cached + ${t} new tokens > context size ${this.contextSize}`);
    // dequantize each token's row of token_embd into the residual stream
    const embd = this.weights.tokenEmbd;
    const embdRow = rowBytes(embd.format, c.dim);
    for (let j = 0; j < t; j++) {
      const id = tokens[start + j];
      embd.format.dequantize!(rt.u8At(embd.ptr + id * embdRow, embdRow), rt.f32At(ws.x + j * c.dim * F32, c.dim));
    }
    if (c.embedScale !== 1) ws.k.scale(ws.x, ws.x, c.embedScale, t * c.dim);
    this.current = ws;
    this.batchT = t;
    this.batchPos0 = this.nPast;
  }

  /**
   * Stage 1 for a caller that carries the residual stream itself (a layer stream, layers.ts): a new batch of t rows
   * at positions nPast … nPast + t − 1, whose rows the caller writes at residual().ptr before layer().
   */
  batch(t: number): void {
    if (!(t >= 1 && t <= this.batchSize)) throw new Error(`a batch holds 1..${this.batchSize} tokens, got ${t}`);
    if (this.nPast + t > this.contextSize) throw new Error(`context is full: ${this.nPast} cached + ${t} new tokens > context size ${this.contextSize}`);
    this.current = this.slots[0]?.ws ?? this.input;
    this.batchT = t;
    this.batchPos0 = this.nPast;
  }

  /** Stage 2: layer l over the current batch; its attention reads and extends the layer's KV cache at nPast. */
  layer(l: number, opts: LayerOptions = {}): void {
    const s = this.slots[l];
    if (!s) throw new Error(`layer ${l} does not exist (the model has ${this.slots.length})`);
    if (this.batchT === 0) throw new Error("layer() before embed(): no batch");
    const ws = this.handOver(s.ws);
    const t = this.batchT, rowBytesF32 = this.config.dim * F32;
    if (opts.trace) {
      ws.traces();
      ws.rt.u8.copyWithin(ws.traceIn, ws.x, ws.x + t * rowBytesF32);
    }
    const stop = opts.stopAfterSite;
    if (s.w.attnOutput && !opts.skipAttention && !this.attention(l, s, t, opts.onLinearInput, stop)) return;
    if (opts.trace) ws.rt.u8.copyWithin(ws.traceMid, ws.x, ws.x + t * rowBytesF32);
    if (s.w.ffnDown && !opts.skipFfn) this.ffn(l, s, t, opts.onLinearInput, stop);
  }

  /** Stage 3: final norm and classifier over the batch's last row or every row; a view of the logits, valid until the next call. */
  head(mode: "last" | "all"): Float32Array {
    const c = this.config, w = this.weights;
    const rowsOut = mode === "all" ? this.batchT : 1;
    this.normed(mode);
    const ws = this.output, k = ws.k;
    ws.newInput();
    ws.linear(this.logitsPtr, ws.xb, w.output, w.outputBias, rowsOut);
    if (c.finalSoftcap > 0) k.softcap(this.logitsPtr, c.finalSoftcap, rowsOut * c.vocabSize);
    return ws.rt.f32At(this.logitsPtr, rowsOut * c.vocabSize);
  }

  /**
   * Stage 3 without the classifier: the final norm of the batch's last row or every row (dim floats each), what
   * llama.cpp returns as a decoder's embeddings (its result_norm); a view, valid until the next call.
   */
  normed(mode: "last" | "all"): Float32Array {
    const c = this.config;
    const ws = this.handOver(this.output);
    const rowsOut = mode === "all" ? this.batchT : 1;
    const from = ws.x + (this.batchT - rowsOut) * c.dim * F32;
    ws.k.rmsnorm(ws.xb, from, this.weights.outputNorm.ptr, c.dim, c.rmsEps, rowsOut);
    return ws.rt.f32At(ws.xb, rowsOut * c.dim);
  }

  /**
   * One decode step of several sequences at once: items[j].token at position items[j].ctx.nPast of its own
   * context, its logits into items[j].out. Every matmul runs once over the N rows (the weights are read once
   * per step, not once per sequence); RoPE and attention run per row, each against its own context's cache.
   * Contexts of one model in one runtime (no shards) and of one context size go together, the first one's scratch
   * carrying the batch; others are evaluated one after another. Equal, row for row, to each context's eval([token]).
   */
  static decodeBatch(items: readonly { ctx: Context; token: number; out: Float32Array }[]): void {
    const n = items.length;
    if (n === 0) return;
    const lead = items[0].ctx, c = lead.config, w = lead.weights, ws = lead.input, k = ws.k;
    const kv = lead.kv;
    const together = n > 1 && items.every(({ ctx: x }) => x.weights === w && x.input.rt === ws.rt && x.contextSize === lead.contextSize && x.slots.every((s) => s.ws === x.input) && x.kv.k.name === kv.k.name && x.kv.v.name === kv.v.name);
    if (!together) {
      // one sequence, or contexts that cannot share scratch (another model, layers in shards): one after another
      for (const it of items) it.ctx.eval([it.token], { out: it.out });
      return;
    }
    if (n > lead.batchSize) throw new Error(`decodeBatch: ${n} sequences, more than the batch size ${lead.batchSize}`);
    const seen = new Set<Context>();
    for (const it of items) {
      const x = it.ctx;
      if (seen.has(x)) throw new Error("decodeBatch: a context appears twice");
      seen.add(x);
      if (x.nPast + 1 > x.contextSize) throw new Error(`context is full: ${x.nPast} cached + 1 new token > context size ${x.contextSize}`);
      if (!Number.isInteger(it.token) || it.token < 0 || it.token >= c.vocabSize) throw new Error(`token id ${it.token} is outside the vocabulary (0..${c.vocabSize - 1})`);
      if (it.out.length < c.vocabSize) throw new Error(`decodeBatch: out holds ${it.out.length} floats, the logits need ${c.vocabSize}`);
    }
    // the embeddings of the N tokens (embed() would check the lead's cache for N positions; each sequence needs one)
    const embd = w.tokenEmbd, embdRow = rowBytes(embd.format, c.dim);
    for (let j = 0; j < n; j++) embd.format.dequantize!(ws.rt.u8At(embd.ptr + items[j].token * embdRow, embdRow), ws.rt.f32At(ws.x + j * c.dim * F32, c.dim));
    if (c.embedScale !== 1) k.scale(ws.x, ws.x, c.embedScale, n * c.dim);
    lead.current = ws;
    lead.batchT = n;
    const kvBytes = c.kvDim * F32, qBytes = c.qDim * F32, u8 = ws.rt.u8, neox = c.ropeStyle === "neox" ? 1 : 0;
    for (let l = 0; l < c.nLayers; l++) {
      const s = lead.slots[l], lw = s.w, r = s.rope;
      if (lw.attnOutput) {
        k.rmsnorm(ws.xb, ws.x, lw.attnNorm!.ptr, c.dim, c.rmsEps, n);
        ws.newInput();
        // k and v rows of the batch, then each into its own cache at its own position
        let kSrc: number, vSrc: number, stride: number;
        if (lw.attnQkv) {
          ws.linear(ws.qkv, ws.xb, lw.attnQkv, lw.attnQkvBias, n);
          stride = qBytes + 2 * kvBytes;
          for (let j = 0; j < n; j++) u8.copyWithin(ws.q + j * qBytes, ws.qkv + j * stride, ws.qkv + j * stride + qBytes);
          kSrc = ws.qkv + qBytes; vSrc = ws.qkv + qBytes + kvBytes;
        } else {
          ws.linear(ws.q, ws.xb, lw.attnQ!, lw.attnQBias, n);
          ws.linear(ws.qkv, ws.xb, lw.attnK!, lw.attnKBias, n);
          ws.linear(ws.qkv + n * kvBytes, ws.xb, lw.attnV!, lw.attnVBias, n);
          stride = kvBytes;
          kSrc = ws.qkv; vSrc = ws.qkv + n * kvBytes;
        }
        if (lw.attnQNorm) k.rmsnorm(ws.q, ws.q, lw.attnQNorm.ptr, c.headSize, c.rmsEps, n * c.nHeads);
        // each row's k and v (in F32 where the cache is typed, straight into an F32 cache), as attention() does
        const kRowAt = (j: number) => kv.k.name === "F32" ? items[j].ctx.slots[l].kCache + items[j].ctx.nPast * kvBytes : ws.kNew + j * kvBytes;
        const vRowAt = (j: number) => kv.v.name === "F32" ? items[j].ctx.slots[l].vCache + items[j].ctx.nPast * kvBytes : ws.vNew + j * kvBytes;
        for (let j = 0; j < n; j++) {
          const pos = items[j].ctx.nPast, kRow = kRowAt(j), vRow = vRowAt(j);
          u8.copyWithin(kRow, kSrc + j * stride, kSrc + j * stride + kvBytes);
          u8.copyWithin(vRow, vSrc + j * stride, vSrc + j * stride + kvBytes);
          if (lw.attnKNorm) k.rmsnorm(kRow, kRow, lw.attnKNorm.ptr, c.headSize, c.rmsEps, c.nKvHeads);
          const q = ws.q + j * qBytes;
          k.rope_ext(q, c.nHeads, c.headSize, c.ropeDim, pos, 1, neox, r.base, r.scale, c.rope.extFactor, c.rope.attnFactor, r.corrLow, r.corrHigh, r.factors);
          k.rope_ext(kRow, c.nKvHeads, c.headSize, c.ropeDim, pos, 1, neox, r.base, r.scale, c.rope.extFactor, c.rope.attnFactor, r.corrLow, r.corrHigh, r.factors);
        }
        if (c.queryPrescale) k.scale(ws.q, ws.q, c.attnScale, n * c.qDim);
        const scale = c.queryPrescale ? 1 : c.attnScale;
        if (kv.kRot) k.hadamard(ws.q, kv.kRot, (n * c.qDim) / kv.kRot);
        // q in K's type, as attention() converts it
        const qIn = kv.k.name === "F32" ? ws.q : ws.qK, qInBytes = rowBytes(kv.k, c.qDim);
        storeKv(k, kv.k, qIn, ws.q, c.qDim, n);
        const kt = kv.k.ggmlType, vt = kv.v.ggmlType;
        for (let j = 0; j < n; j++) {
          const x = items[j].ctx, sj = x.slots[l], pos = x.nPast, kRow = kRowAt(j), vRow = vRowAt(j);
          if (kv.kRot) k.hadamard(kRow, kv.kRot, c.kvDim / kv.kRot);
          if (kv.vRot) k.hadamard(vRow, kv.vRot, c.kvDim / kv.vRot);
          storeKv(k, kv.k, sj.kCache + pos * kvRowBytes(c, kv.k), kRow, c.kvDim, 1);
          storeKv(k, kv.v, sj.vCache + pos * kvRowBytes(c, kv.v), vRow, c.kvDim, 1);
          const att = ws.att + j * qBytes, q = qIn + j * qInBytes;
          if (ws.pool) ws.pool.attention(att, q, sj.kCache, sj.vCache, ws.scores, ws.scoresStride, c.nHeads, c.nKvHeads, c.headSize, pos, 1, scale, s.window, c.attnSoftcap, kt, vt);
          else k.attention_kv(att, q, sj.kCache, sj.vCache, ws.scores, c.nHeads, c.nKvHeads, c.headSize, pos, 1, 0, c.nKvHeads, scale, s.window, c.attnSoftcap, kt, vt);
        }
        if (kv.vRot) k.hadamard(ws.att, kv.vRot, (n * c.qDim) / kv.vRot);
        ws.newInput();
        ws.linear(ws.xb2, ws.att, lw.attnOutput, lw.attnOutputBias, n);
        if (lw.attnPostNorm) k.rmsnorm(ws.xb2, ws.xb2, lw.attnPostNorm.ptr, c.dim, c.rmsEps, n);
        k.add(ws.x, ws.x, ws.xb2, n * c.dim);
      }
      if (lw.ffnDown) lead.ffn(l, s, n);
    }
    const logits = lead.head("all");
    for (let j = 0; j < n; j++) {
      items[j].out.set(logits.subarray(j * c.vocabSize, (j + 1) * c.vocabSize));
      items[j].ctx.nPast++;
    }
    lead.batchT = 0;
  }

  /** Close the batch: its tokens join the cache (positions advance). */
  advance(): void {
    this.nPast += this.batchT;
  }

  /** The current batch's residual stream: t rows of dim floats at ptr in rt's memory. */
  residual(): { rt: WasmRuntime; ptr: number; t: number } {
    return { rt: this.current.rt, ptr: this.current.x, t: this.batchT };
  }

  /** Copies of the stream entering the last traced layer and between its halves (pointers in residual().rt). */
  traces(): { xIn: number; xMid: number } {
    return { xIn: this.current.traceIn, xMid: this.current.traceMid };
  }

  /** Moves the residual stream into `ws` when the next stage runs in another runtime (a shard boundary). */
  private handOver(ws: Workspace): Workspace {
    const from = this.current;
    if (from !== ws) {
      const n = this.batchT * this.config.dim;
      ws.rt.f32At(ws.x, n).set(from.rt.f32At(from.x, n));
      this.current = ws;
    }
    return ws;
  }

  /**
   * The attention half: norm, q/k/v (+ biases, q/k norms), RoPE, attention, output (+ post-norm), residual add.
   * False when it stopped after `stop`'s input was observed.
   */
  private attention(l: number, s: LayerSlot, t: number, linear?: LinearObserver, stop?: LinearSite): boolean {
    const c = this.config, { ws, w } = s, k = ws.k;
    const pos0 = this.batchPos0, kv = this.kv;
    // an F32 cache takes k and v straight from the projections; a typed one converts them after RoPE (ggml's set_rows)
    const kDst = s.kCache + pos0 * kvRowBytes(c, kv.k), vDst = s.vCache + pos0 * kvRowBytes(c, kv.v);
    const kRows = kv.k.name === "F32" ? kDst : ws.kNew;
    const vRows = kv.v.name === "F32" ? vDst : ws.vNew;
    k.rmsnorm(ws.xb, ws.x, w.attnNorm!.ptr, c.dim, c.rmsEps, t);
    ws.newInput();
    linear?.(l, "attn_qkv", ws.xb, c.dim, t);
    if (stop === "attn_qkv") return false;
    if (w.attnQkv) {
      ws.linear(ws.qkv, ws.xb, w.attnQkv, w.attnQkvBias, t);
      this.splitQkv(ws, kRows, vRows, t);
    } else {
      ws.linear(ws.q, ws.xb, w.attnQ!, w.attnQBias, t);
      ws.linear(kRows, ws.xb, w.attnK!, w.attnKBias, t);
      ws.linear(vRows, ws.xb, w.attnV!, w.attnVBias, t);
    }
    if (w.attnQNorm) k.rmsnorm(ws.q, ws.q, w.attnQNorm.ptr, c.headSize, c.rmsEps, t * c.nHeads);
    if (w.attnKNorm) k.rmsnorm(kRows, kRows, w.attnKNorm.ptr, c.headSize, c.rmsEps, t * c.nKvHeads);
    const r = s.rope, neox = c.ropeStyle === "neox" ? 1 : 0;
    k.rope_ext(ws.q, c.nHeads, c.headSize, c.ropeDim, pos0, t, neox, r.base, r.scale, c.rope.extFactor, c.rope.attnFactor, r.corrLow, r.corrHigh, r.factors);
    k.rope_ext(kRows, c.nKvHeads, c.headSize, c.ropeDim, pos0, t, neox, r.base, r.scale, c.rope.extFactor, c.rope.attnFactor, r.corrLow, r.corrHigh, r.factors);
    if (c.queryPrescale) k.scale(ws.q, ws.q, c.attnScale, t * c.qDim);
    const scale = c.queryPrescale ? 1 : c.attnScale;
    if (kv.kRot) {
      k.hadamard(ws.q, kv.kRot, (t * c.qDim) / kv.kRot);
      k.hadamard(kRows, kv.kRot, (t * c.kvDim) / kv.kRot);
    }
    if (kv.vRot) k.hadamard(vRows, kv.vRot, (t * c.kvDim) / kv.vRot);
    storeKv(k, kv.k, kDst, kRows, c.kvDim, t);
    storeKv(k, kv.v, vDst, vRows, c.kvDim, t);
    // q in K's type (ggml converts it to K's vec_dot_type before the dot products)
    const q = kv.k.name === "F32" ? ws.q : ws.qK;
    storeKv(k, kv.k, q, ws.q, c.qDim, t);
    const kt = kv.k.ggmlType, vt = kv.v.ggmlType;
    if (ws.pool) ws.pool.attention(ws.att, q, s.kCache, s.vCache, ws.scores, ws.scoresStride, c.nHeads, c.nKvHeads, c.headSize, pos0, t, scale, s.window, c.attnSoftcap, kt, vt);
    else k.attention_kv(ws.att, q, s.kCache, s.vCache, ws.scores, c.nHeads, c.nKvHeads, c.headSize, pos0, t, 0, c.nKvHeads, scale, s.window, c.attnSoftcap, kt, vt);
    if (kv.vRot) k.hadamard(ws.att, kv.vRot, (t * c.qDim) / kv.vRot);
    ws.newInput();
    linear?.(l, "attn_output", ws.att, c.qDim, t);
    if (stop === "attn_output") return false;
    ws.linear(ws.xb2, ws.att, w.attnOutput!, w.attnOutputBias, t);
    if (w.attnPostNorm) k.rmsnorm(ws.xb2, ws.xb2, w.attnPostNorm.ptr, c.dim, c.rmsEps, t);
    k.add(ws.x, ws.x, ws.xb2, t * c.dim);
    return true;
  }

  /** A fused projection's rows (q | k | v) into q and the layer's cache rows. */
  private splitQkv(ws: Workspace, kRows: number, vRows: number, t: number): void {
    const c = this.config, u8 = ws.rt.u8;
    const qBytes = c.qDim * F32, kvBytes = c.kvDim * F32, rowBytesQkv = qBytes + 2 * kvBytes;
    for (let j = 0; j < t; j++) {
      const src = ws.qkv + j * rowBytesQkv;
      u8.copyWithin(ws.q + j * qBytes, src, src + qBytes);
      u8.copyWithin(kRows + j * kvBytes, src + qBytes, src + qBytes + kvBytes);
      u8.copyWithin(vRows + j * kvBytes, src + qBytes + kvBytes, src + rowBytesQkv);
    }
  }

  /** The FFN half: norm, gate and up (or fused), GLU, down (+ post-norm), residual add. */
  private ffn(l: number, s: LayerSlot, t: number, linear?: LinearObserver, stop?: LinearSite): void {
    const c = this.config, { ws, w } = s, k = ws.k;
    const h = c.hiddenDim, gelu = c.arch.activation === "gelu" ? 1 : 0;
    k.rmsnorm(ws.xb, ws.x, w.ffnNorm!.ptr, c.dim, c.rmsEps, t);
    ws.newInput();
    linear?.(l, "ffn_gate_up", ws.xb, c.dim, t);
    if (stop === "ffn_gate_up") return;
    let act: number;
    if (c.arch.fusedGateUp) {
      ws.linear(ws.hb, ws.xb, w.ffnUp!, w.ffnUpBias, t);
      k.glu(ws.hb2, ws.hb, ws.hb + h * F32, h, t, 2 * h, gelu);
      act = ws.hb2;
    } else {
      ws.linear(ws.hb, ws.xb, w.ffnGate!, w.ffnGateBias, t);
      ws.linear(ws.hb2, ws.xb, w.ffnUp!, w.ffnUpBias, t);
      k.glu(ws.hb, ws.hb, ws.hb2, h, t, h, gelu);
      act = ws.hb;
    }
    ws.newInput();
    linear?.(l, "ffn_down", act, h, t);
    if (stop === "ffn_down") return;
    ws.linear(ws.xb2, act, w.ffnDown!, w.ffnDownBias, t);
    if (w.ffnPostNorm) k.rmsnorm(ws.xb2, ws.xb2, w.ffnPostNorm.ptr, c.dim, c.rmsEps, t);
    k.add(ws.x, ws.x, ws.xb2, t * c.dim);
  }
}
