// The whole-model GPTQ driver as it was before layer streaming (edgeprune fc5aa31, src/gptq/model.ts and
// calibrate.ts): the model copied to F32, and for every site of layer l the calibration windows re-run through
// layers 0..l (O(L²) layer passes). Kept here only as the reference the streaming driver is tested against (the
// same codes on stories-deep-16L); test-only.
import { bytesSource, type ByteSource } from "../../src/gguf/reader.js";
import type { GgufFile } from "../../src/gguf/types.js";
import { writeGgufBytes, type GgufWriteSpec } from "../../src/gguf/writer.js";
import { STUDY_CACHE, type Context, type LinearSite } from "../../src/model/forward.js";
import { Model } from "../../src/model/model.js";
import type { LayerWeights, Tensor } from "../../src/model/weights.js";
import { formatByName, type QuantFormat } from "../../src/quant/formats.js";
import { convertTensor, quantizedKv } from "../../src/quant/quantize.js";
import type { WasmRuntime } from "../../src/wasm.js";
import { codecFor } from "../../src/gptq/codec.js";
import { GPTQ_DEFAULTS, gptqMatrix, prepareHessian, quadraticForm } from "../../src/gptq/gptq.js";
import { planGptq, rtnMatrix, type GptqModelOptions, type TensorError } from "../../src/gptq/model.js";

/** The four places a llama's linear layers read their input, in forward order, and the matrices reading each. */
const SITES: { site: LinearSite; fields: (keyof LayerWeights)[] }[] = [
  { site: "attn_qkv", fields: ["attnQ", "attnK", "attnV"] },
  { site: "attn_output", fields: ["attnOutput"] },
  { site: "ffn_gate_up", fields: ["ffnGate", "ffnUp"] },
  { site: "ffn_down", fields: ["ffnDown"] },
];

/**
 * Quantize a model with GPTQ (or sequential RTN) on calibration windows (token ids, each starting with BOS) and
 * return what to write. Tensors whose rows do not hold whole blocks keep their type, as with RTN; the token
 * embedding (and an untied output) are not linear layers over a calibration site and get round-to-nearest.
 */
export function quantizeGptqRerun(file: GgufFile, src: ByteSource, windows: number[][], target: QuantFormat, opts: GptqModelOptions = {}): { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; errors: TensorError[] } {
  const method = opts.method ?? "gptq";
  const { plan, layerMatrices } = planGptq(file, target, method, opts.group);
  void layerMatrices;
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
  const ctx = model.createContext({ contextSize, batchSize: 64, ...STUDY_CACHE }); // as the layer stream (STUDY_CACHE)
  const total = c.nLayers * SITES.length;
  let done = 0;
  for (let l = 0; l < c.nLayers; l++) {
    const lw = w.layers[l];
    for (const { site, fields } of SITES) {
      const tensors = fields.map((f) => lw[f] as Tensor | undefined).filter(willQuantize);
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
            errors.push({ layer: l, name: t.name, site, rows, reference, gptq: gptqErr, rtn: rtnErr });
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
  return { spec, tensorData, errors };
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


/**
 * H (n, n) float64 = Σ x xᵀ over the inputs of `site` in `layer`, as the model's current weights produce them,
 * streamed batch by batch into f64 accumulators in wasm (gptq_accumulate_h). Layers after `layer` are not run.
 */
function collectHessian(ctx: Context, rt: WasmRuntime, windows: number[][], layer: number, site: LinearSite, n: number): Float64Array {
  const mark = rt.mark();
  try {
    const hPtr = rt.alloc(n * n * 8);
    rt.u8.fill(0, hPtr, hPtr + n * n * 8);
    const attention = site === "attn_qkv" || site === "attn_output";
    const skipFfn = attention ? new Set([layer]) : undefined;
    for (const w of windows) {
      ctx.reset();
      ctx.eval(w, {
        logits: "none", stopAfterLayer: layer + 1, skipFfn,
        onLinearInput: (l, s, x, width, t) => {
          if (l !== layer || s !== site) return;
          if (width !== n) throw new Error(`collectHessian: ${site} of layer ${layer} has ${width} inputs, expected ${n}`);
          rt.k.gptq_accumulate_h(hPtr, x, n, t);
        },
      });
    }
    const h = new Float64Array(rt.memory.buffer, hPtr, n * n).slice();
    for (let i = 0; i < n; i++) for (let k = 0; k < i; k++) h[i * n + k] = h[k * n + i];
    return h;
  } finally {
    rt.release(mark);
  }
}

function difference(a: Float32Array, b: Float32Array): Float32Array {
  const d = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i] - b[i];
  return d;
}
