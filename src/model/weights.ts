// The tensors a model uses, derived from its architecture descriptor (arch.ts) and what the file holds (optional
// biases, fused or split q/k/v, rope factors), with expected shapes checked at load; and the copy of tensor bytes
// straight from a ByteSource into wasm memory (one copy: the file is never held twice). Not the forward pass.
import type { ByteSource } from "../gguf/reader.js";
import { LAYER_TENSOR, LayerTensorKey, layerTensorName, TENSOR, type GlobalTensorKey } from "../gguf/names.js";
import type { GgufFile, GgufTensorInfo } from "../gguf/types.js";
import { FORMATS, type QuantFormat } from "../quant/formats.js";
import type { WasmRuntime } from "../wasm.js";
import type { LayerRole } from "./arch.js";
import type { ModelConfig } from "./config.js";

/** A tensor resident in wasm memory; quantized blocks keep GGUF's byte layout. */
export interface Tensor {
  name: string;
  format: QuantFormat;
  /** row-major, outermost first: (rows, rowLength) for matrices */
  shape: number[];
  ptr: number;
  byteSize: number;
  info: GgufTensorInfo;
  /** the runtime (shard, model/shards.ts) ptr is in; absent: the first */
  shard?: number;
  /** a tensor every shard reads (rope factors): its copy in shard s at copies[s] (copies[shard] === ptr) */
  copies?: number[];
}

/** One layer's tensors by role (names.ts keys); shapes as the descriptor's roles give them (arch.ts). */
export type LayerWeights = Partial<Record<LayerTensorKey, Tensor>>;

export interface Weights {
  tokenEmbd: Tensor; // (vocabSize, dim)
  outputNorm: Tensor; // (dim)
  output: Tensor; // (vocabSize, dim); token_embd when tied
  outputBias?: Tensor; // (vocabSize)
  ropeFreqs?: Tensor; // (ropeDim/2)
  ropeFactorsLong?: Tensor; // (ropeDim/2)
  ropeFactorsShort?: Tensor; // (ropeDim/2)
  layers: LayerWeights[];
}

/** A tensor the model will read, with the shape its metadata implies. */
export interface ExpectedTensor {
  name: string;
  shape: number[];
  /** multiplied by a matmul kernel (else an F32 vector: norm, bias, rope factors) */
  matrix: boolean;
  /** the layer and role, for per-layer tensors */
  layer?: number;
  key?: LayerTensorKey;
  global?: GlobalTensorKey;
}

const GLOBAL_SHAPE: Record<GlobalTensorKey, (c: ModelConfig) => number[]> = {
  tokenEmbd: (c) => [c.vocabSize, c.dim],
  outputNorm: (c) => [c.dim],
  output: (c) => [c.vocabSize, c.dim],
  outputBias: (c) => [c.vocabSize],
  ropeFreqs: (c) => [c.ropeDim / 2],
  ropeFactorsLong: (c) => [c.ropeDim / 2],
  ropeFactorsShort: (c) => [c.ropeDim / 2],
};

/** Whether layer l of a model reads a role, given which tensor names the file has. */
function uses(r: LayerRole, l: number, has: (name: string) => boolean): boolean {
  switch (r.need) {
    case "required": return true;
    case "optional": return has(layerTensorName(l, r.key));
    case "split": return !has(layerTensorName(l, "attnQkv"));
    case "fused": return has(layerTensorName(l, "attnQkv")) && has(layerTensorName(l, r.key));
  }
}

/**
 * Every tensor the model reads, with its expected shape: the descriptor's roles for each layer (removed halves
 * are not read), the global tensors and the optional ones the file has. `has` says which names the file holds.
 */
export function expectedTensors(c: ModelConfig, has: (name: string) => boolean = () => false): ExpectedTensor[] {
  const out: ExpectedTensor[] = [];
  const global = (g: GlobalTensorKey, matrix: boolean) => out.push({ name: TENSOR[g], shape: GLOBAL_SHAPE[g](c), matrix, global: g });
  global("tokenEmbd", true);
  global("outputNorm", false);
  if (!c.tiedOutput) global("output", true);
  for (const g of c.arch.globals) {
    const rope = g === "ropeFreqs" ? "freqs" : g === "ropeFactorsLong" || g === "ropeFactorsShort" ? "longrope" : undefined;
    if (has(TENSOR[g]) && (!rope || rope === c.ropeFactors)) global(g, false);
  }
  for (let l = 0; l < c.nLayers; l++) out.push(...layerTensorList(c, l, has));
  return out;
}

/** The tensors layer l reads (removed halves left out), by the descriptor's roles; `has` as for expectedTensors. */
export function layerTensorList(c: ModelConfig, l: number, has: (name: string) => boolean): ExpectedTensor[] {
  const sizes = { dim: c.dim, hiddenDim: c.hiddenDim, qDim: c.qDim, kvDim: c.kvDim, headSize: c.headSize };
  const out: ExpectedTensor[] = [];
  for (const r of c.arch.layer) {
    if (r.half === "attention" ? c.removedAttention.has(l) : c.removedFfn.has(l)) continue;
    if (!uses(r, l, has)) continue;
    out.push({ name: layerTensorName(l, r.key), shape: r.shape(sizes), matrix: r.kind === "matrix", layer: l, key: r.key });
  }
  return out;
}

/** the weight formats a matmul kernel exists for, for error messages */
const RUNNABLE = FORMATS.filter((f) => f.matmul && f.ggmlType >= 0).map((f) => f.name).join(", ");

/** Check names, shapes and types against the config before any memory is planned. */
export function checkTensors(file: GgufFile, c: ModelConfig, fileName: string): Map<string, GgufTensorInfo> {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  for (const e of expectedTensors(c, (n) => byName.has(n))) {
    const t = byName.get(e.name);
    if (!t) throw new Error(`${fileName}: tensor "${e.name}" is missing (${c.architecture} needs it)`);
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      throw new Error(`${fileName}: tensor "${e.name}" has shape [${t.shape}], expected [${e.shape}] from the metadata`);
    }
    if (!e.matrix && t.format.name !== "F32") {
      throw new Error(`${fileName}: vector tensor "${e.name}" is ${t.format.name}; only F32 norms, biases and rope factors are supported`);
    }
    if (e.matrix && (!t.format.matmul || !t.format.dequantize)) {
      throw new Error(`${fileName}: tensor "${e.name}" is ${t.format.name}, which edgeprune cannot multiply yet (supported: ${RUNNABLE})`);
    }
  }
  return byName;
}

/** Bytes the weights take in wasm memory, with per-tensor alignment. */
export function weightBytes(file: GgufFile, c: ModelConfig, align = 64): number {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  let total = 0;
  for (const e of expectedTensors(c, (n) => byName.has(n))) total += Math.ceil(byName.get(e.name)!.byteSize / align) * align;
  return total;
}

/** Copy every tensor the model uses into wasm memory (one runtime, or the shards `placement` assigns). */
export function loadWeights(rt: WasmRuntime | WasmRuntime[], file: GgufFile, c: ModelConfig, src: ByteSource, fileName: string, placement?: Placement): Weights {
  const rts = Array.isArray(rt) ? rt : [rt];
  const weights = allocateWeights(rts, file, c, fileName, placement);
  for (const p of tensorPlaces(weights)) {
    const dst = rts[p.shard].u8At(p.ptr, p.tensor.byteSize);
    const at = file.dataOffset + p.tensor.info.offset;
    if (src.readInto) src.readInto(dst, at);
    else dst.set(src.read(at, p.tensor.byteSize));
  }
  return weights;
}

/** Every place a tensor's bytes go: (shard, ptr), one per copy, in file order. */
export function tensorPlaces(w: Weights): { tensor: Tensor; shard: number; ptr: number }[] {
  const out: { tensor: Tensor; shard: number; ptr: number }[] = [];
  for (const t of weightTensors(w)) {
    if (t.copies) t.copies.forEach((ptr, shard) => { if (ptr) out.push({ tensor: t, shard, ptr }); });
    else out.push({ tensor: t, shard: t.shard ?? 0, ptr: t.ptr });
  }
  return out;
}

/**
 * Which shard holds what (model/shards.ts): layers [start, end) of each shard, the shard of token_embd and of the
 * classifier (output, output_norm, its bias); rope factors go to every shard that has layers.
 */
export interface Placement {
  layers: readonly (readonly [number, number])[];
  embed: number;
  head: number;
}

/** Every tensor of a Weights once (a tied classifier is the embedding), in file order. */
export function weightTensors(w: Weights): Tensor[] {
  const all = new Set<Tensor>([w.tokenEmbd, w.outputNorm, w.output]);
  for (const t of [w.outputBias, w.ropeFreqs, w.ropeFactorsLong, w.ropeFactorsShort]) if (t) all.add(t);
  for (const l of w.layers) for (const t of Object.values(l)) if (t) all.add(t);
  return [...all].sort((a, b) => a.info.offset - b.info.offset);
}

/**
 * Place every tensor the model uses in wasm memory without filling it (a streaming load fills them as bytes arrive):
 * in one runtime, or in the shards `placement` assigns (rts[i] is shard i).
 */
export function allocateWeights(rt: WasmRuntime | WasmRuntime[], file: GgufFile, c: ModelConfig, fileName: string, placement?: Placement): Weights {
  const rts = Array.isArray(rt) ? rt : [rt];
  const place: Placement = placement ?? { layers: [[0, c.nLayers]], embed: 0, head: 0 };
  if (place.layers.length !== rts.length) throw new Error(`allocateWeights: ${place.layers.length} shards planned, ${rts.length} runtimes given`);
  const shardOfLayer = (l: number) => place.layers.findIndex(([a, b]) => l >= a && l < b);
  const byName = checkTensors(file, c, fileName);
  const load = (name: string, shard: number): Tensor => {
    const info = byName.get(name)!;
    const ptr = rts[shard].alloc(info.byteSize, 64);
    const t: Tensor = { name, format: info.format, shape: info.shape, ptr, byteSize: info.byteSize, info };
    if (shard !== 0) t.shard = shard;
    return t;
  };
  const globals: Partial<Record<GlobalTensorKey, Tensor>> = {};
  const layers: LayerWeights[] = Array.from({ length: c.nLayers }, () => ({}));
  for (const e of expectedTensors(c, (n) => byName.has(n))) {
    if (e.global === "tokenEmbd") globals.tokenEmbd = load(e.name, c.tiedOutput ? place.head : place.embed);
    else if (e.global === "outputNorm" || e.global === "output" || e.global === "outputBias") globals[e.global] = load(e.name, place.head);
    else if (e.global) {
      // rope factors: every layer reads them, so every shard with layers holds a copy
      const t = load(e.name, 0);
      if (rts.length > 1) {
        t.copies = rts.map((r, s) => (s === 0 ? t.ptr : place.layers[s][1] > place.layers[s][0] ? r.alloc(t.byteSize, 64) : 0));
      }
      globals[e.global] = t;
    } else {
      const s = shardOfLayer(e.layer!);
      if (s < 0) throw new Error(`allocateWeights: layer ${e.layer} is in no shard`);
      layers[e.layer!][e.key!] = load(e.name, s);
    }
  }
  return {
    tokenEmbd: globals.tokenEmbd!, outputNorm: globals.outputNorm!, output: c.tiedOutput ? globals.tokenEmbd! : globals.output!,
    outputBias: globals.outputBias, ropeFreqs: globals.ropeFreqs, ropeFactorsLong: globals.ropeFactorsLong, ropeFactorsShort: globals.ropeFactorsShort,
    layers,
  };
}

export { LAYER_TENSOR };
