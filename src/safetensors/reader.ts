// safetensors header reader (the Hugging Face format: u64 header length, a JSON header, then raw little-endian
// tensor bytes), with every length, offset, shape and dtype checked against the file before anything is allocated,
// and row readers that turn F32/F16/BF16 tensor bytes into float32. It reads through a ByteSource, so a
// multi-gigabyte file is never held in memory. Not the folder logic (sharded index, config.json): src/node/hf.ts.
import type { ByteSource } from "../gguf/reader.js";
import { f16ToF32 } from "../quant/ref.js";

/** dtype name → bytes per element (safetensors' Dtype enum) */
export const SAFETENSORS_DTYPES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

/** The dtypes we can turn into float32. */
export type FloatDtype = "F32" | "F16" | "BF16";

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  /** row-major, outermost first (as PyTorch) */
  shape: number[];
  nElements: number;
  /** absolute byte offset in the file */
  offset: number;
  byteSize: number;
}

export interface SafetensorsFile {
  /** as given by the caller, for error messages */
  file: string;
  fileSize: number;
  /** absolute offset of the data section (8 + header length) */
  dataOffset: number;
  /** the optional "__metadata__" string map */
  metadata: Record<string, string>;
  /** in data order */
  tensors: SafetensorsTensor[];
  byName: Map<string, SafetensorsTensor>;
}

export class SafetensorsError extends Error {
  constructor(readonly file: string, readonly field: string, what: string) {
    super(`${file}: invalid safetensors (${field}): ${what}`);
    this.name = "SafetensorsError";
  }
}

/** The safetensors library's own cap on the JSON header (MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
/** More dimensions than any model tensor has; a bound so hostile shapes stay cheap to check. */
const MAX_DIMS = 8;

/**
 * Parse and check a safetensors header: the length fits the file and the cap, the header is one JSON object, every
 * entry has a known dtype, a shape of non-negative integers and [begin, end) offsets whose length is exactly
 * elements × dtype size, and the entries tile the data section with no gap, overlap or byte past its end.
 */
export function readSafetensorsHeader(src: ByteSource, file = "<safetensors>"): SafetensorsFile {
  const fail = (field: string, what: string): never => { throw new SafetensorsError(file, field, what); };
  if (src.size < 8) fail("header length", `the file has ${src.size} bytes; at least 8 are needed`);
  const lenBytes = src.read(0, 8);
  const headerLen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES) fail("header length", `${headerLen} bytes is more than the ${MAX_HEADER_BYTES} allowed`);
  if (headerLen > src.size - 8) fail("header length", `${headerLen} bytes, but only ${src.size - 8} follow the length field`);
  if (headerLen < 2) fail("header length", `${headerLen} bytes cannot hold a JSON object`);
  const headerBytes = src.read(8, headerLen);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    return fail("header", "is not valid UTF-8");
  }
  if (text[0] !== "{") fail("header", `must start with "{", found ${JSON.stringify(text.slice(0, 10))}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail("header", `is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) fail("header", "is not a JSON object");

  const dataOffset = 8 + headerLen;
  const dataSize = src.size - dataOffset;
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensor[] = [];
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) fail("__metadata__", "must be an object of strings");
      for (const [k, val] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof val !== "string") fail(`__metadata__.${k}`, `must be a string, got ${typeof val}`);
        metadata[k] = val as string;
      }
      continue;
    }
    const field = (f: string) => `tensor "${name}" ${f}`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) fail(field("entry"), "must be an object with dtype, shape and data_offsets");
    const e = entry as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPES)) fail(field("dtype"), `${JSON.stringify(dtype)} is not a safetensors dtype (${Object.keys(SAFETENSORS_DTYPES).join(", ")})`);
    const shape = e.shape;
    if (!Array.isArray(shape) || shape.length > MAX_DIMS) fail(field("shape"), `must be an array of at most ${MAX_DIMS} dimensions`);
    let nElements = 1;
    for (const d of shape as unknown[]) {
      if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) fail(field("shape"), `${JSON.stringify(shape)} holds a dimension that is not a non-negative integer`);
      nElements *= d as number;
      // bounded by the data section: anything larger cannot match its byte range below
      if (nElements > dataSize) fail(field("shape"), `${JSON.stringify(shape)} has more elements than the file has bytes of data (${dataSize})`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
      fail(field("data_offsets"), `must be [begin, end] with non-negative integers, got ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as number[];
    if (end < begin) fail(field("data_offsets"), `end ${end} is before begin ${begin}`);
    if (end > dataSize) fail(field("data_offsets"), `end ${end} is past the end of the data section (${dataSize} bytes)`);
    const byteSize = nElements * SAFETENSORS_DTYPES[dtype as string];
    if (end - begin !== byteSize) fail(field("data_offsets"), `[${begin}, ${end}) holds ${end - begin} bytes, but ${dtype} ${JSON.stringify(shape)} needs ${byteSize}`);
    tensors.push({ name, dtype: dtype as string, shape: (shape as number[]).slice(), nElements, offset: dataOffset + begin, byteSize });
  }
  // the entries must tile the data section exactly, as the safetensors library requires
  tensors.sort((a, b) => a.offset - b.offset || a.byteSize - b.byteSize);
  let pos = dataOffset;
  for (const t of tensors) {
    if (t.offset < pos) fail(`tensor "${t.name}" data_offsets`, `[${t.offset - dataOffset}, ${t.offset - dataOffset + t.byteSize}) overlaps the previous tensor, which ends at ${pos - dataOffset}`);
    if (t.offset > pos) fail(`tensor "${t.name}" data_offsets`, `leaves bytes [${pos - dataOffset}, ${t.offset - dataOffset}) that belong to no tensor`);
    pos = t.offset + t.byteSize;
  }
  if (pos !== src.size) fail("data", `the tensors end at byte ${pos}, but the file has ${src.size} bytes`);
  const byName = new Map<string, SafetensorsTensor>();
  for (const t of tensors) byName.set(t.name, t);
  return { file, fileSize: src.size, dataOffset, metadata, tensors, byName };
}

/** Whether rows of this tensor can be read as float32. */
export function isFloatDtype(dtype: string): dtype is FloatDtype {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

/**
 * Rows [r0, r1) of a tensor as float32, where a row is the innermost dimension (the whole tensor for 1-D shapes
 * counts as one row). `dst` must hold (r1 - r0) × rowLength values.
 */
export function readRowsF32(src: ByteSource, t: SafetensorsTensor, r0: number, r1: number, dst: Float32Array, file = "<safetensors>"): Float32Array {
  if (!isFloatDtype(t.dtype)) throw new SafetensorsError(file, `tensor "${t.name}" dtype`, `${t.dtype} cannot be converted (F32, F16 and BF16 can)`);
  const rowLength = t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1];
  const rows = rowLength === 0 ? 0 : t.nElements / rowLength;
  if (!(r0 >= 0 && r1 <= rows && r0 <= r1)) throw new RangeError(`tensor "${t.name}": rows [${r0}, ${r1}) outside its ${rows} rows`);
  const n = (r1 - r0) * rowLength;
  if (dst.length < n) throw new RangeError(`tensor "${t.name}": destination holds ${dst.length} values, ${n} needed`);
  const size = SAFETENSORS_DTYPES[t.dtype];
  const bytes = src.read(t.offset + r0 * rowLength * size, n * size);
  decodeFloats(bytes, t.dtype, dst, n);
  return dst;
}

/** Little-endian F32/F16/BF16 bytes → float32, whatever the alignment of `bytes`. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDtype, dst: Float32Array, n: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "F32") {
    for (let i = 0; i < n; i++) dst[i] = view.getFloat32(4 * i, true);
  } else if (dtype === "F16") {
    for (let i = 0; i < n; i++) dst[i] = f16ToF32(view.getUint16(2 * i, true));
  } else {
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < n; i++) {
      u[0] = view.getUint16(2 * i, true) << 16;
      dst[i] = f[0];
    }
  }
}
