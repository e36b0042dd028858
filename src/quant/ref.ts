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

/**
 * block_q8_0 rows -> Q8_0X rows, edgeprune's activation layout (formats.ts): per row of `rowLength` values, f32
 * d[nb] (each block's f16 d, widened), i32 sum[nb] of each block's int8, then all the int8. The one writer of
 * that layout on the TypeScript side (the kernels' reference quantizer rearranges its own blocks with it too).
 */
export function q8_0ToQ8_0X(blocks: Uint8Array, rowLength: number, rows: number): Uint8Array {
  const nb = rowLength / QK;
  const out = new Uint8Array(nb * 40 * rows);
  const bv = view(blocks), ov = view(out);
  for (let j = 0; j < rows; j++) {
    const row = j * nb * 40;
    for (let b = 0; b < nb; b++) {
      const o = (j * nb + b) * 34;
      ov.setFloat32(row + b * 4, f16ToF32(bv.getUint16(o, true)), true);
      let sum = 0;
      for (let k = 0; k < QK; k++) {
        const q = bv.getInt8(o + 2 + k);
        ov.setInt8(row + nb * 8 + b * QK + k, q);
        sum += q;
      }
      ov.setInt32(row + nb * 4 + b * 4, sum, true);
    }
  }
  return out;
}

/** One row of an activation layout made from block_q8_0: quantizeQ8_0's blocks (ggml's _ref rounding), rearranged. */
function quantizeViaQ8_0(src: Float32Array, dst: Uint8Array, typeSize: number, name: string,
                         rearrange: (blocks: Uint8Array, rowLength: number, rows: number) => Uint8Array): void {
  const nb = checkBlocks(src.length, dst.length, typeSize, name);
  const blocks = new Uint8Array(nb * 34);
  quantizeQ8_0(src, blocks);
  dst.set(rearrange(blocks, src.length, 1));
}

/** Q8_0X of one row: the blocks of quantizeQ8_0, rearranged by q8_0ToQ8_0X. */
export function quantizeQ8_0X(src: Float32Array, dst: Uint8Array): void {
  quantizeViaQ8_0(src, dst, 40, "quantizeQ8_0X", q8_0ToQ8_0X);
}

/**
 * block_q8_0 rows -> Q8_0W rows (formats.ts; assembly/common.ts has the why): Q8_0X's d[nb] and sum[nb], then per
 * block 32 i16: 256·q[0,2..14], 16·q[16,18..30], q[1,3..15], 256·q[17,19..31]. The one TypeScript writer of it.
 */
export function q8_0ToQ8_0W(blocks: Uint8Array, rowLength: number, rows: number): Uint8Array {
  const nb = rowLength / QK;
  const x = q8_0ToQ8_0X(blocks, rowLength, rows);
  const out = new Uint8Array(nb * 72 * rows);
  const xv = view(x), ov = view(out);
  for (let j = 0; j < rows; j++) {
    const xRow = j * nb * 40, oRow = j * nb * 72;
    out.set(x.subarray(xRow, xRow + nb * 8), oRow);
    for (let b = 0; b < nb; b++) {
      const q = (k: number) => xv.getInt8(xRow + nb * 8 + b * QK + k);
      for (let l = 0; l < 8; l++) {
        const o = oRow + nb * 8 + b * 64 + l * 2;
        ov.setInt16(o, 256 * q(2 * l), true);
        ov.setInt16(o + 16, 16 * q(16 + 2 * l), true);
        ov.setInt16(o + 32, q(2 * l + 1), true);
        ov.setInt16(o + 48, 256 * q(17 + 2 * l), true);
      }
    }
  }
  return out;
}

/** Q8_0W of one row: the blocks of quantizeQ8_0, rearranged by q8_0ToQ8_0W. */
export function quantizeQ8_0W(src: Float32Array, dst: Uint8Array): void {
  quantizeViaQ8_0(src, dst, 72, "quantizeQ8_0W", q8_0ToQ8_0W);
}

export function dequantizeQ8_0W(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 72, "dequantizeQ8_0W");
  const v = view(src);
  const scale = [256, 16, 1, 256];
  for (let b = 0; b < nb; b++) {
    const d = v.getFloat32(b * 4, true);
    for (let part = 0; part < 4; part++) {
      for (let l = 0; l < 8; l++) {
        const k = [2 * l, 16 + 2 * l, 2 * l + 1, 17 + 2 * l][part];
        dst[b * QK + k] = (v.getInt16(nb * 8 + b * 64 + part * 16 + l * 2, true) / scale[part]) * d;
      }
    }
  }
}

export function dequantizeQ8_0X(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 40, "dequantizeQ8_0X");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const d = v.getFloat32(b * 4, true);
    for (let j = 0; j < QK; j++) dst[b * QK + j] = v.getInt8(nb * 8 + b * QK + j) * d;
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

// ---- K-quants: super-blocks of QK_K = 256 (ggml-common.h block_q4_K, block_q6_K, block_q8_K) ----------------

/** elements per K-quant super-block */
export const QK_K = 256;

function checkKBlocks(n: number, bytes: number, typeSize: number, what: string): number {
  if (n % QK_K !== 0) throw new Error(`${what}: ${n} values is not a multiple of ${QK_K}`);
  const nb = n / QK_K;
  if (bytes < nb * typeSize) throw new Error(`${what}: ${bytes} bytes hold fewer than ${nb} blocks of ${typeSize}`);
  return nb;
}

/** ggml's nearest_int: round half to even through the 1.5·2^23 trick (valid for |x| < 2^22). */
export function nearestInt(x: number): number {
  return f32Bits(fr(fr(x) + 12582912)) - 0x4b400000;
}

/**
 * The 6-bit scale and min of sub-block j (0..7) from block_q4_K's 12 packed bytes (ggml get_scale_min_k4):
 * j < 4 keep them in the low 6 bits of bytes j and j+4; j >= 4 split them into the nibbles of byte j+4 and the
 * top two bits of bytes j-4 and j.
 */
export function q4kScaleMin(s: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [s[o + j] & 63, s[o + j + 4] & 63];
  return [(s[o + j + 4] & 0xf) | ((s[o + j - 4] >> 6) << 4), (s[o + j + 4] >> 4) | ((s[o + j] >> 6) << 4)];
}

/**
 * Q4_K block (144 bytes): f16 d, f16 dmin, 12 bytes of eight 6-bit scales and mins, 128 bytes of nibbles. Chunk c
 * (64 values) keeps sub-block 2c in the low nibbles of bytes 16+32c.. and sub-block 2c+1 in their high nibbles.
 * x = d·scale_j·q − dmin·min_j.
 */
export function dequantizeQ4_K(src: Uint8Array, dst: Float32Array): void {
  const nb = checkKBlocks(dst.length, src.length, 144, "dequantizeQ4_K");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const o = b * 144;
    const d = f16ToF32(v.getUint16(o, true)), dmin = f16ToF32(v.getUint16(o + 2, true));
    for (let c = 0; c < 4; c++) {
      const [s0, m0] = q4kScaleMin(src, o + 4, 2 * c);
      const [s1, m1] = q4kScaleMin(src, o + 4, 2 * c + 1);
      const d0 = fr(d * s0), d1 = fr(d * s1), n0 = fr(dmin * m0), n1 = fr(dmin * m1);
      for (let l = 0; l < 32; l++) {
        const q = src[o + 16 + 32 * c + l];
        dst[b * QK_K + 64 * c + l] = fr(fr(d0 * (q & 15)) - n0);
        dst[b * QK_K + 64 * c + 32 + l] = fr(fr(d1 * (q >> 4)) - n1);
      }
    }
  }
}

/**
 * Q4_K quantizer, round to nearest: each 32-value sub-block gets scale (max − min)/15 and min −min(0, min);
 * the eight scales and mins are coded in 6 bits against d = max scale/63 and dmin = max min/63. The layout is
 * ggml's; the search is not (ggml's make_qkx2_quants refines scales iteratively), so bytes differ from
 * quantize_row_q4_K_ref while decoding the same way.
 */
export function quantizeQ4_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkKBlocks(src.length, dst.length, 144, "quantizeQ4_K");
  const v = view(dst);
  const sc = new Float64Array(8), mn = new Float64Array(8), ls = new Uint8Array(8), lm = new Uint8Array(8);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = b * 144;
    let maxSc = 0, maxMn = 0;
    for (let j = 0; j < 8; j++) {
      let lo = 0, hi = -Infinity;
      for (let l = 0; l < 32; l++) { lo = Math.min(lo, x[32 * j + l]); hi = Math.max(hi, x[32 * j + l]); }
      sc[j] = Math.max(0, hi - lo) / 15;
      mn[j] = -lo;
      maxSc = Math.max(maxSc, sc[j]);
      maxMn = Math.max(maxMn, mn[j]);
    }
    const dh = f32ToF16(maxSc / 63), mh = f32ToF16(maxMn / 63);
    const d = f16ToF32(dh), dmin = f16ToF32(mh);
    for (let j = 0; j < 8; j++) {
      ls[j] = d > 0 ? Math.min(63, Math.max(0, Math.round(sc[j] / d))) : 0;
      lm[j] = dmin > 0 ? Math.min(63, Math.max(0, Math.round(mn[j] / dmin))) : 0;
    }
    v.setUint16(o, dh, true);
    v.setUint16(o + 2, mh, true);
    dst.fill(0, o + 4, o + 16);
    for (let j = 0; j < 8; j++) {
      if (j < 4) {
        dst[o + 4 + j] = ls[j];
        dst[o + 8 + j] = lm[j];
      } else {
        dst[o + 8 + j] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
        dst[o + j] |= (ls[j] >> 4) << 6;
        dst[o + 4 + j] |= (lm[j] >> 4) << 6;
      }
    }
    for (let c = 0; c < 4; c++) {
      const q = [0, 1].map((h) => {
        const j = 2 * c + h;
        const dj = fr(d * ls[j]), mj = fr(dmin * lm[j]);
        return (l: number) => (dj > 0 ? Math.min(15, Math.max(0, Math.round((x[32 * j + l] + mj) / dj))) : 0);
      });
      for (let l = 0; l < 32; l++) dst[o + 16 + 32 * c + l] = q[0](l) | (q[1](l) << 4);
    }
  }
}

/**
 * Q6_K block (210 bytes): 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales, f16 d. In each
 * half of 128 values, value l + 32k (l < 32) takes its low bits from ql[l + 32(k&1)] (low nibble for k < 2, high
 * for k >= 2) and its high bits from bits 2k..2k+1 of qh[l]; value i uses scale i/16. x = d·scale·(q − 32).
 */
export function dequantizeQ6_K(src: Uint8Array, dst: Float32Array): void {
  const nb = checkKBlocks(dst.length, src.length, 210, "dequantizeQ6_K");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const o = b * 210;
    const d = f16ToF32(v.getUint16(o + 208, true));
    for (let i = 0; i < QK_K; i++) dst[b * QK_K + i] = fr(fr(d * v.getInt8(o + 192 + (i >> 4))) * (q6kValue(src, o, i) - 32));
  }
}

/** the unsigned 6-bit value (0..63) of element i of the Q6_K block at o */
export function q6kValue(s: Uint8Array, o: number, i: number): number {
  const half = i >> 7, r = i & 127, k = r >> 5, l = r & 31;
  const ql = s[o + 64 * half + l + 32 * (k & 1)];
  const lo = k < 2 ? ql & 15 : ql >> 4;
  const hi = (s[o + 128 + 32 * half + l] >> (2 * k)) & 3;
  return lo | (hi << 4);
}

/**
 * Q6_K quantizer, round to nearest: each 16-value sub-block gets scale amax/31, coded as int8 against
 * d = max scale/127; q = round(x/(d·scale)) clamped to −32..31. ggml's layout, not its make_qx_quants search.
 */
export function quantizeQ6_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkKBlocks(src.length, dst.length, 210, "quantizeQ6_K");
  const v = view(dst);
  const sc = new Float64Array(16);
  const q = new Uint8Array(QK_K);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = b * 210;
    let maxSc = 0;
    for (let j = 0; j < 16; j++) {
      let amax = 0;
      for (let l = 0; l < 16; l++) amax = Math.max(amax, Math.abs(x[16 * j + l]));
      sc[j] = amax / 31;
      maxSc = Math.max(maxSc, sc[j]);
    }
    const dh = f32ToF16(maxSc / 127);
    const d = f16ToF32(dh);
    for (let j = 0; j < 16; j++) {
      const s = d > 0 ? Math.min(127, Math.round(sc[j] / d)) : 0;
      v.setInt8(o + 192 + j, s);
      const ds = fr(d * s);
      for (let l = 0; l < 16; l++) q[16 * j + l] = 32 + (ds > 0 ? Math.min(31, Math.max(-32, Math.round(x[16 * j + l] / ds))) : 0);
    }
    dst.fill(0, o, o + 192);
    for (let i = 0; i < QK_K; i++) {
      const half = i >> 7, r = i & 127, k = r >> 5, l = r & 31;
      dst[o + 64 * half + l + 32 * (k & 1)] |= k < 2 ? q[i] & 15 : (q[i] & 15) << 4;
      dst[o + 128 + 32 * half + l] |= (q[i] >> 4) << (2 * k);
    }
    v.setUint16(o + 208, dh, true);
  }
}

/**
 * Q8_K (quantize_row_q8_K_ref; x86 builds of ggml use it as is): per 256 values, max = the value of largest
 * magnitude (first one), iscale = −127/max, q = min(127, nearest_int(iscale·x)), f32 d = 1/iscale, and 16 int16
 * bsums (sums of 16 consecutive q). Block = f32 d, 256 int8, 16 int16 = 292 bytes. The activation format of
 * the K-quant matmuls.
 */
export function quantizeQ8_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkKBlocks(src.length, dst.length, 292, "quantizeQ8_K");
  const v = view(dst);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = b * 292;
    let amax = 0, max = 0;
    for (let j = 0; j < QK_K; j++) if (Math.abs(x[j]) > amax) { amax = Math.abs(x[j]); max = x[j]; }
    if (amax === 0) { dst.fill(0, o, o + 292); continue; }
    const iscale = fr(-127 / max);
    for (let j = 0; j < QK_K; j++) v.setInt8(o + 4 + j, Math.min(127, nearestInt(fr(iscale * x[j]))));
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let l = 0; l < 16; l++) s += v.getInt8(o + 4 + 16 * j + l);
      v.setInt16(o + 260 + 2 * j, s, true);
    }
    v.setFloat32(o, fr(1 / iscale), true);
  }
}

export function dequantizeQ8_K(src: Uint8Array, dst: Float32Array): void {
  const nb = checkKBlocks(dst.length, src.length, 292, "dequantizeQ8_K");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const d = v.getFloat32(b * 292, true);
    for (let j = 0; j < QK_K; j++) dst[b * QK_K + j] = fr(d * v.getInt8(b * 292 + 4 + j));
  }
}

/**
 * block_q8_K rows -> Q8_KW (formats.ts; assembly/common.ts has the why): per 256 values f32 d, 12 zero bytes,
 * then for each pair of 32-value sub-blocks A = 2p, B = 2p + 1 and each half h, 64 bytes of i16:
 * 256·A[16h + 0, 2..14], 16·B[16h + 0, 2..14], A[16h + 1, 3..15], 256·B[16h + 1, 3..15]; then the 16 bsums.
 * The one TypeScript writer of it.
 */
function q8_KToQ8_KW(blocks: Uint8Array): Uint8Array {
  const nb = blocks.length / 292;
  const out = new Uint8Array(nb * 560);
  const iv = view(blocks), ov = view(out);
  for (let b = 0; b < nb; b++) {
    const i = b * 292, o = b * 560;
    ov.setFloat32(o, iv.getFloat32(i, true), true);
    const q = (e: number) => iv.getInt8(i + 4 + e);
    for (let p = 0; p < 4; p++) for (let h = 0; h < 2; h++) for (let m = 0; m < 8; m++) {
      const a = 64 * p + 16 * h + 2 * m, base = o + 16 + (2 * p + h) * 64 + 2 * m;
      ov.setInt16(base, 256 * q(a), true);
      ov.setInt16(base + 16, 16 * q(a + 32), true);
      ov.setInt16(base + 32, q(a + 1), true);
      ov.setInt16(base + 48, 256 * q(a + 33), true);
    }
    out.set(blocks.subarray(i + 260, i + 292), o + 528);
  }
  return out;
}

/** Q8_KW of a row (or of rows back to back: a block stands alone): the blocks of quantizeQ8_K, rearranged by q8_KToQ8_KW. */
export function quantizeQ8_KW(src: Float32Array, dst: Uint8Array): void {
  const nb = checkKBlocks(src.length, dst.length, 560, "quantizeQ8_KW");
  const blocks = new Uint8Array(nb * 292);
  quantizeQ8_K(src, blocks);
  dst.set(q8_KToQ8_KW(blocks));
}

export function dequantizeQ8_KW(src: Uint8Array, dst: Float32Array): void {
  const nb = checkKBlocks(dst.length, src.length, 560, "dequantizeQ8_KW");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const o = b * 560, d = v.getFloat32(o, true);
    for (let p = 0; p < 4; p++) for (let h = 0; h < 2; h++) for (let m = 0; m < 8; m++) {
      const a = b * QK_K + 64 * p + 16 * h + 2 * m, base = o + 16 + (2 * p + h) * 64 + 2 * m;
      dst[a] = fr(d * (v.getInt16(base, true) / 256));
      dst[a + 32] = fr(d * (v.getInt16(base + 16, true) / 16));
      dst[a + 1] = fr(d * v.getInt16(base + 32, true));
      dst[a + 33] = fr(d * (v.getInt16(base + 48, true) / 256));
    }
  }
}
