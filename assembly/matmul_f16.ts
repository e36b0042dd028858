// Half-precision weights: matmul_f16 (f16 x f16, as ggml's vec_dot_f16 whose vec_dot_type is F16), matmul_bf16,
// and the activation converters convert_f16 / convert_bf16. Products of two f16 or two bf16 are exact in f32,
// so the only rounding is in the f32 accumulation. Not for quantized blocks.
import {
  prefetch_group, prefetch_rows, f16_to_f32, f32_to_f16, f32_to_bf16, f16x8_even, f16x8_odd, hsum_f32x4, token_chunk,
  TABLE, T_F16MASK, T_F16SCALE, T_HI16,
} from "./common";

// ---- f16 -------------------------------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function dot1_f16(w: usize, x: usize, n: i32): f32 {
  const mask = v128.load(TABLE + T_F16MASK), scale = v128.load(TABLE + T_F16SCALE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let k = 0;
  for (; k + 16 <= n; k += 16) {
    const w0 = v128.load(w), x0 = v128.load(x), w1 = v128.load(w, 16), x1 = v128.load(x, 16);
    a0 = f32x4.add(a0, f32x4.mul(f16x8_even(w0, mask, scale), f16x8_even(x0, mask, scale)));
    a1 = f32x4.add(a1, f32x4.mul(f16x8_odd(w0, mask, scale), f16x8_odd(x0, mask, scale)));
    a2 = f32x4.add(a2, f32x4.mul(f16x8_even(w1, mask, scale), f16x8_even(x1, mask, scale)));
    a3 = f32x4.add(a3, f32x4.mul(f16x8_odd(w1, mask, scale), f16x8_odd(x1, mask, scale)));
    w += 32; x += 32;
  }
  for (; k + 8 <= n; k += 8) {
    const w0 = v128.load(w), x0 = v128.load(x);
    a0 = f32x4.add(a0, f32x4.mul(f16x8_even(w0, mask, scale), f16x8_even(x0, mask, scale)));
    a1 = f32x4.add(a1, f32x4.mul(f16x8_odd(w0, mask, scale), f16x8_odd(x0, mask, scale)));
    w += 16; x += 16;
  }
  let s = hsum_f32x4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; k < n; k++) {
    s += f16_to_f32(load<u16>(w)) * f16_to_f32(load<u16>(x));
    w += 2; x += 2;
  }
  return s;
}

/** two f16 weight rows against one f16 activation row: x is decoded once for both */
// @ts-ignore: decorator
@inline function dot2_f16(o: usize, w: usize, ws: usize, x: usize, n: i32): void {
  const mask = v128.load(TABLE + T_F16MASK), scale = v128.load(TABLE + T_F16SCALE);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  const w1p = w + ws;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const xv = v128.load(x + off);
    const xe = f16x8_even(xv, mask, scale), xo = f16x8_odd(xv, mask, scale);
    const v0 = v128.load(w + off), v1 = v128.load(w1p + off);
    a0 = f32x4.add(a0, f32x4.mul(xe, f16x8_even(v0, mask, scale)));
    b0 = f32x4.add(b0, f32x4.mul(xo, f16x8_odd(v0, mask, scale)));
    a1 = f32x4.add(a1, f32x4.mul(xe, f16x8_even(v1, mask, scale)));
    b1 = f32x4.add(b1, f32x4.mul(xo, f16x8_odd(v1, mask, scale)));
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  for (; k < n; k++) {
    const xk = f16_to_f32(load<u16>(x + off));
    s0 += f16_to_f32(load<u16>(w + off)) * xk;
    s1 += f16_to_f32(load<u16>(w1p + off)) * xk;
    off += 2;
  }
  store<f32>(o, s0);
  store<f32>(o, s1, 4);
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
    const g = prefetch_group(rowBytes);
    let i = 0;
    for (; i + 2 <= d; i += 2) {
      prefetch_rows(w, i, d, rowBytes, g);
      prefetch_rows(w, i + 1, d, rowBytes, g);
      dot2_f16(out + (<usize>i << 2), w + <usize>i * rowBytes, rowBytes, x, n);
    }
    if (i < d) store<f32>(out + (<usize>i << 2), dot1_f16(w + <usize>i * rowBytes, x, n));
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
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let k = 0;
  for (; k + 16 <= n; k += 16) {
    const w0 = v128.load(w), x0 = v128.load(x), w1 = v128.load(w, 16), x1 = v128.load(x, 16);
    a0 = f32x4.add(a0, f32x4.mul(i32x4.shl(w0, 16), i32x4.shl(x0, 16)));
    a1 = f32x4.add(a1, f32x4.mul(v128.and(w0, hi), v128.and(x0, hi)));
    a2 = f32x4.add(a2, f32x4.mul(i32x4.shl(w1, 16), i32x4.shl(x1, 16)));
    a3 = f32x4.add(a3, f32x4.mul(v128.and(w1, hi), v128.and(x1, hi)));
    w += 32; x += 32;
  }
  for (; k + 8 <= n; k += 8) {
    const w0 = v128.load(w), x0 = v128.load(x);
    a0 = f32x4.add(a0, f32x4.mul(i32x4.shl(w0, 16), i32x4.shl(x0, 16)));
    a1 = f32x4.add(a1, f32x4.mul(v128.and(w0, hi), v128.and(x0, hi)));
    w += 16; x += 16;
  }
  let s = hsum_f32x4(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; k < n; k++) {
    s += bf16_to_f32(load<u16>(w)) * bf16_to_f32(load<u16>(x));
    w += 2; x += 2;
  }
  return s;
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
    const g = prefetch_group(rowBytes);
    for (let i = 0; i < d; i++) {
      prefetch_rows(w, i, d, rowBytes, g);
      store<f32>(out + (<usize>i << 2), dot1_bf16(w + <usize>i * rowBytes, x, n));
    }
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
