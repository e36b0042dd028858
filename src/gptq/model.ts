// Whole-model GPTQ, true sequential: layer by layer, site by site (q/k/v, attention output, gate/up, down: the
// sites and their matrices come from the architecture descriptor), H from
// the calibration windows as the already-quantized model produces them, dequantized weights written back into
// wasm so later sites see them; returns a GGUF write spec like quant/quantize.ts. Not the per-matrix algorithm.
import { bytesSource, type ByteSource } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { writeGgufBytes, type GgufWriteSpec } from "../gguf/writer.js";
import { siteKeys, type LinearSite } from "../model/arch.js";
import { Model } from "../model/model.js";
import type { Tensor } from "../model/weights.js";
import { formatByName, type QuantFormat } from "../quant/formats.js";
import { convertTensor, planQuantization, quantizedKv, type TensorPlan } from "../quant/quantize.js";
import { collectHessian } from "./calibrate.js";
import { codecFor } from "./codec.js";
import { GPTQ_DEFAULTS, gptqMatrix, prepareHessian, quadraticForm, type GptqOptions } from "./gptq.js";

export type QuantMethod = "gptq" | "rtn";

export interface GptqModelOptions extends GptqOptions {
  /** "gptq" (default), or "rtn": the same sequential walk with round-to-nearest, for its error table */
  method?: QuantMethod;
  /** called after each site of each layer: done of total steps (nLayers × 4) */
  onProgress?: (done: number, total: number, note: string) => void;
}

/** Reconstruction error of one matrix over its calibration inputs X (relative: ‖WX − ŴX‖ / ‖WX‖). */
export interface TensorError {
  layer: number;
  name: string;
  site: LinearSite;
  /** ‖WX‖² */
  reference: number;
  /** ‖WX − ŴX‖² with Ŵ from GPTQ (undefined for method rtn) */
  gptq?: number;
  /** ‖WX − ŴX‖² with Ŵ from round-to-nearest */
  rtn: number;
}

export interface GptqModelResult {
  spec: GgufWriteSpec;
  tensorData: (i: number) => Uint8Array;
  plan: TensorPlan[];
  errors: TensorError[];
  /** tensors quantized through calibration (the others: round-to-nearest or kept) */
  calibrated: number;
}


/**
 * Quantize a model with GPTQ (or sequential RTN) on calibration windows (token ids, each starting with BOS) and
 * return what to write. Tensors whose rows do not hold whole blocks keep their type, as with RTN; the token
 * embedding (and an untied output) are not linear layers over a calibration site and get round-to-nearest.
 */
export function quantizeGptq(file: GgufFile, src: ByteSource, windows: number[][], target: QuantFormat, opts: GptqModelOptions = {}): GptqModelResult {
  const method = opts.method ?? "gptq";
  const { plan, layerMatrices } = planGptq(file, target, method, opts.group);
  if (windows.length === 0) throw new Error("no calibration windows");
  const codec = method === "gptq" ? codecFor(target) : undefined;
  const planned = new Map(plan.map((p) => [p.info.name, p]));
  const willQuantize = (t: Tensor | undefined): t is Tensor => {
    const p = t && planned.get(t.name);
    return !!p && p.target === target && p.info.format !== target;
  };
  const contextSize = Math.max(...windows.map((w) => w.length));
  const model = loadAsF32(file, src, contextSize);
  const { rt, weights: w, config: c } = model;
  const calibrated = layerMatrices.length;

  const out = new Map<string, Uint8Array>();
  // embeddings (and an untied classifier): round-to-nearest, written back so calibration sees them quantized
  for (const t of new Set([w.tokenEmbd, w.output])) {
    if (!willQuantize(t)) continue;
    const f32 = rt.f32At(t.ptr, t.shape[0] * t.shape[1]).slice();
    const { bytes, dequantized } = rtnMatrix(f32, t.shape[0], t.shape[1], target);
    out.set(t.name, bytes);
    rt.f32At(t.ptr, dequantized.length).set(dequantized);
  }

  const errors: TensorError[] = [];
  const ctx = model.createContext({ contextSize, batchSize: 64 });
  // the four places linear layers read their input, in forward order, and the matrices reading each (arch.ts)
  const sites = siteKeys(c.arch);
  const total = c.nLayers * sites.length;
  let done = 0;
  for (let l = 0; l < c.nLayers; l++) {
    const lw = w.layers[l];
    for (const { site, keys } of sites) {
      const tensors = keys.map((key) => lw[key]).filter(willQuantize);
      if (tensors.length > 0) {
        const n = tensors[0].shape[1];
        const h = collectHessian(ctx, rt, windows, l, site, n);
        const hess = method === "gptq" ? prepareHessian(h, n, opts) : undefined;
        const mark = rt.mark();
        try {
          const hPtr = rt.alloc(n * n * 4);
          rt.f32At(hPtr, n * n).set(h);
          for (const t of tensors) {
            const rows = t.shape[0];
            const weight = rt.f32At(t.ptr, rows * n).slice();
            const reference = quadraticForm(rt, hPtr, weight, rows, n);
            const rtn = rtnMatrix(weight, rows, n, target);
            const rtnErr = quadraticForm(rt, hPtr, difference(weight, rtn.dequantized), rows, n);
            let chosen = rtn;
            let gptqErr: number | undefined;
            if (hess && codec) {
              chosen = gptqMatrix(rt, weight, rows, n, hess, codec, opts);
              gptqErr = quadraticForm(rt, hPtr, difference(weight, chosen.dequantized), rows, n);
            }
            errors.push({ layer: l, name: t.name, site, reference, gptq: gptqErr, rtn: rtnErr });
            out.set(t.name, chosen.bytes);
            rt.f32At(t.ptr, rows * n).set(chosen.dequantized);
          }
        } finally {
          rt.release(mark);
        }
      }
      done++;
      opts.onProgress?.(done, total, `blk.${l} ${site}`);
    }
  }

  const spec: GgufWriteSpec = {
    version: 3,
    kv: quantizedKv(file, target),
    tensors: plan.map((p) => ({ name: p.info.name, dims: p.info.dims, type: p.target.ggmlType })),
  };
  const tensorData = (i: number): Uint8Array => {
    const { info, target: t } = plan[i];
    const mine = out.get(info.name);
    if (mine && t === target) return mine;
    return convertTensor(src.read(file.dataOffset + info.offset, info.byteSize), info.format, t, info.dims[0]);
  };
  return { spec, tensorData, plan, errors, calibrated };
}

/**
 * Check a GPTQ (or sequential RTN) run before any work: the method, the format, the group, and that some layer
 * matrix can hold the format. Returns the tensor plan and the layer matrices calibration will quantize.
 */
export function planGptq(file: GgufFile, target: QuantFormat, method: QuantMethod = "gptq", group: number = GPTQ_DEFAULTS.group): { plan: TensorPlan[]; layerMatrices: TensorPlan[] } {
  if (method !== "gptq" && method !== "rtn") throw new Error(`unknown quantization method "${method}": expected gptq or rtn`);
  if (method === "gptq") codecFor(target);
  if (!target.quantize || !target.dequantize) throw new Error(`cannot quantize to ${target.name}`);
  if (method === "gptq" && !(Number.isInteger(group) && group > 0 && group % target.blockSize === 0)) {
    throw new Error(`--group must be a positive multiple of ${target.name}'s block size ${target.blockSize}, got ${group}`);
  }
  const plan = planQuantization(file, target);
  // every blk.N matrix the plan converts is a linear layer read at one of the four sites
  const layerMatrices = plan.filter((p) => p.target === target && p.info.format !== target && p.info.shape.length === 2 && p.info.name.startsWith("blk."));
  if (layerMatrices.length === 0) {
    const lengths = [...new Set(file.tensors.filter((t) => t.shape.length === 2).map((t) => t.dims[0]))];
    throw new Error(`no layer weight matrix can be stored as ${target.name}: row lengths ${lengths.join(", ")} are not multiples of its block size ${target.blockSize}`);
  }
  if (method === "gptq") {
    const bad = layerMatrices.find((p) => p.info.dims[0] % group !== 0);
    if (bad) throw new Error(`--group ${group} does not divide the row length ${bad.info.dims[0]} of ${bad.info.name}; use a group that divides every row (e.g. ${target.blockSize})`);
  }
  return { plan, layerMatrices };
}

/** Round-to-nearest with the format's reference quantizer, row by row, and what decodes back. */
export function rtnMatrix(w: Float32Array, rows: number, n: number, target: QuantFormat): { bytes: Uint8Array; dequantized: Float32Array } {
  const rowBytes = (n / target.blockSize) * target.typeSize;
  const bytes = new Uint8Array(rows * rowBytes);
  const dequantized = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const b = bytes.subarray(r * rowBytes, (r + 1) * rowBytes);
    target.quantize!(w.subarray(r * n, (r + 1) * n), b);
    target.dequantize!(b, dequantized.subarray(r * n, (r + 1) * n));
  }
  return { bytes, dequantized };
}

function difference(a: Float32Array, b: Float32Array): Float32Array {
  const d = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i] - b[i];
  return d;
}

/** The model with every matrix as F32 in wasm (GPTQ updates float weights); F32 files load as they are. */
function loadAsF32(file: GgufFile, src: ByteSource, contextSize: number): Model {
  const f32 = formatByName("F32")!;
  const opts = { name: "calibration model", contextSize, batchSize: 64 };
  const matrices = file.tensors.filter((t) => t.shape.length === 2);
  if (matrices.every((t) => t.format === f32)) return Model.load(src, opts);
  const spec: GgufWriteSpec = {
    version: 3,
    kv: file.kv.values(),
    tensors: file.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.shape.length === 2 && t.format.dequantize ? f32.ggmlType : t.format.ggmlType })),
  };
  const bytes = writeGgufBytes(spec, (i) => {
    const t = file.tensors[i];
    const raw = src.read(file.dataOffset + t.offset, t.byteSize);
    return t.shape.length === 2 && t.format.dequantize ? convertTensor(raw, t.format, f32, t.dims[0]) : raw;
  });
  return Model.load(bytesSource(bytes), opts);
}

/** Relative reconstruction error sqrt(Σ‖ΔX‖² / Σ‖WX‖²) of a set of tensors, for the method's Ŵ. */
export function relativeError(errs: TensorError[], method: QuantMethod): number {
  let num = 0, den = 0;
  for (const e of errs) { num += method === "gptq" ? e.gptq ?? NaN : e.rtn; den += e.reference; }
  return den > 0 ? Math.sqrt(num / den) : 0;
}
