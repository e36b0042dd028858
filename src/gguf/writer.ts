// GGUF v3 (or v2) writer: encodes metadata and tensor infos, lays tensors out at aligned offsets (or at the
// offsets a read file had, so read→write is byte-identical), and yields the file as chunks so a large model is
// never assembled in one buffer. Writing to disk, via a temp file and rename, lives in src/node/files.ts.
import { formatById } from "../quant/formats.js";
import {
  alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufArray, GgufFile, GgufKv, GgufStringArray, GgufType, GgufValue,
} from "./types.js";

export interface GgufWriteTensor {
  name: string;
  /** GGUF order, innermost first */
  dims: number[];
  type: number;
  /** data offset to keep (relative to the data section); omitted → packed at the next aligned offset */
  offset?: number;
}

export interface GgufWriteSpec {
  version?: number;
  kv: Iterable<GgufKv>;
  tensors: GgufWriteTensor[];
  /** tensor-less files only: padding bytes after the metadata (default: up to the alignment, as llama.cpp) */
  padding?: number;
}

export interface GgufLayout {
  header: Uint8Array;
  alignment: number;
  dataOffset: number;
  /** per tensor: offset relative to dataOffset, and byte size */
  offsets: number[];
  sizes: number[];
  totalSize: number;
}

const utf8 = new TextEncoder();

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  // reserve() may replace buf and view, so callers take the offset first and only then touch this.view
  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u8(v: number) { const at = this.reserve(1); this.view.setUint8(at, v); }
  i8(v: number) { const at = this.reserve(1); this.view.setInt8(at, v); }
  u16(v: number) { const at = this.reserve(2); this.view.setUint16(at, v, true); }
  i16(v: number) { const at = this.reserve(2); this.view.setInt16(at, v, true); }
  u32(v: number) { const at = this.reserve(4); this.view.setUint32(at, v, true); }
  i32(v: number) { const at = this.reserve(4); this.view.setInt32(at, v, true); }
  f32(v: number) { const at = this.reserve(4); this.view.setFloat32(at, v, true); }
  f64(v: number) { const at = this.reserve(8); this.view.setFloat64(at, v, true); }
  u64(v: number | bigint) { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true); }
  i64(v: number | bigint) { const at = this.reserve(8); this.view.setBigInt64(at, BigInt(v), true); }
  raw(b: Uint8Array) { const at = this.reserve(b.length); this.buf.set(b, at); }
  string(s: string) { const b = utf8.encode(s); this.u64(b.length); this.raw(b); }
  zeros(n: number) { this.buf.fill(0, this.reserve(n), this.length); }
  bytes(): Uint8Array { return this.buf.slice(0, this.length); }
}

function writeScalar(w: ByteWriter, type: GgufType, v: GgufValue, key: string): void {
  const num = (): number => {
    if (typeof v !== "number") throw new Error(`GGUF key "${key}": expected a number for ${GgufType[type]}`);
    return v;
  };
  switch (type) {
    case GgufType.UINT8: return w.u8(num());
    case GgufType.INT8: return w.i8(num());
    case GgufType.UINT16: return w.u16(num());
    case GgufType.INT16: return w.i16(num());
    case GgufType.UINT32: return w.u32(num());
    case GgufType.INT32: return w.i32(num());
    case GgufType.FLOAT32: return w.f32(num());
    case GgufType.FLOAT64: return w.f64(num());
    case GgufType.UINT64: return w.u64(v as number | bigint);
    case GgufType.INT64: return w.i64(v as number | bigint);
    case GgufType.BOOL: return w.u8(v ? 1 : 0);
    case GgufType.STRING:
      if (typeof v !== "string") throw new Error(`GGUF key "${key}": expected a string`);
      return w.string(v);
    case GgufType.ARRAY: return writeArray(w, v as GgufArray, key);
    default: throw new Error(`GGUF key "${key}": unknown value type ${type}`);
  }
}

function writeArray(w: ByteWriter, a: GgufArray, key: string): void {
  w.u32(a.itemType);
  w.u64(a.items.length);
  if (a.items instanceof GgufStringArray) {
    // as read: the stored UTF-8 bytes go back out unchanged
    if (a.itemType !== GgufType.STRING) throw new Error(`GGUF key "${key}": strings in an array of ${GgufType[a.itemType]}`);
    for (let i = 0; i < a.items.length; i++) {
      w.u64(a.items.byteLength(i));
      w.raw(a.items.bytesOf(i));
    }
    return;
  }
  const items = a.items as ArrayLike<GgufValue>;
  for (let i = 0; i < items.length; i++) writeScalar(w, a.itemType, items[i], key);
}

/** Encode the header and decide every tensor's offset. Throws on shapes a GGUF cannot hold. */
export function layoutGguf(spec: GgufWriteSpec): GgufLayout {
  const version = spec.version ?? 3;
  if (version !== 2 && version !== 3) throw new Error(`cannot write GGUF version ${version}`);
  const kvs = [...spec.kv];
  const alignKv = kvs.find((e) => e.key === "general.alignment");
  const alignment = alignKv ? (alignKv.value as number) : GGUF_DEFAULT_ALIGNMENT;

  const sizes: number[] = [];
  const offsets: number[] = [];
  let next = 0;
  for (const t of spec.tensors) {
    const f = formatById(t.type);
    if (!f) throw new Error(`tensor "${t.name}": unknown ggml type ${t.type}`);
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (t.dims[0] % f.blockSize !== 0) {
      throw new Error(`tensor "${t.name}": row length ${t.dims[0]} is not a multiple of ${f.name}'s block size ${f.blockSize}`);
    }
    const size = (n / f.blockSize) * f.typeSize;
    const off = t.offset ?? alignUp(next, alignment);
    if (off % alignment !== 0 || off < next) throw new Error(`tensor "${t.name}": offset ${off} is unaligned or overlaps the previous tensor`);
    offsets.push(off);
    sizes.push(size);
    next = off + size;
  }

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(version);
  w.u64(spec.tensors.length);
  w.u64(kvs.length);
  for (const e of kvs) {
    w.string(e.key);
    w.u32(e.type);
    writeScalar(w, e.type, e.value, e.key);
  }
  spec.tensors.forEach((t, i) => {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offsets[i]);
  });
  const dataOffset = alignUp(w.length, alignment);
  // some tensor-less files (llama.cpp's vocab fixtures) end inside their padding; specFromFile keeps that
  w.zeros(spec.tensors.length > 0 ? dataOffset - w.length : Math.min(spec.padding ?? dataOffset - w.length, dataOffset - w.length));
  const header = w.bytes();
  return { header, alignment, dataOffset, offsets, sizes, totalSize: spec.tensors.length > 0 ? dataOffset + next : header.length };
}

/**
 * The whole file as a sequence of chunks: header, then each tensor's bytes with zero padding between.
 * `tensorData(i)` must give exactly the tensor's byte size: one array, or pieces in order (so a large tensor is
 * never one array: V8 caps typed arrays, and a writer should not hold a whole tensor twice).
 */
export function* ggufChunks(spec: GgufWriteSpec, tensorData: (index: number) => Uint8Array | Iterable<Uint8Array>, layout = layoutGguf(spec)): Generator<Uint8Array> {
  yield layout.header;
  let pos = 0;
  for (let i = 0; i < spec.tensors.length; i++) {
    if (layout.offsets[i] > pos) yield new Uint8Array(layout.offsets[i] - pos);
    const data = tensorData(i);
    let got = 0;
    for (const piece of data instanceof Uint8Array ? [data] : data) {
      got += piece.length;
      if (got > layout.sizes[i]) break;
      yield piece;
    }
    if (got !== layout.sizes[i]) {
      throw new Error(`tensor "${spec.tensors[i].name}": got ${got} bytes of data, its shape and type need ${layout.sizes[i]}`);
    }
    pos = layout.offsets[i] + layout.sizes[i];
  }
}

/** The whole file in one buffer (small models, browsers). */
export function writeGgufBytes(spec: GgufWriteSpec, tensorData: (index: number) => Uint8Array): Uint8Array {
  const layout = layoutGguf(spec);
  const out = new Uint8Array(layout.totalSize);
  let pos = 0;
  for (const chunk of ggufChunks(spec, tensorData, layout)) {
    out.set(chunk, pos);
    pos += chunk.length;
  }
  return out;
}

/** A spec that reproduces a file we read: same version, keys in order, tensors at their offsets. */
export function specFromFile(file: GgufFile): GgufWriteSpec {
  return {
    version: file.version,
    kv: [...file.kv.values()],
    tensors: file.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, offset: t.offset })),
    padding: file.tensors.length === 0 ? file.fileSize - file.headerSize : undefined,
  };
}
