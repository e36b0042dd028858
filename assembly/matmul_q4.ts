// 4-bit weights: matmul_q4_0 (block_q4_0 against Q8_0X rows in the relaxed build, Q8_0W rows in SIMD128: the int8
// and d of block_q8_0 either way, so the sums of ggml_vec_dot_q4_0_q8_0) and matmul_q4_1 (block_q4_1 x block_q8_1:
// d_w*d_x*sum(q_w*q_x) + m_w*s_x, as ggml_vec_dot_q4_1_q8_1). The unsigned nibbles meet the activations in
// i32x4.dot_i16x8_s (SIMD128) or as the 0..127 operand of i16x8.relaxed_dot_i8x16_i7x16_s (relaxed); Q4_0's
// offset of 8 is taken off as 8·sum(x) afterwards. Not a quantizer.
import { STREAMS, mv_streams, rdot_nib, idot_w16, f16_at, reduce4_i32, reduce4_i16, fold2, fold4, fold2_i16, fold4_i16, mm_row_tile, pin, scales4, hsum_f32x4, hsum_i32x4, token_chunk, QK, Q4_0_BYTES, Q4_1_BYTES, Q8_0X_BYTES, Q8_0W_BYTES, Q8_0T_BYTES, Q8_1_BYTES, q8x_d, q8x_s, q8x_q, TABLE, T_NIBBLE, T_U16_N0, T_U16_N1, T_U16_N2, T_ONES16 } from "./common";

// ---- relaxed-build helper (only compiled in when ASC_FEATURE_RELAXED_SIMD) -------------------------------------

/**
 * i16x8 partial sums of u·x of one Q4_0 block: its packed nibbles q (low = elements 0-15, high = 16-31, each
 * 0..15) against 32 int8 activations (x0 = elements 0-15, x1 = 16-31); each lane is at most 4·15·127 = 7620 in
 * size. Q4_0's offset of 8 is taken off later as 8·sum(x), once per four blocks. The high nibbles by a 16-bit
 * shift and the mask: two instructions on x86, where i8x16.shr_u takes more.
 */
// @ts-ignore: decorator
@inline function q4udot(q: v128, x0: v128, x1: v128, mask: v128): v128 {
  return rdot_nib(v128.and(q, mask), v128.and(i16x8.shr_u(q, 4), mask), x0, x1);
}

// ---- Q4_0 ---------------------------------------------------------------------------------------------------
// The relaxed build multiplies Q8_0X activation rows (int8, for the i8 dot); the SIMD128 build multiplies Q8_0W
// rows (common.ts: the same int8 widened to i16, reordered and pre-scaled), so a block's nibbles come out of the
// packed bytes with one and (or shift) each and meet their activations in four i32x4.dot_i16x8_s, with no
// widening per weight. Both layouts keep d and sums where Q8_0X does and their int8/i16 at nb·8 (q8x_q).

/** bytes of one block's activations, and of a whole row per block, in this build's layout */
// @ts-ignore: decorator
@inline const XB: usize = ASC_FEATURE_RELAXED_SIMD ? QK : 2 * QK;
// @ts-ignore: decorator
@inline const XROW: i32 = ASC_FEATURE_RELAXED_SIMD ? Q8_0X_BYTES : Q8_0W_BYTES;

/**
 * Partial sums of one Q4_0 block's unsigned nibbles (packed q) times its activations at xb. Relaxed: q4udot's
 * i16x8 against Q8_0X int8 (m0 = the byte nibble mask). SIMD128: i32x4, q as eight u16 lanes against Q8_0W (m0,
 * m1, m2 = the u16 masks of bits 0-3, 4-7, 8-11); every product there is 256·u·x, undone after the reduction.
 */
// @ts-ignore: decorator
@inline function q4dot(q: v128, xb: usize, m0: v128, m1: v128, m2: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return q4udot(q, v128.load(xb), v128.load(xb, 16), m0);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(q, m0), v128.load(xb)), i32x4.dot_i16x8_s(v128.and(q, m1), v128.load(xb, 16))),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(q, m2), v128.load(xb, 32)), i32x4.dot_i16x8_s(i16x8.shr_u(q, 12), v128.load(xb, 48))));
}

/**
 * Σu·x of four blocks from their q4dot sums, one i32 lane each. Relaxed: reduce4_i16 (m1 = the i16 ones);
 * SIMD128: reduce4_i32, then the 256 taken off (the sums are exact multiples of it, so the shift is exact).
 */
// @ts-ignore: decorator
@inline function sum4(a: v128, b: v128, c: v128, d: v128, m1: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return reduce4_i16(a, b, c, d, m1);
  return i32x4.shr_s(reduce4_i32(a, b, c, d), 8);
}

/** Σu·x of one block from its q4dot sums */
// @ts-ignore: decorator
@inline function sum1(a: v128, m1: v128): i32 {
  if (ASC_FEATURE_RELAXED_SIMD) return hsum_i32x4(i32x4.dot_i16x8_s(a, m1));
  return hsum_i32x4(a) >> 8;
}

/** four consecutive blocks' Σu·x, one i32 lane each: the packed nibbles q0..q3, activations at xb */
// @ts-ignore: decorator
@inline function dot4blocks(q0: v128, q1: v128, q2: v128, q3: v128, xb: usize, m0: v128, m1: v128, m2: v128): v128 {
  return sum4(q4dot(q0, xb, m0, m1, m2), q4dot(q1, xb + XB, m0, m1, m2),
              q4dot(q2, xb + 2 * XB, m0, m1, m2), q4dot(q3, xb + 3 * XB, m0, m1, m2), m1);
}

/** the constants q4dot and sum4 take, loaded once before a loop: relaxed (nibble mask, i16 ones), SIMD128 (u16 masks) */
// @ts-ignore: decorator
@inline function mask0(): v128 { return v128.load(TABLE + (ASC_FEATURE_RELAXED_SIMD ? T_NIBBLE : T_U16_N0)); }
// @ts-ignore: decorator
@inline function mask1(): v128 { return v128.load(TABLE + (ASC_FEATURE_RELAXED_SIMD ? T_ONES16 : T_U16_N1)); }
// @ts-ignore: decorator
@inline function mask2(): v128 { return v128.load(TABLE + T_U16_N2); }

// Every path below (one row, eight rows, four tokens) does the same float arithmetic for a (row, token) pair:
// per step of four blocks, convert(Σu·x − 8·Σx) · (d_w·d_x) added to an f32x4 whose lanes are the four blocks;
// leftover blocks summed in a scalar; then hsum + scalar. So a result does not depend on how a matmul is cut
// into calls (threads split by rows or by tokens), down to the last bit: activations are re-quantized to int8
// downstream, where a rounding-order difference can flip a value and grow.

/** f32x4 of four blocks' contributions: r = their u·x sums, s = their sums of x, sw/dx = their scales */
// @ts-ignore: decorator
@inline function step4(r: v128, s: v128, sw: v128, dx: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(r, i32x4.shl(s, 3))), f32x4.mul(sw, dx));
}

/** one leftover block's contribution (weights at w, activations at xb) */
// @ts-ignore: decorator
@inline function step1(w: usize, xb: usize, s: i32, dx: f32, m0: v128, m1: v128, m2: v128): f32 {
  return <f32>(sum1(q4dot(v128.load(w, 2), xb, m0, m1, m2), m1) - (s << 3)) * (f16_at(w) * dx);
}

/** one row's step of four blocks (weights at w, activations at xq): acc + their contributions */
// @ts-ignore: decorator
@inline function row_step4(acc: v128, w: usize, xq: usize, s: v128, dx: v128, m0: v128, m1: v128, m2: v128): v128 {
  const r = dot4blocks(v128.load(w, 2), v128.load(w, 20), v128.load(w, 38), v128.load(w, 56), xq, m0, m1, m2);
  return f32x4.add(acc, step4(r, s, scales4(w, Q4_0_BYTES), dx));
}

/** the leftover blocks b..nb-1 of a row (n/32 not a multiple of 4): weights at w and activations at xq start at block b */
// @ts-ignore: decorator
@inline function tail_q4_0(w: usize, xq: usize, xs: usize, xd: usize, b: i32, nb: i32, m0: v128, m1: v128, m2: v128): f32 {
  let tail: f32 = 0;
  for (; b < nb; b++) {
    tail += step1(w, xq, load<i32>(xs + (<usize>b << 2)), load<f32>(xd + (<usize>b << 2)), m0, m1, m2);
    w += Q4_0_BYTES; xq += XB;
  }
  return tail;
}

// @ts-ignore: decorator
@inline function dot1_q4_0(w: usize, x: usize, nb: i32): f32 {
  const m0 = mask0(), m1 = mask1(), m2 = mask2();
  const xd = q8x_d(x, nb), xs = q8x_s(x, nb);
  let xq = q8x_q(x, nb);
  let acc = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    acc = row_step4(acc, w, xq, v128.load(xs + (<usize>b << 2)), v128.load(xd + (<usize>b << 2)), m0, m1, m2);
    w += 4 * Q4_0_BYTES; xq += 4 * XB;
  }
  return hsum_f32x4(acc) + tail_q4_0(w, xq, xs, xd, b, nb, m0, m1, m2);
}

/**
 * eight Q4_0 weight rows (ws bytes apart) against one activation row, results os bytes apart: eight streams
 * side by side (common.ts, STREAMS). Each row's activations are loaded where they are used (L1 hits): holding
 * them for all rows would spill.
 */
// @ts-ignore: decorator
@inline function dot8_q4_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const m0 = mask0(), m1 = mask1(), m2 = mask2();
  const xd = q8x_d(x, nb), xs = q8x_s(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const s = v128.load(xs + (<usize>b << 2)), dx = v128.load(xd + (<usize>b << 2));
    a0 = row_step4(a0, wp, xq, s, dx, m0, m1, m2);
    a1 = row_step4(a1, wp + ws, xq, s, dx, m0, m1, m2);
    a2 = row_step4(a2, wp + 2 * ws, xq, s, dx, m0, m1, m2);
    a3 = row_step4(a3, wp + 3 * ws, xq, s, dx, m0, m1, m2);
    a4 = row_step4(a4, wp + 4 * ws, xq, s, dx, m0, m1, m2);
    a5 = row_step4(a5, wp + 5 * ws, xq, s, dx, m0, m1, m2);
    a6 = row_step4(a6, wp + 6 * ws, xq, s, dx, m0, m1, m2);
    a7 = row_step4(a7, wp + 7 * ws, xq, s, dx, m0, m1, m2);
    wp += 4 * Q4_0_BYTES; xq += 4 * XB;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q4_0(wp, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q4_0(wp + ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 2 * os, hsum_f32x4(a2) + tail_q4_0(wp + 2 * ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 3 * os, hsum_f32x4(a3) + tail_q4_0(wp + 3 * ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 4 * os, hsum_f32x4(a4) + tail_q4_0(wp + 4 * ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 5 * os, hsum_f32x4(a5) + tail_q4_0(wp + 5 * ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 6 * os, hsum_f32x4(a6) + tail_q4_0(wp + 6 * ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 7 * os, hsum_f32x4(a7) + tail_q4_0(wp + 7 * ws, xq, xs, xd, b, nb, m0, m1, m2));
}

/** four Q4_0 weight rows (ws bytes apart) against one activation row: dot8_q4_0 with four streams (mv_streams) */
// @ts-ignore: decorator
@inline function dot4r_q4_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const m0 = mask0(), m1 = mask1(), m2 = mask2();
  const xd = q8x_d(x, nb), xs = q8x_s(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const s = v128.load(xs + (<usize>b << 2)), dx = v128.load(xd + (<usize>b << 2));
    a0 = row_step4(a0, wp, xq, s, dx, m0, m1, m2);
    a1 = row_step4(a1, wp + ws, xq, s, dx, m0, m1, m2);
    a2 = row_step4(a2, wp + 2 * ws, xq, s, dx, m0, m1, m2);
    a3 = row_step4(a3, wp + 3 * ws, xq, s, dx, m0, m1, m2);
    wp += 4 * Q4_0_BYTES; xq += 4 * XB;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q4_0(wp, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q4_0(wp + ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 2 * os, hsum_f32x4(a2) + tail_q4_0(wp + 2 * ws, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + 3 * os, hsum_f32x4(a3) + tail_q4_0(wp + 3 * ws, xq, xs, xd, b, nb, m0, m1, m2));
}

/** two Q4_0 weight rows (ws bytes apart) against one activation row: dot8_q4_0 with two streams (mv_streams) */
// @ts-ignore: decorator
@inline function dot2r_q4_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const m0 = mask0(), m1 = mask1(), m2 = mask2();
  const xd = q8x_d(x, nb), xs = q8x_s(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const s = v128.load(xs + (<usize>b << 2)), dx = v128.load(xd + (<usize>b << 2));
    if (ASC_FEATURE_RELAXED_SIMD) {
      // row_step4 of both rows (sum4's reduce4_i16 written out): a pin after each pair of blocks keeps V8 from
      // hoisting every load of the step and spilling them; it still loads each activation block once for the two
      const v = wp + ws;
      const r01 = fold2_i16(q4dot(v128.load(wp, 2), xq, m0, m1, m2), q4dot(v128.load(wp, 20), xq + XB, m0, m1, m2));
      const t01 = fold2_i16(q4dot(v128.load(v, 2), xq, m0, m1, m2), q4dot(v128.load(v, 20), xq + XB, m0, m1, m2));
      pin(o, r01); pin(o + os, t01);
      const r23 = fold2_i16(q4dot(v128.load(wp, 38), xq + 2 * XB, m0, m1, m2), q4dot(v128.load(wp, 56), xq + 3 * XB, m0, m1, m2));
      const t23 = fold2_i16(q4dot(v128.load(v, 38), xq + 2 * XB, m0, m1, m2), q4dot(v128.load(v, 56), xq + 3 * XB, m0, m1, m2));
      a0 = f32x4.add(a0, step4(i32x4.dot_i16x8_s(fold4_i16(r01, r23), m1), s, scales4(wp, Q4_0_BYTES), dx));
      pin(o, a0);
      a1 = f32x4.add(a1, step4(i32x4.dot_i16x8_s(fold4_i16(t01, t23), m1), s, scales4(v, Q4_0_BYTES), dx));
      pin(o + os, a1);
    } else {
      a0 = row_step4(a0, wp, xq, s, dx, m0, m1, m2);
      a1 = row_step4(a1, wp + ws, xq, s, dx, m0, m1, m2);
    }
    wp += 4 * Q4_0_BYTES; xq += 4 * XB;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q4_0(wp, xq, xs, xd, b, nb, m0, m1, m2));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q4_0(wp + ws, xq, xs, xd, b, nb, m0, m1, m2));
}

/** relaxed: one token's four-block Σu·x against nibbles already unpacked (la/ha .. ld/hd) from the row at xq */
// @ts-ignore: decorator
@inline function tok4(la: v128, ha: v128, lb: v128, hb: v128, lc: v128, hc: v128, ld: v128, hd: v128, xq: usize, ones: v128): v128 {
  return reduce4_i16(rdot_nib(la, ha, v128.load(xq), v128.load(xq, 16)), rdot_nib(lb, hb, v128.load(xq, 32), v128.load(xq, 48)),
                     rdot_nib(lc, hc, v128.load(xq, 64), v128.load(xq, 80)), rdot_nib(ld, hd, v128.load(xq, 96), v128.load(xq, 112)), ones);
}

/**
 * one Q4_0 weight row against four activation rows (xs bytes apart). Relaxed: nibbles are unpacked once for all
 * four; SIMD128: the packed blocks are loaded once and each token's masks and shift redone (four ops a block).
 */
// @ts-ignore: decorator
@inline function dot4_q4_0(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  const m0 = mask0(), m1 = mask1(), m2 = mask2();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  const so = q8x_s(0, nb), qo = q8x_q(0, nb);
  let b = 0;
  let qb: usize = qo;   // this step's activations, from each row's start
  for (; b + 4 <= nb; b += 4) {
    const sw = scales4(w, Q4_0_BYTES);
    const bo = <usize>b << 2;
    let r0: v128, r1: v128, r2: v128, r3: v128;
    if (ASC_FEATURE_RELAXED_SIMD) {
      let q = v128.load(w, 2);
      const la = v128.and(q, m0), ha = v128.and(i16x8.shr_u(q, 4), m0);
      q = v128.load(w, 20);
      const lb = v128.and(q, m0), hb = v128.and(i16x8.shr_u(q, 4), m0);
      q = v128.load(w, 38);
      const lc = v128.and(q, m0), hc = v128.and(i16x8.shr_u(q, 4), m0);
      q = v128.load(w, 56);
      const ld = v128.and(q, m0), hd = v128.and(i16x8.shr_u(q, 4), m0);
      r0 = tok4(la, ha, lb, hb, lc, hc, ld, hd, x + qb, m1);
      r1 = tok4(la, ha, lb, hb, lc, hc, ld, hd, x1 + qb, m1);
      r2 = tok4(la, ha, lb, hb, lc, hc, ld, hd, x2 + qb, m1);
      r3 = tok4(la, ha, lb, hb, lc, hc, ld, hd, x3 + qb, m1);
    } else {
      const q0 = v128.load(w, 2), q1 = v128.load(w, 20), q2 = v128.load(w, 38), q3 = v128.load(w, 56);
      r0 = dot4blocks(q0, q1, q2, q3, x + qb, m0, m1, m2);
      r1 = dot4blocks(q0, q1, q2, q3, x1 + qb, m0, m1, m2);
      r2 = dot4blocks(q0, q1, q2, q3, x2 + qb, m0, m1, m2);
      r3 = dot4blocks(q0, q1, q2, q3, x3 + qb, m0, m1, m2);
    }
    a0 = f32x4.add(a0, step4(r0, v128.load(x + so + bo), sw, v128.load(x + bo)));
    a1 = f32x4.add(a1, step4(r1, v128.load(x1 + so + bo), sw, v128.load(x1 + bo)));
    a2 = f32x4.add(a2, step4(r2, v128.load(x2 + so + bo), sw, v128.load(x2 + bo)));
    a3 = f32x4.add(a3, step4(r3, v128.load(x3 + so + bo), sw, v128.load(x3 + bo)));
    w += 4 * Q4_0_BYTES; qb += 4 * XB;
  }
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; b < nb; b++) {
    const bo = <usize>b << 2;
    t0 += step1(w, x + qb, load<i32>(x + so + bo), load<f32>(x + bo), m0, m1, m2);
    t1 += step1(w, x1 + qb, load<i32>(x1 + so + bo), load<f32>(x1 + bo), m0, m1, m2);
    t2 += step1(w, x2 + qb, load<i32>(x2 + so + bo), load<f32>(x2 + bo), m0, m1, m2);
    t3 += step1(w, x3 + qb, load<i32>(x3 + so + bo), load<f32>(x3 + bo), m0, m1, m2);
    w += Q4_0_BYTES; qb += XB;
  }
  store<f32>(o, hsum_f32x4(a0) + t0);
  store<f32>(o + os, hsum_f32x4(a1) + t1);
  store<f32>(o + 2 * os, hsum_f32x4(a2) + t2);
  store<f32>(o + 3 * os, hsum_f32x4(a3) + t3);
}

/**
 * out (t, d) f32 = xq (t activation rows: Q8_0X in the relaxed build, Q8_0W in SIMD128; common.ts)
 * @ w (d rows of n/32 block_q4_0) ^T.
 */
export function matmul_q4_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  mv_q4_0(out, xq, w, n, d, t, <usize>d << 2);
}

/** one token's d results at out: rows i, i + seg, ... side by side, s long streams (common.ts mv_streams) */
// @ts-ignore: decorator
@inline function mv1_q4_0(out: usize, xq: usize, w: usize, nb: i32, d: i32, wRow: usize): void {
  const s = mv_streams(), seg = d / s;
  const so = <usize>seg << 2, sw = <usize>seg * wRow;
  for (let i = 0; i < seg; i++) {
    const o = out + (<usize>i << 2), wp = w + <usize>i * wRow;
    if (s == 8) dot8_q4_0(o, so, wp, sw, xq, nb);
    else if (s == 4) dot4r_q4_0(o, so, wp, sw, xq, nb);
    else dot2r_q4_0(o, so, wp, sw, xq, nb);
  }
  for (let i = seg * s; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_q4_0(w + <usize>i * wRow, xq, nb));
}

/**
 * matmul_q4_0 with token j's results at out + j·os (the prefill kernel's fallback writes into a wider output). Fewer
 * than four tokens take the matrix-vector path once each: one weight row against one token at a time is a single
 * dependent chain, where s streams keep s in flight (kernels.bench --small-batch: t = 2 and 3 in 1.12-1.26x the
 * time of t matrix-vector passes on a thread's run of rows, SIMD128, weights cold).
 */
function mv_q4_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, os: usize): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q4_0_BYTES, xRow = <usize>nb * XROW;
  if (t < 4) {
    for (let j = 0; j < t; j++) mv1_q4_0(out + <usize>j * os, xq + <usize>j * xRow, w, nb, d, wRow);
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

// ---- Q4_0 matrix-matrix (prefill), SIMD128 -----------------------------------------------------------------
// matmul_q4_0_mm in the SIMD128 build: the same numbers as matmul_q4_0 (the same Σu·x per block, the same step4 /
// step1 float order per output), computed in tiles: mm_row_tile rows (common.ts) at a time against each group of
// four tokens, so those rows and the group's activations stay in L1 while the four tokens share each row's masked
// weights. The relaxed build's matmul_q4_0_mm is further down (Q8_0T).

/** SIMD128: Σ of one block's four u16-lane operands (u0..u3, already masked) against its Q8_0W i16 at xb, i32x4 */
// @ts-ignore: decorator
@inline function q4dotu(u0: v128, u1: v128, u2: v128, u3: v128, xb: usize): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(u0, v128.load(xb)), i32x4.dot_i16x8_s(u1, v128.load(xb, 16))),
    i32x4.add(i32x4.dot_i16x8_s(u2, v128.load(xb, 32)), i32x4.dot_i16x8_s(u3, v128.load(xb, 48))));
}

/**
 * SIMD128: one Q4_0 row against four Q8_0W tokens (xs bytes apart). Unlike dot4_q4_0, which re-masks the packed
 * nibbles for every token, each block is masked once (u0..u3) and its four operands meet all four tokens; the
 * blocks' i32x4 sums are folded two at a time (fold2, then fold4: reduce4_i32's own steps), so the lanes and the
 * shift by 8 are those of sum4.
 */
// @ts-ignore: decorator
@inline function mm4_q4_0_simd(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  const m0 = mask0(), m1 = mask1(), m2 = mask2();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  const so = q8x_s(0, nb);
  let qb: usize = q8x_q(0, nb);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const sw = scales4(w, Q4_0_BYTES);
    const bo = <usize>b << 2;
    let q = v128.load(w, 2);
    let u0 = v128.and(q, m0), u1 = v128.and(q, m1), u2 = v128.and(q, m2), u3 = i16x8.shr_u(q, 12);
    q = v128.load(w, 20);
    let v0 = v128.and(q, m0), v1 = v128.and(q, m1), v2 = v128.and(q, m2), v3 = i16x8.shr_u(q, 12);
    const h0 = fold2(q4dotu(u0, u1, u2, u3, x + qb), q4dotu(v0, v1, v2, v3, x + qb + XB));
    pin(o, h0);
    const h1 = fold2(q4dotu(u0, u1, u2, u3, x1 + qb), q4dotu(v0, v1, v2, v3, x1 + qb + XB));
    pin(o + os, h1);
    const h2 = fold2(q4dotu(u0, u1, u2, u3, x2 + qb), q4dotu(v0, v1, v2, v3, x2 + qb + XB));
    pin(o + 2 * os, h2);
    const h3 = fold2(q4dotu(u0, u1, u2, u3, x3 + qb), q4dotu(v0, v1, v2, v3, x3 + qb + XB));
    pin(o + 3 * os, h3);
    q = v128.load(w, 38);
    u0 = v128.and(q, m0); u1 = v128.and(q, m1); u2 = v128.and(q, m2); u3 = i16x8.shr_u(q, 12);
    q = v128.load(w, 56);
    v0 = v128.and(q, m0); v1 = v128.and(q, m1); v2 = v128.and(q, m2); v3 = i16x8.shr_u(q, 12);
    const c = qb + 2 * XB, e = qb + 3 * XB;
    const r0 = i32x4.shr_s(fold4(h0, fold2(q4dotu(u0, u1, u2, u3, x + c), q4dotu(v0, v1, v2, v3, x + e))), 8);
    a0 = f32x4.add(a0, step4(r0, v128.load(x + so + bo), sw, v128.load(x + bo)));
    pin(o, a0);
    const r1 = i32x4.shr_s(fold4(h1, fold2(q4dotu(u0, u1, u2, u3, x1 + c), q4dotu(v0, v1, v2, v3, x1 + e))), 8);
    a1 = f32x4.add(a1, step4(r1, v128.load(x1 + so + bo), sw, v128.load(x1 + bo)));
    pin(o + os, a1);
    const r2 = i32x4.shr_s(fold4(h2, fold2(q4dotu(u0, u1, u2, u3, x2 + c), q4dotu(v0, v1, v2, v3, x2 + e))), 8);
    a2 = f32x4.add(a2, step4(r2, v128.load(x2 + so + bo), sw, v128.load(x2 + bo)));
    pin(o + 2 * os, a2);
    const r3 = i32x4.shr_s(fold4(h3, fold2(q4dotu(u0, u1, u2, u3, x3 + c), q4dotu(v0, v1, v2, v3, x3 + e))), 8);
    a3 = f32x4.add(a3, step4(r3, v128.load(x3 + so + bo), sw, v128.load(x3 + bo)));
    pin(o + 3 * os, a3);
    w += 4 * Q4_0_BYTES; qb += 4 * XB;
  }
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; b < nb; b++) {
    const bo = <usize>b << 2;
    t0 += step1(w, x + qb, load<i32>(x + so + bo), load<f32>(x + bo), m0, m1, m2);
    t1 += step1(w, x1 + qb, load<i32>(x1 + so + bo), load<f32>(x1 + bo), m0, m1, m2);
    t2 += step1(w, x2 + qb, load<i32>(x2 + so + bo), load<f32>(x2 + bo), m0, m1, m2);
    t3 += step1(w, x3 + qb, load<i32>(x3 + so + bo), load<f32>(x3 + bo), m0, m1, m2);
    w += Q4_0_BYTES; qb += XB;
  }
  store<f32>(o, hsum_f32x4(a0) + t0);
  store<f32>(o + os, hsum_f32x4(a1) + t1);
  store<f32>(o + 2 * os, hsum_f32x4(a2) + t2);
  store<f32>(o + 3 * os, hsum_f32x4(a3) + t3);
}

/**
 * SIMD128: matmul_q4_0_mm on Q8_0W rows. Rows in tiles of mm_row_tile; each tile meets each group of four tokens
 * (mm4_q4_0_simd); tokens past the last group of four one by one, and t < 4 is matmul_q4_0's.
 */
function mm_q4_0_simd128(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q4_0_BYTES, xRow = <usize>nb * XROW;
  const os = <usize>ldo << 2;
  if (t < 4) { mv_q4_0(out, xq, w, n, d, t, os); return; }
  const rt = mm_row_tile(<i32>wRow, <i32>xRow);
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i0 = 0; i0 < d; i0 += rt) {
      const i1 = min(d, i0 + rt);
      let j = j0;
      for (; j + 4 <= j1; j += 4) {
        const xj = xq + <usize>j * xRow, oj = out + <usize>j * os;
        for (let i = i0; i < i1; i++) mm4_q4_0_simd(oj + (<usize>i << 2), os, w + <usize>i * wRow, xj, xRow, nb);
      }
      for (; j < j1; j++) {
        for (let i = i0; i < i1; i++) store<f32>(out + <usize>j * os + (<usize>i << 2), dot1_q4_0(w + <usize>i * wRow, xq + <usize>j * xRow, nb));
      }
    }
  }
}

// ---- Q4_0 against Q8_0T (relaxed prefill) -------------------------------------------------------------------
// One weight row against groups of four tokens laid out as Q8_0T (common.ts): per block, the low and high nibbles
// and their three lane rotations (W0..W7) meet the group's eight chunks in eight relaxed dots whose i16 sums add
// lane-wise (each lane at most 8·2·15·127 = 30480); one i32x4.dot_i16x8_s with ones then gives Σu·x with lane m =
// token m. No lane moves across blocks or tokens, so there is no reduction tree. The float step per block is
// step4's, lane for lane (here lanes are tokens, there blocks), and the four-block accumulators a0..a3 and the
// tail are summed as hsum_f32x4 + tail: matmul_q4_0's bits.

/**
 * relaxed: one Q4_0 block's Σu·x against a Q8_0T block of four tokens at xq (lane m = token m), from W0..W7. The
 * low half's sum is pinned (common.ts) at o before the high half's chunks load: V8 would load all eight first and
 * spill the rotated weights.
 */
// @ts-ignore: decorator
@inline function q4t_dot(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, xq: usize, ones: v128, o: usize): v128 {
  const d0 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq), w0), d1 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 16), w1);
  const d2 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 32), w2), d3 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 48), w3);
  const l = i16x8.add(i16x8.add(d0, d1), i16x8.add(d2, d3));
  pin(o, l);
  const d4 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 64), w4), d5 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 80), w5);
  const d6 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 96), w6), d7 = i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 112), w7);
  return i32x4.dot_i16x8_s(i16x8.add(l, i16x8.add(i16x8.add(d4, d5), i16x8.add(d6, d7))), ones);
}

/** one block's contribution for four tokens: r = their Σu·x, s = their sums of x, dw = the weight scale (splat), dx = theirs */
// @ts-ignore: decorator
@inline function q4t_step(r: v128, s: v128, dw: v128, dx: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(r, i32x4.shl(s, 3))), f32x4.mul(dw, dx));
}

/** the four tokens' results r (lane m) to o + m·os, the first nt of them */
// @ts-ignore: decorator
@inline function store_tokens(o: usize, os: usize, r: v128, nt: i32): void {
  store<f32>(o, f32x4.extract_lane(r, 0));
  if (nt > 1) store<f32>(o + os, f32x4.extract_lane(r, 1));
  if (nt > 2) store<f32>(o + 2 * os, f32x4.extract_lane(r, 2));
  if (nt > 3) store<f32>(o + 3 * os, f32x4.extract_lane(r, 3));
}

/** relaxed: one Q4_0 row (w) against one Q8_0T group (xg, nt of its four tokens real), results os bytes apart */
// @ts-ignore: decorator
@inline function mmt1_q4_0(o: usize, os: usize, w: usize, xg: usize, nb: i32, nt: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE), ones = v128.load(TABLE + T_ONES16);
  const dT = xg, sT = xg + (<usize>nb << 4);
  let qT = xg + (<usize>nb << 5);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const bo = <usize>b << 4;
    a0 = f32x4.add(a0, mmt_block(o, w, qT, sT + bo, dT + bo, mask, ones));
    a1 = f32x4.add(a1, mmt_block(o, w + Q4_0_BYTES, qT + 128, sT + bo + 16, dT + bo + 16, mask, ones));
    a2 = f32x4.add(a2, mmt_block(o, w + 2 * Q4_0_BYTES, qT + 256, sT + bo + 32, dT + bo + 32, mask, ones));
    a3 = f32x4.add(a3, mmt_block(o, w + 3 * Q4_0_BYTES, qT + 384, sT + bo + 48, dT + bo + 48, mask, ones));
    w += 4 * Q4_0_BYTES; qT += 512;
  }
  let at = f32x4.splat(0);
  for (; b < nb; b++) {
    const bo = <usize>b << 4;
    at = f32x4.add(at, mmt_block(o, w, qT, sT + bo, dT + bo, mask, ones));
    w += Q4_0_BYTES; qT += 128;
  }
  store_tokens(o, os, f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), at), nt);
}

/** one Q4_0 block (at w) against one Q8_0T block (int8 at q, sums at s, scales at dx): its contribution */
// @ts-ignore: decorator
@inline function mmt_block(o: usize, w: usize, q: usize, s: usize, dx: usize, mask: v128, ones: v128): v128 {
  const p = v128.load(w, 2);
  const lo = v128.and(p, mask), hi = v128.and(i16x8.shr_u(p, 4), mask);
  const r = q4t_dot(lo, v128.shuffle<i32>(lo, lo, 1, 2, 3, 0), v128.shuffle<i32>(lo, lo, 2, 3, 0, 1), v128.shuffle<i32>(lo, lo, 3, 0, 1, 2),
                    hi, v128.shuffle<i32>(hi, hi, 1, 2, 3, 0), v128.shuffle<i32>(hi, hi, 2, 3, 0, 1), v128.shuffle<i32>(hi, hi, 3, 0, 1, 2), q, ones, o);
  return q4t_step(r, v128.load(s), f32x4.splat(f16_at(w)), v128.load(dx));
}

/**
 * relaxed: one Q4_0 row against two Q8_0T groups (xa: four real tokens, results at o; xb: nb real of its four,
 * results at ob): the row's nibbles and rotations shared by eight tokens
 */
// @ts-ignore: decorator
@inline function mmt2_q4_0(o: usize, ob: usize, os: usize, w: usize, xa: usize, xb: usize, nb: i32, nt: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE), ones = v128.load(TABLE + T_ONES16);
  const so = <usize>nb << 4;
  let qo = <usize>nb << 5;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const bo = <usize>b << 4;
    {
      const p = v128.load(w, 2);
      const lo = v128.and(p, mask), hi = v128.and(i16x8.shr_u(p, 4), mask);
      const w1 = v128.shuffle<i32>(lo, lo, 1, 2, 3, 0), w2 = v128.shuffle<i32>(lo, lo, 2, 3, 0, 1), w3 = v128.shuffle<i32>(lo, lo, 3, 0, 1, 2);
      const w5 = v128.shuffle<i32>(hi, hi, 1, 2, 3, 0), w6 = v128.shuffle<i32>(hi, hi, 2, 3, 0, 1), w7 = v128.shuffle<i32>(hi, hi, 3, 0, 1, 2);
      const dw = f32x4.splat(f16_at(w));
      a0 = f32x4.add(a0, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xa + qo, ones, o), v128.load(xa + so + bo), dw, v128.load(xa + bo)));
      pin(o, a0);
      b0 = f32x4.add(b0, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xb + qo, ones, ob), v128.load(xb + so + bo), dw, v128.load(xb + bo)));
      pin(ob, b0);
    }
    {
      const p = v128.load(w + 1 * Q4_0_BYTES, 2);
      const lo = v128.and(p, mask), hi = v128.and(i16x8.shr_u(p, 4), mask);
      const w1 = v128.shuffle<i32>(lo, lo, 1, 2, 3, 0), w2 = v128.shuffle<i32>(lo, lo, 2, 3, 0, 1), w3 = v128.shuffle<i32>(lo, lo, 3, 0, 1, 2);
      const w5 = v128.shuffle<i32>(hi, hi, 1, 2, 3, 0), w6 = v128.shuffle<i32>(hi, hi, 2, 3, 0, 1), w7 = v128.shuffle<i32>(hi, hi, 3, 0, 1, 2);
      const dw = f32x4.splat(f16_at(w + 1 * Q4_0_BYTES));
      a1 = f32x4.add(a1, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xa + qo + 128, ones, o), v128.load(xa + so + bo + 16), dw, v128.load(xa + bo + 16)));
      pin(o, a1);
      b1 = f32x4.add(b1, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xb + qo + 128, ones, ob), v128.load(xb + so + bo + 16), dw, v128.load(xb + bo + 16)));
      pin(ob, b1);
    }
    {
      const p = v128.load(w + 2 * Q4_0_BYTES, 2);
      const lo = v128.and(p, mask), hi = v128.and(i16x8.shr_u(p, 4), mask);
      const w1 = v128.shuffle<i32>(lo, lo, 1, 2, 3, 0), w2 = v128.shuffle<i32>(lo, lo, 2, 3, 0, 1), w3 = v128.shuffle<i32>(lo, lo, 3, 0, 1, 2);
      const w5 = v128.shuffle<i32>(hi, hi, 1, 2, 3, 0), w6 = v128.shuffle<i32>(hi, hi, 2, 3, 0, 1), w7 = v128.shuffle<i32>(hi, hi, 3, 0, 1, 2);
      const dw = f32x4.splat(f16_at(w + 2 * Q4_0_BYTES));
      a2 = f32x4.add(a2, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xa + qo + 256, ones, o), v128.load(xa + so + bo + 32), dw, v128.load(xa + bo + 32)));
      pin(o, a2);
      b2 = f32x4.add(b2, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xb + qo + 256, ones, ob), v128.load(xb + so + bo + 32), dw, v128.load(xb + bo + 32)));
      pin(ob, b2);
    }
    {
      const p = v128.load(w + 3 * Q4_0_BYTES, 2);
      const lo = v128.and(p, mask), hi = v128.and(i16x8.shr_u(p, 4), mask);
      const w1 = v128.shuffle<i32>(lo, lo, 1, 2, 3, 0), w2 = v128.shuffle<i32>(lo, lo, 2, 3, 0, 1), w3 = v128.shuffle<i32>(lo, lo, 3, 0, 1, 2);
      const w5 = v128.shuffle<i32>(hi, hi, 1, 2, 3, 0), w6 = v128.shuffle<i32>(hi, hi, 2, 3, 0, 1), w7 = v128.shuffle<i32>(hi, hi, 3, 0, 1, 2);
      const dw = f32x4.splat(f16_at(w + 3 * Q4_0_BYTES));
      a3 = f32x4.add(a3, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xa + qo + 384, ones, o), v128.load(xa + so + bo + 48), dw, v128.load(xa + bo + 48)));
      pin(o, a3);
      b3 = f32x4.add(b3, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xb + qo + 384, ones, ob), v128.load(xb + so + bo + 48), dw, v128.load(xb + bo + 48)));
      pin(ob, b3);
    }
    w += 4 * Q4_0_BYTES; qo += 512;
  }
  let at = f32x4.splat(0), bt = f32x4.splat(0);
  for (; b < nb; b++) {
    const bo = <usize>b << 4;
    {
      const p = v128.load(w, 2);
      const lo = v128.and(p, mask), hi = v128.and(i16x8.shr_u(p, 4), mask);
      const w1 = v128.shuffle<i32>(lo, lo, 1, 2, 3, 0), w2 = v128.shuffle<i32>(lo, lo, 2, 3, 0, 1), w3 = v128.shuffle<i32>(lo, lo, 3, 0, 1, 2);
      const w5 = v128.shuffle<i32>(hi, hi, 1, 2, 3, 0), w6 = v128.shuffle<i32>(hi, hi, 2, 3, 0, 1), w7 = v128.shuffle<i32>(hi, hi, 3, 0, 1, 2);
      const dw = f32x4.splat(f16_at(w));
      at = f32x4.add(at, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xa + qo, ones, o), v128.load(xa + so + bo), dw, v128.load(xa + bo)));
      pin(o, at);
      bt = f32x4.add(bt, q4t_step(q4t_dot(lo, w1, w2, w3, hi, w5, w6, w7, xb + qo, ones, ob), v128.load(xb + so + bo), dw, v128.load(xb + bo)));
      pin(ob, bt);
    }
    w += Q4_0_BYTES; qo += 128;
  }
  store_tokens(o, os, f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), at), 4);
  store_tokens(ob, os, f32x4.add(f32x4.add(f32x4.add(b0, b1), f32x4.add(b2, b3)), bt), nt);
}

/**
 * relaxed: matmul_q4_0_mm on Q8_0T groups (any t). Rows in tiles of mm_row_tile; each tile meets the groups of a
 * token chunk two at a time (mmt2_q4_0), a last odd group alone (mmt1_q4_0).
 */
function mm_q4_0_relaxed(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const nb = n / QK;
    const wRow = <usize>nb * Q4_0_BYTES, gBytes = <usize>nb * Q8_0T_BYTES;
    const os = <usize>ldo << 2;
    const groups = (t + 3) >> 2;
    const rt = mm_row_tile(<i32>wRow, nb * Q8_0X_BYTES);
    const gchunk = token_chunk(nb * Q8_0X_BYTES) >> 2;
    for (let g0 = 0; g0 < groups; g0 += gchunk) {
      const g1 = min(groups, g0 + gchunk);
      for (let i0 = 0; i0 < d; i0 += rt) {
        const i1 = min(d, i0 + rt);
        let g = g0;
        for (; g + 2 <= g1; g += 2) {
          const oa = out + (<usize>(g << 2) * os), ob = oa + 4 * os;
          const xa = xq + <usize>g * gBytes, xb = xa + gBytes;
          const nt = min(4, t - ((g + 1) << 2));
          for (let i = i0; i < i1; i++) mmt2_q4_0(oa + (<usize>i << 2), ob + (<usize>i << 2), os, w + <usize>i * wRow, xa, xb, nb, nt);
        }
        for (; g < g1; g++) {
          const oa = out + (<usize>(g << 2) * os), xa = xq + <usize>g * gBytes;
          const nt = min(4, t - (g << 2));
          for (let i = i0; i < i1; i++) mmt1_q4_0(oa + (<usize>i << 2), os, w + <usize>i * wRow, xa, nb, nt);
        }
      }
    }
  }
}

/**
 * out (t, d) f32 = xq @ w^T as matmul_q4_0, bit for bit, for prefill (t > 1), token j's d results at out + 4·ldo·j
 * (ldo = d for a whole matmul; threads that cut it by rows give each run of rows the whole output's ldo).
 * Activations: Q8_0T groups in the relaxed build (formats.ts prefillActivationFormat), Q8_0W rows in SIMD128.
 */
export function matmul_q4_0_mm(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD) mm_q4_0_relaxed(out, xq, w, n, d, t, ldo);
  else mm_q4_0_simd128(out, xq, w, n, d, t, ldo);
}

// ---- Q4_1 ------------------------------------------------------------------------------------------------

/**
 * i32x4 partial sums of one Q4_1 block's nibbles against the block_q8_1 at x: relaxed, from the nibble bytes lo/hi;
 * SIMD128, from the same widened to i16 (w0..w3; unused in the relaxed build and dropped). Every Q4_1 path puts
 * the same products in the same lanes, so its f32 rounding does not depend on the path.
 */
// @ts-ignore: decorator
@inline function q41dot(lo: v128, hi: v128, w0: v128, w1: v128, w2: v128, w3: v128, x: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.extadd_pairwise_i16x8_s(rdot_nib(lo, hi, v128.load(x, 4), v128.load(x, 20)));
  return idot_w16(w0, w1, w2, w3, v128.load(x, 4), v128.load(x, 20));
}

/** f32x4 partial sums of one Q4_1 block at w against the block_q8_1 at x, without the min term (m_w·s_x) */
// @ts-ignore: decorator
@inline function block_q4_1(w: usize, x: usize, mask: v128): v128 {
  const q = v128.load(w, 4);
  const lo = v128.and(q, mask), hi = i8x16.shr_u(q, 4);   // 0..15, so sign extension is harmless
  const p = q41dot(lo, hi, i16x8.extend_low_i8x16_s(lo), i16x8.extend_high_i8x16_s(lo),
                   i16x8.extend_low_i8x16_s(hi), i16x8.extend_high_i8x16_s(hi), x);
  return f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(f16_at(w) * f16_at(x)));
}

/** the min terms m_w·s_x of four rows' blocks (at w, w + ws, w + 2·ws, w + 3·ws) against x, one lane each */
// @ts-ignore: decorator
@inline function mins4_q4_1(w: usize, ws: usize, x: usize): v128 {
  return f32x4.mul(scales4(w + 2, ws), f32x4.splat(f16_at(x + 2)));
}

// @ts-ignore: decorator
@inline function dot1_q4_1(w: usize, x: usize, nb: i32): f32 {
  const mask = v128.load(TABLE + T_NIBBLE);
  let acc = f32x4.splat(0);
  let ms: f32 = 0;
  for (let b = 0; b < nb; b++) {
    acc = f32x4.add(acc, block_q4_1(w, x, mask));
    ms += f16_at(w + 2) * f16_at(x + 2);
    w += Q4_1_BYTES; x += Q8_1_BYTES;
  }
  return hsum_f32x4(acc) + ms;
}

/**
 * eight Q4_1 weight rows (ws bytes apart) against one Q8_1 activation row, results os bytes apart: eight streams
 * (common.ts, STREAMS). Row r's min terms are summed in lane r % 4 of m0 / m1, the same f32 additions as
 * dot1_q4_1's scalar.
 */
// @ts-ignore: decorator
@inline function dot8_q4_1(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const mask = v128.load(TABLE + T_NIBBLE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let m0 = f32x4.splat(0), m1 = f32x4.splat(0);
  const w4 = ws << 2;
  for (let b = 0; b < nb; b++) {
    a0 = f32x4.add(a0, block_q4_1(w, x, mask));
    a1 = f32x4.add(a1, block_q4_1(w + ws, x, mask));
    a2 = f32x4.add(a2, block_q4_1(w + 2 * ws, x, mask));
    a3 = f32x4.add(a3, block_q4_1(w + 3 * ws, x, mask));
    a4 = f32x4.add(a4, block_q4_1(w + w4, x, mask));
    a5 = f32x4.add(a5, block_q4_1(w + 5 * ws, x, mask));
    a6 = f32x4.add(a6, block_q4_1(w + 6 * ws, x, mask));
    a7 = f32x4.add(a7, block_q4_1(w + 7 * ws, x, mask));
    m0 = f32x4.add(m0, mins4_q4_1(w, ws, x));
    m1 = f32x4.add(m1, mins4_q4_1(w + w4, ws, x));
    w += Q4_1_BYTES; x += Q8_1_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0) + f32x4.extract_lane(m0, 0));
  store<f32>(o + os, hsum_f32x4(a1) + f32x4.extract_lane(m0, 1));
  store<f32>(o + 2 * os, hsum_f32x4(a2) + f32x4.extract_lane(m0, 2));
  store<f32>(o + 3 * os, hsum_f32x4(a3) + f32x4.extract_lane(m0, 3));
  store<f32>(o + 4 * os, hsum_f32x4(a4) + f32x4.extract_lane(m1, 0));
  store<f32>(o + 5 * os, hsum_f32x4(a5) + f32x4.extract_lane(m1, 1));
  store<f32>(o + 6 * os, hsum_f32x4(a6) + f32x4.extract_lane(m1, 2));
  store<f32>(o + 7 * os, hsum_f32x4(a7) + f32x4.extract_lane(m1, 3));
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
    const dw = f16_at(w), mw = f16_at(w + 2);
    let p = q41dot(lo, hi, w0, w1, w2, w3, x + off);
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_at(x + off))));
    m0 += mw * f16_at(x + off + 2);
    p = q41dot(lo, hi, w0, w1, w2, w3, x1 + off);
    a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_at(x1 + off))));
    m1 += mw * f16_at(x1 + off + 2);
    p = q41dot(lo, hi, w0, w1, w2, w3, x2 + off);
    a2 = f32x4.add(a2, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_at(x2 + off))));
    m2 += mw * f16_at(x2 + off + 2);
    p = q41dot(lo, hi, w0, w1, w2, w3, x3 + off);
    a3 = f32x4.add(a3, f32x4.mul(f32x4.convert_i32x4_s(p), f32x4.splat(dw * f16_at(x3 + off))));
    m3 += mw * f16_at(x3 + off + 2);
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
    const seg = d / STREAMS;   // rows i, i + seg, ... i + 7·seg side by side: eight long streams (common.ts)
    for (let i = 0; i < seg; i++) dot8_q4_1(out + (<usize>i << 2), <usize>seg << 2, w + <usize>i * wRow, <usize>seg * wRow, xq, nb);
    for (let i = seg * STREAMS; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_q4_1(w + <usize>i * wRow, xq, nb));
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
