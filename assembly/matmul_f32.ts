// matmul_f32: out (t, d) = x (t, n) @ W (d, n)^T with f32 weights and activations, fused multiply-adds in the
// relaxed build; t = 1 takes four weight rows per pass, t > 1 uses each weight row for four tokens per pass.
// Not for quantized weights.
import { fmadd, hsum_f32x4, token_chunk } from "./common";

// Every path (four rows, four tokens, one of each) does the same arithmetic for a (row, token) pair: two
// accumulators over steps of eight floats, one more step of four into the first, hsum(a + b), then the scalar
// tail. So a result does not depend on how threads cut a matmul (by rows or by tokens), down to the last bit.

/** sum_k w[k] * x[k] over n f32 (any n >= 0) */
// @ts-ignore: decorator
@inline function dot1_f32(w: usize, x: usize, n: i32): f32 {
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    a = fmadd(v128.load(w + off), v128.load(x + off), a);
    b = fmadd(v128.load(w + off, 16), v128.load(x + off, 16), b);
    off += 32;
  }
  for (; k + 4 <= n; k += 4) {
    a = fmadd(v128.load(w + off), v128.load(x + off), a);
    off += 16;
  }
  let s = hsum_f32x4(f32x4.add(a, b));
  for (; k < n; k++) {
    s += load<f32>(w + off) * load<f32>(x + off);
    off += 4;
  }
  return s;
}

/**
 * Four weight rows (ws bytes apart) against one activation row; results os bytes apart. Four rows stream at
 * once: on one core the weights arrive faster as four concurrent sequential streams than as one (measured on
 * 11008 × 4096: 66% of the streaming-read rate with one row at a time, 86% with four), and x is loaded once.
 */
// @ts-ignore: decorator
@inline function dot4rows(o: usize, os: usize, w: usize, ws: usize, x: usize, n: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const w1 = w + ws, w2 = w1 + ws, w3 = w2 + ws;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const x0 = v128.load(x + off), x1 = v128.load(x + off, 16);
    a0 = fmadd(v128.load(w + off), x0, a0);
    b0 = fmadd(v128.load(w + off, 16), x1, b0);
    a1 = fmadd(v128.load(w1 + off), x0, a1);
    b1 = fmadd(v128.load(w1 + off, 16), x1, b1);
    a2 = fmadd(v128.load(w2 + off), x0, a2);
    b2 = fmadd(v128.load(w2 + off, 16), x1, b2);
    a3 = fmadd(v128.load(w3 + off), x0, a3);
    b3 = fmadd(v128.load(w3 + off, 16), x1, b3);
    off += 32;
  }
  for (; k + 4 <= n; k += 4) {
    const x0 = v128.load(x + off);
    a0 = fmadd(v128.load(w + off), x0, a0);
    a1 = fmadd(v128.load(w1 + off), x0, a1);
    a2 = fmadd(v128.load(w2 + off), x0, a2);
    a3 = fmadd(v128.load(w3 + off), x0, a3);
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const xk = load<f32>(x + off);
    s0 += load<f32>(w + off) * xk;
    s1 += load<f32>(w1 + off) * xk;
    s2 += load<f32>(w2 + off) * xk;
    s3 += load<f32>(w3 + off) * xk;
    off += 4;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

/** One weight row against four activation rows (xs apart); results go to o, o+os, o+2os, o+3os. */
// @ts-ignore: decorator
@inline function dot4tokens(o: usize, os: usize, w: usize, x: usize, xs: usize, n: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const x1 = x + xs, x2 = x1 + xs, x3 = x2 + xs;
  let k = 0;
  let off: usize = 0;
  for (; k + 8 <= n; k += 8) {
    const w0 = v128.load(w + off), w1 = v128.load(w + off, 16);
    a0 = fmadd(w0, v128.load(x + off), a0);
    b0 = fmadd(w1, v128.load(x + off, 16), b0);
    a1 = fmadd(w0, v128.load(x1 + off), a1);
    b1 = fmadd(w1, v128.load(x1 + off, 16), b1);
    a2 = fmadd(w0, v128.load(x2 + off), a2);
    b2 = fmadd(w1, v128.load(x2 + off, 16), b2);
    a3 = fmadd(w0, v128.load(x3 + off), a3);
    b3 = fmadd(w1, v128.load(x3 + off, 16), b3);
    off += 32;
  }
  for (; k + 4 <= n; k += 4) {
    const w0 = v128.load(w + off);
    a0 = fmadd(w0, v128.load(x + off), a0);
    a1 = fmadd(w0, v128.load(x1 + off), a1);
    a2 = fmadd(w0, v128.load(x2 + off), a2);
    a3 = fmadd(w0, v128.load(x3 + off), a3);
    off += 16;
  }
  let s0 = hsum_f32x4(f32x4.add(a0, b0)), s1 = hsum_f32x4(f32x4.add(a1, b1));
  let s2 = hsum_f32x4(f32x4.add(a2, b2)), s3 = hsum_f32x4(f32x4.add(a3, b3));
  for (; k < n; k++) {
    const wk = load<f32>(w + off);
    s0 += wk * load<f32>(x + off);
    s1 += wk * load<f32>(x1 + off);
    s2 += wk * load<f32>(x2 + off);
    s3 += wk * load<f32>(x3 + off);
    off += 4;
  }
  store<f32>(o, s0);
  store<f32>(o + os, s1);
  store<f32>(o + 2 * os, s2);
  store<f32>(o + 3 * os, s3);
}

/** out[j*d + i] = sum_k w[i*n + k] * x[j*n + k]; x (t, n) f32, w (d, n) f32, out (t, d) f32. */
export function matmul_f32(out: usize, x: usize, w: usize, n: i32, d: i32, t: i32): void {
  const rowBytes = <usize>n << 2;
  const os = <usize>d << 2;
  if (t == 1) {
    const seg = d >> 2;   // rows i, i + seg, i + 2·seg, i + 3·seg side by side: four long streams (common.ts, STREAMS)
    for (let i = 0; i < seg; i++) dot4rows(out + (<usize>i << 2), <usize>seg << 2, w + <usize>i * rowBytes, <usize>seg * rowBytes, x, n);
    for (let i = seg << 2; i < d; i++) store<f32>(out + (<usize>i << 2), dot1_f32(w + <usize>i * rowBytes, x, n));
    return;
  }
  const chunk = token_chunk(<i32>rowBytes);
  for (let j0 = 0; j0 < t; j0 += chunk) {
    const j1 = min(t, j0 + chunk);
    for (let i = 0; i < d; i++) {
      const wp = w + <usize>i * rowBytes;
      const o = out + (<usize>i << 2);
      let j = j0;
      for (; j + 4 <= j1; j += 4) dot4tokens(o + <usize>j * os, os, wp, x + <usize>j * rowBytes, rowBytes, n);
      for (; j < j1; j++) store<f32>(o + <usize>j * os, dot1_f32(wp, x + <usize>j * rowBytes, n));
    }
  }
}
