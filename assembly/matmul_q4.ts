// 4-bit weights: matmul_q4_0 (block_q4_0 x block_q8_0, as ggml_vec_dot_q4_0_q8_0) and matmul_q4_1
// (block_q4_1 x block_q8_1: d_w*d_x*sum(q_w*q_x) + m_w*s_x, as ggml_vec_dot_q4_1_q8_1). Nibbles are unpacked
// and widened to i16 once per block, then dotted with i32x4.dot_i16x8_s; the relaxed build instead feeds the
// unsigned nibbles (0..15, the i7 operand) to i16x8.relaxed_dot_i8x16_i7x16_s and, for Q4_0, subtracts
// 8·sum(x) (a relaxed dot with ones). Not a quantizer.
import { prefetch_group, prefetch_rows, idot_w16, f16_to_f32, reduce4_i32, scales4, hsum_f32x4, token_chunk, QK, Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, TABLE, T_NIBBLE, T_EIGHT, T_ONES, T_F16MASK, T_F16SCALE } from "./common";

// ---- relaxed-build helpers (only compiled in when ASC_FEATURE_RELAXED_SIMD) ------------------------------------

/** i16x8 partial sums of u·x for 32 unsigned nibbles (lo = elements 0..15, hi = 16..31) and int8 x0, x1 */
// @ts-ignore: decorator
@inline function rdot_nib(lo: v128, hi: v128, x0: v128, x1: v128): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(x1, hi));
}

/** 8·sum(x) over 32 int8 as i16x8 partial sums (|.| <= 8·4·127 fits) */
// @ts-ignore: decorator
@inline function rsum8(x0: v128, x1: v128, ones: v128): v128 {
  return i16x8.shl(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, ones), i16x8.relaxed_dot_i8x16_i7x16_s(x1, ones)), 3);
}

/** SIMD128 Q4_0 block dot against activations already widened to i16 (x0..x3 = elements 0-7 .. 24-31) */
// @ts-ignore: decorator
@inline function q4dot16(q: v128, x0: v128, x1: v128, x2: v128, x3: v128, mask: v128, eight: v128): v128 {
  const lo = i8x16.sub(v128.and(q, mask), eight), hi = i8x16.sub(i8x16.shr_u(q, 4), eight);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3)));
}

/** SIMD128 Q4_0 block dot against 32 int8 activations (y0 = elements 0-15, y1 = 16-31) */
// @ts-ignore: decorator
@inline function q4dot8(q: v128, y0: v128, y1: v128, mask: v128, eight: v128): v128 {
  return q4dot16(q, i16x8.extend_low_i8x16_s(y0), i16x8.extend_high_i8x16_s(y0), i16x8.extend_low_i8x16_s(y1), i16x8.extend_high_i8x16_s(y1), mask, eight);
}

/** Q4_0 block dot in the relaxed build: sum((u - 8)·x) = sum(u·x) - 8·sum(x); |u·x sums| <= 7620 fits i16 */
// @ts-ignore: decorator
@inline function rdot_q4_0(q: v128, x0: v128, x1: v128, s8: v128, mask: v128): v128 {
  return i32x4.extadd_pairwise_i16x8_s(i16x8.sub(rdot_nib(v128.and(q, mask), i8x16.shr_u(q, 4), x0, x1), s8));
}

// ---- Q4_0 ------------------------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function dot1_q4_0(w: usize, x: usize, nb: i32): f32 {
  const mask = v128.load(TABLE + T_NIBBLE), eight = v128.load(TABLE + T_EIGHT);
  let acc = f32x4.splat(0);
  if (ASC_FEATURE_RELAXED_SIMD) {
    const ones = v128.load(TABLE + T_ONES);
    for (let b = 0; b < nb; b++) {
      const x0 = v128.load(x, 2), x1 = v128.load(x, 18);
      const p = rdot_q4_0(v128.load(w, 2), x0, x1, rsum8(x0, x1, ones), mask);
      const dd = f16_to_f32(load<u16>(w)) * f16_to_f32(load<u16>(x));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dd)));
      w += Q4_0_BYTES; x += Q8_0_BYTES;
    }
    return hsum_f32x4(acc);
  }
  for (let b = 0; b < nb; b++) {
    const q = v128.load(w, 2);
    const lo = i8x16.sub(v128.and(q, mask), eight);     // elements 0..15
    const hi = i8x16.sub(i8x16.shr_u(q, 4), eight);     // elements 16..31
    const p = idot_w16(
      i16x8.extend_low_i8x16_s(lo), i16x8.extend_high_i8x16_s(lo),
      i16x8.extend_low_i8x16_s(hi), i16x8.extend_high_i8x16_s(hi),
      v128.load(x, 2), v128.load(x, 18));
    const dd = f16_to_f32(load<u16>(w)) * f16_to_f32(load<u16>(x));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dd)));
    w += Q4_0_BYTES; x += Q8_0_BYTES;
  }
  return hsum_f32x4(acc);
}

/** two Q4_0 weight rows against one Q8_0 activation row: x is widened and its scale decoded once for both */
// @ts-ignore: decorator
@inline function dot2_q4_0(o: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE), eight = v128.load(TABLE + T_EIGHT);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const w1p = w + ws;
  let wo: usize = 0;
  if (ASC_FEATURE_RELAXED_SIMD) {
    const ones = v128.load(TABLE + T_ONES);
    const fmask = v128.load(TABLE + T_F16MASK), fscale = v128.load(TABLE + T_F16SCALE);
    let b = 0;
    // four blocks per step: their integer dots are reduced with one transpose and scaled by one vector of
    // d_w·d_x, so the per-block scalar work (f16 decodes, splats, converts) is done four lanes at a time
    for (; b + 4 <= nb; b += 4) {
      const xa0 = v128.load(x, 2), xa1 = v128.load(x, 18), xb0 = v128.load(x, 36), xb1 = v128.load(x, 52);
      const xc0 = v128.load(x, 70), xc1 = v128.load(x, 86), xd0 = v128.load(x, 104), xd1 = v128.load(x, 120);
      const sa = rsum8(xa0, xa1, ones), sb = rsum8(xb0, xb1, ones), sc = rsum8(xc0, xc1, ones), sd = rsum8(xd0, xd1, ones);
      const dx = scales4(x, Q8_0_BYTES, fmask, fscale);
      let wp = w + wo;
      let r = reduce4_i32(rdot_q4_0(v128.load(wp, 2), xa0, xa1, sa, mask), rdot_q4_0(v128.load(wp, 20), xb0, xb1, sb, mask),
                          rdot_q4_0(v128.load(wp, 38), xc0, xc1, sc, mask), rdot_q4_0(v128.load(wp, 56), xd0, xd1, sd, mask));
      a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(scales4(wp, Q4_0_BYTES, fmask, fscale), dx)));
      wp = w1p + wo;
      r = reduce4_i32(rdot_q4_0(v128.load(wp, 2), xa0, xa1, sa, mask), rdot_q4_0(v128.load(wp, 20), xb0, xb1, sb, mask),
                      rdot_q4_0(v128.load(wp, 38), xc0, xc1, sc, mask), rdot_q4_0(v128.load(wp, 56), xd0, xd1, sd, mask));
      a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(scales4(wp, Q4_0_BYTES, fmask, fscale), dx)));
      wo += 4 * Q4_0_BYTES; x += 4 * Q8_0_BYTES;
    }
    for (; b < nb; b++) {
      const x0 = v128.load(x, 2), x1 = v128.load(x, 18);
      const s8 = rsum8(x0, x1, ones);
      const dx = f16_to_f32(load<u16>(x));
      let p = rdot_q4_0(v128.load(w + wo, 2), x0, x1, s8, mask);
      a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w + wo)))));
      p = rdot_q4_0(v128.load(w1p + wo, 2), x0, x1, s8, mask);
      a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w1p + wo)))));
      wo += Q4_0_BYTES; x += Q8_0_BYTES;
    }
    store<f32>(o, hsum_f32x4(a0));
    store<f32>(o, hsum_f32x4(a1), 4);
    return;
  }
  const fmask = v128.load(TABLE + T_F16MASK), fscale = v128.load(TABLE + T_F16SCALE);
  let b = 0;
  // four blocks per step (as the relaxed path): one transpose, one vector of d_w·d_x
  for (; b + 4 <= nb; b += 4) {
    let xq0 = v128.load(x, 2), xq1 = v128.load(x, 18);
    const xa0 = i16x8.extend_low_i8x16_s(xq0), xa1 = i16x8.extend_high_i8x16_s(xq0);
    const xa2 = i16x8.extend_low_i8x16_s(xq1), xa3 = i16x8.extend_high_i8x16_s(xq1);
    xq0 = v128.load(x, 36); xq1 = v128.load(x, 52);
    const xb0 = i16x8.extend_low_i8x16_s(xq0), xb1 = i16x8.extend_high_i8x16_s(xq0);
    const xb2 = i16x8.extend_low_i8x16_s(xq1), xb3 = i16x8.extend_high_i8x16_s(xq1);
    const dx = scales4(x, Q8_0_BYTES, fmask, fscale);
    let wp = w + wo;
    let r = reduce4_i32(q4dot16(v128.load(wp, 2), xa0, xa1, xa2, xa3, mask, eight), q4dot16(v128.load(wp, 20), xb0, xb1, xb2, xb3, mask, eight),
                        q4dot8(v128.load(wp, 38), v128.load(x, 70), v128.load(x, 86), mask, eight), q4dot8(v128.load(wp, 56), v128.load(x, 104), v128.load(x, 120), mask, eight));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(scales4(wp, Q4_0_BYTES, fmask, fscale), dx)));
    wp = w1p + wo;
    r = reduce4_i32(q4dot16(v128.load(wp, 2), xa0, xa1, xa2, xa3, mask, eight), q4dot16(v128.load(wp, 20), xb0, xb1, xb2, xb3, mask, eight),
                    q4dot8(v128.load(wp, 38), v128.load(x, 70), v128.load(x, 86), mask, eight), q4dot8(v128.load(wp, 56), v128.load(x, 104), v128.load(x, 120), mask, eight));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(scales4(wp, Q4_0_BYTES, fmask, fscale), dx)));
    wo += 4 * Q4_0_BYTES; x += 4 * Q8_0_BYTES;
  }
  for (; b < nb; b++) {
    const xq0 = v128.load(x, 2), xq1 = v128.load(x, 18);
    const x0 = i16x8.extend_low_i8x16_s(xq0), x1 = i16x8.extend_high_i8x16_s(xq0);
    const x2 = i16x8.extend_low_i8x16_s(xq1), x3 = i16x8.extend_high_i8x16_s(xq1);
    const dx = f16_to_f32(load<u16>(x));
    let q = v128.load(w + wo, 2);
    let lo = i8x16.sub(v128.and(q, mask), eight), hi = i8x16.sub(i8x16.shr_u(q, 4), eight);
    let p = i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3)));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w + wo)))));
    q = v128.load(w1p + wo, 2);
    lo = i8x16.sub(v128.and(q, mask), eight); hi = i8x16.sub(i8x16.shr_u(q, 4), eight);
    p = i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3)));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w1p + wo)))));
    wo += Q4_0_BYTES; x += Q8_0_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o, hsum_f32x4(a1), 4);
}

// @ts-ignore: decorator
@inline function dot4_q4_0(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE), eight = v128.load(TABLE + T_EIGHT);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let off: usize = 0;
  if (ASC_FEATURE_RELAXED_SIMD) {
    const ones = v128.load(TABLE + T_ONES);
    for (let b = 0; b < nb; b++) {
      const q = v128.load(w, 2);
      const lo = v128.and(q, mask), hi = i8x16.shr_u(q, 4);
      const dw = f16_to_f32(load<u16>(w));
      let y0 = v128.load(x + off, 2), y1 = v128.load(x + off, 18);
      let p = i32x4.extadd_pairwise_i16x8_s(i16x8.sub(rdot_nib(lo, hi, y0, y1), rsum8(y0, y1, ones)));
      a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x + off)))));
      y0 = v128.load(x1 + off, 2); y1 = v128.load(x1 + off, 18);
      p = i32x4.extadd_pairwise_i16x8_s(i16x8.sub(rdot_nib(lo, hi, y0, y1), rsum8(y0, y1, ones)));
      a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x1 + off)))));
      y0 = v128.load(x2 + off, 2); y1 = v128.load(x2 + off, 18);
      p = i32x4.extadd_pairwise_i16x8_s(i16x8.sub(rdot_nib(lo, hi, y0, y1), rsum8(y0, y1, ones)));
      a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x2 + off)))));
      y0 = v128.load(x3 + off, 2); y1 = v128.load(x3 + off, 18);
      p = i32x4.extadd_pairwise_i16x8_s(i16x8.sub(rdot_nib(lo, hi, y0, y1), rsum8(y0, y1, ones)));
      a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x3 + off)))));
      w += Q4_0_BYTES; off += Q8_0_BYTES;
    }
    store<f32>(o, hsum_f32x4(a0));
    store<f32>(o + os, hsum_f32x4(a1));
    store<f32>(o + 2 * os, hsum_f32x4(a2));
    store<f32>(o + 3 * os, hsum_f32x4(a3));
    return;
  }
  for (let b = 0; b < nb; b++) {
    const q = v128.load(w, 2);
    const lo = i8x16.sub(v128.and(q, mask), eight);
    const hi = i8x16.sub(i8x16.shr_u(q, 4), eight);
    const w0 = i16x8.extend_low_i8x16_s(lo), w1 = i16x8.extend_high_i8x16_s(lo);
    const w2 = i16x8.extend_low_i8x16_s(hi), w3 = i16x8.extend_high_i8x16_s(hi);
    const dw = f16_to_f32(load<u16>(w));
    let p = idot_w16(w0, w1, w2, w3, v128.load(x + off, 2), v128.load(x + off, 18));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x + off)))));
    p = idot_w16(w0, w1, w2, w3, v128.load(x1 + off, 2), v128.load(x1 + off, 18));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x1 + off)))));
    p = idot_w16(w0, w1, w2, w3, v128.load(x2 + off, 2), v128.load(x2 + off, 18));
    a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x2 + off)))));
    p = idot_w16(w0, w1, w2, w3, v128.load(x3 + off, 2), v128.load(x3 + off, 18));
    a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x3 + off)))));
    w += Q4_0_BYTES; off += Q8_0_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o + os, hsum_f32x4(a1));
  store<f32>(o + 2 * os, hsum_f32x4(a2));
  store<f32>(o + 3 * os, hsum_f32x4(a3));
}

/** out (t, d) f32 = xq (t rows of n/32 block_q8_0) @ w (d rows of n/32 block_q4_0) ^T. */
export function matmul_q4_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q4_0_BYTES, xRow = <usize>nb * Q8_0_BYTES;
  const os = <usize>d << 2;
  if (t == 1) {
    const g = prefetch_group(wRow);
    let i = 0;
    for (; i + 2 <= d; i += 2) {
      prefetch_rows(w, i, d, wRow, g);
      prefetch_rows(w, i + 1, d, wRow, g);
      dot2_q4_0(out + (<usize>i << 2), w + <usize>i * wRow, wRow, xq, nb);
    }
    if (i < d) store<f32>(out + (<usize>i << 2), dot1_q4_0(w + <usize>i * wRow, xq, nb));
    return;
  }
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * wRow;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4_q4_0(o + <usize>j * os, os, wp, xq + <usize>j * xRow, xRow, nb);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_q4_0(wp, xq + <usize>j * xRow, nb));
    }
  }
}

// ---- Q4_1 ------------------------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function dot1_q4_1(w: usize, x: usize, nb: i32): f32 {
  const mask = v128.load(TABLE + T_NIBBLE);
  let acc = f32x4.splat(0);
  let ms: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const q = v128.load(w, 4);
    const lo = v128.and(q, mask), hi = i8x16.shr_u(q, 4);   // 0..15, so sign extension is harmless
    const p = ASC_FEATURE_RELAXED_SIMD ? i32x4.extadd_pairwise_i16x8_s(rdot_nib(lo, hi, v128.load(x, 4), v128.load(x, 20))) : idot_w16(
      i16x8.extend_low_i8x16_s(lo), i16x8.extend_high_i8x16_s(lo),
      i16x8.extend_low_i8x16_s(hi), i16x8.extend_high_i8x16_s(hi),
      v128.load(x, 4), v128.load(x, 20));
    const dd = f16_to_f32(load<u16>(w)) * f16_to_f32(load<u16>(x));
    ms += f16_to_f32(load<u16>(w, 2)) * f16_to_f32(load<u16>(x, 2));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dd)));
    w += Q4_1_BYTES; x += Q8_1_BYTES;
  }
  return hsum_f32x4(acc) + ms;
}

/** two Q4_1 weight rows against one Q8_1 activation row */
// @ts-ignore: decorator
@inline function dot2_q4_1(o: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let m0: f32 = 0, m1: f32 = 0;
  const w1p = w + ws;
  let wo: usize = 0;
  if (ASC_FEATURE_RELAXED_SIMD) {
    for (let b = 0; b < nb; b++) {
      const xq0 = v128.load(x, 4), xq1 = v128.load(x, 20);
      const dx = f16_to_f32(load<u16>(x)), sx = f16_to_f32(load<u16>(x, 2));
      let q = v128.load(w + wo, 4);
      let p = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v128.and(q, mask), i8x16.shr_u(q, 4), xq0, xq1));
      a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w + wo)))));
      m0 += sx * f16_to_f32(load<u16>(w + wo, 2));
      q = v128.load(w1p + wo, 4);
      p = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v128.and(q, mask), i8x16.shr_u(q, 4), xq0, xq1));
      a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w1p + wo)))));
      m1 += sx * f16_to_f32(load<u16>(w1p + wo, 2));
      wo += Q4_1_BYTES; x += Q8_1_BYTES;
    }
    store<f32>(o, hsum_f32x4(a0) + m0);
    store<f32>(o, hsum_f32x4(a1) + m1, 4);
    return;
  }
  for (let b = 0; b < nb; b++) {
    const xq0 = v128.load(x, 4), xq1 = v128.load(x, 20);
    const x0 = i16x8.extend_low_i8x16_s(xq0), x1 = i16x8.extend_high_i8x16_s(xq0);
    const x2 = i16x8.extend_low_i8x16_s(xq1), x3 = i16x8.extend_high_i8x16_s(xq1);
    const dx = f16_to_f32(load<u16>(x)), sx = f16_to_f32(load<u16>(x, 2));
    let q = v128.load(w + wo, 4);
    let lo = v128.and(q, mask), hi = i8x16.shr_u(q, 4);
    let p = i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3)));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w + wo)))));
    m0 += sx * f16_to_f32(load<u16>(w + wo, 2));
    q = v128.load(w1p + wo, 4);
    lo = v128.and(q, mask); hi = i8x16.shr_u(q, 4);
    p = i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1)),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3)));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dx * f16_to_f32(load<u16>(w1p + wo)))));
    m1 += sx * f16_to_f32(load<u16>(w1p + wo, 2));
    wo += Q4_1_BYTES; x += Q8_1_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0) + m0);
  store<f32>(o, hsum_f32x4(a1) + m1, 4);
}

// @ts-ignore: decorator
@inline function dot4_q4_1(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let m0: f32 = 0, m1: f32 = 0, m2: f32 = 0, m3: f32 = 0;
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let off: usize = 0;
  for (let b = 0; b < nb; b++) {
    const q = v128.load(w, 4);
    const lo = v128.and(q, mask), hi = i8x16.shr_u(q, 4);
    const w0 = i16x8.extend_low_i8x16_s(lo), w1 = i16x8.extend_high_i8x16_s(lo);
    const w2 = i16x8.extend_low_i8x16_s(hi), w3 = i16x8.extend_high_i8x16_s(hi);
    const dw = f16_to_f32(load<u16>(w)), mw = f16_to_f32(load<u16>(w, 2));
    let p = idot_w16(w0, w1, w2, w3, v128.load(x + off, 4), v128.load(x + off, 20));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x + off)))));
    m0 += mw * f16_to_f32(load<u16>(x + off, 2));
    p = idot_w16(w0, w1, w2, w3, v128.load(x1 + off, 4), v128.load(x1 + off, 20));
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x1 + off)))));
    m1 += mw * f16_to_f32(load<u16>(x1 + off, 2));
    p = idot_w16(w0, w1, w2, w3, v128.load(x2 + off, 4), v128.load(x2 + off, 20));
    a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x2 + off)))));
    m2 += mw * f16_to_f32(load<u16>(x2 + off, 2));
    p = idot_w16(w0, w1, w2, w3, v128.load(x3 + off, 4), v128.load(x3 + off, 20));
    a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_to_f32(load<u16>(x3 + off)))));
    m3 += mw * f16_to_f32(load<u16>(x3 + off, 2));
    w += Q4_1_BYTES; off += Q8_1_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0) + m0);
  store<f32>(o + os, hsum_f32x4(a1) + m1);
  store<f32>(o + 2 * os, hsum_f32x4(a2) + m2);
  store<f32>(o + 3 * os, hsum_f32x4(a3) + m3);
}

/** out (t, d) f32 = xq (t rows of n/32 block_q8_1) @ w (d rows of n/32 block_q4_1) ^T. */
export function matmul_q4_1(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q4_1_BYTES, xRow = <usize>nb * Q8_1_BYTES;
  const os = <usize>d << 2;
  if (t == 1) {
    const g = prefetch_group(wRow);
    let i = 0;
    for (; i + 2 <= d; i += 2) {
      prefetch_rows(w, i, d, wRow, g);
      prefetch_rows(w, i + 1, d, wRow, g);
      dot2_q4_1(out + (<usize>i << 2), w + <usize>i * wRow, wRow, xq, nb);
    }
    if (i < d) store<f32>(out + (<usize>i << 2), dot1_q4_1(w + <usize>i * wRow, xq, nb));
    return;
  }
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * wRow;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4_q4_1(o + <usize>j * os, os, wp, xq + <usize>j * xRow, xRow, nb);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_q4_1(wp, xq + <usize>j * xRow, nb));
    }
  }
}
