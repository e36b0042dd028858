// 5-bit weights: matmul_q5_0 (block_q5_0 x Q8_0X activation rows, as ggml_vec_dot_q5_0_q8_0: per block the
// integer dot of (q − 16) with the activations' int8, times d_w·d_x, summed in f32). A block's codes are rebuilt as
// int8 −16..15 from its nibbles and its 32 fifth bits, then meet the activations in Q8_0's block dot (q8dot), in
// both builds. It is the type llama.cpp's Q4_K_M falls back to where a row does not hold 256-value super-blocks.
// Not a quantizer.
import { STREAMS, hsum_f32x4, hsum_i32x4, reduce4_i32, scales4, f16_at, token_chunk, QK, Q8_0X_BYTES, q8x_d, q8x_q, TABLE, T_NIBBLE, T_ONES16 } from "./common";
import { q8dot, xprep0, xprep1, xprep2, xprep3 } from "./matmul_q8";

/** bytes of block_q5_0 (f16 d, u32 qh of fifth bits, 16 bytes of low nibbles) */
export const Q5_0_BYTES: i32 = 22;

// Constants of the fifth-bit expansion, kept in memory (wasm-facts.md: V8 re-materialises v128.const inside loops;
// these loads are loop-invariant and hit L1). The u32 qh is splatted; SEL picks byte 0 for elements 0-7 and byte 1 for 8-15 (SEL_HI:
// bytes 2, 3 for elements 16-31), BITS the bit of each element within its byte.
const Q5_TABLE: usize = memory.data<u8>([
  0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //  0: SEL
  2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, // 16: SEL_HI
  1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, // 32: BITS
  16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, // 48: SIXTEEN
], 16);


/**
 * Integer dot of the Q5_0 block at w with the Q8_0X int8 block at xq, as four i32 partial sums: codes rebuilt as
 * lo − 16·(1 − fifth bit), elements 0-15 from the low nibbles and qh bits 0-15, 16-31 from the high and bits 16-31.
 */
// @ts-ignore: decorator
@inline function q5dot_at(w: usize, xq: usize): v128 {
  const nib = v128.load(TABLE + T_NIBBLE), bits = v128.load(Q5_TABLE, 32), sixteen = v128.load(Q5_TABLE, 48);
  const qh = i32x4.splat(load<i32>(w, 2));
  const qs = v128.load(w, 6);
  const lo = v128.and(qs, nib), hi = v128.and(i8x16.shr_u(qs, 4), nib);
  const b0 = i8x16.eq(v128.and(i8x16.swizzle(qh, v128.load(Q5_TABLE)), bits), bits);
  const b1 = i8x16.eq(v128.and(i8x16.swizzle(qh, v128.load(Q5_TABLE, 16)), bits), bits);
  const wq0 = i8x16.sub(lo, v128.andnot(sixteen, b0)), wq1 = i8x16.sub(hi, v128.andnot(sixteen, b1));
  const xq0 = v128.load(xq), xq1 = v128.load(xq, 16);
  return q8dot(wq0, wq1, xprep0(xq0, xq1), xprep1(xq0, xq1), xprep2(xq0, xq1), xprep3(xq0, xq1), v128.load(TABLE + T_ONES16));
}

// Every path below (one row, eight rows, four tokens) does the same float arithmetic for a (row, token) pair, as
// matmul_q8_0 does: per step of four blocks convert(Σw·x)·(d_w·d_x) into an f32x4, leftover blocks in a scalar.

// @ts-ignore: decorator
@inline function step4(r: v128, sw: v128, dx: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(sw, dx));
}

// @ts-ignore: decorator
@inline function step1(w: usize, xq: usize, dx: f32): f32 {
  return <f32>hsum_i32x4(q5dot_at(w, xq)) * (f16_at(w) * dx);
}

// @ts-ignore: decorator
@inline function row_step4(acc: v128, w: usize, xq: usize, dx: v128): v128 {
  const r = reduce4_i32(q5dot_at(w, xq), q5dot_at(w + Q5_0_BYTES, xq + 32), q5dot_at(w + 2 * Q5_0_BYTES, xq + 64), q5dot_at(w + 3 * Q5_0_BYTES, xq + 96));
  return f32x4.add(acc, step4(r, scales4(w, Q5_0_BYTES), dx));
}

// @ts-ignore: decorator
@inline function tail_q5_0(w: usize, xq: usize, xd: usize, b: i32, nb: i32): f32 {
  let tail: f32 = 0;
  for (; b < nb; b++) {
    tail += step1(w, xq, load<f32>(xd + (<usize>b << 2)));
    w += Q5_0_BYTES; xq += QK;
  }
  return tail;
}

function dot1_q5_0(w: usize, x: usize, nb: i32): f32 {
  const xd = q8x_d(x, nb);
  let xq = q8x_q(x, nb);
  let acc = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    acc = row_step4(acc, w, xq, v128.load(xd + (<usize>b << 2)));
    w += 4 * Q5_0_BYTES; xq += 4 * QK;
  }
  return hsum_f32x4(acc) + tail_q5_0(w, xq, xd, b, nb);
}

/** eight Q5_0 weight rows (ws bytes apart) against one Q8_0X activation row, results os bytes apart (common.ts, STREAMS) */
function dot8_q5_0(o: usize, os: usize, w: usize, ws: usize, x: usize, nb: i32): void {
  const xd = q8x_d(x, nb);
  let xq = q8x_q(x, nb);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let wp = w;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const dx = v128.load(xd + (<usize>b << 2));
    a0 = row_step4(a0, wp, xq, dx);
    a1 = row_step4(a1, wp + ws, xq, dx);
    a2 = row_step4(a2, wp + 2 * ws, xq, dx);
    a3 = row_step4(a3, wp + 3 * ws, xq, dx);
    a4 = row_step4(a4, wp + 4 * ws, xq, dx);
    a5 = row_step4(a5, wp + 5 * ws, xq, dx);
    a6 = row_step4(a6, wp + 6 * ws, xq, dx);
    a7 = row_step4(a7, wp + 7 * ws, xq, dx);
    wp += 4 * Q5_0_BYTES; xq += 4 * QK;
  }
  store<f32>(o, hsum_f32x4(a0) + tail_q5_0(wp, xq, xd, b, nb));
  store<f32>(o + os, hsum_f32x4(a1) + tail_q5_0(wp + ws, xq, xd, b, nb));
  store<f32>(o + 2 * os, hsum_f32x4(a2) + tail_q5_0(wp + 2 * ws, xq, xd, b, nb));
  store<f32>(o + 3 * os, hsum_f32x4(a3) + tail_q5_0(wp + 3 * ws, xq, xd, b, nb));
  store<f32>(o + 4 * os, hsum_f32x4(a4) + tail_q5_0(wp + 4 * ws, xq, xd, b, nb));
  store<f32>(o + 5 * os, hsum_f32x4(a5) + tail_q5_0(wp + 5 * ws, xq, xd, b, nb));
  store<f32>(o + 6 * os, hsum_f32x4(a6) + tail_q5_0(wp + 6 * ws, xq, xd, b, nb));
  store<f32>(o + 7 * os, hsum_f32x4(a7) + tail_q5_0(wp + 7 * ws, xq, xd, b, nb));
}

/** one Q5_0 weight row against four Q8_0X activation rows (xs bytes apart) */
function dot4_q5_0(o: usize, os: usize, w: usize, x: usize, xs: usize, nb: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let qb: usize = q8x_q(0, nb);   // this step's int8, from each row's start
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    const sw = scales4(w, Q5_0_BYTES);
    const bo = <usize>b << 2;
    const wb = w + Q5_0_BYTES, wc = w + 2 * Q5_0_BYTES, wd = w + 3 * Q5_0_BYTES;
    a0 = f32x4.add(a0, step4(reduce4_i32(q5dot_at(w, x + qb), q5dot_at(wb, x + qb + 32), q5dot_at(wc, x + qb + 64), q5dot_at(wd, x + qb + 96)), sw, v128.load(x + bo)));
    a1 = f32x4.add(a1, step4(reduce4_i32(q5dot_at(w, x1 + qb), q5dot_at(wb, x1 + qb + 32), q5dot_at(wc, x1 + qb + 64), q5dot_at(wd, x1 + qb + 96)), sw, v128.load(x1 + bo)));
    a2 = f32x4.add(a2, step4(reduce4_i32(q5dot_at(w, x2 + qb), q5dot_at(wb, x2 + qb + 32), q5dot_at(wc, x2 + qb + 64), q5dot_at(wd, x2 + qb + 96)), sw, v128.load(x2 + bo)));
    a3 = f32x4.add(a3, step4(reduce4_i32(q5dot_at(w, x3 + qb), q5dot_at(wb, x3 + qb + 32), q5dot_at(wc, x3 + qb + 64), q5dot_at(wd, x3 + qb + 96)), sw, v128.load(x3 + bo)));
    w += 4 * Q5_0_BYTES; qb += 4 * QK;
  }
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; b < nb; b++) {
    const bo = <usize>b << 2;
    t0 += step1(w, x + qb, load<f32>(x + bo));
    t1 += step1(w, x1 + qb, load<f32>(x1 + bo));
    t2 += step1(w, x2 + qb, load<f32>(x2 + bo));
    t3 += step1(w, x3 + qb, load<f32>(x3 + bo));
    w += Q5_0_BYTES; qb += QK;
  }
  store<f32>(o, hsum_f32x4(a0) + t0);
  store<f32>(o + os, hsum_f32x4(a1) + t1);
  store<f32>(o + 2 * os, hsum_f32x4(a2) + t2);
  store<f32>(o + 3 * os, hsum_f32x4(a3) + t3);
}

/** out (t, d) f32 = xq (t rows of Q8_0X activations, common.ts) @ w (d rows of n/32 block_q5_0) ^T. */
export function matmul_q5_0(out: usize, xq: usize, w: usize, n: i32, d: i32, t: i32): void {
  const nb = n / QK;
  const wRow = <usize>nb * Q5_0_BYTES, xRow = <usize>nb * Q8_0X_BYTES;
  const os = <usize>d << 2;
  if (t == 1) {
    const seg = d / STREAMS;   // rows i, i + seg, ... i + 7·seg side by side: eight long streams (common.ts)
    for (let i = 0; i < seg; i++) dot8_q5_0(out + (<usize>i << 2), <usize>seg << 2, w + <usize>i * wRow, <usize>seg * wRow, xq, nb);
    for (let i = seg * STREAMS; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_q5_0(w + <usize>i * wRow, xq, nb));
    return;
  }
  const chunk = token_chunk(<i32>xRow);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * wRow;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4_q5_0(o + <usize>j * os, os, wp, xq + <usize>j * xRow, xRow, nb);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_q5_0(wp, xq + <usize>j * xRow, nb));
    }
  }
}
