// Prefill kernels for K-quant weights: matmul_q4_K_mm and matmul_q6_K_mm, matmul_q4_K's and matmul_q6_K's numbers
// bit for bit (matmul_k.ts: the same exact integer sums per super-block, the same f32 steps per (row, token) in
// the same order), for t > 1 tokens. One weight row meets four tokens at a time: each super-block's nibbles (or
// 6-bit values) and its scales are unpacked once for the four instead of once per token, in tiles of mm_row_tile
// rows against chunks of token_chunk tokens (common.ts), each token's step pinned (common.ts, pin).
import { mm_row_tile, pin, f16_at, reduce4_i32, fold2_i16, fold4_i16, fold4, hsum_f32x4, token_chunk, dot_u7_i8, rdot_nib,
  QK_K, Q4_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, TABLE, T_NIBBLE } from "./common";
import { bytes4, kw_a, kw_b, kmask0, kmask1, kmask2, KTABLE, XK, XK_BSUMS } from "./matmul_k";

// ---- Q4_K -------------------------------------------------------------------------------------------------

/** i32 lanes v (0..63) as i16 pairs (v, v): i32x4.dot_i16x8_s by it scales and adds the two halves of an i32 lane */
// @ts-ignore: decorator
@inline function pair16(v: v128): v128 {
  return v128.or(v, i32x4.shl(v, 16));
}

/**
 * block_q4_K's f32x4 for one token's activation block at x, from the super-block's unpacked parts: v0..v15 the
 * nibbles (relaxed: low and high nibbles of bytes 32p .. 32p + 31 as v[4p] .. v[4p + 3]; SIMD128: the packed
 * bytes in v0..v7 and v8..v10 the u16 lane masks), its scales (scA, scB: pair16'd in the relaxed build) and mins
 * (mnA, mnB, pair16'd), and f16 d, dmin.
 */
// @ts-ignore: decorator
@inline function tok_q4_K(v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128,
  v8: v128, v9: v128, v10: v128, v11: v128, v12: v128, v13: v128, v14: v128, v15: v128,
  x: usize, scA: v128, scB: v128, mnA: v128, mnB: v128, dw: f32, mw: f32): v128 {
  let isum: v128;
  if (ASC_FEATURE_RELAXED_SIMD) {
    // a sub-block's i16 lanes are at most 4·15·127 = 7620 in size, so four of them fold in i16 (30480); each i32
    // lane k of the fold then holds two halves of sub-block k's sum, which one dot with (sc_k, sc_k) scales and adds
    const xq = x + 4;
    const d0 = rdot_nib(v0, v1, v128.load(xq, 0), v128.load(xq, 16));
    const d1 = rdot_nib(v2, v3, v128.load(xq, 32), v128.load(xq, 48));
    const d2 = rdot_nib(v4, v5, v128.load(xq, 64), v128.load(xq, 80));
    const d3 = rdot_nib(v6, v7, v128.load(xq, 96), v128.load(xq, 112));
    const e0 = rdot_nib(v8, v9, v128.load(xq, 128), v128.load(xq, 144));
    const e1 = rdot_nib(v10, v11, v128.load(xq, 160), v128.load(xq, 176));
    const e2 = rdot_nib(v12, v13, v128.load(xq, 192), v128.load(xq, 208));
    const e3 = rdot_nib(v14, v15, v128.load(xq, 224), v128.load(xq, 240));
    isum = i32x4.add(i32x4.dot_i16x8_s(fold4_i16(fold2_i16(d0, d1), fold2_i16(d2, d3)), scA),
                     i32x4.dot_i16x8_s(fold4_i16(fold2_i16(e0, e1), fold2_i16(e2, e3)), scB));
  } else {
    const xw = x + 16;
    const d0 = kw_a(v0, v1, xw, v8, v10), d1 = kw_b(v0, v1, xw, v9);
    const d2 = kw_a(v2, v3, xw + 128, v8, v10), d3 = kw_b(v2, v3, xw + 128, v9);
    const e0 = kw_a(v4, v5, xw + 256, v8, v10), e1 = kw_b(v4, v5, xw + 256, v9);
    const e2 = kw_a(v6, v7, xw + 384, v8, v10), e3 = kw_b(v6, v7, xw + 384, v9);
    isum = i32x4.add(i32x4.mul(i32x4.shr_s(reduce4_i32(d0, d1, d2, d3), 8), scA), i32x4.mul(i32x4.shr_s(reduce4_i32(e0, e1, e2, e3), 8), scB));
  }
  return q4_K_f32(isum, x, mnA, mnB, dw, mw);
}

/** block_q4_K's f32 step for one token (activation block at x), from its scaled sums isum: the mins, then d and dmin */
// @ts-ignore: decorator
@inline function q4_K_f32(isum: v128, x: usize, mnA: v128, mnB: v128, dw: f32, mw: f32): v128 {
  // mins: sub-block k's activation sum is bsums[2k] + bsums[2k + 1], met by (mn_k, mn_k)
  const msum = i32x4.add(i32x4.dot_i16x8_s(v128.load(x + XK_BSUMS), mnA), i32x4.dot_i16x8_s(v128.load(x + XK_BSUMS, 16), mnB));
  const dx = load<f32>(x);
  const dd = f32x4.splat(dw * dx), dm = f32x4.splat(mw * dx);
  return f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(isum), dd), f32x4.mul(f32x4.convert_i32x4_s(msum), dm));
}

/**
 * one Q4_K row (nb super-blocks at w) against tokens at x, x + xs, ... (four, or one when four is false), results
 * os bytes apart: dot_k's numbers per token
 */
// @ts-ignore: decorator
@inline function mm_q4_K(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32, four: bool): void {
  const m0 = kmask0(), m1 = kmask1(), m2 = kmask2();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let xo: usize = 0;
  for (let b = 0; b < nb; b++) {
    const u0 = load<u32>(w, 4), u1 = load<u32>(w, 8), u2 = load<u32>(w, 12);
    // i32 lane k: the 6-bit scale (min) of sub-block k (A) or 4 + k (B), in both of its i16 halves
    let scA = bytes4(u0 & 0x3f3f3f3f);
    let scB = bytes4((u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4));
    const mnA = pair16(bytes4(u1 & 0x3f3f3f3f));
    const mnB = pair16(bytes4(((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4)));
    if (ASC_FEATURE_RELAXED_SIMD) { scA = pair16(scA); scB = pair16(scB); }
    const dw = f16_at(w), mw = f16_at(w + 2);
    let v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128;
    let v8: v128, v9: v128, v10: v128, v11: v128, v12: v128, v13: v128, v14: v128, v15: v128;
    if (ASC_FEATURE_RELAXED_SIMD) {
      // the high nibbles by a 16-bit shift and the mask (matmul_q4.ts, q4udot): the same bytes as i8x16.shr_u
      let qa = v128.load(w, 16), qb = v128.load(w, 32);
      v0 = v128.and(qa, m0); v1 = v128.and(qb, m0); v2 = v128.and(i16x8.shr_u(qa, 4), m0); v3 = v128.and(i16x8.shr_u(qb, 4), m0);
      qa = v128.load(w, 48); qb = v128.load(w, 64);
      v4 = v128.and(qa, m0); v5 = v128.and(qb, m0); v6 = v128.and(i16x8.shr_u(qa, 4), m0); v7 = v128.and(i16x8.shr_u(qb, 4), m0);
      qa = v128.load(w, 80); qb = v128.load(w, 96);
      v8 = v128.and(qa, m0); v9 = v128.and(qb, m0); v10 = v128.and(i16x8.shr_u(qa, 4), m0); v11 = v128.and(i16x8.shr_u(qb, 4), m0);
      qa = v128.load(w, 112); qb = v128.load(w, 128);
      v12 = v128.and(qa, m0); v13 = v128.and(qb, m0); v14 = v128.and(i16x8.shr_u(qa, 4), m0); v15 = v128.and(i16x8.shr_u(qb, 4), m0);
    } else {
      v0 = v128.load(w, 16); v1 = v128.load(w, 32); v2 = v128.load(w, 48); v3 = v128.load(w, 64);
      v4 = v128.load(w, 80); v5 = v128.load(w, 96); v6 = v128.load(w, 112); v7 = v128.load(w, 128);
      v8 = m0; v9 = m1; v10 = m2; v11 = m0; v12 = m0; v13 = m0; v14 = m0; v15 = m0;
    }
    a0 = f32x4.add(a0, tok_q4_K(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, x + xo, scA, scB, mnA, mnB, dw, mw));
    if (four) {
      pin(o, a0);
      a1 = f32x4.add(a1, tok_q4_K(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, x1 + xo, scA, scB, mnA, mnB, dw, mw));
      pin(o + os, a1);
      a2 = f32x4.add(a2, tok_q4_K(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, x2 + xo, scA, scB, mnA, mnB, dw, mw));
      pin(o + 2 * os, a2);
      a3 = f32x4.add(a3, tok_q4_K(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, x3 + xo, scA, scB, mnA, mnB, dw, mw));
      pin(o + 3 * os, a3);
    }
    w += Q4_K_BYTES; xo += XK;
  }
  store<f32>(o, hsum_f32x4(a0));
  if (four) {
    store<f32>(o + os, hsum_f32x4(a1));
    store<f32>(o + 2 * os, hsum_f32x4(a2));
    store<f32>(o + 3 * os, hsum_f32x4(a3));
  }
}

// ---- Q6_K -------------------------------------------------------------------------------------------------

/**
 * block_q6_K's f32x4 for one token's block_q8_K at x, from the super-block's unpacked parts: the 6-bit values of
 * group g (matmul_k.ts q6_group: h = g >> 1, l0 = 16·(g & 1)) in q[4g] .. q[4g + 3], its four scales (relaxed:
 * c[2g] = i16 (s0, s0, s1, s1) twice, c[2g + 1] the same of s2, s3; SIMD128: c[g] = i32 s0..s3), all 16 scales
 * as i16 in lo/hi, and d
 */
// @ts-ignore: decorator
@inline function tok_q6_K(q0: v128, q1: v128, q2: v128, q3: v128, q4: v128, q5: v128, q6: v128, q7: v128,
  q8: v128, q9: v128, q10: v128, q11: v128, q12: v128, q13: v128, q14: v128, q15: v128,
  c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128, lo: v128, hi: v128, x: usize, dw: f32): v128 {
  const xp = x + 4;
  let isum: v128;
  if (ASC_FEATURE_RELAXED_SIMD) {
    isum = fold4(i32x4.add(i32x4.add(q6_pair(q0, q1, xp, xp + 32, c0), q6_pair(q4, q5, xp + 16, xp + 48, c2)),
                           i32x4.add(q6_pair(q8, q9, xp + 128, xp + 160, c4), q6_pair(q12, q13, xp + 144, xp + 176, c6))),
                 i32x4.add(i32x4.add(q6_pair(q2, q3, xp + 64, xp + 96, c1), q6_pair(q6, q7, xp + 80, xp + 112, c3)),
                           i32x4.add(q6_pair(q10, q11, xp + 192, xp + 224, c5), q6_pair(q14, q15, xp + 208, xp + 240, c7))));
  } else {
    isum = i32x4.mul(reduce4_i32(dot_u7_i8(q0, v128.load(xp, 0)), dot_u7_i8(q1, v128.load(xp, 32)),
                                 dot_u7_i8(q2, v128.load(xp, 64)), dot_u7_i8(q3, v128.load(xp, 96))), c0);
    isum = i32x4.add(isum, i32x4.mul(reduce4_i32(dot_u7_i8(q4, v128.load(xp, 16)), dot_u7_i8(q5, v128.load(xp, 48)),
                                                 dot_u7_i8(q6, v128.load(xp, 80)), dot_u7_i8(q7, v128.load(xp, 112))), c1));
    isum = i32x4.add(isum, i32x4.mul(reduce4_i32(dot_u7_i8(q8, v128.load(xp, 128)), dot_u7_i8(q9, v128.load(xp, 160)),
                                                 dot_u7_i8(q10, v128.load(xp, 192)), dot_u7_i8(q11, v128.load(xp, 224))), c2));
    isum = i32x4.add(isum, i32x4.mul(reduce4_i32(dot_u7_i8(q12, v128.load(xp, 144)), dot_u7_i8(q13, v128.load(xp, 176)),
                                                 dot_u7_i8(q14, v128.load(xp, 208)), dot_u7_i8(q15, v128.load(xp, 240))), c3));
  }
  const off = i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(x, 260)), i32x4.dot_i16x8_s(hi, v128.load(x, 276)));
  const dd = f32x4.splat(dw * load<f32>(x));
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(isum, i32x4.shl(off, 5))), dd);
}

/**
 * Relaxed build only: two sub-blocks (6-bit values a, b against the int8 at xa, xb) scaled by c = i16 (sa, sa, sb,
 * sb) twice. A relaxed dot's i16 lane is at most 2·63·127 = 16002 in size, so two fold in i16 (32004); the dot by
 * c then gives i32 lanes (sa·½A, sb·½B, sa·½A', sb·½B'), the halves of each sub-block's sum that fold4 adds.
 */
// @ts-ignore: decorator
@inline function q6_pair(a: v128, b: v128, xa: usize, xb: usize, c: v128): v128 {
  return i32x4.dot_i16x8_s(fold2_i16(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xa), a), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xb), b)), c);
}

/** one Q6_K row against four tokens (or one), as mm_q4_K: dot_k's numbers per token */
// @ts-ignore: decorator
@inline function mm_q6_K(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32, four: bool): void {
  const m4 = v128.load(TABLE + T_NIBBLE), m30 = v128.load(KTABLE), order = v128.load(KTABLE, 16);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let xo: usize = 0;
  for (let b = 0; b < nb; b++) {
    const sc8 = v128.load(w, 192);
    const so = i8x16.swizzle(sc8, order);
    const so16a = i16x8.extend_low_i8x16_s(so), so16b = i16x8.extend_high_i8x16_s(so);
    let c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128;
    if (ASC_FEATURE_RELAXED_SIMD) {
      // group g's scales (i16 lanes 4g .. 4g + 3 of so16a, so16b) as q6_pair's pairs
      c0 = i8x16.shuffle(so16a, so16a, 0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3);
      c1 = i8x16.shuffle(so16a, so16a, 4, 5, 4, 5, 6, 7, 6, 7, 4, 5, 4, 5, 6, 7, 6, 7);
      c2 = i8x16.shuffle(so16a, so16a, 8, 9, 8, 9, 10, 11, 10, 11, 8, 9, 8, 9, 10, 11, 10, 11);
      c3 = i8x16.shuffle(so16a, so16a, 12, 13, 12, 13, 14, 15, 14, 15, 12, 13, 12, 13, 14, 15, 14, 15);
      c4 = i8x16.shuffle(so16b, so16b, 0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3);
      c5 = i8x16.shuffle(so16b, so16b, 4, 5, 4, 5, 6, 7, 6, 7, 4, 5, 4, 5, 6, 7, 6, 7);
      c6 = i8x16.shuffle(so16b, so16b, 8, 9, 8, 9, 10, 11, 10, 11, 8, 9, 8, 9, 10, 11, 10, 11);
      c7 = i8x16.shuffle(so16b, so16b, 12, 13, 12, 13, 14, 15, 14, 15, 12, 13, 12, 13, 14, 15, 14, 15);
    } else {
      c0 = i32x4.extend_low_i16x8_s(so16a); c1 = i32x4.extend_high_i16x8_s(so16a);
      c2 = i32x4.extend_low_i16x8_s(so16b); c3 = i32x4.extend_high_i16x8_s(so16b);
      c4 = c0; c5 = c0; c6 = c0; c7 = c0;
    }
    const lo = i16x8.extend_low_i8x16_s(sc8), hi = i16x8.extend_high_i8x16_s(sc8);
    const dw = f16_at(w + 208);
    // the four groups of matmul_k.ts q6_group: (h, l0) = (0, 0), (0, 16), (1, 0), (1, 16)
    let a = v128.load(w, 0), c = v128.load(w, 32), hh = v128.load(w, 128);
    const q0 = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hh, 4), m30));
    const q1 = v128.or(v128.and(c, m4), v128.and(i16x8.shl(hh, 2), m30));
    const q2 = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hh, m30));
    const q3 = v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hh, 2), m30));
    a = v128.load(w, 16); c = v128.load(w, 48); hh = v128.load(w, 144);
    const q4 = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hh, 4), m30));
    const q5 = v128.or(v128.and(c, m4), v128.and(i16x8.shl(hh, 2), m30));
    const q6 = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hh, m30));
    const q7 = v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hh, 2), m30));
    a = v128.load(w, 64); c = v128.load(w, 96); hh = v128.load(w, 160);
    const q8 = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hh, 4), m30));
    const q9 = v128.or(v128.and(c, m4), v128.and(i16x8.shl(hh, 2), m30));
    const q10 = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hh, m30));
    const q11 = v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hh, 2), m30));
    a = v128.load(w, 80); c = v128.load(w, 112); hh = v128.load(w, 176);
    const q12 = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hh, 4), m30));
    const q13 = v128.or(v128.and(c, m4), v128.and(i16x8.shl(hh, 2), m30));
    const q14 = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hh, m30));
    const q15 = v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hh, 2), m30));
    a0 = f32x4.add(a0, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, c0, c1, c2, c3, c4, c5, c6, c7, lo, hi, x + xo, dw));
    if (four) {
      pin(o, a0);
      a1 = f32x4.add(a1, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, c0, c1, c2, c3, c4, c5, c6, c7, lo, hi, x1 + xo, dw));
      pin(o + os, a1);
      a2 = f32x4.add(a2, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, c0, c1, c2, c3, c4, c5, c6, c7, lo, hi, x2 + xo, dw));
      pin(o + 2 * os, a2);
      a3 = f32x4.add(a3, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, c0, c1, c2, c3, c4, c5, c6, c7, lo, hi, x3 + xo, dw));
      pin(o + 3 * os, a3);
    }
    w += Q6_K_BYTES; xo += Q8_K_BYTES;
  }
  store<f32>(o, hsum_f32x4(a0));
  if (four) {
    store<f32>(o + os, hsum_f32x4(a1));
    store<f32>(o + 2 * os, hsum_f32x4(a2));
    store<f32>(o + 3 * os, hsum_f32x4(a3));
  }
}

// ---- the matmuls ------------------------------------------------------------------------------------------

/** one row against four tokens (or one) of either format; q6 is a constant at every call */
// @ts-ignore: decorator
@inline function mm_k(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32, four: bool, q6: bool): void {
  if (q6) mm_q6_K(o, os, w, x, xs, nb, four);
  else mm_q4_K(o, os, w, x, xs, nb, four);
}

/** out (t tokens, ldo f32 apart; d of each written) = xq @ w^T, tiled: rows of a tile against four tokens at a time, then the rest one by one */
// @ts-ignore: decorator
@inline function matmul_k_mm(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32, q6: bool): void {
  const nb = n / QK_K;
  const wRow = <usize>nb * (q6 ? Q6_K_BYTES : Q4_K_BYTES), xRow = <usize>nb * (q6 ? Q8_K_BYTES : XK);
  const os = <usize>ldo << 2;
  const rt = mm_row_tile(<i32>wRow, <i32>xRow);
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i0 = 0; i0 < d; i0 += rt) {
      const i1 = min(d, i0 + rt);
      let j = j0;
      for (; j + 4 <= j1; j += 4) {
        const xj = xq + <usize>j * xRow, oj = out + <usize>j * os;
        for (let i = i0; i < i1; i++) mm_k(oj + (<usize>i << 2), os, w + <usize>i * wRow, xj, xRow, nb, true, q6);
      }
      for (; j < j1; j++) {
        const xj = xq + <usize>j * xRow, oj = out + <usize>j * os;
        for (let i = i0; i < i1; i++) mm_k(oj + (<usize>i << 2), os, w + <usize>i * wRow, xj, xRow, nb, false, q6);
      }
    }
  }
}

/**
 * out (t, ldo) f32, d of each row written = xq (t rows of this build's Q4_K activations, as matmul_q4_K takes)
 * @ w (d rows of n/256 block_q4_K) ^T: matmul_q4_K's bits
 */
export function matmul_q4_K_mm(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32): void {
  matmul_k_mm(out, xq, w, n, d, t, ldo, false);
}

/** out (t, ldo) f32, d of each row written = xq (t rows of n/256 block_q8_K) @ w (d rows of n/256 block_q6_K) ^T: matmul_q6_K's bits */
export function matmul_q6_K_mm(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32): void {
  matmul_k_mm(out, xq, w, n, d, t, ldo, true);
}
