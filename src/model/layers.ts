// A model run one layer at a time over a fixed set of token sequences (calibration windows, evaluation documents):
// only the current layer's tensors are in wasm memory (as stored, or decoded to F32 for GPTQ to update), and the
// sequences' residual streams are kept between layers, so a model far larger than wasm32's 4 GiB can be studied
// and quantized, and each layer is run about once instead of re-running the layers before it. It drives the
// forward pass's stage access (forward.ts: embed / layer / head); it is not a forward pass of its own.
// Portable: it reads through a ByteSource.
import type { ByteSource } from "../gguf/reader.js";
import { TENSOR, type GlobalTensorKey } from "../gguf/names.js";
import type { GgufFile, GgufTensorInfo } from "../gguf/types.js";
import { formatByName, rowBytes, type QuantFormat } from "../quant/formats.js";
import { WasmRuntime } from "../wasm.js";
import type { ThreadedRuntime, ThreadPool } from "../threads/pool.js";
import type { ModelConfig } from "./config.js";
import { checkModelFile } from "./check.js";
import { Context, contextBytes, type LayerObserver, type LayerOptions } from "./forward.js";
import { expectedTensors, layerTensorList, type LayerWeights, type Tensor, type Weights } from "./weights.js";
import { WASM32_LIMIT } from "./model.js";
import { fitsOrExplain, type MemoryPart } from "./budget.js";
import { STUDY_CACHE } from "./forward.js";

/** What one runLayer call skips, observes and keeps. */
export interface RunLayerOptions extends Omit<LayerOptions, "trace"> {
  /** the residual streams become the layer's output (else they stay: a statistics pass that may stop early) */
  writeBack: boolean;
  /** told which rows the next batch is before it runs */
  onBatch?: (seq: number, start: number, t: number) => void;
  /** the stream entering the layer, between its halves and leaving it, after each batch */
  onLayer?: LayerObserver;
}

export interface LayerStreamOptions {
  /** "file": each layer's matrices as stored; "f32": decoded to F32 (GPTQ updates them in place) */
  matrices: "file" | "f32";
  /** the sequences the stream carries (token ids) */
  sequences: number[][];
  /** tokens per forward batch (default 64) */
  batchSize?: number;
  /** name for messages (a path) */
  name?: string;
  /** wasm memory the caller will allocate beside the stream (its own buffers), for the up-front check */
  extra?: MemoryPart[];
  /** what to tell the user to change when it does not fit (default: fewer calibration tokens) */
  advice?: string;
  /**
   * a runtime to allocate in (its memory grows as needed; close() gives the space back), with worker threads over
   * it (threads/pool.ts threadedRuntime): the stream's matmuls and attention are split across them. Default: a
   * runtime of the stream's own, one thread.
   */
  runtime?: ThreadedRuntime;
}

/** One layer-at-a-time run of a model over a set of sequences. */
export class LayerStream {
  readonly config: ModelConfig;
  readonly rt: WasmRuntime;
  readonly ctx: Context;
  /** (tokens, dim) f32 in wasm: every sequence's residual stream, sequence s from row starts[s] */
  readonly x: number;
  readonly starts: number[];
  readonly tokens: number;
  /** the layer tensors as the context sees them; the current layer's point into the arena */
  readonly weights: Weights;
  private readonly arena: number;
  private loaded = -1;
  private readonly byName: Map<string, GgufTensorInfo>;
  /** the worker threads the context's matmuls use (undefined: one thread) */
  readonly pool: ThreadPool | undefined;
  /** where this stream's allocations start in a supplied runtime */
  private readonly base: number | undefined;

  private constructor(readonly src: ByteSource, readonly file: GgufFile, readonly opts: LayerStreamOptions, config: ModelConfig,
                      plan: StreamPlan) {
    this.config = config;
    this.byName = new Map(file.tensors.map((t) => [t.name, t]));
    this.rt = opts.runtime?.rt ?? WasmRuntime.create({ initialBytes: plan.total });
    this.pool = opts.runtime?.pool;
    this.base = opts.runtime ? this.rt.mark() : undefined;
    this.weights = skeleton(file, config, opts.matrices, this.byName);
    this.arena = this.rt.alloc(plan.arena, 64);
    this.starts = [];
    let at = 0;
    for (const s of opts.sequences) { this.starts.push(at); at += s.length; }
    this.tokens = at;
    this.x = this.rt.alloc(at * config.dim * 4);
    // the per-layer F32 vectors that live outside the layers (rope factors) stay resident: contexts read them
    for (const t of residentGlobals(this.weights)) {
      t.ptr = this.rt.alloc(t.byteSize, 64);
      this.read(t, this.rt.u8At(t.ptr, t.byteSize));
    }
    this.ctx = new Context(this.rt, config, this.weights, { contextSize: plan.contextSize, batchSize: plan.batchSize, ...STUDY_CACHE }, this.pool);
  }

  /** Gives a supplied runtime its space back (nothing to do for a stream's own runtime); the stream is unusable after. */
  close(): void {
    if (this.base !== undefined && this.rt.mark() >= this.base) this.rt.release(this.base);
  }

  /**
   * Plan the memory, say at once (one line) when it does not fit, and open the stream. Nothing is read but the
   * header until embed or loadLayer.
   */
  static open(src: ByteSource, file: GgufFile, opts: LayerStreamOptions): LayerStream {
    const name = opts.name ?? "<model>";
    const config = checkModelFile(file, name);
    if (opts.sequences.length === 0) throw new Error(`${name}: no sequences to run`);
    const plan = planStream(file, config, opts);
    fitsOrExplain(`${name}: running it layer by layer over ${plan.tokens} tokens`, plan.parts, WASM32_LIMIT, opts.advice ?? "use fewer calibration tokens (--tokens)");
    return new LayerStream(src, file, opts, config, plan);
  }

  /** Residual streams of the sequences' token embeddings (each row optionally changed by `transform`, e.g. fake-quantized). */
  embed(transform?: (row: Float32Array, id: number) => void): void {
    const c = this.config;
    const t = this.byName.get(TENSOR.tokenEmbd)!;
    const rb = rowBytes(t.format, c.dim);
    const row = new Float32Array(c.dim);
    const scale = Math.fround(c.embedScale); // Gemma's sqrt(dim), after the row is read
    const x = this.rt.f32At(this.x, this.tokens * c.dim);
    this.opts.sequences.forEach((seq, s) => {
      for (let j = 0; j < seq.length; j++) {
        const id = seq[j];
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
        t.format.dequantize!(this.src.read(this.file.dataOffset + t.offset + id * rb, rb), row);
        transform?.(row, id);
        if (scale !== 1) for (let i = 0; i < row.length; i++) row[i] *= scale; // f32 products, as forward.ts's scale kernel
        x.set(row, (this.starts[s] + j) * c.dim);
      }
    });
  }

  /** The (tokens, dim) residual rows of every sequence at this point, a view (valid until memory grows). */
  residuals(): Float32Array {
    return this.rt.f32At(this.x, this.tokens * this.config.dim);
  }

  /** Layer l's tensors into wasm memory (as stored, or decoded to F32), replacing the previous layer's. */
  loadLayer(l: number): LayerWeights {
    const lw = this.weights.layers[l];
    for (const other of this.weights.layers) for (const t of Object.values(other) as Tensor[]) t.ptr = 0;
    let at = this.arena;
    for (const t of Object.values(lw) as Tensor[]) {
      at = Math.ceil(at / 64) * 64;
      t.ptr = at;
      this.read(t, this.rt.u8At(at, t.byteSize));
      at += t.byteSize;
    }
    this.loaded = l;
    return lw;
  }

  /** the stored bytes of tensor t, written into dst in t's format (decoded row by row when that is F32 and the file's is not) */
  private read(t: Tensor, dst: Uint8Array): void {
    const info = t.info;
    const at = this.file.dataOffset + info.offset;
    if (t.format === info.format) {
      if (this.src.readInto) this.src.readInto(dst, at);
      else dst.set(this.src.read(at, info.byteSize));
      return;
    }
    const rowLength = info.dims[0];
    const inRow = rowBytes(info.format, rowLength);
    const rows = info.byteSize / inRow;
    const chunk = Math.max(1, Math.floor((4 << 20) / inRow)); // about 4 MiB of the file at a time
    const out = new Float32Array(dst.buffer, dst.byteOffset, rows * rowLength);
    for (let r = 0; r < rows; r += chunk) {
      const n = Math.min(chunk, rows - r);
      const raw = this.src.read(at + r * inRow, n * inRow);
      for (let j = 0; j < n; j++) info.format.dequantize!(raw.subarray(j * inRow, (j + 1) * inRow), out.subarray((r + j) * rowLength, (r + j + 1) * rowLength));
    }
  }

  /**
   * Run the loaded layer l over every sequence, batch by batch with a fresh cache per sequence. With writeBack the
   * residual streams become the layer's output (what the next layer reads); without (a statistics pass that may stop
   * early), they stay. onBatch is told which rows the next batch is before it runs.
   */
  runLayer(l: number, opts: RunLayerOptions): void {
    if (l !== this.loaded) throw new Error(`runLayer(${l}): layer ${this.loaded} is loaded`);
    const c = this.config, ctx = this.ctx, rt = this.rt;
    const rowB = c.dim * 4;
    const layerOpts: LayerOptions = {
      skipAttention: opts.skipAttention, skipFfn: opts.skipFfn, onLinearInput: opts.onLinearInput,
      stopAfterSite: opts.stopAfterSite, trace: !!opts.onLayer,
    };
    this.opts.sequences.forEach((seq, s) => {
      ctx.reset();
      for (let start = 0; start < seq.length; start += ctx.batchSize) {
        const t = Math.min(ctx.batchSize, seq.length - start);
        const from = this.x + (this.starts[s] + start) * rowB;
        opts.onBatch?.(s, start, t);
        ctx.batch(t);
        const r = ctx.residual().ptr;
        rt.u8.copyWithin(r, from, from + t * rowB);
        ctx.layer(l, layerOpts);
        if (opts.onLayer) {
          const { xIn, xMid } = ctx.traces();
          opts.onLayer(l, xIn, xMid, r, t);
        }
        if (opts.writeBack) rt.u8.copyWithin(from, r, r + t * rowB);
        ctx.advance();
      }
    });
  }

}

interface StreamPlan {
  arena: number;
  contextSize: number;
  batchSize: number;
  tokens: number;
  parts: MemoryPart[];
  total: number;
}

/** bytes a tensor takes in the stream: as stored, or as F32 when matrices are decoded */
function streamBytes(info: GgufTensorInfo, matrices: "file" | "f32"): number {
  return matrices === "f32" && info.shape.length === 2 ? info.nElements * 4 : info.byteSize;
}

/** The stream's wasm memory, part by part, before anything is allocated. */
export function planStream(file: GgufFile, c: ModelConfig, opts: LayerStreamOptions): StreamPlan {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const has = (n: string) => byName.has(n);
  let globals = 0;
  for (const e of expectedTensors(c, has)) if (e.global && RESIDENT.includes(e.global)) globals += Math.ceil(byName.get(e.name)!.byteSize / 64) * 64;
  let arena = 0;
  for (let l = 0; l < c.nLayers; l++) {
    let bytes = 0;
    for (const { name } of layerTensorList(c, l, has)) bytes += Math.ceil(streamBytes(byName.get(name)!, opts.matrices) / 64) * 64;
    arena = Math.max(arena, bytes);
  }
  const tokens = opts.sequences.reduce((a, s) => a + s.length, 0);
  const contextSize = Math.max(1, ...opts.sequences.map((s) => s.length));
  const batchSize = Math.min(opts.batchSize ?? 64, contextSize);
  const parts: MemoryPart[] = [
    { what: `one layer${opts.matrices === "f32" ? " in F32" : ""}`, bytes: arena },
    { what: `the residual streams of ${tokens} tokens`, bytes: tokens * c.dim * 4 + globals },
    { what: `a ${contextSize}-token cache and scratch`, bytes: contextBytes(c, contextSize, batchSize, STUDY_CACHE) + (1 << 20) },
    ...(opts.extra ?? []),
  ];
  return { arena, contextSize, batchSize, tokens, parts, total: parts.reduce((a, p) => a + p.bytes, 0) };
}

/** Weights as the context sees them: every tensor with its shape and stream format, no memory yet (ptr 0). */
function skeleton(file: GgufFile, c: ModelConfig, matrices: "file" | "f32", byName: Map<string, GgufTensorInfo>): Weights {
  const f32 = formatByName("F32")!;
  const tensor = (name: string): Tensor => {
    const info = byName.get(name)!;
    const format: QuantFormat = matrices === "f32" && info.shape.length === 2 ? f32 : info.format;
    return { name, format, shape: info.shape, ptr: 0, byteSize: streamBytes(info, matrices), info };
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const lw: LayerWeights = {};
    for (const { key, name } of layerTensorList(c, l, (n) => byName.has(n))) lw[key!] = tensor(name);
    layers.push(lw);
  }
  const tokenEmbd = tensor(TENSOR.tokenEmbd);
  const optional = (g: GlobalTensorKey) => (byName.has(TENSOR[g]) ? tensor(TENSOR[g]) : undefined);
  return {
    tokenEmbd, outputNorm: tensor(TENSOR.outputNorm), output: c.tiedOutput ? tokenEmbd : tensor(TENSOR.output),
    outputBias: optional("outputBias"), ropeFreqs: optional("ropeFreqs"), ropeFactorsLong: optional("ropeFactorsLong"),
    ropeFactorsShort: optional("ropeFactorsShort"), layers,
  };
}

/** global tensors a layer reads (the rope factors), kept in wasm for the whole stream */
const RESIDENT: GlobalTensorKey[] = ["ropeFreqs", "ropeFactorsLong", "ropeFactorsShort"];

function residentGlobals(w: Weights): Tensor[] {
  return [w.ropeFreqs, w.ropeFactorsLong, w.ropeFactorsShort].filter((t): t is Tensor => !!t);
}
