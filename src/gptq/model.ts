// Whole-model GPTQ, true sequential, one layer at a time (model/layers.ts): the calibration windows' residual
// streams are kept between layers, so each layer's tensors are decoded to F32 in wasm once, every site's H comes
// from one pass of that layer over the windows (stopping right after the site), the site's matrices are quantized
// and written back so later sites see them, and one more pass gives the next layer's input: about 2L layer passes
// in all, and memory for one layer, the widest site's H and the windows' streams. Blocks go to a sink as each
// tensor is done (the output file). Not the per-matrix algorithm (gptq.ts).
import type { ByteSource } from "../gguf/reader.js";
import { TENSOR } from "../gguf/names.js";
import type { GgufFile } from "../gguf/types.js";
import type { GgufWriteSpec } from "../gguf/writer.js";
import { configFromGguf } from "../model/config.js";
import { siteKeys, type LinearSite } from "../model/arch.js";
import { LayerStream, planStream } from "../model/layers.js";
import type { ModelConfig } from "../model/config.js";
import type { ThreadedRuntime } from "../threads/pool.js";
import { WASM32_LIMIT } from "../model/model.js";
import { describe, overLimit, size, type MemoryPart } from "../model/budget.js";
import type { Tensor } from "../model/weights.js";
import type { LayerTensorKey } from "../gguf/names.js";
import { formatById, rowBytes, type QuantFormat } from "../quant/formats.js";
import { convertTensor, planQuantization, quantizedKv, toRecipe, type QuantTarget, type TensorPlan } from "../quant/quantize.js";
import type { QuantRecipe } from "../quant/recipe.js";
import { quantizeRows } from "../quant/fast.js";
import { codecFor, hasCodec } from "./codec.js";
import { GPTQ_DEFAULTS, gptqMatrix, prepareHessianWasm, quadraticForm, type GptqOptions } from "./gptq.js";

export type QuantMethod = "gptq" | "rtn";

/** Where quantized tensors go: bytes of tensor `index` (of the spec), at byte `at` within it; any order. */
export interface TensorSink {
  write(index: number, bytes: Uint8Array, at?: number): void;
}

export interface GptqModelOptions extends GptqOptions {
  /** "gptq" (default), or "rtn": the same sequential walk with round-to-nearest, for its error table */
  method?: QuantMethod;
  /** called after each site of each layer: done of total steps (nLayers × 4) */
  onProgress?: (done: number, total: number, note: string) => void;
  /** the output, opened once its header is known (default: kept in memory and returned as tensorData) */
  openSink?: (spec: GgufWriteSpec) => TensorSink;
  /** name for messages (a path) */
  name?: string;
  /**
   * a runtime with worker threads to run in (threads/pool.ts threadedRuntime): the calibration forward passes and
   * GPTQ's rank-1 and block updates (split by rows, the same bits as one thread) use them. Default: one thread.
   */
  runtime?: ThreadedRuntime;
}

/** Reconstruction error of one matrix over its calibration inputs X (relative: ‖WX − ŴX‖ / ‖WX‖). */
export interface TensorError {
  layer: number;
  name: string;
  site: LinearSite;
  /** rows the errors were measured on (evenly spaced; all of them up to ERROR_ROWS) */
  rows: number;
  /** ‖WX‖² */
  reference: number;
  /** ‖WX − ŴX‖² with Ŵ from GPTQ (undefined for method rtn or a format GPTQ does not write) */
  gptq?: number;
  /** ‖WX − ŴX‖² with Ŵ from round-to-nearest */
  rtn: number;
}

export interface GptqModelResult {
  spec: GgufWriteSpec;
  /** tensor i's bytes, with the default in-memory sink (throws when a sink was given) */
  tensorData: (i: number) => Uint8Array;
  plan: TensorPlan[];
  errors: TensorError[];
  /** layer matrices quantized through calibration (the others: round-to-nearest, converted or kept) */
  calibrated: number;
  /** passes of a layer over the calibration windows: whole ones, and the site passes that stopped early */
  passes: { full: number; partial: number };
}


/** wasm memory one site's work takes: H in f64 and f32, the factorization, one matrix in GPTQ */
function siteBytes(n: number, rows: number): number {
  const h = n * n * (8 + 4);
  const factor = n * n * 8 + (16 * n + 64) * 8;
  const matrix = rows * n * 4 + n * n * 4 + rows * 256 * 4 + rows * 4;
  const errorTable = 2 * rows * n * 4;
  return h + Math.max(factor, matrix, errorTable) + 4 * 64;
}

/**
 * Quantize a model with GPTQ (or sequential RTN) on calibration windows (token ids, each starting with BOS) under
 * a recipe (a format, or Q4_K_M's mix). Matrices whose format GPTQ does not write (an F16 fallback) or whose rows do
 * not hold a block are converted or kept as the recipe says; the token embedding and an untied classifier are not
 * linear layers over a calibration site and get round-to-nearest (the embedding fake-quantized before layer 0).
 */
export function quantizeGptq(file: GgufFile, src: ByteSource, windows: number[][], target: QuantTarget, opts: GptqModelOptions = {}): GptqModelResult {
  const method = opts.method ?? "gptq";
  const name = opts.name ?? "<model>";
  const recipe = toRecipe(target);
  const { plan, layerMatrices } = planGptq(file, recipe, method, opts.group);
  if (windows.length === 0) throw new Error("no calibration windows");
  const config = configFromGguf(file, name);
  const spec: GgufWriteSpec = {
    version: 3,
    kv: quantizedKv(file, recipe),
    tensors: plan.map((p) => ({ name: p.info.name, dims: p.info.dims, type: p.target.ggmlType })),
  };
  const kept = opts.openSink ? undefined : new Map<number, Uint8Array>();
  const index = new Map(plan.map((p, i) => [p.info.name, i]));
  const calibrate = (p: TensorPlan) => method === "gptq" && hasCodec(p.target) && p.target !== p.info.format;

  // everything is planned (and refused, in one line) before the output is opened or a tensor read
  const extra = siteParts(layerMatrices);
  const stream = LayerStream.open(src, file, { matrices: "f32", sequences: windows, batchSize: 64, name, extra, advice: tokenAdvice(file, config.dim, windows, extra), runtime: opts.runtime });
  try {
    return gptqOverStream(stream, file, src, plan, layerMatrices, spec, kept, index, calibrate, config, opts);
  } finally {
    stream.close();
  }
}

/** quantizeGptq's work on an open layer stream */
function gptqOverStream(stream: LayerStream, file: GgufFile, src: ByteSource, plan: TensorPlan[], layerMatrices: TensorPlan[], spec: GgufWriteSpec,
                        kept: Map<number, Uint8Array> | undefined, index: Map<string, number>, calibrate: (p: TensorPlan) => boolean,
                        config: ModelConfig, opts: GptqModelOptions): GptqModelResult {
  const planOf = (t: { name: string }) => plan[index.get(t.name)!];
  const sink = opts.openSink ? opts.openSink(spec) : memorySink(spec, kept!);
  const rt = stream.rt;
  const k = rt.k;

  const copy = (i: number) => {
    const info = plan[i].info;
    sink.write(i, src.read(file.dataOffset + info.offset, info.byteSize));
  };
  /** tensor i to its planned type, round-to-nearest, a few MiB of the file at a time */
  const convertStreamed = (i: number) => {
    const { info, target: to } = plan[i];
    if (to === info.format) return copy(i);
    const inRow = rowBytes(info.format, info.dims[0]), outRow = rowBytes(to, info.dims[0]);
    const rows = info.byteSize / inRow;
    const chunk = Math.max(1, Math.floor((4 << 20) / inRow));
    for (let r = 0; r < rows; r += chunk) {
      const n = Math.min(chunk, rows - r);
      sink.write(i, convertTensor(src.read(file.dataOffset + info.offset + r * inRow, n * inRow), info.format, to, info.dims[0]), r * outRow);
    }
  };

  // the embedding: the file gets its round-to-nearest blocks, calibration starts from what they decode to
  const embIndex = index.get(TENSOR.tokenEmbd)!;
  const emb = plan[embIndex];
  convertStreamed(embIndex);
  const fake = fakeQuantizer(emb.info.format, emb.target, config.dim);
  stream.embed(fake);

  const errors: TensorError[] = [];
  // the places linear layers read their input, in forward order, and the matrices reading each (arch.ts)
  const sites = siteKeys(config.arch);
  const siteTensors = new Set(sites.flatMap((s) => s.keys));
  const total = config.nLayers * sites.length;
  const passes = { full: 0, partial: 0 };
  let done = 0;
  for (let l = 0; l < config.nLayers; l++) {
    const lw = stream.loadLayer(l);
    // norms, biases, q/k norms: the layer's tensors that are no site's matrix go to the file as they are
    for (const [key, t] of Object.entries(lw)) if (t && !siteTensors.has(key as LayerTensorKey)) copy(index.get(t.name)!);
    // once the attention half is final, the gate/up pass leaves its output (the stream between the halves) in the
    // residual streams, and the passes after it run the FFN half only
    let atMid = false;
    for (const { site, keys } of sites) {
      const tensors = keys.map((key) => lw[key]).filter((t): t is Tensor => !!t);
      const changing = tensors.filter((t) => planOf(t).target !== planOf(t).info.format);
      for (const t of tensors) if (!changing.includes(t)) copy(index.get(t.name)!);
      if (changing.length > 0) {
        const n = tensors[0].shape[1];
        const mark = rt.mark();
        try {
          // H (n, n) = Σ x xᵀ over the site's inputs, from one pass of this layer that stops right after the site
          const hPtr = rt.alloc(n * n * 8);
          rt.u8.fill(0, hPtr, hPtr + n * n * 8);
          const keepMid = site === "ffn_gate_up";
          stream.runLayer(l, {
            writeBack: keepMid, stopAfterSite: site, skipAttention: atMid,
            onLinearInput: (_l, s, x, width, t) => {
              if (s !== site) return;
              if (width !== n) throw new Error(`${site} of layer ${l} has ${width} inputs, expected ${n}`);
              k.gptq_accumulate_h(hPtr, x, n, t);
            },
          });
          passes.partial++;
          if (keepMid) atMid = true;
          const h64 = new Float64Array(rt.memory.buffer, hPtr, n * n);
          for (let i = 0; i < n; i++) for (let c = 0; c < i; c++) h64[i * n + c] = h64[c * n + i];
          const h32Ptr = rt.alloc(n * n * 4);
          rt.f32At(h32Ptr, n * n).set(new Float64Array(rt.memory.buffer, hPtr, n * n));
          const hess = changing.some((t) => calibrate(planOf(t))) ? prepareHessianWasm(rt, hPtr, n, opts) : undefined;
          for (const t of changing) {
            const i = index.get(t.name)!;
            const p = plan[i];
            const rows = t.shape[0];
            const weight = rt.f32At(t.ptr, rows * n).slice();
            const rtn = rtnMatrix(weight, rows, n, p.target);
            let chosen = rtn;
            if (hess && calibrate(p)) chosen = gptqMatrix(rt, weight, rows, n, hess, codecFor(p.target), opts, stream.pool);
            // the error table's quadratic forms cost rows·n² each: on at most ERROR_ROWS evenly spaced rows
            const pick = sampleRows(rows);
            const form = (a: Float32Array) => quadraticForm(rt, h32Ptr, gatherRows(a, n, pick), pick.length, n);
            errors.push({
              layer: l, name: t.name, site, rows: pick.length, reference: form(weight), rtn: form(difference(weight, rtn.dequantized)),
              gptq: chosen === rtn ? undefined : form(difference(weight, chosen.dequantized)),
            });
            sink.write(i, chosen.bytes);
            rt.f32At(t.ptr, rows * n).set(chosen.dequantized);
          }
        } finally {
          rt.release(mark);
        }
      }
      done++;
      opts.onProgress?.(done, total, `blk.${l} ${site}`);
    }
    // the next layer's input: this layer with every matrix as the file now holds it
    stream.runLayer(l, { writeBack: true, skipAttention: atMid });
    passes.full++;
  }
  for (let i = 0; i < plan.length; i++) {
    const info = plan[i].info;
    if (info.name === TENSOR.tokenEmbd || info.name.startsWith("blk.")) continue;
    convertStreamed(i);
  }
  return {
    spec, plan, errors, calibrated: layerMatrices.filter(calibrate).length, passes,
    tensorData: (i) => {
      if (!kept) throw new Error("quantizeGptq: the output went to the sink");
      const b = kept.get(i);
      if (!b) throw new Error(`quantizeGptq: tensor ${plan[i].info.name} was not written`);
      return b;
    },
  };
}

/** the memory part of GPTQ's work on its widest site */
function siteParts(layerMatrices: TensorPlan[]): MemoryPart[] {
  let widest = 0, rowsAtWidest = 0;
  for (const p of layerMatrices) {
    const n = p.info.dims[0], rows = p.info.dims[1];
    if (siteBytes(n, rows) > siteBytes(widest, rowsAtWidest)) { widest = n; rowsAtWidest = rows; }
  }
  return [{ what: `GPTQ's work on the widest site (${widest} inputs: H in f64 and f32, its factorization, one matrix)`, bytes: siteBytes(widest, rowsAtWidest) }];
}

/**
 * The up-front check of a GPTQ run (what quantizeGptq does first): throws the one-line error when the stream,
 * the widest site's work and the windows' residual streams do not fit in wasm32, before anything else is done.
 */
export function checkGptqMemory(file: GgufFile, windows: number[][], target: QuantTarget, method: QuantMethod = "gptq", name = "<model>", group?: number): void {
  const { layerMatrices } = planGptq(file, target, method, group);
  const config = configFromGguf(file, name);
  const extra = siteParts(layerMatrices);
  const plan = planStream(file, config, { matrices: "f32", sequences: windows, batchSize: 64, extra });
  const e = overLimit(`${name}: running it layer by layer over ${plan.tokens} tokens`, plan.parts, WASM32_LIMIT, tokenAdvice(file, config.dim, windows, extra));
  if (e) throw e;
}

/** What to tell a user whose calibration does not fit: how many tokens would, or that none would. */
function tokenAdvice(file: GgufFile, dim: number, windows: number[][], extra: MemoryPart[]): string {
  const plan = planStream(file, configFromGguf(file), { matrices: "f32", sequences: windows, batchSize: 64, extra });
  const streams = plan.parts[1].bytes;
  const fixed = plan.total - streams;
  if (fixed >= WASM32_LIMIT) {
    return `fewer calibration tokens cannot help: without them it needs ${size(fixed)} (${describe(plan.parts.filter((_, i) => i !== 1))}); a model this wide needs the weights spread over several memories, which is not built yet`;
  }
  const tokens = Math.floor((WASM32_LIMIT - fixed) / (dim * 4));
  return `use --tokens ${Math.floor(tokens / 128) * 128} or fewer`;
}

/** row → the row its round-to-nearest blocks decode to (identity when the tensor keeps its type) */
function fakeQuantizer(from: QuantFormat, to: QuantFormat, dim: number): ((row: Float32Array) => void) | undefined {
  if (from === to) return undefined;
  const buf = new Uint8Array(rowBytes(to, dim));
  return (row) => {
    to.quantize!(row, buf);
    to.dequantize!(buf, row);
  };
}

/** A sink that keeps every tensor's bytes (small models, tests, the studies). */
function memorySink(spec: GgufWriteSpec, kept: Map<number, Uint8Array>): TensorSink {
  return {
    write(i, bytes, at = 0) {
      let b = kept.get(i);
      if (!b) {
        const t = spec.tensors[i];
        const f = formatById(t.type)!;
        b = new Uint8Array(rowBytes(f, t.dims[0]) * t.dims.slice(1).reduce((a, d) => a * d, 1));
        kept.set(i, b);
      }
      b.set(bytes, at);
    },
  };
}

/**
 * Check a GPTQ (or sequential RTN) run before any work: the method, the recipe, the group, and that some layer
 * matrix can hold one of its formats. Returns the tensor plan and the layer matrices calibration will quantize.
 */
export function planGptq(file: GgufFile, target: QuantTarget, method: QuantMethod = "gptq", group: number = GPTQ_DEFAULTS.group): { plan: TensorPlan[]; layerMatrices: TensorPlan[] } {
  if (method !== "gptq" && method !== "rtn") throw new Error(`unknown quantization method "${method}": expected gptq or rtn`);
  const recipe: QuantRecipe = toRecipe(target);
  if (method === "gptq") codecFor(recipe.base);
  if (method === "gptq" && !(Number.isInteger(group) && group > 0 && group % 32 === 0)) {
    throw new Error(`--group must be a positive multiple of 32, got ${group}`);
  }
  const plan = planQuantization(file, recipe);
  // every blk.N matrix the plan converts is a linear layer read at one of the four sites
  const layerMatrices = plan.filter((p) => p.target !== p.info.format && p.info.shape.length === 2 && p.info.name.startsWith("blk.") && p.target.blockSize > 1);
  if (layerMatrices.length === 0) {
    const lengths = [...new Set(file.tensors.filter((t) => t.shape.length === 2).map((t) => t.dims[0]))];
    throw new Error(`no layer weight matrix can be stored as ${recipe.base.name}: row lengths ${lengths.join(", ")} are not multiples of its block size ${recipe.base.blockSize}`);
  }
  if (method === "gptq") {
    // --group shares a scale among the 32-block formats' blocks; K-quants keep their own sub-blocks
    const bad = layerMatrices.find((p) => p.target.blockSize === 32 && p.info.dims[0] % group !== 0);
    if (bad) throw new Error(`--group ${group} does not divide the row length ${bad.info.dims[0]} of ${bad.info.name}; use a group that divides every row (e.g. 32)`);
  }
  return { plan, layerMatrices };
}

/** Round-to-nearest with the format's reference quantizer, row by row, and what decodes back. */
export function rtnMatrix(w: Float32Array, rows: number, n: number, target: QuantFormat): { bytes: Uint8Array; dequantized: Float32Array } {
  const rb = rowBytes(target, n);
  const bytes = new Uint8Array(rows * rb);
  const dequantized = new Float32Array(rows * n);
  quantizeRows(target, w.subarray(0, rows * n), bytes);
  for (let r = 0; r < rows; r++) target.dequantize!(bytes.subarray(r * rb, (r + 1) * rb), dequantized.subarray(r * n, (r + 1) * n));
  return { bytes, dequantized };
}

/** The most rows of one matrix the error table measures: its quadratic forms cost rows·n² each. */
export const ERROR_ROWS = 256;

/** rows 0..rows−1, or ERROR_ROWS of them evenly spaced */
function sampleRows(rows: number): Int32Array {
  if (rows <= ERROR_ROWS) return Int32Array.from({ length: rows }, (_, i) => i);
  return Int32Array.from({ length: ERROR_ROWS }, (_, i) => Math.floor((i * rows) / ERROR_ROWS));
}

function gatherRows(a: Float32Array, n: number, rows: Int32Array): Float32Array {
  if (rows.length * n === a.length) return a;
  const out = new Float32Array(rows.length * n);
  rows.forEach((r, i) => out.set(a.subarray(r * n, (r + 1) * n), i * n));
  return out;
}

function difference(a: Float32Array, b: Float32Array): Float32Array {
  const d = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i] - b[i];
  return d;
}

/** Relative reconstruction error sqrt(Σ‖ΔX‖² / Σ‖WX‖²) of a set of tensors, for the method's Ŵ (RTN where GPTQ did not run). */
export function relativeError(errs: TensorError[], method: QuantMethod): number {
  let num = 0, den = 0;
  for (const e of errs) { num += method === "gptq" ? e.gptq ?? e.rtn : e.rtn; den += e.reference; }
  return den > 0 ? Math.sqrt(num / den) : 0;
}
