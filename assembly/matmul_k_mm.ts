// Prefill kernels for K-quant weights: matmul_q4_K_mm and matmul_q6_K_mm, matmul_q4_K's and matmul_q6_K's numbers
// bit for bit (matmul_k.ts: the same exact integer sums per super-block, the same f32 steps per (row, token) in
// the same order), for t > 1 tokens. One weight row meets four tokens at a time: each super-block's nibbles (or
// 6-bit values) and its scales are unpacked once for the four instead of once per token, in tiles of mm_row_tile
// rows against chunks of token_chunk tokens (common.ts), each token's step pinned (common.ts, pin).
import { mm_row_tile, pin, f16_at, reduce4_i32, hsum_f32x4, token_chunk, dot_u7_i8, rdot_nib,
  QK_K, Q4_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, TABLE, T_NIBBLE } from "./common";
import { bytes4, kw_a, kw_b, kmask0, kmask1, kmask2, KTABLE, XK, XK_BSUMS } from "./matmul_k";

// ---- Q4_K -------------------------------------------------------------------------------------------------

/**
 * block_q4_K's f32x4 for one token's activation block at x, from the super-block's unpacked parts: v0..v15 the
 * nibbles (relaxed: low and high nibbles of bytes 32p .. 32p + 31 as v[4p] .. v[4p + 3]; SIMD128: the packed
 * bytes in v0..v7 and v8..v10 the u16 lane masks), its scales and mins (scA, scB, mnA, mnB) and f16 d, dmin.
 */
// @ts-ignore: decorator
@inline function tok_q4_K(v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128,
  v8: v128, v9: v128, v10: v128, v11: v128, v12: v128, v13: v128, v14: v128, v15: v128,
  x: usize, scA: v128, scB: v128, mnA: v128, mnB: v128, dw: f32, mw: f32): v128 {
  let isum: v128;
  if (ASC_FEATURE_RELAXED_SIMD) {
    const xq = x + 4;
    const d0 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v0, v1, v128.load(xq, 0), v128.load(xq, 16)));
    const d1 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v2, v3, v128.load(xq, 32), v128.load(xq, 48)));
    const d2 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v4, v5, v128.load(xq, 64), v128.load(xq, 80)));
    const d3 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v6, v7, v128.load(xq, 96), v128.load(xq, 112)));
    const e0 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v8, v9, v128.load(xq, 128), v128.load(xq, 144)));
    const e1 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v10, v11, v128.load(xq, 160), v128.load(xq, 176)));
    const e2 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v12, v13, v128.load(xq, 192), v128.load(xq, 208)));
    const e3 = i32x4.extadd_pairwise_i16x8_s(rdot_nib(v14, v15, v128.load(xq, 224), v128.load(xq, 240)));
    isum = i32x4.add(i32x4.mul(reduce4_i32(d0, d1, d2, d3), scA), i32x4.mul(reduce4_i32(e0, e1, e2, e3), scB));
  } else {
    const xw = x + 16;
    const d0 = kw_a(v0, v1, xw, v8, v10), d1 = kw_b(v0, v1, xw, v9);
    const d2 = kw_a(v2, v3, xw + 128, v8, v10), d3 = kw_b(v2, v3, xw + 128, v9);
    const e0 = kw_a(v4, v5, xw + 256, v8, v10), e1 = kw_b(v4, v5, xw + 256, v9);
    const e2 = kw_a(v6, v7, xw + 384, v8, v10), e3 = kw_b(v6, v7, xw + 384, v9);
    isum = i32x4.add(i32x4.mul(i32x4.shr_s(reduce4_i32(d0, d1, d2, d3), 8), scA), i32x4.mul(i32x4.shr_s(reduce4_i32(e0, e1, e2, e3), 8), scB));
  }
  const msum = i32x4.add(i32x4.mul(i32x4.extadd_pairwise_i16x8_s(v128.load(x + XK_BSUMS)), mnA),
                         i32x4.mul(i32x4.extadd_pairwise_i16x8_s(v128.load(x + XK_BSUMS, 16)), mnB));
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
    const scA = bytes4(u0 & 0x3f3f3f3f);
    const scB = bytes4((u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4));
    const mnA = bytes4(u1 & 0x3f3f3f3f);
    const mnB = bytes4(((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4));
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
 * group g (matmul_k.ts q6_group: h = g >> 1, l0 = 16·(g & 1)) in q[4g] .. q[4g + 3], the group's scales in s_g,
 * all 16 scales as i16 in lo/hi, and d
 */
// @ts-ignore: decorator
@inline function tok_q6_K(q0: v128, q1: v128, q2: v128, q3: v128, q4: v128, q5: v128, q6: v128, q7: v128,
  q8: v128, q9: v128, q10: v128, q11: v128, q12: v128, q13: v128, q14: v128, q15: v128,
  s0: v128, s1: v128, s2: v128, s3: v128, lo: v128, hi: v128, x: usize, dw: f32): v128 {
  const xp = x + 4;
  let isum = i32x4.mul(reduce4_i32(dot_u7_i8(q0, v128.load(xp, 0)), dot_u7_i8(q1, v128.load(xp, 32)),
                                   dot_u7_i8(q2, v128.load(xp, 64)), dot_u7_i8(q3, v128.load(xp, 96))), s0);
  isum = i32x4.add(isum, i32x4.mul(reduce4_i32(dot_u7_i8(q4, v128.load(xp, 16)), dot_u7_i8(q5, v128.load(xp, 48)),
                                               dot_u7_i8(q6, v128.load(xp, 80)), dot_u7_i8(q7, v128.load(xp, 112))), s1));
  isum = i32x4.add(isum, i32x4.mul(reduce4_i32(dot_u7_i8(q8, v128.load(xp, 128)), dot_u7_i8(q9, v128.load(xp, 160)),
                                               dot_u7_i8(q10, v128.load(xp, 192)), dot_u7_i8(q11, v128.load(xp, 224))), s2));
  isum = i32x4.add(isum, i32x4.mul(reduce4_i32(dot_u7_i8(q12, v128.load(xp, 144)), dot_u7_i8(q13, v128.load(xp, 176)),
                                               dot_u7_i8(q14, v128.load(xp, 208)), dot_u7_i8(q15, v128.load(xp, 240))), s3));
  const off = i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(x, 260)), i32x4.dot_i16x8_s(hi, v128.load(x, 276)));
  const dd = f32x4.splat(dw * load<f32>(x));
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(isum, i32x4.shl(off, 5))), dd);
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
    const s0 = i32x4.extend_low_i16x8_s(so16a), s1 = i32x4.extend_high_i16x8_s(so16a);
    const s2 = i32x4.extend_low_i16x8_s(so16b), s3 = i32x4.extend_high_i16x8_s(so16b);
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
    a0 = f32x4.add(a0, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, s0, s1, s2, s3, lo, hi, x + xo, dw));
    if (four) {
      pin(o, a0);
      a1 = f32x4.add(a1, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, s0, s1, s2, s3, lo, hi, x1 + xo, dw));
      pin(o + os, a1);
      a2 = f32x4.add(a2, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, s0, s1, s2, s3, lo, hi, x2 + xo, dw));
      pin(o + 2 * os, a2);
      a3 = f32x4.add(a3, tok_q6_K(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, s0, s1, s2, s3, lo, hi, x3 + xo, dw));
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
