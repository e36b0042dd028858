// Q8 activations and Q8_0 weights: quantize_q8_0 / quantize_q8_1 (llama.cpp's x86 path: d = amax/127,
// multiply by 127/amax, round half to even) and matmul_q8_0 (ggml_vec_dot_q8_0_q8_0: integer dot per block,
// times d_w*d_x, summed in f32). Integer dots widen i8 to i16 and use i32x4.dot_i16x8_s (no relaxed SIMD).
import { prefetch_group, prefetch_rows, idot_w16, f16_to_f32, f32_to_f16, hmax_f32x4, hsum_f32x4, hsum_i32x4, token_chunk, QK, Q8_0_BYTES, Q8_1_BYTES } from "./common";

/** max |x| over the 32 floats at x */
// @ts-ignore: decorator
@inline function amax32(x: usize): f32 {
  let m0 = f32x4.max(f32x4.abs(v128.load(x, 0)), f32x4.abs(v128.load(x, 16)));
  let m1 = f32x4.max(f32x4.abs(v128.load(x, 32)), f32x4.abs(v128.load(x, 48)));
  let m2 = f32x4.max(f32x4.abs(v128.load(x, 64)), f32x4.abs(v128.load(x, 80)));
  let m3 = f32x4.max(f32x4.abs(v128.load(x, 96)), f32x4.abs(v128.load(x, 112)));
  return hmax_f32x4(f32x4.max(f32x4.max(m0, m1), f32x4.max(m2, m3)));
}

// @ts-ignore: decorator
@inline function round4(x: usize, id: v128): v128 {
  return i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x), id)));
}

/**
 * Quantizes the 32 floats at x into 32 int8 at q with scale 1/id; returns the sum of the int8 values.
 */
// @ts-ignore: decorator
@inline function quant32(q: usize, x: usize, id: v128): i32 {
  const i0 = round4(x, id), i1 = round4(x + 16, id), i2 = round4(x + 32, id), i3 = round4(x + 48, id);
  const i4 = round4(x + 64, id), i5 = round4(x + 80, id), i6 = round4(x + 96, id), i7 = round4(x + 112, id);
  v128.store(q, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(i0, i1), i16x8.narrow_i32x4_s(i2, i3)));
  v128.store(q, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(i4, i5), i16x8.narrow_i32x4_s(i6, i7)), 16);
  return hsum_i32x4(i32x4.add(i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3)), i32x4.add(i32x4.add(i4, i5), i32x4.add(i6, i7))));
}

/** out: t rows of n/32 block_q8_0 = x: t rows of n f32 (n % 32 == 0). */
export function quantize_q8_0(out: usize, x: usize, n: i32, t: i32): void {
  const blocks = (n / QK) * t;
  for (let b = 0; b < blocks; b++) {
    const amax = amax32(x);
    const d = amax / 127;
    const id: f32 = amax != 0 ? 127 / amax : 0;
    store<u16>(out, <u16>f32_to_f16(d));
    quant32(out + 2, x, f32x4.splat(id));
    out += Q8_0_BYTES; x += QK * 4;
  }
}

/** out: t rows of n/32 block_q8_1 (d, s = d * sum(qs), qs) = x: t rows of n f32 (n % 32 == 0). */
export function quantize_q8_1(out: usize, x: usize, n: i32, t: i32): void {
  const blocks = (n / QK) * t;
  for (let b = 0; b < blocks; b++) {
    const amax = amax32(x);
    const d = amax / 127;
    const id: f32 = amax != 0 ? 127 / amax : 0;
    store<u16>(out, <u16>f32_to_f16(d));
    const sum = quant32(out + 4, x, f32x4.splat(id));
    store<u16>(out, <u16>f32_to_f16(d * <f32>sum), 2);
    out += Q8_1_BYTES; x += QK * 4;
  }
}

// @ts-ignore: decorator
@inline function dot1_q8_0(w: usize, x: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const wq0 = v128.load(w, 2), wq1 = v128.load(w, 18);
    const p = idot_w16(
      i16x8.extend_low_i8x16_s(wq0), i16x8.extend_high_i8x16_s(wq0),
      i16x8.extend_low_i8x16_s(wq1), i16x8.extend_high_i8x16_s(wq1),
      v128.load(x, 2), v128.load(x, 18));
    const dd = f16_to_f32(load<u16>(w)) * f16_to_f32(load<u16>(x));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dd)));
    w += Q8_0_BYTES; x += Q8_0_BYTES;
  }
  return hsum_f32x4(acc);
}

/** two Q8_0 weight rows against one Q8_0 activation row: x is widened and its scale decoded once for both */
// @ts-ignore: decorator
@inline function dot2_q8_0(o: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const w1p = w + ws;
  let wo: usize = 0;
  for (let b = 0; b < nb; b++) {
    const xq0 = v128.load(x, 2), xq1 = v128.load(x, 18);
    const x0 = i16x8.extend_low_i8x16_s(xq0), x1 = i16x8.extend_high_i8x16_s(xq0);
    const x2 = i16x8.extend_low_i8x16_s(xq1), x3 = i16x8.extend_high_i8x16_s(xq1);
    const dx = f16_to_f32(load<u16>(x));
    let p = idot_w16(x0, x1, x2, x3, v128.load(w + wo, 2), v128.load(w + wo, 18));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w + wo)))));
    p = idot_w16(x0, x1, x2, x3, v128.load(w1p + wo, 2), v128.load(w1p + wo, 18));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w1p + wo)))));
    wo += Q8_0_BYTES; x += Q8_0_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o, hsum_f32x4(a1), 4);
}

/** one Q8_0 weight row against four Q8_0 activation rows: the weight block is widened once for all four */
// @ts-ignore: decorator
@inline function dot4_q8_0(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let off: usize = 0;
  let wo: usize = 0;
  for (let b = 0; b < nb; b++) {
    const wq0 = v128.load(w + wo, 2), wq1 = v128.load(w + wo, 18);
    const w0 = i16x8.extend_low_i8x16_s(wq0), w1 = i16x8.extend_high_i8x16_s(wq0);
    const w2 = i16x8.extend_low_i8x16_s(wq1), w3 = i16x8.extend_high_i8x16_s(wq1);
    const dw = f16_to_f32(load<u16>(w + wo));
    let p = idot_w16(w0, w1, w2, w3, v128.load(x + off, 2), v128.load(x + off, 18));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x + off)))));
    p = idot_w16(w0, w1, w2, w3, v128.load(x1 + off, 2), v128.load(x1 + off, 18));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x1 + off)))));
    p = idot_w16(w0, w1, w2, w3, v128.load(x2 + off, 2), v128.load(x2 + off, 18));
    a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x2 + off)))));
    p = idot_w16(w0, w1, w2, w3, v128.load(x3 + off, 2), v128.load(x3 + off, 18));
    a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x3 + off)))));
    off += Q8_0_BYTES; wo += Q8_0_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o + os, hsum_f32x4(a1));
  store<f32>(o + 2 * os, hsum_f32x4(a2));
  store<f32>(o + 3 * os, hsum_f32x4(a3));
}

/** out (t, d) f32 = xq (t rows of n/32 block_q8_0) @ w (d rows of n/32 block_q8_0) ^T. */
export function matmul_q8_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q8_0_BYTES, xRow = <usize>nb * Q8_0_BYTES;
  const os = <usize>d << 2;
  if (t == 1) {
    const g = prefetch_group(wRow);
    let i = 0;
    for (; i + 2 <= d; i += 2) {
      prefetch_rows(w, i, d, wRow, g);
      prefetch_rows(w, i + 1, d, wRow, g);
      dot2_q8_0(out + (<usize>i << 2), w + <usize>i * wRow, wRow, xq, nb);
    }
    if (i < d) store<f32>(out + (<usize>i << 2), dot1_q8_0(w + <usize>i * wRow, xq, nb));
    return;
  }
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * wRow;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4_q8_0(o + <usize>j * os, os, wp, xq + <usize>j * xRow, xRow, nb);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_q8_0(wp, xq + <usize>j * xRow, nb));
    }
  }
}
