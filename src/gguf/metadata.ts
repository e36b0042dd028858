// Typed getters over GGUF metadata that fail with the key's name and what was expected.
// Not where key names live: see names.ts.
import { GgufArray, GgufKv, GgufStringArray, GgufType } from "./types.js";

type Kv = Map<string, GgufKv>;

const INTEGER_TYPES = new Set([GgufType.UINT8, GgufType.INT8, GgufType.UINT16, GgufType.INT16, GgufType.UINT32,
  GgufType.INT32, GgufType.UINT64, GgufType.INT64]);

function missing(key: string, what: string): never {
  throw new Error(`GGUF metadata key "${key}" is missing (expected ${what})`);
}

function wrong(kv: GgufKv, what: string): never {
  throw new Error(`GGUF metadata key "${kv.key}" has type ${GgufType[kv.type]}, expected ${what}`);
}

export function metaString(kv: Kv, key: string, fallback?: string): string {
  const e = kv.get(key);
  if (!e) return fallback ?? missing(key, "a string");
  if (e.type !== GgufType.STRING) wrong(e, "a string");
  return e.value as string;
}

/** Any integer or float type, as a JS number (64-bit integers must be exactly representable). */
export function metaNumber(kv: Kv, key: string, fallback?: number): number {
  const e = kv.get(key);
  if (!e) return fallback ?? missing(key, "a number");
  if (typeof e.value === "number") return e.value;
  if (typeof e.value === "bigint") {
    if (e.value > BigInt(Number.MAX_SAFE_INTEGER) || e.value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`GGUF metadata key "${key}" = ${e.value} is too large`);
    }
    return Number(e.value);
  }
  return wrong(e, "a number");
}

/** A non-negative integer that fits a JS number; rejects floats and negatives. */
export function metaCount(kv: Kv, key: string, fallback?: number): number {
  const e = kv.get(key);
  if (!e) return fallback ?? missing(key, "a non-negative integer");
  if (!INTEGER_TYPES.has(e.type)) wrong(e, "an integer");
  const v = metaNumber(kv, key);
  if (v < 0) throw new Error(`GGUF metadata key "${key}" = ${v}, expected a non-negative integer`);
  return v;
}

export function metaBool(kv: Kv, key: string, fallback?: boolean): boolean {
  const e = kv.get(key);
  if (!e) return fallback ?? missing(key, "a bool");
  if (e.type !== GgufType.BOOL) wrong(e, "a bool");
  return e.value as boolean;
}

export function metaArray(kv: Kv, key: string): GgufArray | undefined {
  const e = kv.get(key);
  if (!e) return undefined;
  if (e.type !== GgufType.ARRAY) wrong(e, "an array");
  return e.value as GgufArray;
}

/** As the reader keeps them (UTF-8 bytes + offsets); a string[] set by code is encoded on the way. */
export function metaStringArray(kv: Kv, key: string): GgufStringArray {
  const a = metaArray(kv, key) ?? missing(key, "an array of strings");
  if (a.itemType !== GgufType.STRING) throw new Error(`GGUF metadata key "${key}" is an array of ${GgufType[a.itemType]}, expected strings`);
  return a.items instanceof GgufStringArray ? a.items : GgufStringArray.from(a.items as string[]);
}

/** Numeric arrays come back as the typed array they were stored as (f32 → Float32Array, i32 → Int32Array, …). */
export function metaNumberArray(kv: Kv, key: string): ArrayLike<number> {
  const a = metaArray(kv, key) ?? missing(key, "an array of numbers");
  if (a.itemType === GgufType.UINT64 || a.itemType === GgufType.INT64) {
    return Array.from(a.items as BigInt64Array, (v) => Number(v));
  }
  if (a.itemType === GgufType.STRING || a.itemType === GgufType.ARRAY || a.itemType === GgufType.BOOL || a.items instanceof GgufStringArray) {
    throw new Error(`GGUF metadata key "${key}" is an array of ${GgufType[a.itemType]}, expected numbers`);
  }
  return a.items as ArrayLike<number>;
}
