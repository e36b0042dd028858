// Half-precision weights: matmul_f16 (f16 x f16, as ggml's vec_dot_f16 whose vec_dot_type is F16), matmul_bf16,
// and the activation converters convert_f16 / convert_bf16. Products of two f16 or two bf16 are exact in f32,
// so the only rounding is in the f32 accumulation. Not for quantized blocks.
import {
  f16_to_f32, f32_to_f16, f32_to_bf16, f16x8_even, f16x8_odd, hsum_f32x4, token_chunk,
  TABLE, T_F16MASK, T_F16SCALE, T_HI16,
} from "./common";

// ---- f16 and bf16 -----------------------------------------------------------------------------------------
// One set of kernels serves both: `bf` (a constant at every call, so each export compiles to its own straight-line
// code) picks how eight packed values become two f32x4, the even and the odd elements. f16: the table's mask and
// scale (common.ts, f16x8_even/odd); bf16: the value is the high half of an f32, a shift or a mask away.
// Every path (one row, four rows, four tokens) does the same arithmetic for a (row, token) pair: even and odd
// elements in two accumulators over steps of eight, hsum(a + b), then the scalar tail. So a result does not
// depend on how threads cut a matmul (by rows or by tokens), down to the last bit.

// @ts-ignore: decorator
@inline function bf16_to_f32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** f32 of the f16 or bf16 value at p */
// @ts-ignore: decorator
@inline function half_at(p: usize, bf: bool): f32 {
  return bf ? bf16_to_f32(load<u16>(p)) : f16_to_f32(load<u16>(p));
}

/** the even elements of eight packed values v as f32x4 (c0, c1: half_c0/half_c1) */
// @ts-ignore: decorator
@inline function half_even(v: v128, bf: bool, c0: v128, c1: v128): v128 {
  return bf ? i32x4.shl(v, 16) : f16x8_even(v, c0, c1);
}

/** the odd elements of eight packed values v as f32x4 */
// @ts-ignore: decorator
@inline function half_odd(v: v128, bf: bool, c0: v128, c1: v128): v128 {
  return bf ? v128.and(v, c0) : f16x8_odd(v, c0, c1);
}

/** the table constants half_even/half_odd take, loaded once per call: f16 mask and scale; bf16's high-half mask */
// @ts-ignore: decorator
@inline function half_c0(bf: bool): v128 { return v128.load(TABLE + (bf ? T_HI16 : T_F16MASK)); }
// @ts-ignore: decorator
@inline function half_c1(): v128 { return v128.load(TABLE + T_F16SCALE); }

// @ts-ignore: decorator
@inline function dot1_half(w: usize, x: usize, n: i32, bf: bool): f32 {
  const c0 = half_c0(bf), c1 = half_c1();
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    const wv = v128.load(w), xv = v128.load(x);
    a = f32x4.add(a, f32x4.mul(half_even(wv, bf, c0, c1), half_even(xv, bf, c0, c1)));
    b = f32x4.add(b, f32x4.mul(half_odd(wv, bf, c0, c1), half_odd(xv, bf, c0, c1)));
    w += 16; x += 16;
  }
  let s = hsum_f32x4(f32x4.add(a, b));
  for (; k < n; k++) {
    s += half_at(w, bf) * half_at(x, bf);
    w += 2; x += 2;
  }
  return s;
}

/** four weight rows (ws bytes apart) against one activation row, results os bytes apart: x is decoded once */
// @ts-ignore: decorator
@inline function dot4rows_half(o: usize, os: usize, w: usize, ws: usize, x: usize, n: i32, bf: bool): void {
  const c0 = half_c0(bf), c1 = half_c1();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const xv = v128.load(x + off);
    const xe = half_even(xv, bf, c0, c1), xo = half_odd(xv, bf, c0, c1);
    let v = v128.load(w + off);
    a0 = f32x4.add(a0, f32x4.mul(half_even(v, bf, c0, c1), xe));
    b0 = f32x4.add(b0, f32x4.mul(half_odd(v, bf, c0, c1), xo));
    v = v128.load(w1 + off);
    a1 = f32x4.add(a1, f32x4.mul(half_even(v, bf, c0, c1), xe));
    b1 = f32x4.add(b1, f32x4.mul(half_odd(v, bf, c0, c1), xo));
    v = v128.load(w2 + off);
    a2 = f32x4.add(a2, f32x4.mul(half_even(v, bf, c0, c1), xe));
    b2 = f32x4.add(b2, f32x4.mul(half_odd(v, bf, c0, c1), xo));
    v = v128.load(w3 + off);
    a3 = f32x4.add(a3, f32x4.mul(half_even(v, bf, c0, c1), xe));
    b3 = f32x4.add(b3, f32x4.mul(half_odd(v, bf, c0, c1), xo));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const xk = half_at(x + off, bf);
    s0 += half_at(w + off, bf) * xk;
    s1 += half_at(w1 + off, bf) * xk;
    s2 += half_at(w2 + off, bf) * xk;
    s3 += half_at(w3 + off, bf) * xk;
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

/** one weight row against four activation rows (xs bytes apart), results os bytes apart: w is decoded once */
// @ts-ignore: decorator
@inline function dot4tokens_half(o: usize, os: usize, w: usize, x: usize, xs: usize, n: i32, bf: bool): void {
  const c0 = half_c0(bf), c1 = half_c1();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const wv = v128.load(w + off);
    const we = half_even(wv, bf, c0, c1), wo = half_odd(wv, bf, c0, c1);
    let v = v128.load(x + off);
    a0 = f32x4.add(a0, f32x4.mul(we, half_even(v, bf, c0, c1)));
    b0 = f32x4.add(b0, f32x4.mul(wo, half_odd(v, bf, c0, c1)));
    v = v128.load(x1 + off);
    a1 = f32x4.add(a1, f32x4.mul(we, half_even(v, bf, c0, c1)));
    b1 = f32x4.add(b1, f32x4.mul(wo, half_odd(v, bf, c0, c1)));
    v = v128.load(x2 + off);
    a2 = f32x4.add(a2, f32x4.mul(we, half_even(v, bf, c0, c1)));
    b2 = f32x4.add(b2, f32x4.mul(wo, half_odd(v, bf, c0, c1)));
    v = v128.load(x3 + off);
    a3 = f32x4.add(a3, f32x4.mul(we, half_even(v, bf, c0, c1)));
    b3 = f32x4.add(b3, f32x4.mul(wo, half_odd(v, bf, c0, c1)));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const wk = half_at(w + off, bf);
    s0 += wk * half_at(x + off, bf);
    s1 += wk * half_at(x1 + off, bf);
    s2 += wk * half_at(x2 + off, bf);
    s3 += wk * half_at(x3 + off, bf);
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

/** out (t, d) f32 = x (t, n) @ w (d, n) ^T, both f16 (bf = false) or both bf16, accumulated in f32 */
// @ts-ignore: decorator
@inline function matmul_half(out: usize, x: usize, w: usize, n: i32, d: i32, t: i32, bf: bool): void {
  const rowBytes = <usize>n << 1;
  const os = <usize>d << 2;
  if (t == 1) {
    const seg = d >> 2;   // rows i, i + seg, i + 2·seg, i + 3·seg side by side: four long streams (common.ts, STREAMS)
    for (let i = 0; i < seg; i++) dot4rows_half(out + (<usize>i << 2), <usize>seg << 2, w + <usize>i * rowBytes, <usize>seg * rowBytes, x, n, bf);
    for (let i = seg << 2; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_half(w + <usize>i * rowBytes, x, n, bf));
    return;
  }
  const chunk = token_chunk(<i32>rowBytes);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * rowBytes;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4tokens_half(o + <usize>j * os, os, wp, x + <usize>j * rowBytes, rowBytes, n, bf);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_half(wp, x + <usize>j * rowBytes, n, bf));
    }
  }
}

/** out (t, d) f32 = x (t, n) f16 @ w (d, n) f16 ^T, accumulated in f32. */
export function matmul_f16(out: usize, x: usize, w: usize, n: i32, d: i32, t: i32): void {
  matmul_half(out, x, w, n, d, t, false);
}

/** out (t, d) f32 = x (t, n) bf16 @ w (d, n) bf16 ^T, accumulated in f32. */
export function matmul_bf16(out: usize, x: usize, w: usize, n: i32, d: i32, t: i32): void {
  matmul_half(out, x, w, n, d, t, true);
}

// ---- converters ------------------------------------------------------------------------------------------

// Vector form of f32_to_f16 (common.ts): the same bit trick, four lanes at a time; result in the low half of
// each i32 lane.
// @ts-ignore: decorator
@inline function f32x4_to_f16(f: v128): v128 {
  const shl1 = i32x4.add(f, f);
  const sign = i32x4.shr_u(v128.and(f, i32x4.splat(0x80000000)), 16);
  const bias = i32x4.max_u(v128.and(shl1, i32x4.splat(0xff000000)), i32x4.splat(0x71000000));
  let base = f32x4.mul(f32x4.mul(f32x4.abs(f), f32x4.splat(reinterpret<f32>(0x77800000))), f32x4.splat(reinterpret<f32>(0x08800000)));
  base = f32x4.add(i32x4.add(i32x4.shr_u(bias, 1), i32x4.splat(0x07800000)), base);
  const nonsign = i32x4.add(v128.and(i32x4.shr_u(base, 13), i32x4.splat(0x7c00)), v128.and(base, i32x4.splat(0x0fff)));
  const nan = i32x4.gt_u(shl1, i32x4.splat(0xff000000));
  return v128.or(sign, v128.bitselect(i32x4.splat(0x7e00), nonsign, nan));
}

// @ts-ignore: decorator
@inline function f32x4_to_bf16(u: v128): v128 {
  const top = i32x4.shr_u(u, 16);
  const nan = i32x4.gt_u(v128.and(u, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  const rounded = i32x4.shr_u(i32x4.add(u, i32x4.add(i32x4.splat(0x7fff), v128.and(top, i32x4.splat(1)))), 16);
  return v128.bitselect(v128.or(top, i32x4.splat(64)), rounded, nan);
}

/** out (n) f16 bits = x (n) f32, round to nearest even (GGML_FP32_TO_FP16). */
export function convert_f16(out: usize, x: usize, n: i32): void {
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    v128.store(out, i16x8.narrow_i32x4_u(f32x4_to_f16(v128.load(x)), f32x4_to_f16(v128.load(x, 16))));
    out += 16; x += 32;
  }
  for (; k < n; k++) {
    store<u16>(out, <u16>f32_to_f16(load<f32>(x)));
    out += 2; x += 4;
  }
}

/** out (n) bf16 bits = x (n) f32, round to nearest even (GGML_FP32_TO_BF16). */
export function convert_bf16(out: usize, x: usize, n: i32): void {
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    v128.store(out, i16x8.narrow_i32x4_u(f32x4_to_bf16(v128.load(x)), f32x4_to_bf16(v128.load(x, 16))));
    out += 16; x += 32;
  }
  for (; k < n; k++) {
    store<u16>(out, <u16>f32_to_bf16(load<f32>(x)));
    out += 2; x += 4;
  }
}
