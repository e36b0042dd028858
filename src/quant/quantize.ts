// Round-to-nearest quantization of a whole GGUF model to one block format: which tensors change, what they become,
// and their new bytes, produced one tensor at a time so a large model is never held twice. Not GPTQ (src/gptq/).
import type { ByteSource } from "../gguf/reader.js";
import { KEY } from "../gguf/names.js";
import type { GgufFile, GgufKv, GgufTensorInfo } from "../gguf/types.js";
import { GgufType } from "../gguf/types.js";
import type { GgufWriteSpec } from "../gguf/writer.js";
import { formatByName, FORMATS, type QuantFormat } from "./formats.js";

/** llama.cpp's llama_ftype values for the file types we write (general.file_type). */
export const FILE_TYPE: Partial<Record<string, number>> = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, BF16: 32 };
/** ggml's quantization format version, written by llama.cpp next to quantized tensors. */
export const QUANTIZATION_VERSION = 2;

export interface TensorPlan {
  info: GgufTensorInfo;
  target: QuantFormat;
  /** why a matrix kept its type, for the user */
  note?: string;
}

/** The quantizable formats users can ask for, by lower-case name. */
export function quantTargets(): string[] {
  return FORMATS.filter((f) => f.quantTarget).map((f) => f.name.toLowerCase());
}

export function parseQuantType(name: string): QuantFormat {
  const f = formatByName(name);
  if (!f || !f.quantTarget) throw new Error(`unknown quantization type "${name}": expected one of ${quantTargets().join(", ")}`);
  return f;
}

/**
 * Decide each tensor's type: 2-D weight matrices become `target` when their rows hold whole blocks; vectors
 * (norms) stay as they are; a matrix whose row length does not fit the block keeps its own type.
 */
export function planQuantization(file: GgufFile, target: QuantFormat): TensorPlan[] {
  return file.tensors.map((info) => {
    const isMatrix = info.shape.length === 2 && info.name.endsWith(".weight");
    if (!isMatrix) return { info, target: info.format };
    if (!info.format.dequantize) {
      return { info, target: info.format, note: `${info.name}: ${info.format.name} cannot be re-quantized; kept as ${info.format.name}` };
    }
    const rowLength = info.dims[0];
    if (rowLength % target.blockSize !== 0) {
      return { info, target: info.format, note: `${info.name}: row length ${rowLength} is not a multiple of ${target.name}'s block size ${target.blockSize}; kept as ${info.format.name}` };
    }
    return { info, target };
  });
}

/** Metadata for the quantized file: the original keys with file_type and quantization_version set. */
export function quantizedKv(file: GgufFile, target: QuantFormat): GgufKv[] {
  const kv = new Map(file.kv);
  const ft = FILE_TYPE[target.name];
  if (ft !== undefined) kv.set(KEY.fileType, { key: KEY.fileType, type: GgufType.UINT32, value: ft });
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
  const row = new Float32Array(rowLength);
  for (let r = 0; r < rows; r++) {
    from.dequantize!(bytes.subarray(r * inRow, (r + 1) * inRow), row);
    target.quantize!(row, out.subarray(r * outRow, (r + 1) * outRow));
  }
  return out;
}

/** A write spec and a tensor-data callback that reads and converts each tensor when the writer asks for it. */
export function quantizeModel(file: GgufFile, src: ByteSource, target: QuantFormat, plan = planQuantization(file, target)):
  { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; plan: TensorPlan[] } {
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
  return { spec, tensorData, plan };
}
