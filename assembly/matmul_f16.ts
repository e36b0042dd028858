// Half-precision weights: matmul_f16 (f16 x f16, as ggml's vec_dot_f16 whose vec_dot_type is F16), matmul_bf16,
// and the activation converters convert_f16 / convert_bf16. Products of two f16 or two bf16 are exact in f32,
// so the only rounding is in the f32 accumulation. Not for quantized blocks.
import {
  f16_to_f32, f32_to_f16, f32_to_bf16, f16x8_even, f16x8_odd, hsum_f32x4, token_chunk,
  TABLE, T_F16MASK, T_F16SCALE, T_HI16,
} from "./common";

// ---- f16 -------------------------------------------------------------------------------------------------

// Every f16 and bf16 path (one row, four rows, four tokens) does the same arithmetic for a (row, token) pair: even
// and odd elements in two accumulators over steps of eight, hsum(a + b), then the scalar tail. So a result does
// not depend on how threads cut a matmul (by rows or by tokens), down to the last bit.

// @ts-ignore: decorator
@inline function dot1_f16(w: usize, x: usize, n: i32): f32 {
  const mask = v128.load(TABLE + T_F16MASK), scale = v128.load(TABLE + T_F16SCALE);
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    const wv = v128.load(w), xv = v128.load(x);
    a = f32x4.add(a, f32x4.mul(f16x8_even(wv, mask, scale), f16x8_even(xv, mask, scale)));
    b = f32x4.add(b, f32x4.mul(f16x8_odd(wv, mask, scale), f16x8_odd(xv, mask, scale)));
    w += 16; x += 16;
  }
  let s = hsum_f32x4(f32x4.add(a, b));
  for (; k < n; k++) {
    s += f16_to_f32(load<u16>(w)) * f16_to_f32(load<u16>(x));
    w += 2; x += 2;
  }
  return s;
}

/** four f16 weight rows (ws bytes apart) against one f16 activation row, results os bytes apart: x is decoded once */
// @ts-ignore: decorator
@inline function dot4rows_f16(o: usize, os: usize, w: usize, ws: usize, x: usize, n: i32): void {
  const mask = v128.load(TABLE + T_F16MASK), scale = v128.load(TABLE + T_F16SCALE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const xv = v128.load(x + off);
    const xe = f16x8_even(xv, mask, scale), xo = f16x8_odd(xv, mask, scale);
    let v = v128.load(w + off);
    a0 = f32x4.add(a0, f32x4.mul(f16x8_even(v, mask, scale), xe));
    b0 = f32x4.add(b0, f32x4.mul(f16x8_odd(v, mask, scale), xo));
    v = v128.load(w1 + off);
    a1 = f32x4.add(a1, f32x4.mul(f16x8_even(v, mask, scale), xe));
    b1 = f32x4.add(b1, f32x4.mul(f16x8_odd(v, mask, scale), xo));
    v = v128.load(w2 + off);
    a2 = f32x4.add(a2, f32x4.mul(f16x8_even(v, mask, scale), xe));
    b2 = f32x4.add(b2, f32x4.mul(f16x8_odd(v, mask, scale), xo));
    v = v128.load(w3 + off);
    a3 = f32x4.add(a3, f32x4.mul(f16x8_even(v, mask, scale), xe));
    b3 = f32x4.add(b3, f32x4.mul(f16x8_odd(v, mask, scale), xo));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const xk = f16_to_f32(load<u16>(x + off));
    s0 += f16_to_f32(load<u16>(w + off)) * xk;
    s1 += f16_to_f32(load<u16>(w1 + off)) * xk;
    s2 += f16_to_f32(load<u16>(w2 + off)) * xk;
    s3 += f16_to_f32(load<u16>(w3 + off)) * xk;
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

// @ts-ignore: decorator
@inline function dot4_f16(o: usize, os: usize, w: usize, x: usize, xs: usize, n: i32): void {
  const mask = v128.load(TABLE + T_F16MASK), scale = v128.load(TABLE + T_F16SCALE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const wv = v128.load(w + off);
    const we = f16x8_even(wv, mask, scale), wo = f16x8_odd(wv, mask, scale);
    let v = v128.load(x + off);
    a0 = f32x4.add(a0, f32x4.mul(we, f16x8_even(v, mask, scale)));
    b0 = f32x4.add(b0, f32x4.mul(wo, f16x8_odd(v, mask, scale)));
    v = v128.load(x1 + off);
    a1 = f32x4.add(a1, f32x4.mul(we, f16x8_even(v, mask, scale)));
    b1 = f32x4.add(b1, f32x4.mul(wo, f16x8_odd(v, mask, scale)));
    v = v128.load(x2 + off);
    a2 = f32x4.add(a2, f32x4.mul(we, f16x8_even(v, mask, scale)));
    b2 = f32x4.add(b2, f32x4.mul(wo, f16x8_odd(v, mask, scale)));
    v = v128.load(x3 + off);
    a3 = f32x4.add(a3, f32x4.mul(we, f16x8_even(v, mask, scale)));
    b3 = f32x4.add(b3, f32x4.mul(wo, f16x8_odd(v, mask, scale)));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const wk = f16_to_f32(load<u16>(w + off));
    s0 += wk * f16_to_f32(load<u16>(x + off));
    s1 += wk * f16_to_f32(load<u16>(x1 + off));
    s2 += wk * f16_to_f32(load<u16>(x2 + off));
    s3 += wk * f16_to_f32(load<u16>(x3 + off));
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

/** out (t, d) f32 = x (t, n) f16 @ w (d, n) f16 ^T, accumulated in f32. */
export function matmul_f16(out: usize, x: usize, w: usize, n: i32, d: i32, t: i32): void {
  const rowBytes = <usize>n << 1;
  const os = <usize>d << 2;
  if (t == 1) {
    const seg = d >> 2;   // rows i, i + seg, i + 2·seg, i + 3·seg side by side: four long streams (common.ts, STREAMS)
    for (let i = 0; i < seg; i++) dot4rows_f16(out + (<usize>i << 2), <usize>seg << 2, w + <usize>i * rowBytes, <usize>seg * rowBytes, x, n);
    for (let i = seg << 2; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_f16(w + <usize>i * rowBytes, x, n));
    return;
  }
  const chunk = token_chunk(<i32>rowBytes);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * rowBytes;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4_f16(o + <usize>j * os, os, wp, x + <usize>j * rowBytes, rowBytes, n);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_f16(wp, x + <usize>j * rowBytes, n));
    }
  }
}

// ---- bf16 ------------------------------------------------------------------------------------------------

// A bf16 is the top half of an f32: even lanes are v << 16, odd lanes are v & 0xffff0000.

// @ts-ignore: decorator
@inline function bf16_to_f32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

// @ts-ignore: decorator
@inline function dot1_bf16(w: usize, x: usize, n: i32): f32 {
  const hi = v128.load(TABLE + T_HI16);
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let k = 0;
  for (; k + 8 <= n; k += 8) {
    const wv = v128.load(w), xv = v128.load(x);
    a = f32x4.add(a, f32x4.mul(i32x4.shl(wv, 16), i32x4.shl(xv, 16)));
    b = f32x4.add(b, f32x4.mul(v128.and(wv, hi), v128.and(xv, hi)));
    w += 16; x += 16;
  }
  let s = hsum_f32x4(f32x4.add(a, b));
  for (; k < n; k++) {
    s += bf16_to_f32(load<u16>(w)) * bf16_to_f32(load<u16>(x));
    w += 2; x += 2;
  }
  return s;
}

/** four bf16 weight rows (ws bytes apart) against one bf16 activation row, results os bytes apart: x is split once */
// @ts-ignore: decorator
@inline function dot4rows_bf16(o: usize, os: usize, w: usize, ws: usize, x: usize, n: i32): void {
  const hi = v128.load(TABLE + T_HI16);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const xv = v128.load(x + off);
    const xe = i32x4.shl(xv, 16), xo = v128.and(xv, hi);
    let v = v128.load(w + off);
    a0 = f32x4.add(a0, f32x4.mul(i32x4.shl(v, 16), xe));
    b0 = f32x4.add(b0, f32x4.mul(v128.and(v, hi), xo));
    v = v128.load(w1 + off);
    a1 = f32x4.add(a1, f32x4.mul(i32x4.shl(v, 16), xe));
    b1 = f32x4.add(b1, f32x4.mul(v128.and(v, hi), xo));
    v = v128.load(w2 + off);
    a2 = f32x4.add(a2, f32x4.mul(i32x4.shl(v, 16), xe));
    b2 = f32x4.add(b2, f32x4.mul(v128.and(v, hi), xo));
    v = v128.load(w3 + off);
    a3 = f32x4.add(a3, f32x4.mul(i32x4.shl(v, 16), xe));
    b3 = f32x4.add(b3, f32x4.mul(v128.and(v, hi), xo));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const xk = bf16_to_f32(load<u16>(x + off));
    s0 += bf16_to_f32(load<u16>(w + off)) * xk;
    s1 += bf16_to_f32(load<u16>(w1 + off)) * xk;
    s2 += bf16_to_f32(load<u16>(w2 + off)) * xk;
    s3 += bf16_to_f32(load<u16>(w3 + off)) * xk;
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

// @ts-ignore: decorator
@inline function dot4_bf16(o: usize, os: usize, w: usize, x: usize, xs: usize, n: i32): void {
  const hi = v128.load(TABLE + T_HI16);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const wv = v128.load(w + off);
    const we = i32x4.shl(wv, 16), wo = v128.and(wv, hi);
    let v = v128.load(x + off);
    a0 = f32x4.add(a0, f32x4.mul(we, i32x4.shl(v, 16)));
    b0 = f32x4.add(b0, f32x4.mul(wo, v128.and(v, hi)));
    v = v128.load(x1 + off);
    a1 = f32x4.add(a1, f32x4.mul(we, i32x4.shl(v, 16)));
    b1 = f32x4.add(b1, f32x4.mul(wo, v128.and(v, hi)));
    v = v128.load(x2 + off);
    a2 = f32x4.add(a2, f32x4.mul(we, i32x4.shl(v, 16)));
    b2 = f32x4.add(b2, f32x4.mul(wo, v128.and(v, hi)));
    v = v128.load(x3 + off);
    a3 = f32x4.add(a3, f32x4.mul(we, i32x4.shl(v, 16)));
    b3 = f32x4.add(b3, f32x4.mul(wo, v128.and(v, hi)));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const wk = bf16_to_f32(load<u16>(w + off));
    s0 += wk * bf16_to_f32(load<u16>(x + off));
    s1 += wk * bf16_to_f32(load<u16>(x1 + off));
    s2 += wk * bf16_to_f32(load<u16>(x2 + off));
    s3 += wk * bf16_to_f32(load<u16>(x3 + off));
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

/** out (t, d) f32 = x (t, n) bf16 @ w (d, n) bf16 ^T, accumulated in f32. */
export function matmul_bf16(out: usize, x: usize, w: usize, n: i32, d: i32, t: i32): void {
  const rowBytes = <usize>n << 1;
  const os = <usize>d << 2;
  if (t == 1) {
    const seg = d >> 2;   // rows i, i + seg, i + 2·seg, i + 3·seg side by side: four long streams (common.ts, STREAMS)
    for (let i = 0; i < seg; i++) dot4rows_bf16(out + (<usize>i << 2), <usize>seg << 2, w + <usize>i * rowBytes, <usize>seg * rowBytes, x, n);
    for (let i = seg << 2; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_bf16(w + <usize>i * rowBytes, x, n));
    return;
  }
  const chunk = token_chunk(<i32>rowBytes);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * rowBytes;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4_bf16(o + <usize>j * os, os, wp, x + <usize>j * rowBytes, rowBytes, n);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_bf16(wp, x + <usize>j * rowBytes, n));
    }
  }
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
