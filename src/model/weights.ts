// The llama tensor list with expected shapes, checked at load, and the copy of tensor bytes straight from a
// ByteSource into wasm memory (one copy: the file is never held twice). Not the forward pass.
import type { ByteSource } from "../gguf/reader.js";
import { LAYER_TENSOR, LayerTensorKey, layerTensorName, TENSOR } from "../gguf/names.js";
import type { GgufFile, GgufTensorInfo } from "../gguf/types.js";
import { FORMATS, type QuantFormat } from "../quant/formats.js";
import type { WasmRuntime } from "../wasm.js";
import type { LlamaConfig } from "./config.js";

/** A tensor resident in wasm memory; quantized blocks keep GGUF's byte layout. */
export interface Tensor {
  name: string;
  format: QuantFormat;
  /** row-major, outermost first: (rows, rowLength) for matrices */
  shape: number[];
  ptr: number;
  byteSize: number;
  info: GgufTensorInfo;
}

export interface LayerWeights {
  attnNorm?: Tensor; // (dim)
  wq?: Tensor; // (dim, dim)
  wk?: Tensor; // (kvDim, dim)
  wv?: Tensor; // (kvDim, dim)
  wo?: Tensor; // (dim, dim)
  ffnNorm?: Tensor; // (dim)
  wGate?: Tensor; // (hiddenDim, dim)
  wUp?: Tensor; // (hiddenDim, dim)
  wDown?: Tensor; // (dim, hiddenDim)
}

export interface Weights {
  tokenEmbd: Tensor; // (vocabSize, dim)
  outputNorm: Tensor; // (dim)
  output: Tensor; // (vocabSize, dim); token_embd when tied
  layers: LayerWeights[];
}

const FIELD: Record<LayerTensorKey, keyof LayerWeights> = {
  attnNorm: "attnNorm", attnQ: "wq", attnK: "wk", attnV: "wv", attnOutput: "wo",
  ffnNorm: "ffnNorm", ffnGate: "wGate", ffnUp: "wUp", ffnDown: "wDown",
};

const ATTENTION_KEYS: LayerTensorKey[] = ["attnNorm", "attnQ", "attnK", "attnV", "attnOutput"];
const FFN_KEYS: LayerTensorKey[] = ["ffnNorm", "ffnGate", "ffnUp", "ffnDown"];

/** The tensors layer l has (removed halves left out): each LayerWeights field with its tensor name. */
export function layerTensorList(c: LlamaConfig, l: number): { field: keyof LayerWeights; name: string }[] {
  const keys = [...(c.removedAttention.has(l) ? [] : ATTENTION_KEYS), ...(c.removedFfn.has(l) ? [] : FFN_KEYS)];
  return keys.map((key) => ({ field: FIELD[key], name: layerTensorName(l, key) }));
}

/** Expected row-major shape of each per-layer tensor. */
function layerShape(c: LlamaConfig, key: LayerTensorKey): number[] {
  switch (key) {
    case "attnNorm": case "ffnNorm": return [c.dim];
    case "attnQ": case "attnOutput": return [c.dim, c.dim];
    case "attnK": case "attnV": return [c.kvDim, c.dim];
    case "ffnGate": case "ffnUp": return [c.hiddenDim, c.dim];
    case "ffnDown": return [c.dim, c.hiddenDim];
  }
}

/** Every tensor the model needs, with its expected shape; removed half-layers are not required. */
export function expectedTensors(c: LlamaConfig): { name: string; shape: number[]; matrix: boolean }[] {
  const out: { name: string; shape: number[]; matrix: boolean }[] = [
    { name: TENSOR.tokenEmbd, shape: [c.vocabSize, c.dim], matrix: true },
    { name: TENSOR.outputNorm, shape: [c.dim], matrix: false },
  ];
  if (!c.tiedOutput) out.push({ name: TENSOR.output, shape: [c.vocabSize, c.dim], matrix: true });
  for (let l = 0; l < c.nLayers; l++) {
    const keys = [...(c.removedAttention.has(l) ? [] : ATTENTION_KEYS), ...(c.removedFfn.has(l) ? [] : FFN_KEYS)];
    for (const key of keys) out.push({ name: layerTensorName(l, key), shape: layerShape(c, key), matrix: key !== "attnNorm" && key !== "ffnNorm" });
  }
  return out;
}

/** the weight formats a matmul kernel exists for, for error messages */
const RUNNABLE = FORMATS.filter((f) => f.matmul && f.ggmlType >= 0).map((f) => f.name).join(", ");

/** Check names, shapes and types against the config before any memory is planned. */
export function checkTensors(file: GgufFile, c: LlamaConfig, fileName: string): Map<string, GgufTensorInfo> {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  for (const e of expectedTensors(c)) {
    const t = byName.get(e.name);
    if (!t) throw new Error(`${fileName}: tensor "${e.name}" is missing`);
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      throw new Error(`${fileName}: tensor "${e.name}" has shape [${t.shape}], expected [${e.shape}] from the metadata`);
    }
    if (!e.matrix && t.format.name !== "F32") {
      throw new Error(`${fileName}: norm tensor "${e.name}" is ${t.format.name}; only F32 norms are supported`);
    }
    if (e.matrix && (!t.format.matmul || !t.format.dequantize)) {
      throw new Error(`${fileName}: tensor "${e.name}" is ${t.format.name}, which edgeprune cannot multiply yet (supported: ${RUNNABLE})`);
    }
  }
  return byName;
}

/** Bytes the weights take in wasm memory, with per-tensor alignment. */
export function weightBytes(file: GgufFile, c: LlamaConfig, align = 64): number {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  let total = 0;
  for (const e of expectedTensors(c)) total += Math.ceil(byName.get(e.name)!.byteSize / align) * align;
  return total;
}

/** Copy every tensor the model uses into wasm memory. */
export function loadWeights(rt: WasmRuntime, file: GgufFile, c: LlamaConfig, src: ByteSource, fileName: string): Weights {
  const weights = allocateWeights(rt, file, c, fileName);
  for (const t of weightTensors(weights)) {
    const dst = rt.u8At(t.ptr, t.byteSize);
    const at = file.dataOffset + t.info.offset;
    if (src.readInto) src.readInto(dst, at);
    else dst.set(src.read(at, t.byteSize));
  }
  return weights;
}

/** Every tensor of a Weights once (a tied classifier is the embedding), in file order. */
export function weightTensors(w: Weights): Tensor[] {
  const all = new Set<Tensor>([w.tokenEmbd, w.outputNorm, w.output]);
  for (const l of w.layers) for (const t of Object.values(l) as Tensor[]) all.add(t);
  return [...all].sort((a, b) => a.info.offset - b.info.offset);
}

/** Place every tensor the model uses in wasm memory without filling it (a streaming load fills them as bytes arrive). */
export function allocateWeights(rt: WasmRuntime, file: GgufFile, c: LlamaConfig, fileName: string): Weights {
  const byName = checkTensors(file, c, fileName);
  const load = (name: string): Tensor => {
    const info = byName.get(name)!;
    const ptr = rt.alloc(info.byteSize, 64);
    return { name, format: info.format, shape: info.shape, ptr, byteSize: info.byteSize, info };
  };
  const tokenEmbd = load(TENSOR.tokenEmbd);
  const outputNorm = load(TENSOR.outputNorm);
  const output = c.tiedOutput ? tokenEmbd : load(TENSOR.output);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const lw: LayerWeights = {};
    for (const { field, name } of layerTensorList(c, l)) lw[field] = load(name);
    layers.push(lw);
  }
  return { tokenEmbd, outputNorm, output, layers };
}

export { LAYER_TENSOR };
