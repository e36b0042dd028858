// GGUF v2/v3 header reader: metadata, tensor infos, alignment and data offset, with every count, length and
// offset checked against the file's size before anything is allocated. It does not load tensor data (see
// model/weights.ts); it reads through a ByteSource so a multi-gigabyte file is never held in memory twice.
import { formatById } from "../quant/formats.js";
import { GgufStringArray } from "./strings.js";
import {
  alignUp, FIXED_TYPE_SIZE, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_DIMS, GgufArray, GgufFile, GgufKv,
  GgufTensorInfo, GgufType, GgufValue,
} from "./types.js";

export * from "./types.js";

/** Random-access bytes: an in-memory buffer, a file descriptor (src/node/files.ts), anything synchronous. */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes at `offset` (the caller keeps within size). May return a view. */
  read(offset: number, length: number): Uint8Array;
  /** Optional: fill dst with the bytes at offset without an intermediate buffer (tensor loads use it). */
  readInto?(dst: Uint8Array, offset: number): Uint8Array;
}

export function bytesSource(input: Uint8Array): ByteSource {
  // a plain Uint8Array view: Node's Buffer subclass makes slice() a view, not a copy
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

export class GgufError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly field: string, what: string) {
    super(`${file}: invalid GGUF at byte ${offset} (${field}): ${what}`);
    this.name = "GgufError";
  }
}

/** Deepest nesting of arrays we accept; real files use 1, and recursion must stay bounded on hostile input. */
const MAX_ARRAY_DEPTH = 8;
/** Smallest possible encodings, used to reject counts that cannot fit in what is left of the file. */
const MIN_KV_BYTES = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
const CHUNK = 1 << 20;

// ignoreBOM: a token may be exactly U+FEFF, which a default decoder would silently drop
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** Buffered little-endian cursor over a ByteSource that reads ahead in chunks of at most CHUNK bytes. */
class Cursor {
  pos = 0;
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;

  constructor(private readonly src: ByteSource, private readonly file: string) {}

  get remaining(): number {
    return this.src.size - this.pos;
  }

  fail(field: string, what: string, at = this.pos): never {
    throw new GgufError(this.file, at, field, what);
  }

  /** Make [pos, pos+n) available in buf; returns the offset of pos inside buf. */
  private need(n: number, field: string): number {
    if (n > this.remaining) {
      this.fail(field, `needs ${n} bytes but the file ends after ${this.remaining} more (file size ${this.src.size})`);
    }
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, CHUNK), this.remaining);
    // copy: the source may hand out a view that the next read invalidates
    this.buf = new Uint8Array(this.src.read(this.pos, len));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.bufStart = this.pos;
    return 0;
  }

  u8(field: string): number { const r = this.need(1, field); this.pos += 1; return this.view.getUint8(r); }
  i8(field: string): number { const r = this.need(1, field); this.pos += 1; return this.view.getInt8(r); }
  u16(field: string): number { const r = this.need(2, field); this.pos += 2; return this.view.getUint16(r, true); }
  i16(field: string): number { const r = this.need(2, field); this.pos += 2; return this.view.getInt16(r, true); }
  u32(field: string): number { const r = this.need(4, field); this.pos += 4; return this.view.getUint32(r, true); }
  i32(field: string): number { const r = this.need(4, field); this.pos += 4; return this.view.getInt32(r, true); }
  f32(field: string): number { const r = this.need(4, field); this.pos += 4; return this.view.getFloat32(r, true); }
  f64(field: string): number { const r = this.need(8, field); this.pos += 8; return this.view.getFloat64(r, true); }
  u64(field: string): bigint { const r = this.need(8, field); this.pos += 8; return this.view.getBigUint64(r, true); }
  i64(field: string): bigint { const r = this.need(8, field); this.pos += 8; return this.view.getBigInt64(r, true); }

  /** A u64 that must be a count or size we can represent exactly and that fits in `limit`. */
  size(field: string, limit: number, unit = "bytes"): number {
    const at = this.pos;
    const v = this.u64(field);
    if (v > BigInt(limit)) this.fail(field, `${v} ${unit} cannot fit in the ${this.remaining} bytes left in the file`, at);
    return Number(v);
  }

  bytes(n: number, field: string): Uint8Array {
    const r = this.need(n, field);
    this.pos += n;
    return this.buf.subarray(r, r + n);
  }

  string(field: string): string {
    const n = this.size(`${field} length`, this.remaining, "string bytes");
    return utf8.decode(this.bytes(n, field));
  }

  /**
   * `count` strings (u64 length + UTF-8 bytes each) copied into one buffer with offsets: no JS string, BigInt,
   * view or error-message string per item, so a vocabulary leaves a few typed arrays and no heap garbage.
   */
  strings(count: number, field: string): GgufStringArray {
    const offsets = new Uint32Array(count + 1);
    let out = new Uint8Array(Math.min(this.remaining, count * 8 + 64));
    let used = 0;
    for (let i = 0; i < count; i++) {
      const at = this.pos;
      if (this.remaining < 8) this.size(`${field}[${i}] length`, this.remaining, "string bytes"); // fails with the usual message
      let r = this.need(8, field);
      const lo = this.view.getUint32(r, true), hi = this.view.getUint32(r + 4, true);
      this.pos += 8;
      if (hi !== 0 || lo > this.remaining) {
        this.fail(`${field}[${i}] length`, `${BigInt(hi) * 2n ** 32n + BigInt(lo)} string bytes cannot fit in the ${this.remaining} bytes left in the file`, at);
      }
      if (used + lo > 0xffffffff) this.fail(field, "more than 4 GiB of strings", at);
      if (used + lo > out.length) {
        const grown = new Uint8Array(Math.min(Math.max(out.length * 2, used + lo), used + this.remaining));
        grown.set(out.subarray(0, used));
        out = grown;
      }
      r = this.need(lo, field);
      const b = this.buf;
      if (lo <= 32) for (let j = 0; j < lo; j++) out[used + j] = b[r + j];
      else out.set(b.subarray(r, r + lo), used);
      this.pos += lo;
      used += lo;
      offsets[i + 1] = used;
    }
    return new GgufStringArray(used === out.length ? out : out.slice(0, used), offsets);
  }

  /** Copy `count` fixed-size little-endian items into a fresh, aligned typed array. */
  typed<T>(count: number, itemBytes: number, field: string, make: (b: ArrayBuffer) => T): T {
    const copy = new Uint8Array(this.bytes(count * itemBytes, field));
    return make(copy.buffer);
  }
}

function readScalar(c: Cursor, type: GgufType, field: string): GgufValue {
  switch (type) {
    case GgufType.UINT8: return c.u8(field);
    case GgufType.INT8: return c.i8(field);
    case GgufType.UINT16: return c.u16(field);
    case GgufType.INT16: return c.i16(field);
    case GgufType.UINT32: return c.u32(field);
    case GgufType.INT32: return c.i32(field);
    case GgufType.FLOAT32: return c.f32(field);
    case GgufType.FLOAT64: return c.f64(field);
    case GgufType.UINT64: return c.u64(field);
    case GgufType.INT64: return c.i64(field);
    case GgufType.BOOL: {
      const at = c.pos;
      const b = c.u8(field);
      if (b > 1) c.fail(field, `bool must be 0 or 1, found ${b}`, at);
      return b === 1;
    }
    case GgufType.STRING: return c.string(field);
    default: return c.fail(field, `unknown value type ${type}`);
  }
}

function readArray(c: Cursor, field: string, depth: number): GgufArray {
  if (depth > MAX_ARRAY_DEPTH) c.fail(field, `arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
  const typeAt = c.pos;
  const itemType = c.u32(`${field} item type`) as GgufType;
  if (!(itemType in GgufType)) c.fail(`${field} item type`, `unknown value type ${itemType}`, typeAt);
  const fixed = FIXED_TYPE_SIZE[itemType];
  // every item takes at least this many bytes, which bounds the count before anything is allocated
  const minItem = fixed ?? (itemType === GgufType.STRING ? 8 : 4 + 8);
  const count = c.size(`${field} count`, Math.floor(c.remaining / minItem), "items");
  switch (itemType) {
    case GgufType.UINT8: return { itemType, items: c.typed(count, 1, field, (b) => new Uint8Array(b)) };
    case GgufType.INT8: return { itemType, items: c.typed(count, 1, field, (b) => new Int8Array(b)) };
    case GgufType.UINT16: return { itemType, items: c.typed(count, 2, field, (b) => new Uint16Array(b)) };
    case GgufType.INT16: return { itemType, items: c.typed(count, 2, field, (b) => new Int16Array(b)) };
    case GgufType.UINT32: return { itemType, items: c.typed(count, 4, field, (b) => new Uint32Array(b)) };
    case GgufType.INT32: return { itemType, items: c.typed(count, 4, field, (b) => new Int32Array(b)) };
    case GgufType.FLOAT32: return { itemType, items: c.typed(count, 4, field, (b) => new Float32Array(b)) };
    case GgufType.FLOAT64: return { itemType, items: c.typed(count, 8, field, (b) => new Float64Array(b)) };
    case GgufType.UINT64: return { itemType, items: c.typed(count, 8, field, (b) => new BigUint64Array(b)) };
    case GgufType.INT64: return { itemType, items: c.typed(count, 8, field, (b) => new BigInt64Array(b)) };
    case GgufType.BOOL: {
      const items: boolean[] = [];
      for (let i = 0; i < count; i++) items.push(readScalar(c, itemType, `${field}[${i}]`) as boolean);
      return { itemType, items };
    }
    case GgufType.STRING: return { itemType, items: c.strings(count, field) };
    case GgufType.ARRAY: {
      const items: GgufArray[] = [];
      for (let i = 0; i < count; i++) items.push(readArray(c, `${field}[${i}]`, depth + 1));
      return { itemType, items };
    }
    default:
      return c.fail(`${field} item type`, `unknown value type ${itemType}`, typeAt);
  }
}

/** Parse a GGUF header (metadata and tensor infos) and validate it against the source's size. */
export function readGgufHeader(source: ByteSource | Uint8Array, name = "<bytes>"): GgufFile {
  const src = source instanceof Uint8Array ? bytesSource(source) : source;
  const c: Cursor = new Cursor(src, name);
  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) {
    c.fail("magic", `expected "GGUF" (47 47 55 46), found ${hex32(magic)}: not a GGUF file`, 0);
  }
  const version = c.u32("version");
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version >>> 8 & 0xff) << 16) | ((version >>> 16 & 0xff) << 8) | (version >>> 24);
    const hint = swapped === 2 || swapped === 3 ? " (a big-endian GGUF; only little-endian files are supported)" : "";
    c.fail("version", `unsupported GGUF version ${version}; expected 2 or 3${hint}`, 4);
  }
  const tensorCount = c.size("tensor_count", Math.floor(c.remaining / MIN_TENSOR_INFO_BYTES), "tensors");
  const kvCount = c.size("metadata_kv_count", Math.floor(c.remaining / MIN_KV_BYTES), "key-value pairs");

  const kv = new Map<string, GgufKv>();
  for (let i = 0; i < kvCount; i++) {
    const at = c.pos;
    const key = c.string(`metadata key #${i}`);
    if (kv.has(key)) c.fail(`metadata key #${i}`, `duplicate key "${key}"`, at);
    const typeAt = c.pos;
    const type = c.u32(`type of "${key}"`) as GgufType;
    let value: GgufValue;
    if (type === GgufType.ARRAY) value = readArray(c, key, 1);
    else if (type in GgufType) value = readScalar(c, type, key);
    else c.fail(`type of "${key}"`, `unknown value type ${type}`, typeAt);
    kv.set(key, { key, type, value: value! });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignKv = kv.get("general.alignment");
  if (alignKv) {
    const a = alignKv.value;
    if (alignKv.type !== GgufType.UINT32 || typeof a !== "number" || a === 0 || (a & (a - 1)) !== 0) {
      c.fail("general.alignment", `must be a non-zero power of two stored as u32, found ${String(a)} (type ${GgufType[alignKv.type]})`);
    }
    alignment = a as number;
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const at = c.pos;
    const tname = c.string(`tensor #${i} name`);
    if (names.has(tname)) c.fail(`tensor #${i} name`, `duplicate tensor name "${tname}"`, at);
    names.add(tname);
    const ndAt = c.pos;
    const nDims = c.u32(`tensor "${tname}" n_dims`);
    if (nDims < 1 || nDims > GGUF_MAX_DIMS) c.fail(`tensor "${tname}" n_dims`, `must be 1..${GGUF_MAX_DIMS}, found ${nDims}`, ndAt);
    const dims: number[] = [];
    let nElements = 1;
    for (let d = 0; d < nDims; d++) {
      const dAt = c.pos;
      const v = c.u64(`tensor "${tname}" dim ${d}`);
      if (v === 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) c.fail(`tensor "${tname}" dim ${d}`, `dimension ${v} out of range`, dAt);
      dims.push(Number(v));
      // the element count must stay an exact integer: refuse before the product can lose precision
      if (nElements > Math.floor(Number.MAX_SAFE_INTEGER / Number(v))) {
        c.fail(`tensor "${tname}" dims`, `element count ${dims.join("×")} overflows`, dAt);
      }
      nElements *= Number(v);
    }
    const typeAt = c.pos;
    const type = c.u32(`tensor "${tname}" type`);
    const format = formatById(type);
    if (!format) c.fail(`tensor "${tname}" type`, `unknown ggml tensor type ${type}`, typeAt);
    if (dims[0] % format.blockSize !== 0) {
      c.fail(`tensor "${tname}" dims`, `row length ${dims[0]} is not a multiple of ${format.name}'s block size ${format.blockSize}`, typeAt);
    }
    const offAt = c.pos;
    const offset = c.size(`tensor "${tname}" offset`, src.size, "bytes of offset");
    if (offset % alignment !== 0) c.fail(`tensor "${tname}" offset`, `offset ${offset} is not a multiple of the alignment ${alignment}`, offAt);
    const byteSize = (nElements / format.blockSize) * format.typeSize;
    if (byteSize > src.size) {
      c.fail(`tensor "${tname}" dims`, `${dims.join("×")} ${format.name} needs ${byteSize} bytes, more than the whole ${src.size}-byte file`, typeAt);
    }
    const shape = dims.slice().reverse();
    tensors.push({ name: tname, dims, shape, type, format, offset, byteSize, nElements });
  }

  const headerSize = c.pos;
  const dataOffset = alignUp(headerSize, alignment);
  // a tensor-less file (a vocab-only GGUF) may end before the padding; one with tensors must hold them all
  const byOffset = tensors.slice().sort((a, b) => a.offset - b.offset);
  let prevEnd = 0;
  let prevName = "";
  for (const t of byOffset) {
    const end = dataOffset + t.offset + t.byteSize;
    if (end > src.size) {
      throw new GgufError(name, dataOffset + t.offset, `tensor "${t.name}" data`,
        `${t.byteSize} bytes at data offset ${t.offset} end at byte ${end}, past the end of the ${src.size}-byte file`);
    }
    if (t.offset < prevEnd) {
      throw new GgufError(name, dataOffset + t.offset, `tensor "${t.name}" data`,
        `overlaps tensor "${prevName}" (which ends at data offset ${prevEnd})`);
    }
    prevEnd = t.offset + t.byteSize;
    prevName = t.name;
  }
  return { version, kv, tensors, alignment, headerSize, dataOffset, fileSize: src.size };
}

function hex32(v: number): string {
  return [0, 8, 16, 24].map((s) => ((v >>> s) & 0xff).toString(16).padStart(2, "0")).join(" ");
}
