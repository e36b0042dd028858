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

let f16Table: Float32Array | undefined;

export function dequantizeF16(src: Uint8Array, dst: Float32Array): void {
  // every f16 decoded once into a table (exact: f16ToF32 gives values an f32 holds)
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32(h);
  }
  const t = f16Table;
  for (let i = 0; i < dst.length; i++) dst[i] = t[src[2 * i] | (src[2 * i + 1] << 8)];
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

/**
 * Q5_0 (quantize_row_q5_0_ref): d = (the value of largest magnitude, with its sign) / −16, q = min(31,
 * trunc(x/d + 16.5)); block = f16 d, u32 qh (bit j is the fifth bit of element j), 16 bytes of low nibbles laid
 * out as Q4_0 (byte j: element j low, element j + 16 high). x = d·(q − 16).
 */
export function quantizeQ5_0(src: Float32Array, dst: Uint8Array): void {
  const nb = checkBlocks(src.length, dst.length, 22, "quantizeQ5_0");
  const v = view(dst);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK, b * QK + QK);
    let amax = 0, mx = 0;
    for (let j = 0; j < QK; j++) if (amax < Math.abs(x[j])) { amax = Math.abs(x[j]); mx = x[j]; }
    const d = fr(mx / -16);
    const id = d !== 0 ? fr(1 / d) : 0;
    const codes = new Array<number>(QK);
    for (let j = 0; j < QK; j++) codes[j] = Math.min(31, Math.trunc(fr(fr(x[j] * id) + 16.5)));
    v.setUint16(b * 22, f32ToF16(d), true);
    packQ5_0(dst, b * 22 + 2, codes, 0);
  }
}

/** block_q5_0's qh and nibbles at o from 32 codes (0..31) codes[from..from+32) */
export function packQ5_0(dst: Uint8Array, o: number, codes: ArrayLike<number>, from: number): void {
  let qh = 0;
  for (let j = 0; j < QK / 2; j++) {
    const c0 = codes[from + j], c1 = codes[from + j + QK / 2];
    dst[o + 4 + j] = (c0 & 15) | ((c1 & 15) << 4);
    qh |= ((c0 >> 4) & 1) << j;
    qh |= ((c1 >> 4) & 1) << (j + QK / 2);
  }
  view(dst).setUint32(o, qh >>> 0, true);
}

export function dequantizeQ5_0(src: Uint8Array, dst: Float32Array): void {
  const nb = checkBlocks(dst.length, src.length, 22, "dequantizeQ5_0");
  const v = view(src);
  for (let b = 0; b < nb; b++) {
    const o = b * 22;
    const d = f16ToF32(v.getUint16(o, true));
    const qh = v.getUint32(o + 2, true);
    for (let j = 0; j < QK / 2; j++) {
      const q0 = (src[o + 6 + j] & 15) | (((qh >>> j) & 1) << 4);
      const q1 = (src[o + 6 + j] >> 4) | (((qh >>> (j + QK / 2)) & 1) << 4);
      dst[b * QK + j] = (q0 - 16) * d;
      dst[b * QK + j + QK / 2] = (q1 - 16) * d;
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

/** ggml's nearest_int: the low 23 bits of f32(x + 1.5·2^23) minus 2^22 (round half to even; exact for |x| < 2^22). */
export function nearestInt(x: number): number {
  return (f32Bits(fr(fr(x) + 12582912)) & 0x7fffff) - 0x400000;
}

/** ggml's GROUP_MAX_EPS: a group whose largest |x| is below this is all zeros */
const GROUP_MAX_EPS = fr(1e-15);

// The K-quant searches below are ggml's (make_qkx2_quants, make_qx_quants) step for step in f32: every product,
// sum and quotient is rounded to f32 where the C code stores a float, so the bytes equal quantize_row_q4_K_ref's
// and quantize_row_q6_K_ref's (test/kquant.test.ts checks them against the ggml library node-llama-cpp ships).

/** make_qkx2_quants' result: the scale, the offset −min (≥ 0), and the codes in L */
export interface ScaleMin { scale: number; min: number }

/**
 * ggml's make_qkx2_quants for codes 0..nmax under x ≈ scale·L − min, weights w: the min/max start, then nstep + 1
 * trial scales (nmax + rmin + rdelta·is)/(max − min), each refined by weighted least squares; the lowest weighted
 * error (squared, or absolute with useMad) wins. Writes the codes to L; `laux` is scratch of n bytes.
 */
export function makeQkx2Quants(n: number, nmax: number, x: ArrayLike<number>, w: ArrayLike<number>, L: Uint8Array, laux: Uint8Array,
                               rmin: number, rdelta: number, nstep: number, useMad: boolean): ScaleMin {
  let min = x[0], max = x[0];
  let sumW = w[0], sumX = fr(sumW * x[0]);
  for (let i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sumW = fr(sumW + w[i]);
    sumX = fr(sumX + fr(w[i] * x[i]));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, 0, n);
    return { scale: 0, min: -min };
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(x[i] - min)))));
    L[i] = l;
    let diff = fr(fr(fr(scale * l) + min) - x[i]);
    diff = useMad ? Math.abs(diff) : fr(diff * diff);
    bestError = fr(bestError + fr(w[i] * diff));
  }
  if (nstep < 1) return { scale, min: -min };
  const rd = fr(rdelta); // a float parameter in C: 0.1f, not 0.1
  for (let is = 0; is <= nstep; is++) {
    // min moves when a trial wins, and later trials are taken against the new max − min (as in C)
    iscale = fr(fr(fr(rmin + fr(rd * is)) + nmax) / fr(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(x[i] - min)))));
      laux[i] = l;
      const wl = fr(w[i] * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[i]));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
    let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = fr(sumXL / sumL2);
    }
    let curError = 0;
    for (let i = 0; i < n; i++) {
      let diff = fr(fr(fr(thisScale * laux[i]) + thisMin) - x[i]);
      diff = useMad ? Math.abs(diff) : fr(diff * diff);
      curError = fr(curError + fr(w[i] * diff));
    }
    if (curError < bestError) {
      L.set(laux.subarray(0, n));
      bestError = curError;
      scale = thisScale;
      min = thisMin;
    }
  }
  return { scale, min: -min };
}

/**
 * ggml's make_qx_quants with rmse_type 1 (weights x², the case quantize_row_q6_K_ref uses): signed codes
 * −nmax..nmax−1 stored as L = code + nmax; the scale −nmax/max and 18 neighbours ±0.1·k, least squares each, the
 * largest Σwxl²/Σwl² wins. Returns the scale (0 for an all-zero group, whose codes are all 0).
 */
export function makeQxQuants(n: number, nmax: number, x: ArrayLike<number>, L: Uint8Array): number {
  let max = 0, amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  const code = (iscale: number, v: number) => Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))));
  let iscale = fr(-nmax / max);
  let sumLX = 0, sumL2 = 0;
  for (let i = 0; i < n; i++) {
    const l = code(iscale, x[i]);
    L[i] = l + nmax;
    const w = fr(x[i] * x[i]);
    sumLX = fr(sumLX + fr(fr(w * x[i]) * l));
    sumL2 = fr(sumL2 + fr(fr(w * l) * l));
  }
  let scale = sumL2 ? fr(sumLX / sumL2) : 0;
  let best = fr(scale * sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(fr(-fr(nmax + fr(fr(0.1) * is))) / max);
    sumLX = 0; sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const l = code(iscale, x[i]);
      const w = fr(x[i] * x[i]);
      sumLX = fr(sumLX + fr(fr(w * x[i]) * l));
      sumL2 = fr(sumL2 + fr(fr(w * l) * l));
    }
    if (sumL2 > 0 && fr(sumLX * sumLX) > fr(best * sumL2)) {
      for (let i = 0; i < n; i++) L[i] = code(iscale, x[i]) + nmax;
      scale = fr(sumLX / sumL2);
      best = fr(scale * sumLX);
    }
  }
  return scale;
}

/** quantize_row_q4_K_ref's weights for one 32-value sub-block: sqrt(mean x²) + |x| */
export function q4kWeights(x: ArrayLike<number>, w: Float32Array): void {
  let sumX2 = 0;
  for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[l] * x[l]));
  const av = fr(Math.sqrt(fr(sumX2 / 32)));
  for (let l = 0; l < 32; l++) w[l] = fr(av + Math.abs(x[l]));
}

/** quantize_row_q4_K_ref's fit of one 32-value sub-block: make_qkx2_quants(32, 15, rmin −1, rdelta 0.1, 20 steps) */
export function q4kFit(x: ArrayLike<number>, L: Uint8Array, scratch: { w: Float32Array; laux: Uint8Array }): ScaleMin {
  q4kWeights(x, scratch.w);
  return makeQkx2Quants(32, 15, x, scratch.w, L, scratch.laux, -1, 0.1, 20, false);
}

/** C's conversion of an int to uint8_t (modulo 256), as quantize_row_q4_K_ref stores nearest_int(...) in a uint8_t */
const u8 = (v: number) => v & 0xff;

/**
 * The super-block scales of Q4_K from its eight sub-block fits (quantize_row_q4_K_ref): d = f16(max scale/63),
 * dmin = f16(max min/63), and each sub-block's 6-bit ls = min(63, nearest(63/max·scale)) (lm likewise).
 */
export function q4kSuperScales(fits: ScaleMin[]): { dBits: number; mBits: number; invScale: number; invMin: number; ls: Uint8Array; lm: Uint8Array } {
  let maxScale = 0, maxMin = 0;
  for (const f of fits) {
    if (f.scale > maxScale) maxScale = f.scale;
    if (f.min > maxMin) maxMin = f.min;
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
  const ls = new Uint8Array(8), lm = new Uint8Array(8);
  for (let j = 0; j < 8; j++) {
    ls[j] = q4kSixBits(invScale, fits[j].scale);
    lm[j] = q4kSixBits(invMin, fits[j].min);
  }
  return { dBits: f32ToF16(fr(maxScale / 63)), mBits: f32ToF16(fr(maxMin / 63)), invScale, invMin, ls, lm };
}

/** a sub-block scale or min coded in 6 bits against 63/max: min(63, (uint8_t)nearest(inv·v)), as quantize_row_q4_K_ref */
export function q4kSixBits(inv: number, v: number): number {
  return Math.min(63, u8(nearestInt(fr(inv * v))));
}

/** Pack eight 6-bit scales and mins into block_q4_K's 12 bytes at o (the inverse of q4kScaleMin). */
export function packQ4kScales(dst: Uint8Array, o: number, ls: ArrayLike<number>, lm: ArrayLike<number>): void {
  dst.fill(0, o, o + 12);
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      dst[o + j] = ls[j];
      dst[o + j + 4] = lm[j];
    } else {
      dst[o + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      dst[o + j - 4] |= (ls[j] >> 4) << 6;
      dst[o + j] |= (lm[j] >> 4) << 6;
    }
  }
}

/** The Q4_K code of x in a sub-block with d·scale = dj and dmin·min = mj (quantize_row_q4_K_ref's final pass). */
export function q4kCode(x: number, dj: number, mj: number): number {
  return Math.max(0, Math.min(15, nearestInt(fr(fr(x + mj) / dj))));
}

/** Pack 256 Q4_K codes L[from..] (0..15) into the 128 nibble bytes at o: chunk c keeps sub-blocks 2c (low) and 2c+1 (high). */
export function packQ4kCodes(dst: Uint8Array, o: number, L: ArrayLike<number>, from = 0): void {
  for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) dst[o + 32 * c + l] = L[from + 64 * c + l] | (L[from + 64 * c + 32 + l] << 4);
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
 * Q4_K (quantize_row_q4_K_ref, byte for byte): each 32-value sub-block fitted by make_qkx2_quants with weights
 * sqrt(mean x²) + |x|; the eight scales and mins coded in 6 bits against d = max scale/63 and dmin = max min/63;
 * then every value re-coded as nearest((x + dmin·lm)/(d·ls)) (a sub-block whose d·ls is 0 keeps its fitted codes).
 */
export function quantizeQ4_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkKBlocks(src.length, dst.length, 144, "quantizeQ4_K");
  const v = view(dst);
  const L = new Uint8Array(QK_K);
  const scratch = { w: new Float32Array(32), laux: new Uint8Array(32) };
  const fits: ScaleMin[] = new Array(8);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = b * 144;
    for (let j = 0; j < 8; j++) fits[j] = q4kFit(x.subarray(32 * j, 32 * j + 32), L.subarray(32 * j, 32 * j + 32), scratch);
    const s = q4kSuperScales(fits);
    v.setUint16(o, s.dBits, true);
    v.setUint16(o + 2, s.mBits, true);
    packQ4kScales(dst, o + 4, s.ls, s.lm);
    const d = f16ToF32(s.dBits), dmin = f16ToF32(s.mBits);
    for (let j = 0; j < 8; j++) {
      const dj = fr(d * s.ls[j]);
      if (!dj) continue;
      const mj = fr(dmin * s.lm[j]);
      for (let i = 0; i < 32; i++) L[32 * j + i] = q4kCode(x[32 * j + i], dj, mj);
    }
    packQ4kCodes(dst, o + 16, L);
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

/** Pack 256 unsigned 6-bit Q6_K values L[from..] (0..63) into the block's ql and qh at o (the inverse of q6kValue). */
export function packQ6kCodes(dst: Uint8Array, o: number, L: ArrayLike<number>, from = 0): void {
  dst.fill(0, o, o + 192);
  for (let i = 0; i < QK_K; i++) {
    const half = i >> 7, r = i & 127, k = r >> 5, l = r & 31, q = L[from + i];
    dst[o + 64 * half + l + 32 * (k & 1)] |= k < 2 ? q & 15 : (q & 15) << 4;
    dst[o + 128 + 32 * half + l] |= (q >> 4) << (2 * k);
  }
}

/** quantize_row_q6_K_ref's super-block scale from its sixteen sub-block scales: iscale = −128/(the largest |scale|, signed) */
export function q6kSuperScale(scales: ArrayLike<number>): { iscale: number; dBits: number } | undefined {
  let maxScale = 0, maxAbs = 0;
  for (let j = 0; j < 16; j++) {
    const a = Math.abs(scales[j]);
    if (a > maxAbs) { maxAbs = a; maxScale = scales[j]; }
  }
  if (maxAbs < GROUP_MAX_EPS) return undefined;
  const iscale = fr(-128 / maxScale);
  return { iscale, dBits: f32ToF16(fr(1 / iscale)) };
}

/** a Q6_K sub-block's int8 scale from its fitted scale (quantize_row_q6_K_ref: min(127, nearest(iscale·scale))) */
export function q6kScale(iscale: number, scale: number): number {
  return Math.min(127, nearestInt(fr(iscale * scale)));
}

/** The unsigned Q6_K value of x in a sub-block whose d·scale is dj: nearest(x/dj) clamped to −32..31, plus 32. */
export function q6kCode(x: number, dj: number): number {
  return Math.max(-32, Math.min(31, nearestInt(fr(x / dj)))) + 32;
}

/**
 * Q6_K (quantize_row_q6_K_ref, byte for byte): each 16-value sub-block fitted by make_qx_quants(16, 32); the
 * int8 scales nearest(iscale·scale) with iscale = −128/(the largest |scale|), d = f16(1/iscale); every value
 * re-coded as nearest(x/(d·scale)) (a sub-block whose d·scale is 0 keeps its fitted codes). A block whose scales
 * are all below GROUP_MAX_EPS is all zeros.
 */
export function quantizeQ6_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkKBlocks(src.length, dst.length, 210, "quantizeQ6_K");
  const v = view(dst);
  const L = new Uint8Array(QK_K);
  const scales = new Float32Array(16);
  for (let b = 0; b < nb; b++) {
    const x = src.subarray(b * QK_K, (b + 1) * QK_K);
    const o = b * 210;
    for (let j = 0; j < 16; j++) scales[j] = makeQxQuants(16, 32, x.subarray(16 * j, 16 * j + 16), L.subarray(16 * j, 16 * j + 16));
    const s = q6kSuperScale(scales);
    if (!s) {
      dst.fill(0, o, o + 210);
      continue;
    }
    v.setUint16(o + 208, s.dBits, true);
    const d = f16ToF32(s.dBits);
    for (let j = 0; j < 16; j++) {
      const sc = q6kScale(s.iscale, scales[j]);
      v.setInt8(o + 192 + j, sc);
      const dj = fr(d * sc);
      if (!dj) continue;
      for (let i = 0; i < 16; i++) L[16 * j + i] = q6kCode(x[16 * j + i], dj);
    }
    packQ6kCodes(dst, o, L);
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
