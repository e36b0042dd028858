// GGUF value types and the shapes of a parsed file, shared by the reader and the writer.
// Not a parser: see reader.ts and writer.ts.
import type { QuantFormat } from "../quant/formats.js";
import type { GgufStringArray } from "./strings.js";

export { GgufStringArray } from "./strings.js";

export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

export type GgufTypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array;

export interface GgufArray {
  itemType: GgufType;
  /**
   * numbers come as typed arrays, bools as boolean[], nested arrays as GgufArray[]; strings come from the reader
   * as a GgufStringArray (UTF-8 bytes + offsets; .get(i), .length, iterable), and the writer also takes string[]
   */
  items: GgufTypedArray | GgufStringArray | string[] | boolean[] | GgufArray[];
}

export type GgufValue = number | bigint | boolean | string | GgufArray;

export interface GgufKv {
  key: string;
  type: GgufType;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** GGUF order: innermost (row length) first, as stored in the file */
  dims: number[];
  /** row-major order: outermost first; shape[shape.length-1] is the row length */
  shape: number[];
  /** ggml type id */
  type: number;
  format: QuantFormat;
  /** byte offset relative to the start of the tensor data section */
  offset: number;
  byteSize: number;
  nElements: number;
}

export interface GgufFile {
  version: number;
  kv: Map<string, GgufKv>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** bytes of magic, counts, metadata and tensor infos, before alignment padding */
  headerSize: number;
  /** absolute byte offset of the tensor data section */
  dataOffset: number;
  fileSize: number;
}

/** Byte size of one item for fixed-size value types; undefined for strings and arrays. */
export const FIXED_TYPE_SIZE: Partial<Record<GgufType, number>> = {
  [GgufType.UINT8]: 1, [GgufType.INT8]: 1, [GgufType.BOOL]: 1,
  [GgufType.UINT16]: 2, [GgufType.INT16]: 2,
  [GgufType.UINT32]: 4, [GgufType.INT32]: 4, [GgufType.FLOAT32]: 4,
  [GgufType.UINT64]: 8, [GgufType.INT64]: 8, [GgufType.FLOAT64]: 8,
};

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS */
export const GGUF_MAX_DIMS = 4;

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
