// K-quant weights against Q8_K activations, as ggml does: quantize_q8_K (quantize_row_q8_K_ref), matmul_q4_K
// (ggml_vec_dot_q4_K_q8_K) and matmul_q6_K (ggml_vec_dot_q6_K_q8_K). Per 256-value super-block the integer sums
// are exact: sub-block dots are reduced four at a time with one transpose and multiplied by their 6/8-bit scales
// in i32, and the min/offset terms come from the activations' 16-value bsums. Not a K-quant quantizer.
import { mv_streams, store8_f32x4, f16_at, reduce4_i32, fold2, fold2_i16, fold4_i16, pin, hmax_f32x4, hsum_f32x4, hsum_i32x4, token_chunk, dot_u7_i8, rdot_nib,
  QK_K, Q4_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, Q8_KW_BYTES, Q8_KW_BSUMS, TABLE, T_NIBBLE, T_U16_N0, T_U16_N1, T_U16_N2 } from "./common";

// byte masks and the Q6_K scale order, loaded once per call (wasm-facts.md: constants in memory stay in registers)
export const KTABLE: usize = memory.data<u8>([
  0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, // 0: 0x30 (bits 4-5)
  0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15,                                          // 16: scale order
], 16);

/** four bytes of u (little-endian) as an i32x4 */
// @ts-ignore: decorator
@inline export function bytes4(u: u32): v128 {
  return i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(i32x4.splat(u)));
}

// ---- Q8_K activations -------------------------------------------------------------------------------------

/**
 * One row group of 16 quantized values (i0..i3, elements 16g .. 16g + 15 of a super-block) stored into a Q8_KW
 * block at out (common.ts): its evens and odds as i16, pre-scaled, where block_q4_K's nibbles will meet them.
 */
// @ts-ignore: decorator
@inline function store_q8_kw(out: usize, g: i32, i0: v128, i1: v128, i2: v128, i3: v128): void {
  const lo = i16x8.narrow_i32x4_s(i0, i1), hi = i16x8.narrow_i32x4_s(i2, i3);
  const even = i8x16.shuffle(lo, hi, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const odd = i8x16.shuffle(lo, hi, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  const s = g >> 1;                                          // sub-block
  const base = out + 16 + (<usize>(((s >> 1) << 1) | (g & 1)) << 6);
  if ((s & 1) == 0) {                                        // A: bits 0-3 and 8-11 of each u16 lane
    v128.store(base, i16x8.shl(even, 8));
    v128.store(base, odd, 32);
  } else {                                                   // B: bits 4-7 and 12-15
    v128.store(base, i16x8.shl(even, 4), 16);
    v128.store(base, i16x8.shl(odd, 8), 48);
  }
}

/**
 * t rows of n f32 (n % 256 == 0) to t rows of n/256 block_q8_K (wide = false: exactly quantize_row_q8_K_ref) or
 * Q8_KW blocks of the same numbers (wide = true).
 */
// @ts-ignore: decorator
@inline function quantize_k(out: usize, x: usize, n: i32, t: i32, wide: bool): void {
  const blocks = (n / QK_K) * t;
  const lim = i32x4.splat(127);
  const bytes: usize = wide ? Q8_KW_BYTES : Q8_K_BYTES;
  const bsums: usize = wide ? Q8_KW_BSUMS : 260;
  for (let b = 0; b < blocks; b++) {
    let mv = f32x4.splat(0);
    for (let o: usize = 0; o < 1024; o += 16) mv = f32x4.max(mv, f32x4.abs(v128.load(x + o)));
    const amax = hmax_f32x4(mv);
    if (amax == 0) {
      memory.fill(out, 0, bytes);
    } else {
      // the signed value of the first element of largest magnitude
      let mx: f32 = 0;
      for (let o: usize = 0; o < 1024; o += 4) {
        const v = load<f32>(x + o);
        if (Mathf.abs(v) == amax) { mx = v; break; }
      }
      const iscale: f32 = <f32>-127.0 / mx;
      const is = f32x4.splat(iscale);
      for (let g = 0; g < 16; g++) {
        const p = x + (<usize>g << 6);
        const i0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 0), is))), lim);
        const i1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), is))), lim);
        const i2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 32), is))), lim);
        const i3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 48), is))), lim);
        if (wide) store_q8_kw(out, g, i0, i1, i2, i3);
        else v128.store(out + 4 + (<usize>g << 4), i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(i0, i1), i16x8.narrow_i32x4_s(i2, i3)));
        store<i16>(out + bsums + (<usize>g << 1), <i16>hsum_i32x4(i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3))));
      }
      store<f32>(out, <f32>1.0 / iscale);
      if (wide) { store<u32>(out, 0, 4); store<u64>(out, 0, 8); }
    }
    out += bytes; x += QK_K * 4;
  }
}

/** out: t rows of n/256 block_q8_K from x: t rows of n f32 (n % 256 == 0), exactly quantize_row_q8_K_ref. */
export function quantize_q8_K(out: usize, x: usize, n: i32, t: i32): void {
  quantize_k(out, x, n, t, false);
}

/** out: t rows of n/256 Q8_KW blocks (common.ts; the SIMD128 build's Q4_K activations): quantize_q8_K's numbers */
export function quantize_q8_kw(out: usize, x: usize, n: i32, t: i32): void {
  quantize_k(out, x, n, t, true);
}

// ---- Q4_K -------------------------------------------------------------------------------------------------

// The relaxed build multiplies Q4_K against Q8_K activations (int8, for the i8 dot); the SIMD128 build against
// Q8_KW (common.ts: the same int8 widened to i16, laid out and pre-scaled for the nibbles read as u16 lanes), so a
// nibble comes out of the packed bytes with one and (or shift) and meets its activations in i32x4.dot_i16x8_s,
// with no widening per weight row. Every SIMD128 product carries an exact factor of 256, shifted off per block.

/** bytes of one block of this build's Q4_K activations, and the offset of its bsums */
// @ts-ignore: decorator
@inline export const XK: i32 = ASC_FEATURE_RELAXED_SIMD ? Q8_K_BYTES : Q8_KW_BYTES;
// @ts-ignore: decorator
@inline export const XK_BSUMS: usize = ASC_FEATURE_RELAXED_SIMD ? 260 : Q8_KW_BSUMS;

/** SIMD128: sub-block A (2p) of nibble bytes q0, q1 (32p .. 32p + 31) against its Q8_KW i16 at xw, ×256, i32x4 */
// @ts-ignore: decorator
@inline export function kw_a(q0: v128, q1: v128, xw: usize, m0: v128, m2: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(q0, m0), v128.load(xw)), i32x4.dot_i16x8_s(v128.and(q0, m2), v128.load(xw, 32))),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(q1, m0), v128.load(xw, 64)), i32x4.dot_i16x8_s(v128.and(q1, m2), v128.load(xw, 96))));
}

/** SIMD128: sub-block B (2p + 1) of the same bytes, ×256 */
// @ts-ignore: decorator
@inline export function kw_b(q0: v128, q1: v128, xw: usize, m1: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(q0, m1), v128.load(xw, 16)), i32x4.dot_i16x8_s(i16x8.shr_u(q0, 12), v128.load(xw, 48))),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(q1, m1), v128.load(xw, 80)), i32x4.dot_i16x8_s(i16x8.shr_u(q1, 12), v128.load(xw, 112))));
}

/** the masks block_q4_K takes, loaded once per call: relaxed, the nibble mask (m0); SIMD128, the u16 lane masks */
// @ts-ignore: decorator
@inline export function kmask0(): v128 { return v128.load(TABLE + (ASC_FEATURE_RELAXED_SIMD ? T_NIBBLE : T_U16_N0)); }
// @ts-ignore: decorator
@inline export function kmask1(): v128 { return v128.load(TABLE + T_U16_N1); }
// @ts-ignore: decorator
@inline export function kmask2(): v128 { return v128.load(TABLE + T_U16_N2); }

// the relaxed build's Q4_K scale masks (block_q4_K): 0x3f for the bytes of u0 and u1, 0x0f for u2 and u2 >> 4;
// 0x30 for the top two bits of u0 and u1 moved to bits 4-5 under them
const RKTABLE: usize = memory.data<u32>([
  0x3f3f3f3f, 0x3f3f3f3f, 0x0f0f0f0f, 0x0f0f0f0f, //  0
  0, 0, 0x30303030, 0x30303030,                   // 16
], 16);

/** f32x4 partial sums of one Q4_K super-block at w against one block of this build's activations at x */
// @ts-ignore: decorator
@inline function block_q4_K(w: usize, x: usize, m0: v128, m1: v128, m2: v128, pa: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    // m1, m2: RKTABLE's scale masks. Sub-block j's eight i16 partial dots P_j (lanes <= 4·15·127) fold four
    // sub-blocks at a time in i16 (four lanes summed, <= 30480) so that i32 lane k holds sub-block k's dot as two
    // i16 halves; one dot_i16x8_s with that sub-block's scale in both halves gives scale·dot, exactly the i32
    // products of the widened sums. Each pin (common.ts) ends one 64-value step before the next one's loads.
    const mask = m0;
    const q = w + 16, xq = x + 4;
    let qa = v128.load(q, 0), qb = v128.load(q, 16);
    const p01 = fold2_i16(rdot_nib(v128.and(qa, mask), v128.and(qb, mask), v128.load(xq, 0), v128.load(xq, 16)),
                          rdot_nib(v128.and(i16x8.shr_u(qa, 4), mask), v128.and(i16x8.shr_u(qb, 4), mask), v128.load(xq, 32), v128.load(xq, 48)));
    pin(pa, p01);
    qa = v128.load(q, 32); qb = v128.load(q, 48);
    const p23 = fold2_i16(rdot_nib(v128.and(qa, mask), v128.and(qb, mask), v128.load(xq, 64), v128.load(xq, 80)),
                          rdot_nib(v128.and(i16x8.shr_u(qa, 4), mask), v128.and(i16x8.shr_u(qb, 4), mask), v128.load(xq, 96), v128.load(xq, 112)));
    const fa = fold4_i16(p01, p23);
    pin(pa, fa);
    qa = v128.load(q, 64); qb = v128.load(q, 80);
    const p45 = fold2_i16(rdot_nib(v128.and(qa, mask), v128.and(qb, mask), v128.load(xq, 128), v128.load(xq, 144)),
                          rdot_nib(v128.and(i16x8.shr_u(qa, 4), mask), v128.and(i16x8.shr_u(qb, 4), mask), v128.load(xq, 160), v128.load(xq, 176)));
    pin(pa, p45);
    qa = v128.load(q, 96); qb = v128.load(q, 112);
    const p67 = fold2_i16(rdot_nib(v128.and(qa, mask), v128.and(qb, mask), v128.load(xq, 192), v128.load(xq, 208)),
                          rdot_nib(v128.and(i16x8.shr_u(qa, 4), mask), v128.and(i16x8.shr_u(qb, 4), mask), v128.load(xq, 224), v128.load(xq, 240)));
    const fb = fold4_i16(p45, p67);
    // scales and mins: lanes 0-1 of v & 0x3f are sub-blocks 0-3's scales and mins; lanes 2-3 are those of 4-7,
    // low (high) nibbles of u2 under bits 6-7 of u0 (u1) moved to bits 4-5
    const v = v128.load(w, 4);
    const all = v128.or(v128.and(v128.shuffle<i32>(v, i32x4.shr_u(v, 4), 0, 1, 2, 6), m1),
                        v128.and(i32x4.shr_u(v128.shuffle<i32>(v, v, 0, 1, 0, 1), 2), m2));
    const lo = i16x8.extend_low_i8x16_u(all), hi = i16x8.extend_high_i8x16_u(all);
    const isum = i32x4.add(i32x4.dot_i16x8_s(fa, v128.shuffle<i16>(lo, lo, 0, 0, 1, 1, 2, 2, 3, 3)),
                           i32x4.dot_i16x8_s(fb, v128.shuffle<i16>(hi, hi, 0, 0, 1, 1, 2, 2, 3, 3)));
    // mins: sub-block j's activation sum is bsums[2j] + bsums[2j+1]
    const msum = i32x4.add(i32x4.dot_i16x8_s(v128.load(x + XK_BSUMS), v128.shuffle<i16>(lo, lo, 4, 4, 5, 5, 6, 6, 7, 7)),
                           i32x4.dot_i16x8_s(v128.load(x + XK_BSUMS, 16), v128.shuffle<i16>(hi, hi, 4, 4, 5, 5, 6, 6, 7, 7)));
    return k_float(w, x, isum, msum);
  }
  // eight 6-bit scales and mins (ggml's utmp shuffle of the 12 bytes at w+4)
  const u0 = load<u32>(w, 4), u1 = load<u32>(w, 8), u2 = load<u32>(w, 12);
  const scA = bytes4(u0 & 0x3f3f3f3f);
  const scB = bytes4((u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4));
  const mnA = bytes4(u1 & 0x3f3f3f3f);
  const mnB = bytes4(((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4));
  const xw = x + 16;
  let q0 = v128.load(w, 16), q1 = v128.load(w, 32);
  const d0 = kw_a(q0, q1, xw, m0, m2), d1 = kw_b(q0, q1, xw, m1);
  q0 = v128.load(w, 48); q1 = v128.load(w, 64);
  const d2 = kw_a(q0, q1, xw + 128, m0, m2), d3 = kw_b(q0, q1, xw + 128, m1);
  q0 = v128.load(w, 80); q1 = v128.load(w, 96);
  const e0 = kw_a(q0, q1, xw + 256, m0, m2), e1 = kw_b(q0, q1, xw + 256, m1);
  q0 = v128.load(w, 112); q1 = v128.load(w, 128);
  const e2 = kw_a(q0, q1, xw + 384, m0, m2), e3 = kw_b(q0, q1, xw + 384, m1);
  // the sub-block sums are exact multiples of 256, so the shifts are exact
  const isum = i32x4.add(i32x4.mul(i32x4.shr_s(reduce4_i32(d0, d1, d2, d3), 8), scA), i32x4.mul(i32x4.shr_s(reduce4_i32(e0, e1, e2, e3), 8), scB));
  // mins: sub-block j's activation sum is bsums[2j] + bsums[2j+1]
  const msum = i32x4.add(i32x4.mul(i32x4.extadd_pairwise_i16x8_s(v128.load(x + XK_BSUMS)), mnA),
                         i32x4.mul(i32x4.extadd_pairwise_i16x8_s(v128.load(x + XK_BSUMS, 16)), mnB));
  return k_float(w, x, isum, msum);
}

/** a Q4_K super-block's f32x4 from its integer sums: isum·d·dx − msum·dmin·dx, lane by lane */
// @ts-ignore: decorator
@inline function k_float(w: usize, x: usize, isum: v128, msum: v128): v128 {
  const dx = load<f32>(x);
  const dd = f32x4.splat(f16_at(w) * dx), dm = f32x4.splat(f16_at(w + 2) * dx);
  return f32x4.sub(f32x4.mul(f32x4.convert_i32x4_s(isum), dd), f32x4.mul(f32x4.convert_i32x4_s(msum), dm));
}

// ---- Q6_K -------------------------------------------------------------------------------------------------

/**
 * One group of a Q6_K super-block: 16 consecutive l of half h, all four k — values 128h + 32k + l0 + [0, 16),
 * sub-blocks 8h + 2k + l0/16 — as Σ_k scale·dot, with sc holding those four scales.
 */
// @ts-ignore: decorator
@inline function q6_group(w: usize, x: usize, h: usize, l0: usize, m4: v128, m30: v128, sc: v128): v128 {
  const ql = w + (h << 6) + l0, qh = w + 128 + (h << 5) + l0, xp = x + 4 + (h << 7) + l0;
  const a = v128.load(ql), c = v128.load(ql, 32), hh = v128.load(qh);
  const q1 = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hh, 4), m30));
  const q2 = v128.or(v128.and(c, m4), v128.and(i16x8.shl(hh, 2), m30));
  const q3 = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hh, m30));
  const q4 = v128.or(v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(hh, 2), m30));
  const r = reduce4_i32(dot_u7_i8(q1, v128.load(xp, 0)), dot_u7_i8(q2, v128.load(xp, 32)),
                        dot_u7_i8(q3, v128.load(xp, 64)), dot_u7_i8(q4, v128.load(xp, 96)));
  return i32x4.mul(r, sc);
}

/**
 * Relaxed build: the dots of half a q6_group, its k and k + 2 (k = 0: the low bits from ql (a), the high bits from
 * qh (hh) as they are; k = 1: from ql + 32 and qh >> 2), against the activations at xp and xp + 64, times their
 * scales. The i16 dots (lanes <= 2·63·127) fold in pairs (<= 32004), so that lanes 0 and 2 hold k's dot and 1
 * and 3 k + 2's, each as two i16 halves; one dot_i16x8_s multiplies them by s (k's scale in both halves of lanes
 * 0 and 2, k + 2's in 1 and 3). fold2 of the k = 0 and k = 1 sums gives q6_group's i32, and adding over the groups
 * before it changes no integer.
 */
// @ts-ignore: decorator
@inline function q6_half(a: v128, hh: v128, xp: usize, m4: v128, m30: v128, s: v128): v128 {
  const lo = v128.or(v128.and(a, m4), v128.and(i16x8.shl(hh, 4), m30));
  const hi = v128.or(v128.and(i16x8.shr_u(a, 4), m4), v128.and(hh, m30));
  return i32x4.dot_i16x8_s(fold2_i16(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp), lo),
                                     i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp, 64), hi)), s);
}

/** Relaxed build: block_q6_K's integer sum before the offset (q6_half; both sums pinned to pa after each group) */
// @ts-ignore: decorator
@inline function q6_isum_r(w: usize, x: usize, m4: v128, m30: v128, order: v128, pa: usize): v128 {
  // so: scales in q6_group's order (0,2,4,6) (1,3,5,7) (8,10,12,14) (9,11,13,15); u0 = the first four, as i32
  // lanes each holding its scale in both i16 halves, and so on
  const so = i8x16.relaxed_swizzle(v128.load(w, 192), order);
  const sa = i16x8.extend_low_i8x16_s(so), sb = i16x8.extend_high_i8x16_s(so);
  let u = v128.shuffle<i16>(sa, sa, 0, 0, 1, 1, 2, 2, 3, 3);
  let x0 = q6_half(v128.load(w), v128.load(w, 128), x + 4, m4, m30, v128.shuffle<i32>(u, u, 0, 2, 0, 2));
  let x1 = q6_half(v128.load(w, 32), i16x8.shr_u(v128.load(w, 128), 2), x + 36, m4, m30, v128.shuffle<i32>(u, u, 1, 3, 1, 3));
  pin(pa, x0); pin(pa, x1);
  u = v128.shuffle<i16>(sa, sa, 4, 4, 5, 5, 6, 6, 7, 7);
  x0 = i32x4.add(x0, q6_half(v128.load(w, 16), v128.load(w, 144), x + 20, m4, m30, v128.shuffle<i32>(u, u, 0, 2, 0, 2)));
  x1 = i32x4.add(x1, q6_half(v128.load(w, 48), i16x8.shr_u(v128.load(w, 144), 2), x + 52, m4, m30, v128.shuffle<i32>(u, u, 1, 3, 1, 3)));
  pin(pa, x0); pin(pa, x1);
  u = v128.shuffle<i16>(sb, sb, 0, 0, 1, 1, 2, 2, 3, 3);
  x0 = i32x4.add(x0, q6_half(v128.load(w, 64), v128.load(w, 160), x + 132, m4, m30, v128.shuffle<i32>(u, u, 0, 2, 0, 2)));
  x1 = i32x4.add(x1, q6_half(v128.load(w, 96), i16x8.shr_u(v128.load(w, 160), 2), x + 164, m4, m30, v128.shuffle<i32>(u, u, 1, 3, 1, 3)));
  pin(pa, x0); pin(pa, x1);
  u = v128.shuffle<i16>(sb, sb, 4, 4, 5, 5, 6, 6, 7, 7);
  x0 = i32x4.add(x0, q6_half(v128.load(w, 80), v128.load(w, 176), x + 148, m4, m30, v128.shuffle<i32>(u, u, 0, 2, 0, 2)));
  x1 = i32x4.add(x1, q6_half(v128.load(w, 112), i16x8.shr_u(v128.load(w, 176), 2), x + 180, m4, m30, v128.shuffle<i32>(u, u, 1, 3, 1, 3)));
  return fold2(x0, x1);
}

/** f32x4 partial sums of one Q6_K super-block at w against one block_q8_K at x (m4, m30, order: KTABLE's) */
// @ts-ignore: decorator
@inline function block_q6_K(w: usize, x: usize, m4: v128, m30: v128, order: v128, pa: usize): v128 {
  const sc8 = v128.load(w, 192);
  let isum: v128;
  if (ASC_FEATURE_RELAXED_SIMD) {
    isum = q6_isum_r(w, x, m4, m30, order, pa);
  } else {
    // scales in the order the groups produce their dots: (0,2,4,6) (1,3,5,7) (8,10,12,14) (9,11,13,15)
    const so = i8x16.swizzle(sc8, order);
    const so16a = i16x8.extend_low_i8x16_s(so), so16b = i16x8.extend_high_i8x16_s(so);
    // the 16-bit shifts move bits across byte lanes; the masks keep only each byte's own bits
    isum = q6_group(w, x, 0, 0, m4, m30, i32x4.extend_low_i16x8_s(so16a));
    isum = i32x4.add(isum, q6_group(w, x, 0, 16, m4, m30, i32x4.extend_high_i16x8_s(so16a)));
    isum = i32x4.add(isum, q6_group(w, x, 1, 0, m4, m30, i32x4.extend_low_i16x8_s(so16b)));
    isum = i32x4.add(isum, q6_group(w, x, 1, 16, m4, m30, i32x4.extend_high_i16x8_s(so16b)));
  }
  // the -32 offset: sum_j scale_j * bsum_j, bsums in the natural order
  const off = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(sc8), v128.load(x, 260)),
                        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(sc8), v128.load(x, 276)));
  const dd = f32x4.splat(f16_at(w + 208) * load<f32>(x));
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(isum, i32x4.shl(off, 5))), dd);
}

// ---- Q4_K and Q6_K: one row, eight rows, the matmul -----------------------------------------------------
// One set of drivers serves both: `q6` (a constant at every call, so each export compiles to its own code) picks
// the super-block function, its three constants and the block sizes.

/** bytes of a weight super-block, and of the activation block it meets in this build */
// @ts-ignore: decorator
@inline function wblock(q6: bool): usize { return q6 ? Q6_K_BYTES : Q4_K_BYTES; }
// @ts-ignore: decorator
@inline function xblock(q6: bool): usize { return q6 ? Q8_K_BYTES : XK; }

/** the constants block_k takes, loaded once per call: Q6_K's nibble mask and KTABLE; Q4_K's masks (relaxed: RKTABLE's) */
// @ts-ignore: decorator
@inline function kc0(q6: bool): v128 { return q6 ? v128.load(TABLE + T_NIBBLE) : kmask0(); }
// @ts-ignore: decorator
@inline function kc1(q6: bool): v128 { return q6 ? v128.load(KTABLE) : ASC_FEATURE_RELAXED_SIMD ? v128.load(RKTABLE) : kmask1(); }
// @ts-ignore: decorator
@inline function kc2(q6: bool): v128 { return q6 ? v128.load(KTABLE, 16) : ASC_FEATURE_RELAXED_SIMD ? v128.load(RKTABLE, 16) : kmask2(); }

/** f32x4 partial sums of one super-block at w against its activations at x; pa: its row's output slot (for pin) */
// @ts-ignore: decorator
@inline function block_k(w: usize, x: usize, c0: v128, c1: v128, c2: v128, q6: bool, pa: usize): v128 {
  const r = q6 ? block_q6_K(w, x, c0, c1, c2, pa) : block_q4_K(w, x, c0, c1, c2, pa);
  // relaxed: the next row's (or block's) loads wait for this one's arithmetic (pin, as inside the blocks)
  if (ASC_FEATURE_RELAXED_SIMD) pin(pa, r);
  return r;
}

/** one weight row (nb super-blocks at w) against one activation row at x; pa: where its result goes (for pin) */
// @ts-ignore: decorator
@inline function dot_k(w: usize, x: usize, nb: i32, q6: bool, pa: usize): f32 {
  const c0 = kc0(q6), c1 = kc1(q6), c2 = kc2(q6);
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    acc = f32x4.add(acc, block_k(w, x, c0, c1, c2, q6, pa));
    w += wblock(q6); x += xblock(q6);
  }
  return hsum_f32x4(acc);
}

/** eight weight rows (ws bytes apart) against one activation row, results os bytes apart: eight streams (common.ts, STREAMS) */
// @ts-ignore: decorator
@inline function dot8_k(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32, q6: bool): void {
  const c0 = kc0(q6), c1 = kc1(q6), c2 = kc2(q6);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    a0 = f32x4.add(a0, block_k(w, x, c0, c1, c2, q6, o));
    a1 = f32x4.add(a1, block_k(w + ws, x, c0, c1, c2, q6, o + os));
    a2 = f32x4.add(a2, block_k(w + 2 * ws, x, c0, c1, c2, q6, o + 2 * os));
    a3 = f32x4.add(a3, block_k(w + 3 * ws, x, c0, c1, c2, q6, o + 3 * os));
    a4 = f32x4.add(a4, block_k(w + 4 * ws, x, c0, c1, c2, q6, o + 4 * os));
    a5 = f32x4.add(a5, block_k(w + 5 * ws, x, c0, c1, c2, q6, o + 5 * os));
    a6 = f32x4.add(a6, block_k(w + 6 * ws, x, c0, c1, c2, q6, o + 6 * os));
    a7 = f32x4.add(a7, block_k(w + 7 * ws, x, c0, c1, c2, q6, o + 7 * os));
    w += wblock(q6); x += xblock(q6);
  }
  store8_f32x4(o, os, a0, a1, a2, a3, a4, a5, a6, a7);
}

/** four weight rows (ws bytes apart) against one activation row: dot8_k with four streams (mv_streams) */
// @ts-ignore: decorator
@inline function dot4r_k(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32, q6: bool): void {
  const c0 = kc0(q6), c1 = kc1(q6), c2 = kc2(q6);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    a0 = f32x4.add(a0, block_k(w, x, c0, c1, c2, q6, o));
    a1 = f32x4.add(a1, block_k(w + ws, x, c0, c1, c2, q6, o + os));
    a2 = f32x4.add(a2, block_k(w + 2 * ws, x, c0, c1, c2, q6, o + 2 * os));
    a3 = f32x4.add(a3, block_k(w + 3 * ws, x, c0, c1, c2, q6, o + 3 * os));
    w += wblock(q6); x += xblock(q6);
  }
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o + os, hsum_f32x4(a1));
  store<f32>(o + 2 * os, hsum_f32x4(a2));
  store<f32>(o + 3 * os, hsum_f32x4(a3));
}

/** two weight rows (ws bytes apart) against one activation row: dot8_k with two streams (mv_streams) */
// @ts-ignore: decorator
@inline function dot2r_k(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32, q6: bool): void {
  const c0 = kc0(q6), c1 = kc1(q6), c2 = kc2(q6);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    a0 = f32x4.add(a0, block_k(w, x, c0, c1, c2, q6, o));
    a1 = f32x4.add(a1, block_k(w + ws, x, c0, c1, c2, q6, o + os));
    w += wblock(q6); x += xblock(q6);
  }
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o + os, hsum_f32x4(a1));
}

/** out (t, d) f32 = xq (t activation rows) @ w (d rows of n/256 super-blocks) ^T */
// @ts-ignore: decorator
@inline function matmul_k(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, q6: bool): void {
  const nb = n / QK_K;
  const wRow = <usize>nb * wblock(q6), xRow = <usize>nb * xblock(q6);
  const os = <usize>d << 2;
  if (t == 1) {
    const s = mv_streams(), seg = d / s;   // rows i, i + seg, ... side by side: s long streams (common.ts)
    const so = <usize>seg << 2, sw = <usize>seg * wRow;
    for (let i = 0; i < seg; i++) {
      const o = out + (<usize>i << 2), wp = w + <usize>i * wRow;
      if (s == 8) dot8_k(o, so, wp, sw, xq, nb, q6);
      else if (s == 4) dot4r_k(o, so, wp, sw, xq, nb, q6);
      else dot2r_k(o, so, wp, sw, xq, nb, q6);
    }
    for (let i = seg * s; i < d; i++) { const o = out + (<usize>i << 2); store<f32>(o, dot_k(w + <usize>i * wRow, xq, nb, q6, o)); }
    return;
  }
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * wRow;
      const o = out + (<usize>i << 2);
      for (let j = j0; j < j1; j++) { const oj = o + <usize>j * os; store<f32>(oj, dot_k(wp, xq + <usize>j * xRow, nb, q6, oj)); }
    }
  }
}

/**
 * out (t, d) f32 = xq (t rows of n/256 block_q8_K in the relaxed build, Q8_KW in SIMD128; common.ts)
 * @ w (d rows of n/256 block_q4_K) ^T.
 */
export function matmul_q4_K(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  matmul_k(out, xq, w, n, d, t, false);
}

/** out (t, d) f32 = xq (t rows of n/256 block_q8_K) @ w (d rows of n/256 block_q6_K) ^T. */
export function matmul_q6_K(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  matmul_k(out, xq, w, n, d, t, true);
}
