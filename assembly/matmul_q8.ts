// Q8 activations and Q8_0 weights: quantize_q8_0 / quantize_q8_1 (llama.cpp's x86 path: d = amax/127,
// multiply by 127/amax, round half to even) and matmul_q8_0 (ggml_vec_dot_q8_0_q8_0: integer dot per block,
// times d_w*d_x, summed in f32). SIMD128 widens i8 to i16 for i32x4.dot_i16x8_s; the relaxed build's matrix-vector
// path uses i16x8.relaxed_dot_i8x16_i7x16_s on |x| and w·sign(x).
import { STREAMS, mv_streams, fold2, fold4, mm_row_tile, pin, f16_to_f32, f32_to_f16, hmax_f32x4, hsum_f32x4, hsum_i32x4, reduce4_i32, scales4, f16_at, token_chunk, QK, Q8_0_BYTES, Q8_1_BYTES, Q8_0X_BYTES, Q8_0W_BYTES, Q8_0T_BYTES, q8x_d, q8x_s, q8x_q, TABLE, T_ONES16 } from "./common";

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

/**
 * One block of block_q8_0's numbers from the 32 floats at x: its scale d (the f16 a block_q8_0 stores, widened)
 * at od, the sum of its int8 at os, the int8 at q. The Q8_0X and Q8_0W rows are laid out from these.
 */
// @ts-ignore: decorator
@inline function q8_block(od: usize, os: usize, q: usize, x: usize): void {
  const amax = amax32(x);
  const d = amax / 127;
  const id: f32 = amax != 0 ? 127 / amax : 0;
  store<f32>(od, f16_to_f32(f32_to_f16(d)));
  store<i32>(os, quant32(q, x, f32x4.splat(id)));
}

/** out: t rows in the Q8_0X layout (common.ts) = x: t rows of n f32 (n % 32 == 0); the int8 and d of quantize_q8_0. */
export function quantize_q8_0x(out: usize, x: usize, n: i32, t: i32): void {
  const nb = n / QK;
  for (let j = 0; j < t; j++) {
    const od = q8x_d(out, nb), os = q8x_s(out, nb), oq = q8x_q(out, nb);
    for (let b = 0; b < nb; b++) {
      q8_block(od + (<usize>b << 2), os + (<usize>b << 2), oq + (<usize>b << 5), x);
      x += QK * 4;
    }
    out += <usize>nb * Q8_0X_BYTES;
  }
}

/**
 * out: t rows in the Q8_0W layout (common.ts; the SIMD128 build's activations of Q4_0 weights) = x: t rows of n
 * f32 (n % 32 == 0); the int8, d and sums of quantize_q8_0x, the int8 widened, reordered and scaled.
 */
export function quantize_q8_0w(out: usize, x: usize, n: i32, t: i32): void {
  const nb = n / QK;
  for (let j = 0; j < t; j++) {
    const od = q8x_d(out, nb), os = q8x_s(out, nb), oq = q8x_q(out, nb);
    for (let b = 0; b < nb; b++) {
      // the int8 go to the second half of the block's 64 bytes, are read back, then overwritten by their widening
      const q = oq + (<usize>b << 6);
      q8_block(od + (<usize>b << 2), os + (<usize>b << 2), q + 32, x);
      const e = i8x16.shuffle(v128.load(q, 32), v128.load(q, 32), 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
      const h = i8x16.shuffle(v128.load(q, 48), v128.load(q, 48), 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
      v128.store(q, i16x8.shl(i16x8.extend_low_i8x16_s(e), 8));        // 256·x[0,2..14]
      v128.store(q, i16x8.shl(i16x8.extend_low_i8x16_s(h), 4), 16);    // 16·x[16,18..30]
      v128.store(q, i16x8.extend_high_i8x16_s(e), 32);                 // x[1,3..15]
      v128.store(q, i16x8.shl(i16x8.extend_high_i8x16_s(h), 8), 48);   // 256·x[17,19..31]
      x += QK * 4;
    }
    out += <usize>nb * Q8_0W_BYTES;
  }
}

/**
 * out: Q8_0T (common.ts; the relaxed build's prefill activations of Q4_0 weights) = x: t rows of n f32 (n % 32
 * == 0), in groups of four tokens (a last group short of four is filled with zeros); the int8, d and sums of
 * quantize_q8_0x, each token's 4-byte groups of a block placed in lane m of the chunks that meet its weights.
 */
export function quantize_q8_0t(out: usize, x: usize, n: i32, t: i32): void {
  const nb = n / QK;
  const groups = (t + 3) >> 2;
  for (let g = 0; g < groups; g++) {
    const base = out + <usize>g * <usize>nb * Q8_0T_BYTES;
    const dT = base, sT = base + (<usize>nb << 4), qT = base + (<usize>nb << 5);
    for (let m = 0; m < 4; m++) {
      const j = (g << 2) + m;
      const lane = <usize>m << 2;
      const xr = x + <usize>j * <usize>n * 4;
      for (let b = 0; b < nb; b++) {
        const q = qT + (<usize>b << 7);
        let lo = i32x4.splat(0), hi = i32x4.splat(0);
        let d: f32 = 0, sum = 0;
        if (j < t) {
          const xb = xr + (<usize>b << 7);
          const amax = amax32(xb);
          d = amax / 127;
          const id = f32x4.splat(amax != 0 ? 127 / amax : 0);
          d = f16_to_f32(f32_to_f16(d));
          const i0 = round4(xb, id), i1 = round4(xb + 16, id), i2 = round4(xb + 32, id), i3 = round4(xb + 48, id);
          const i4 = round4(xb + 64, id), i5 = round4(xb + 80, id), i6 = round4(xb + 96, id), i7 = round4(xb + 112, id);
          lo = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(i0, i1), i16x8.narrow_i32x4_s(i2, i3));
          hi = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(i4, i5), i16x8.narrow_i32x4_s(i6, i7));
          sum = hsum_i32x4(i32x4.add(i32x4.add(i32x4.add(i0, i1), i32x4.add(i2, i3)), i32x4.add(i32x4.add(i4, i5), i32x4.add(i6, i7))));
        }
        store<f32>(dT + (<usize>b << 4) + lane, d);
        store<i32>(sT + (<usize>b << 4) + lane, sum);
        // group G of token m goes to chunk (G - m) & 3 (low half) and 4 + ((G - m) & 3) (high half), at byte 4m
        v128.store32_lane(q + (<usize>((0 - m) & 3) << 4) + lane, lo, 0);
        v128.store32_lane(q + (<usize>((1 - m) & 3) << 4) + lane, lo, 1);
        v128.store32_lane(q + (<usize>((2 - m) & 3) << 4) + lane, lo, 2);
        v128.store32_lane(q + (<usize>((3 - m) & 3) << 4) + lane, lo, 3);
        v128.store32_lane(q + 64 + (<usize>((0 - m) & 3) << 4) + lane, hi, 0);
        v128.store32_lane(q + 64 + (<usize>((1 - m) & 3) << 4) + lane, hi, 1);
        v128.store32_lane(q + 64 + (<usize>((2 - m) & 3) << 4) + lane, hi, 2);
        v128.store32_lane(q + 64 + (<usize>((3 - m) & 3) << 4) + lane, hi, 3);
      }
    }
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

// Matrix-vector and matrix-matrix against Q8_0X activation rows (common.ts: f32 d[nb], i32 sum[nb], int8 q[32·nb]).

/**
 * Integer dot of one Q8_0 weight block (wq0 = elements 0-15, wq1 = 16-31) with one activation block, as four i32
 * partial sums. SIMD128: the activations come widened to i16 (x0..x3), the weights are widened here. Relaxed: the
 * activations come as |x| (x0, x1: the 0..127 operand) and their sign masks (x2, x3), and the weights take x's
 * sign, w·sign(x) (as x86's psignb; Q8_0 weights are -127..127, so the negation never wraps).
 */
// @ts-ignore: decorator
@inline export function q8dot(wq0: v128, wq1: v128, x0: v128, x1: v128, x2: v128, x3: v128, ones: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const s0 = i8x16.sub(v128.xor(wq0, x2), x2), s1 = i8x16.sub(v128.xor(wq1, x3), x3);
    // each i16 lane holds two products, |.| <= 2·127·127, so the halves are widened before they are added
    // widened by a dot with the i16 ones held in a register (V8 re-loads extadd_pairwise's constant every time)
    return i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(s0, x0), ones),
                     i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(s1, x1), ones));
  }
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(wq0), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(wq0), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(wq1), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(wq1), x3)));
}

// Activation preparation for q8dot from the two 16-byte halves of a block's int8 (xq0 = 0-15, xq1 = 16-31):
// SIMD128 widens to i16 (x0..x3 = elements 0-7, 8-15, 16-23, 24-31); relaxed gives |x| of each half (x0, x1) and
// each half's sign mask (x2, x3).
// @ts-ignore: decorator
@inline export function xprep0(xq0: v128, xq1: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i8x16.abs(xq0) : i16x8.extend_low_i8x16_s(xq0);
}
// @ts-ignore: decorator
@inline export function xprep1(xq0: v128, xq1: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i8x16.abs(xq1) : i16x8.extend_high_i8x16_s(xq0);
}
// @ts-ignore: decorator
@inline export function xprep2(xq0: v128, xq1: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i8x16.lt_s(xq0, i8x16.splat(0)) : i16x8.extend_low_i8x16_s(xq1);
}
// @ts-ignore: decorator
@inline export function xprep3(xq0: v128, xq1: v128): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? i8x16.lt_s(xq1, i8x16.splat(0)) : i16x8.extend_high_i8x16_s(xq1);
}

/** q8dot of the weight block at w against the activation block at xq (prepared here) */
// @ts-ignore: decorator
@inline function q8dot_at(w: usize, xq: usize, ones: v128): v128 {
  const xq0 = v128.load(xq), xq1 = v128.load(xq, 16);
  return q8dot(v128.load(w, 2), v128.load(w, 18), xprep0(xq0, xq1), xprep1(xq0, xq1), xprep2(xq0, xq1), xprep3(xq0, xq1), ones);
}

// Every path below (one row, eight rows, four tokens) does the same float arithmetic for a (row, token) pair: per
// step of four blocks, convert(Σw·x) · (d_w·d_x) added to an f32x4 whose lanes are the four blocks; leftover
// blocks summed in a scalar; then hsum + scalar. So a result does not depend on how a matmul is cut into calls
// (threads split by rows or by tokens), down to the last bit (see matmul_q4.ts).

/** f32x4 of four blocks' contributions: r = their integer dots, sw/dx = their scales */
// @ts-ignore: decorator
@inline function step4(r: v128, sw: v128, dx: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(sw, dx));
}

/** one leftover block's contribution */
// @ts-ignore: decorator
@inline function step1(w: usize, xq: usize, dx: f32, ones: v128): f32 {
  return <f32>hsum_i32x4(q8dot_at(w, xq, ones)) * (f16_at(w) * dx);
}

/** the leftover blocks b..nb-1 of a row (n/32 not a multiple of 4): weights at w and int8 at xq start at block b */
// @ts-ignore: decorator
@inline function tail_q8_0(w: usize, xq: usize, xd: usize, b: i32, nb: i32, ones: v128): f32 {
  let tail: f32 = 0;
  for (; b < nb; b++) {
    tail += step1(w, xq, load<f32>(xd + (<usize>b << 2)), ones);
    w += Q8_0_BYTES; xq += QK;
  }
  return tail;
}

/** one row's step of four blocks (weights at w, int8 at xq): acc + their contributions */
// @ts-ignore: decorator
@inline function row_step4(acc: v128, w: usize, xq: usize, dx: v128, ones: v128): v128 {
  const r = reduce4_i32(q8dot_at(w, xq, ones), q8dot_at(w + Q8_0_BYTES, xq + 32, ones), q8dot_at(w + 2 * Q8_0_BYTES, xq + 64, ones), q8dot_at(w + 3 * Q8_0_BYTES, xq + 96, ones));
  return f32x4.add(acc, step4(r, scales4(w, Q8_0_BYTES), dx));
}

// @ts-ignore: decorator
@inline function dot1_q8_0(w: usize, x: usize, nb: i32): f32 {
  const ones = v128.load(TABLE + T_ONES16);
  const xd = q8x_d(x, nb);
  let xq = q8x_q(x, nb);
  let acc = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    acc = row_step4(acc, w, xq, v128.load(xd + (<usize>b << 2)), ones);
    w += 4 * Q8_0_BYTES; xq += 4 * QK;
  }
  return hsum_f32x4(acc) + tail_q8_0(w, xq, xd, b, nb, ones);
}

/**
 * eight Q8_0 weight rows (ws bytes apart) against one Q8_0X activation row, results os bytes apart: eight streams
 * side by side (common.ts, STREAMS)
 */
// @ts-ignore: decorator
@inline function dot8_q8_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const ones = v128.load(TABLE + T_ONES16);
  const xd = q8x_d(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const dx = v128.load(xd + (<usize>b << 2));
    a0 = row_step4(a0, wp, xq, dx, ones);
    a1 = row_step4(a1, wp + ws, xq, dx, ones);
    a2 = row_step4(a2, wp + 2 * ws, xq, dx, ones);
    a3 = row_step4(a3, wp + 3 * ws, xq, dx, ones);
    a4 = row_step4(a4, wp + 4 * ws, xq, dx, ones);
    a5 = row_step4(a5, wp + 5 * ws, xq, dx, ones);
    a6 = row_step4(a6, wp + 6 * ws, xq, dx, ones);
    a7 = row_step4(a7, wp + 7 * ws, xq, dx, ones);
    wp += 4 * Q8_0_BYTES; xq += 4 * QK;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q8_0(wp, xq, xd, b, nb, ones));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q8_0(wp + ws, xq, xd, b, nb, ones));
  store<f32>(o + 2 * os, hsum_f32x4(a2) + tail_q8_0(wp + 2 * ws, xq, xd, b, nb, ones));
  store<f32>(o + 3 * os, hsum_f32x4(a3) + tail_q8_0(wp + 3 * ws, xq, xd, b, nb, ones));
  store<f32>(o + 4 * os, hsum_f32x4(a4) + tail_q8_0(wp + 4 * ws, xq, xd, b, nb, ones));
  store<f32>(o + 5 * os, hsum_f32x4(a5) + tail_q8_0(wp + 5 * ws, xq, xd, b, nb, ones));
  store<f32>(o + 6 * os, hsum_f32x4(a6) + tail_q8_0(wp + 6 * ws, xq, xd, b, nb, ones));
  store<f32>(o + 7 * os, hsum_f32x4(a7) + tail_q8_0(wp + 7 * ws, xq, xd, b, nb, ones));
}

/** four Q8_0 weight rows (ws bytes apart) against one Q8_0X activation row: dot8_q8_0 with four streams (mv_streams) */
// @ts-ignore: decorator
@inline function dot4r_q8_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const ones = v128.load(TABLE + T_ONES16);
  const xd = q8x_d(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const dx = v128.load(xd + (<usize>b << 2));
    a0 = row_step4(a0, wp, xq, dx, ones);
    a1 = row_step4(a1, wp + ws, xq, dx, ones);
    a2 = row_step4(a2, wp + 2 * ws, xq, dx, ones);
    a3 = row_step4(a3, wp + 3 * ws, xq, dx, ones);
    wp += 4 * Q8_0_BYTES; xq += 4 * QK;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q8_0(wp, xq, xd, b, nb, ones));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q8_0(wp + ws, xq, xd, b, nb, ones));
  store<f32>(o + 2 * os, hsum_f32x4(a2) + tail_q8_0(wp + 2 * ws, xq, xd, b, nb, ones));
  store<f32>(o + 3 * os, hsum_f32x4(a3) + tail_q8_0(wp + 3 * ws, xq, xd, b, nb, ones));
}

/** two Q8_0 weight rows (ws bytes apart) against one Q8_0X activation row: dot8_q8_0 with two streams (mv_streams) */
// @ts-ignore: decorator
@inline function dot2r_q8_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const ones = v128.load(TABLE + T_ONES16);
  const xd = q8x_d(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const dx = v128.load(xd + (<usize>b << 2));
    if (ASC_FEATURE_RELAXED_SIMD) {
      // row_step4 of both rows (V8 loads and prepares each block's activations once for the two, there being no
      // store between); a pin after each pair of blocks keeps it from hoisting every load of the step and spilling them
      const r01 = fold2(q8dot_at(wp, xq, ones), q8dot_at(wp + Q8_0_BYTES, xq + 32, ones));
      const s01 = fold2(q8dot_at(wp + ws, xq, ones), q8dot_at(wp + ws + Q8_0_BYTES, xq + 32, ones));
      pin(o, r01); pin(o + os, s01);
      const r23 = fold2(q8dot_at(wp + 2 * Q8_0_BYTES, xq + 64, ones), q8dot_at(wp + 3 * Q8_0_BYTES, xq + 96, ones));
      const s23 = fold2(q8dot_at(wp + ws + 2 * Q8_0_BYTES, xq + 64, ones), q8dot_at(wp + ws + 3 * Q8_0_BYTES, xq + 96, ones));
      a0 = f32x4.add(a0, step4(fold4(r01, r23), scales4(wp, Q8_0_BYTES), dx));
      pin(o, a0);
      a1 = f32x4.add(a1, step4(fold4(s01, s23), scales4(wp + ws, Q8_0_BYTES), dx));
      pin(o + os, a1);
    } else {
      a0 = row_step4(a0, wp, xq, dx, ones);
      a1 = row_step4(a1, wp + ws, xq, dx, ones);
    }
    wp += 4 * Q8_0_BYTES; xq += 4 * QK;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q8_0(wp, xq, xd, b, nb, ones));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q8_0(wp + ws, xq, xd, b, nb, ones));
}

/** one Q8_0 weight row against four Q8_0X activation rows (xs bytes apart) */
// @ts-ignore: decorator
@inline function dot4_q8_0(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  const ones = v128.load(TABLE + T_ONES16);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  const qo = q8x_q(0, nb);
  let qb: usize = qo;   // this step's int8, from each row's start
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const sw = scales4(w, Q8_0_BYTES);
    const bo = <usize>b << 2;
    const wb = w + Q8_0_BYTES, wc = w + 2 * Q8_0_BYTES, wd = w + 3 * Q8_0_BYTES;
    a0 = f32x4.add(a0, step4(reduce4_i32(q8dot_at(w, x + qb, ones), q8dot_at(wb, x + qb + 32, ones), q8dot_at(wc, x + qb + 64, ones), q8dot_at(wd, x + qb + 96, ones)), sw, v128.load(x + bo)));
    a1 = f32x4.add(a1, step4(reduce4_i32(q8dot_at(w, x1 + qb, ones), q8dot_at(wb, x1 + qb + 32, ones), q8dot_at(wc, x1 + qb + 64, ones), q8dot_at(wd, x1 + qb + 96, ones)), sw, v128.load(x1 + bo)));
    a2 = f32x4.add(a2, step4(reduce4_i32(q8dot_at(w, x2 + qb, ones), q8dot_at(wb, x2 + qb + 32, ones), q8dot_at(wc, x2 + qb + 64, ones), q8dot_at(wd, x2 + qb + 96, ones)), sw, v128.load(x2 + bo)));
    a3 = f32x4.add(a3, step4(reduce4_i32(q8dot_at(w, x3 + qb, ones), q8dot_at(wb, x3 + qb + 32, ones), q8dot_at(wc, x3 + qb + 64, ones), q8dot_at(wd, x3 + qb + 96, ones)), sw, v128.load(x3 + bo)));
    w += 4 * Q8_0_BYTES; qb += 4 * QK;
  }
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; b < nb; b++) {
    const bo = <usize>b << 2;
    t0 += step1(w, x + qb, load<f32>(x + bo), ones);
    t1 += step1(w, x1 + qb, load<f32>(x1 + bo), ones);
    t2 += step1(w, x2 + qb, load<f32>(x2 + bo), ones);
    t3 += step1(w, x3 + qb, load<f32>(x3 + bo), ones);
    w += Q8_0_BYTES; qb += QK;
  }
  store<f32>(o, hsum_f32x4(a0) + t0);
  store<f32>(o + os, hsum_f32x4(a1) + t1);
  store<f32>(o + 2 * os, hsum_f32x4(a2) + t2);
  store<f32>(o + 3 * os, hsum_f32x4(a3) + t3);
}

/** out (t, d) f32 = xq (t rows of Q8_0X activations, common.ts) @ w (d rows of n/32 block_q8_0) ^T. */
export function matmul_q8_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  mv_q8_0(out, xq, w, n, d, t, <usize>d << 2);
}

/** one token's d results at out: rows i, i + seg, ... side by side, s long streams (common.ts mv_streams) */
// @ts-ignore: decorator
@inline function mv1_q8_0(out: usize, xq: usize, w: usize, nb: i32, d: i32, wRow: usize): void {
  const s = mv_streams(), seg = d / s;
  const so = <usize>seg << 2, sw = <usize>seg * wRow;
  for (let i = 0; i < seg; i++) {
    const o = out + (<usize>i << 2), wp = w + <usize>i * wRow;
    if (s == 8) dot8_q8_0(o, so, wp, sw, xq, nb);
    else if (s == 4) dot4r_q8_0(o, so, wp, sw, xq, nb);
    else dot2r_q8_0(o, so, wp, sw, xq, nb);
  }
  for (let i = seg * s; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_q8_0(w + <usize>i * wRow, xq, nb));
}

/**
 * matmul_q8_0 with token j's results at out + j·os (the prefill kernel's fallback writes into a wider output). Fewer
 * than four tokens take the matrix-vector path once each: one weight row against one token at a time is a single
 * dependent chain, where s streams keep s in flight (kernels.bench --small-batch: t = 2 and 3 in 1.12-1.26x the
 * time of t matrix-vector passes on a thread's run of rows, SIMD128, weights cold).
 */
function mv_q8_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, os: usize): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q8_0_BYTES, xRow = <usize>nb * Q8_0X_BYTES;
  if (t < 4) {
    for (let j = 0; j < t; j++) mv1_q8_0(out + <usize>j * os, xq + <usize>j * xRow, w, nb, d, wRow);
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

// ---- matrix-matrix (prefill) ----------------------------------------------------------------------------------
// matmul_q8_0_mm: matmul_q8_0's numbers bit for bit (the same integer dot per block, the same step4 / step1 float
// order per output), in tiles of mm_row_tile rows (common.ts) against groups of four tokens. Each weight block is
// prepared once for the four tokens (SIMD128: widened to i16; relaxed: |w| and w's sign mask, the sign then moved
// onto x, which gives q8dot's products) instead of once per token, and each token's step is pinned (common.ts).

/** the four prepared operands of one weight block (wq0 = elements 0-15, wq1 = 16-31), see q8dotp */
// @ts-ignore: decorator
@inline function wprep0(wq0: v128, wq1: v128): v128 { return ASC_FEATURE_RELAXED_SIMD ? i8x16.abs(wq0) : i16x8.extend_low_i8x16_s(wq0); }
// @ts-ignore: decorator
@inline function wprep1(wq0: v128, wq1: v128): v128 { return ASC_FEATURE_RELAXED_SIMD ? i8x16.abs(wq1) : i16x8.extend_high_i8x16_s(wq0); }
// @ts-ignore: decorator
@inline function wprep2(wq0: v128, wq1: v128): v128 { return ASC_FEATURE_RELAXED_SIMD ? i8x16.lt_s(wq0, i8x16.splat(0)) : i16x8.extend_low_i8x16_s(wq1); }
// @ts-ignore: decorator
@inline function wprep3(wq0: v128, wq1: v128): v128 { return ASC_FEATURE_RELAXED_SIMD ? i8x16.lt_s(wq1, i8x16.splat(0)) : i16x8.extend_high_i8x16_s(wq1); }

/**
 * the integer dot of one prepared weight block (p0..p3) with the 32 int8 at xq, as four i32 partial sums: the same
 * products as q8dot. Relaxed: x·sign(w) (x is -127..127, so the negation never wraps) against |w| as the 0..127
 * operand; SIMD128: x widened against the widened weights.
 */
// @ts-ignore: decorator
@inline function q8dotp(p0: v128, p1: v128, p2: v128, p3: v128, xq: usize, ones: v128): v128 {
  const xq0 = v128.load(xq), xq1 = v128.load(xq, 16);
  if (ASC_FEATURE_RELAXED_SIMD) {
    const s0 = i8x16.sub(v128.xor(xq0, p2), p2), s1 = i8x16.sub(v128.xor(xq1, p3), p3);
    return i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(s0, p0), ones),
                     i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(s1, p1), ones));
  }
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(p0, i16x8.extend_low_i8x16_s(xq0)), i32x4.dot_i16x8_s(p1, i16x8.extend_high_i8x16_s(xq0))),
    i32x4.add(i32x4.dot_i16x8_s(p2, i16x8.extend_low_i8x16_s(xq1)), i32x4.dot_i16x8_s(p3, i16x8.extend_high_i8x16_s(xq1))));
}

/** one Q8_0 row against four Q8_0X tokens (xs bytes apart), results os bytes apart: dot4_q8_0's numbers */
// @ts-ignore: decorator
@inline function mm4_q8_0(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  const ones = v128.load(TABLE + T_ONES16);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let qb: usize = q8x_q(0, nb);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const sw = scales4(w, Q8_0_BYTES);
    const bo = <usize>b << 2;
    let q0 = v128.load(w, 2), q1 = v128.load(w, 18);
    let p0 = wprep0(q0, q1), p1 = wprep1(q0, q1), p2 = wprep2(q0, q1), p3 = wprep3(q0, q1);
    q0 = v128.load(w, 36); q1 = v128.load(w, 52);
    let r0 = wprep0(q0, q1), r1 = wprep1(q0, q1), r2 = wprep2(q0, q1), r3 = wprep3(q0, q1);
    const h0 = fold2(q8dotp(p0, p1, p2, p3, x + qb, ones), q8dotp(r0, r1, r2, r3, x + qb + 32, ones));
    pin(o, h0);
    const h1 = fold2(q8dotp(p0, p1, p2, p3, x1 + qb, ones), q8dotp(r0, r1, r2, r3, x1 + qb + 32, ones));
    pin(o + os, h1);
    const h2 = fold2(q8dotp(p0, p1, p2, p3, x2 + qb, ones), q8dotp(r0, r1, r2, r3, x2 + qb + 32, ones));
    pin(o + 2 * os, h2);
    const h3 = fold2(q8dotp(p0, p1, p2, p3, x3 + qb, ones), q8dotp(r0, r1, r2, r3, x3 + qb + 32, ones));
    pin(o + 3 * os, h3);
    q0 = v128.load(w, 70); q1 = v128.load(w, 86);
    p0 = wprep0(q0, q1); p1 = wprep1(q0, q1); p2 = wprep2(q0, q1); p3 = wprep3(q0, q1);
    q0 = v128.load(w, 104); q1 = v128.load(w, 120);
    r0 = wprep0(q0, q1); r1 = wprep1(q0, q1); r2 = wprep2(q0, q1); r3 = wprep3(q0, q1);
    const c = qb + 64, e = qb + 96;
    a0 = f32x4.add(a0, step4(fold4(h0, fold2(q8dotp(p0, p1, p2, p3, x + c, ones), q8dotp(r0, r1, r2, r3, x + e, ones))), sw, v128.load(x + bo)));
    pin(o, a0);
    a1 = f32x4.add(a1, step4(fold4(h1, fold2(q8dotp(p0, p1, p2, p3, x1 + c, ones), q8dotp(r0, r1, r2, r3, x1 + e, ones))), sw, v128.load(x1 + bo)));
    pin(o + os, a1);
    a2 = f32x4.add(a2, step4(fold4(h2, fold2(q8dotp(p0, p1, p2, p3, x2 + c, ones), q8dotp(r0, r1, r2, r3, x2 + e, ones))), sw, v128.load(x2 + bo)));
    pin(o + 2 * os, a2);
    a3 = f32x4.add(a3, step4(fold4(h3, fold2(q8dotp(p0, p1, p2, p3, x3 + c, ones), q8dotp(r0, r1, r2, r3, x3 + e, ones))), sw, v128.load(x3 + bo)));
    pin(o + 3 * os, a3);
    w += 4 * Q8_0_BYTES; qb += 4 * QK;
  }
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; b < nb; b++) {
    const bo = <usize>b << 2;
    t0 += step1(w, x + qb, load<f32>(x + bo), ones);
    t1 += step1(w, x1 + qb, load<f32>(x1 + bo), ones);
    t2 += step1(w, x2 + qb, load<f32>(x2 + bo), ones);
    t3 += step1(w, x3 + qb, load<f32>(x3 + bo), ones);
    w += Q8_0_BYTES; qb += QK;
  }
  store<f32>(o, hsum_f32x4(a0) + t0);
  store<f32>(o + os, hsum_f32x4(a1) + t1);
  store<f32>(o + 2 * os, hsum_f32x4(a2) + t2);
  store<f32>(o + 3 * os, hsum_f32x4(a3) + t3);
}

/**
 * out (t, d) f32 = xq @ w^T as matmul_q8_0, bit for bit, for prefill (t > 1; t < 4 runs matmul_q8_0's loops),
 * token j's d results at out + 4·ldo·j (ldo = d for a whole matmul, the whole output's for a run of its rows)
 */
export function matmul_q8_0_mm(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32, ldo: i32): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q8_0_BYTES, xRow = <usize>nb * Q8_0X_BYTES;
  const os = <usize>ldo << 2;
  if (t < 4) { mv_q8_0(out, xq, w, n, d, t, os); return; }
  const rt = mm_row_tile(<i32>wRow, <i32>xRow);
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i0 = 0; i0 < d; i0 += rt) {
      const i1 = min(d, i0 + rt);
      let j = j0;
      for (; j + 4 <= j1; j += 4) {
        const xj = xq + <usize>j * xRow, oj = out + <usize>j * os;
        for (let i = i0; i < i1; i++) mm4_q8_0(oj + (<usize>i << 2), os, w + <usize>i * wRow, xj, xRow, nb);
      }
      for (; j < j1; j++) {
        for (let i = i0; i < i1; i++) store<f32>(out + <usize>j * os + (<usize>i << 2), dot1_q8_0(w + <usize>i * wRow, xq + <usize>j * xRow, nb));
      }
    }
  }
}
