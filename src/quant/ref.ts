// Scalar reference quantize/dequantize for every format in formats.ts, byte for byte as ggml's *_ref functions
// (ggml-quants.c) in GGUF's little-endian block layout, plus f32 <-> f16 / bf16 scalar conversions.
// This is the spec the wasm kernels are tested against; it is written to be read, not to be fast.

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** The IEEE bits of f32(x). */
export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0];
}

/** The f32 with these IEEE bits. */
export function f32FromBits(bits: number): number {
  u32buf[0] = bits >>> 0;
  return f32buf[0];
}

/** Round to the nearest integer, ties to even (what f32x4.nearest / _MM_ROUND_NEAREST do). */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const r = v - f;
  if (r < 0.5) return f;
  if (r > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Round to the nearest integer, ties away from zero (C roundf). */
export function roundHalfAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}

/** f32 -> f16 bits, round to nearest even; overflow -> Inf; NaN -> sign|0x7e00 (GGML_FP32_TO_FP16). */
export function f32ToF16(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds to Inf
  if (a < 0x38800000) {
    // below 2^-14: an f16 subnormal, the value in units of 2^-24 rounded to an integer (1024 = smallest normal)
    return sign | roundHalfEven(f32FromBits(a) * 2 ** 24);
  }
  // normal: re-bias the exponent (127 -> 15) and drop 13 mantissa bits with ties to even
  let h = (a - 0x38000000) >>> 13;
  const rest = a & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/** f16 bits -> number (exact). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 -> bf16 bits, round to nearest even, NaN forced quiet (ggml_compute_fp32_to_bf16). */
export function f32ToBF16(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits -> number (exact). */
export function bf16ToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

const QK = 32;

function view(a: Uint8Array): DataView {
  return new DataView(a.buffer, a.byteOffset, a.byteLength);
}

function checkBlocks(n: number, bytes: number, typeSize: number, what: string): number {
  if (n % QK !== 0) throw new Error(`${what}: ${n} values is not a multiple of ${QK}`);
  const nb = n / QK;
  if (bytes < nb * typeSize) throw new Error(`${what}: ${bytes} bytes hold fewer than ${nb} blocks of ${typeSize}`);
  return nb;
}

/** F32: the little-endian bytes of each value. */
export function quantizeF32(src: Float32Array, dst: Uint8Array): void {
  const v = view(dst);
  for (let i = 0; i < src.length; i++) v.setFloat32(4 * i, src[i], true);
}

export function dequantizeF32(src: Uint8Array, dst: Float32Array): void {
  const v = view(src);
  for (let i = 0; i < dst.length; i++) dst[i] = v.getFloat32(4 * i, true);
}

/** F16: RNE half of each value. */
export function quantizeF16(src: Float32Array, dst: Uint8Array): void {
  const v = view(dst);
  for (let i = 0; i < src.length; i++) v.setUint16(2 * i, f32ToF16(src[i]), true);
}

export function dequantizeF16(src: Uint8Array, dst: Float32Array): void {
  const v = view(src);
  for (let i = 0; i < dst.length; i++) dst[i] = f16ToF32(v.getUint16(2 * i, true));
}

/** BF16: RNE top half of each value. */
export function quantizeBF16(src: Float32Array, dst: Uint8Array): void {
  const v = view(dst);
  for (let i = 0; i < src.length; i++) v.setUint16(2 * i, f32ToBF16(src[i]), true);
}

export function dequantizeBF16(src: Uint8Array, dst: Float32Array): void {
  const v = view(src);
  for (let i = 0; i < dst.length; i++) dst[i] = bf16ToF32(v.getUint16(2 * i, true));
}

const fr = Math.fround;

/**
 * Q4_0 (quantize_row_q4_0_ref): d = (the value of largest magnitude, with its sign) / -8, q = min(15,
 * trunc(x/d + 8.5)); block = f16 d, then 16 bytes whose low nibbles are elements 0..15 and high nibbles 16..31.
 */
export function quantizeQ4_0(src: Float32Array, dst: Uint8Array): void {
  const nb = checkBlocks(src.length, dst.length, 18, "quantizeQ4_0");
  const v = view(dst);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK, b * QK + QK);
    let amax = 0, mx = 0;
    for (let j = 0; j < QK; j++) if (amax < Math.abs(x[j])) { amax = Math.abs(x[j]); mx = x[j]; }
    const d = fr(mx / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    const o = b * 18;
    v.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[j + QK / 2] * id) + 8.5)));
      dst[o + 2 + j] = q0 | (q1 << 4);
    }
  }
}

export function dequantizeQ4_0(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 18, "dequantizeQ4_0");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const o = b * 18;
    const d = f16ToF32(v.getUint16(o, true));
    for (let j = 0; j < QK / 2; j++) {
      dst[b * QK + j] = ((src[o + 2 + j] & 15) - 8) * d;
      dst[b * QK + j + QK / 2] = ((src[o + 2 + j] >> 4) - 8) * d;
    }
  }
}

/**
 * Q4_1 (quantize_row_q4_1_ref): d = (max - min) / 15, m = min, q = min(15, trunc((x - min)/d + 0.5));
 * block = f16 d, f16 m, 16 bytes of nibbles laid out as Q4_0.
 */
export function quantizeQ4_1(src: Float32Array, dst: Uint8Array): void {
  const nb = checkBlocks(src.length, dst.length, 20, "quantizeQ4_1");
  const v = view(dst);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK, b * QK + QK);
    let mn = Infinity, mx = -Infinity;
    for (let j = 0; j < QK; j++) { if (x[j] < mn) mn = x[j]; if (x[j] > mx) mx = x[j]; }
    const d = fr(fr(mx - mn) / 15);
    const id = d !== 0 ? fr(1 / d) : 0;
    const o = b * 20;
    v.setUint16(o, f32ToF16(d), true);
    v.setUint16(o + 2, f32ToF16(mn), true);
    for (let j = 0; j < QK / 2; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(fr(x[j] - mn) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(fr(x[j + QK / 2] - mn) * id) + 0.5)));
      dst[o + 4 + j] = q0 | (q1 << 4);
    }
  }
}

export function dequantizeQ4_1(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 20, "dequantizeQ4_1");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const o = b * 20;
    const d = f16ToF32(v.getUint16(o, true));
    const m = f16ToF32(v.getUint16(o + 2, true));
    for (let j = 0; j < QK / 2; j++) {
      dst[b * QK + j] = fr(fr((src[o + 4 + j] & 15) * d) + m);
      dst[b * QK + j + QK / 2] = fr(fr((src[o + 4 + j] >> 4) * d) + m);
    }
  }
}

/** The int8 values, d and 1/d of one Q8 block as quantize_row_q8_0_ref makes them (roundf: ties away from 0). */
function q8RefBlock(x: Float32Array, qs: Int8Array): number {
  let amax = 0;
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[j]));
  const d = fr(amax / 127);
  const id = d !== 0 ? fr(1 / d) : 0;
  for (let j = 0; j < QK; j++) qs[j] = roundHalfAway(fr(x[j] * id));
  return d;
}

/** Q8_0 (quantize_row_q8_0_ref): d = amax / 127, q = roundf(x / d); block = f16 d + 32 int8. */
export function quantizeQ8_0(src: Float32Array, dst: Uint8Array): void {
  const nb = checkBlocks(src.length, dst.length, 34, "quantizeQ8_0");
  const v = view(dst);
  const qs = new Int8Array(QK);
  for (let b = 0; b < nb; b++) {
    const d = q8RefBlock(src.subarray(b * QK, b * QK + QK), qs);
    v.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < QK; j++) v.setInt8(b * 34 + 2 + j, qs[j]);
  }
}

export function dequantizeQ8_0(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 34, "dequantizeQ8_0");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const d = f16ToF32(v.getUint16(b * 34, true));
    for (let j = 0; j < QK; j++) dst[b * QK + j] = v.getInt8(b * 34 + 2 + j) * d;
  }
}

/** Q8_1 (quantize_row_q8_1_ref): as Q8_0 plus s = f16(d * sum(q)); block = f16 d, f16 s, 32 int8. */
export function quantizeQ8_1(src: Float32Array, dst: Uint8Array): void {
  const nb = checkBlocks(src.length, dst.length, 36, "quantizeQ8_1");
  const v = view(dst);
  const qs = new Int8Array(QK);
  for (let b = 0; b < nb; b++) {
    const d = q8RefBlock(src.subarray(b * QK, b * QK + QK), qs);
    let sum = 0;
    for (let j = 0; j < QK; j++) sum += qs[j];
    v.setUint16(b * 36, f32ToF16(d), true);
    v.setUint16(b * 36 + 2, f32ToF16(fr(sum * d)), true);
    for (let j = 0; j < QK; j++) v.setInt8(b * 36 + 4 + j, qs[j]);
  }
}

/** Q8_1 -> f32: q * d (s is redundant; ggml has no to_float for Q8_1, this is the obvious inverse). */
export function dequantizeQ8_1(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 36, "dequantizeQ8_1");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const d = f16ToF32(v.getUint16(b * 36, true));
    for (let j = 0; j < QK; j++) dst[b * QK + j] = v.getInt8(b * 36 + 4 + j) * d;
  }
}
