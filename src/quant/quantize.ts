// Round-to-nearest quantization of a whole GGUF model under a recipe (recipe.ts: one format, or llama.cpp's Q4_K_M
// mix): which tensors change, what they become, and their new bytes, produced one tensor at a time so a large model
// is never held twice. Not GPTQ (src/gptq/).
import type { ByteSource } from "../gguf/reader.js";
import { ARCH_KEY, archKey, KEY } from "../gguf/names.js";
import { metaCount, metaString } from "../gguf/metadata.js";
import type { GgufFile, GgufKv, GgufTensorInfo } from "../gguf/types.js";
import { GgufType } from "../gguf/types.js";
import type { GgufWriteSpec } from "../gguf/writer.js";
import type { QuantFormat } from "./formats.js";
import { quantizeRows } from "./fast.js";
import { recipeByName, recipeOf, RECIPES, tensorTypes, type QuantRecipe } from "./recipe.js";

/** llama.cpp's llama_ftype of a single-format file, by format (convert writes these; quantize's come from its recipes). */
export const FILE_TYPE: Partial<Record<string, number>> = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, BF16: 32 };
/** ggml's quantization format version, written by llama.cpp next to quantized tensors. */
export const QUANTIZATION_VERSION = 2;

export interface TensorPlan {
  info: GgufTensorInfo;
  target: QuantFormat;
  /** why a matrix kept its type, for the user */
  note?: string;
}

/** The `--type` names users can ask for. */
export function quantTargets(): string[] {
  return RECIPES.map((r) => r.name);
}

/** The recipe of a `--type` name, or a one-line error listing them. */
export function parseQuantRecipe(name: string): QuantRecipe {
  const r = recipeByName(name);
  if (!r) throw new Error(`unknown quantization type "${name}": expected one of ${quantTargets().join(", ")}`);
  return r;
}

/** The single format a plain `--type` names (q4_0, q6_k, ...); q4_k_m, a mix, is refused. */
export function parseQuantType(name: string): QuantFormat {
  const r = parseQuantRecipe(name);
  if (r.mix) throw new Error(`${name} is a mix of formats, not one format`);
  return r.base;
}

/** A recipe, or a format meaning its plain recipe. */
export type QuantTarget = QuantRecipe | QuantFormat;

export function toRecipe(t: QuantTarget): QuantRecipe {
  return "base" in t ? t : recipeOf(t);
}

/** The block count a file's metadata states (llama.cpp's n_layer, which Q4_K_M's ffn_down rule counts against). */
function fileLayers(file: GgufFile): number {
  const arch = metaString(file.kv, KEY.architecture, "llama");
  return metaCount(file.kv, archKey(arch, ARCH_KEY.blockCount), 0);
}

/**
 * Decide each tensor's type under a recipe (recipe.ts): weight matrices get the recipe's format (or the mix's, or
 * a fallback their rows allow); vectors (norms) stay as they are.
 */
export function planQuantization(file: GgufFile, target: QuantTarget): TensorPlan[] {
  const choices = tensorTypes(file.tensors, toRecipe(target), fileLayers(file));
  return file.tensors.map((info, i) => ({ info, target: choices[i].format, note: choices[i].note }));
}

/** Metadata for the quantized file: the original keys with file_type and quantization_version set. */
export function quantizedKv(file: GgufFile, target: QuantTarget): GgufKv[] {
  const kv = new Map(file.kv);
  kv.set(KEY.fileType, { key: KEY.fileType, type: GgufType.UINT32, value: toRecipe(target).fileType });
  kv.set(KEY.quantizationVersion, { key: KEY.quantizationVersion, type: GgufType.UINT32, value: QUANTIZATION_VERSION });
  return [...kv.values()];
}

/** Convert one tensor's bytes from its format to `target` through float32, row by row. */
export function convertTensor(bytes: Uint8Array, from: QuantFormat, target: QuantFormat, rowLength: number): Uint8Array {
  if (from === target) return bytes;
  const rows = bytes.length / ((rowLength / from.blockSize) * from.typeSize);
  const inRow = (rowLength / from.blockSize) * from.typeSize;
  const outRow = (rowLength / target.blockSize) * target.typeSize;
  const out = new Uint8Array(rows * outRow);
  // rows decoded a few at a time (about 1M values) and quantized together (the K-quants in wasm: quant/fast.ts)
  const step = Math.max(1, Math.floor((1 << 20) / rowLength));
  const buf = new Float32Array(Math.min(rows, step) * rowLength);
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r);
    for (let j = 0; j < n; j++) from.dequantize!(bytes.subarray((r + j) * inRow, (r + j + 1) * inRow), buf.subarray(j * rowLength, (j + 1) * rowLength));
    quantizeRows(target, buf.subarray(0, n * rowLength), out.subarray(r * outRow, (r + n) * outRow));
  }
  return out;
}

/**
 * A write spec and tensor-data callbacks that read and convert each tensor when the writer asks for it: the whole
 * tensor (tensorData), or a few MiB of the file at a time (tensorChunks, what the CLI writes with).
 */
export function quantizeModel(file: GgufFile, src: ByteSource, target: QuantTarget, plan = planQuantization(file, target)):
  { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; tensorChunks: (i: number) => Iterable<Uint8Array>; plan: TensorPlan[] } {
  const spec: GgufWriteSpec = {
    version: 3,
    kv: quantizedKv(file, target),
    tensors: plan.map((p) => ({ name: p.info.name, dims: p.info.dims, type: p.target.ggmlType })),
  };
  const tensorData = (i: number) => {
    const { info, target: t } = plan[i];
    const bytes = src.read(file.dataOffset + info.offset, info.byteSize);
    return convertTensor(bytes, info.format, t, info.dims[0]);
  };
  function* tensorChunks(i: number): Generator<Uint8Array> {
    const { info, target: t } = plan[i];
    const inRow = (info.dims[0] / info.format.blockSize) * info.format.typeSize;
    const rows = info.byteSize / inRow;
    const step = Math.max(1, Math.floor(CHUNK_BYTES / inRow));
    for (let r = 0; r < rows; r += step) {
      const n = Math.min(step, rows - r);
      yield convertTensor(src.read(file.dataOffset + info.offset + r * inRow, n * inRow), info.format, t, info.dims[0]);
    }
  }
  return { spec, tensorData, tensorChunks, plan };
}

/** source bytes converted per piece when a tensor is written in pieces */
const CHUNK_BYTES = 4 << 20;
