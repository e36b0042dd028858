// Element-wise kernels on f32 rows: softmax (max-subtracted, f64 sum like ggml), swiglu, add (residual stream),
// argmax, scale, bias rows and soft-capping. All SIMD; exp is the vector polynomial of math.ts (ggml_v_expf), not Mathf.exp.
import { exp_f32x4 } from "./math";
import { glu } from "./glu";

/** x (n) <- softmax(x), in place */
// @ts-ignore: decorator
@inline export function softmax_inplace(x: usize, n: i32): void {
  const n4 = n & ~3;
  let mv = f32x4.splat(-Infinity);
  for (let k = 0; k < n4; k += 4) mv = f32x4.max(mv, v128.load(x + (<usize>k << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (let k = n4; k < n; k++) m = max(m, load<f32>(x + (<usize>k << 2)));
  const ms = f32x4.splat(m);
  // the sum is kept in f64 (two f64x2 lanes), as ggml_vec_soft_max_f32 does
  let s0 = f64x2.splat(0), s1 = f64x2.splat(0);
  for (let k = 0; k < n4; k += 4) {
    const p = x + (<usize>k << 2);
    const e = exp_f32x4(f32x4.sub(v128.load(p), ms));
    v128.store(p, e);
    s0 = f64x2.add(s0, f64x2.promote_low_f32x4(e));
    s1 = f64x2.add(s1, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 2, 3)));
  }
  let sum: f64 = (f64x2.extract_lane(s0, 0) + f64x2.extract_lane(s0, 1)) + (f64x2.extract_lane(s1, 0) + f64x2.extract_lane(s1, 1));
  for (let k = n4; k < n; k++) {
    const p = x + (<usize>k << 2);
    const e = f32x4.extract_lane(exp_f32x4(f32x4.splat(load<f32>(p) - m)), 0);
    store<f32>(p, e);
    sum += <f64>e;
  }
  const inv = <f32>(1.0 / sum);
  const iv = f32x4.splat(inv);
  let k = 0;
  let p = x;
  for (; k + 4 <= n; k += 4) {
    v128.store(p, f32x4.mul(v128.load(p), iv));
    p += 16;
  }
  for (; k < n; k++) {
    store<f32>(p, load<f32>(p) * inv);
    p += 4;
  }
}

/** x (n) <- exp(x - max x) / sum, in place */
export function softmax(x: usize, n: i32): void {
  softmax_inplace(x, n);
}

/** out (n) = silu(gate) * up = gate / (1 + exp(-gate)) * up; out may alias gate or up (glu's SiLU on one row). */
export function swiglu(out: usize, gate: usize, up: usize, n: i32): void {
  glu(out, gate, up, n, 1, n, 0);
}

/** out (n) = a + b; out may alias a or b. */
export function add(out: usize, a: usize, b: usize, n: i32): void {
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    v128.store(out, f32x4.add(v128.load(a), v128.load(b)));
    out += 16; a += 16; b += 16;
  }
  for (; k < n; k++) {
    store<f32>(out, load<f32>(a) + load<f32>(b));
    out += 4; a += 4; b += 4;
  }
}

/** index of the first maximum of x (n); 0 when n == 0 */
export function argmax(x: usize, n: i32): i32 {
  let best = 0;
  let bv = load<f32>(x);
  for (let k = 1; k < n; k++) {
    const v = load<f32>(x + (<usize>k << 2));
    if (v > bv) { bv = v; best = k; }
  }
  return best;
}

/**
 * sum of x (n) in f32: a streaming-read probe for benches, not a precise sum. x is read as four sequential
 * streams side by side (its quarters), two accumulators each: one core reads memory faster that way than as one
 * stream (the hardware prefetcher follows several streams; measured here ~10% more), and the matrix-vector
 * kernels that read several weight rows at once are measured against the faster figure.
 */
export function sum_f32(x: usize, n: i32): f32 {
  const q = (n >> 5) << 3;                    // floats per quarter, a multiple of 8
  const qb = <usize>q << 2;
  const x1 = x + qb, x2 = x1 + qb, x3 = x2 + qb;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  for (let o: usize = 0; o < qb; o += 32) {
    a0 = f32x4.add(a0, v128.load(x + o)); a1 = f32x4.add(a1, v128.load(x + o, 16));
    a2 = f32x4.add(a2, v128.load(x1 + o)); a3 = f32x4.add(a3, v128.load(x1 + o, 16));
    a4 = f32x4.add(a4, v128.load(x2 + o)); a5 = f32x4.add(a5, v128.load(x2 + o, 16));
    a6 = f32x4.add(a6, v128.load(x3 + o)); a7 = f32x4.add(a7, v128.load(x3 + o, 16));
  }
  const v = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  let s = (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
  for (let k = 4 * q; k < n; k++) s += load<f32>(x + (<usize>k << 2));
  return s;
}

/** out (n) = x (n) * s; out may alias x (Gemma's embedding scale, query pre-scaling) */
export function scale(out: usize, x: usize, s: f32, n: i32): void {
  const sv = f32x4.splat(s);
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    v128.store(out, f32x4.mul(v128.load(x), sv));
    out += 16; x += 16;
  }
  for (; k < n; k++) {
    store<f32>(out, load<f32>(x) * s);
    out += 4; x += 4;
  }
}

/** x (t, n) += b (n) on every row, in place (linear layers' biases) */
export function add_rows(x: usize, b: usize, n: i32, t: i32): void {
  for (let j = 0; j < t; j++) {
    let p = x + ((<usize>j * n) << 2), q = b;
    let k = 0;
    for (; k + 4 <= n; k += 4) {
      v128.store(p, f32x4.add(v128.load(p), v128.load(q)));
      p += 16; q += 16;
    }
    for (; k < n; k++) {
      store<f32>(p, load<f32>(p) + load<f32>(q));
      p += 4; q += 4;
    }
  }
}

/** x (n) <- cap * tanh(x * (1/cap)) in place, in ggml's order (scale, tanh, scale): Gemma 2's final-logit capping */
export function softcap(x: usize, cap: f32, n: i32): void {
  const inv: f32 = <f32>1.0 / cap;
  for (let k = 0; k < n; k++) {
    const p = x + (<usize>k << 2);
    store<f32>(p, Mathf.tanh(load<f32>(p) * inv) * cap);
  }
}

/**
 * x (rows of n, n a power of two) <- H x per row in place, H the orthonormal Walsh-Hadamard matrix in Sylvester
 * order: scaled by 1/sqrt(n) first, then log2(n) butterfly passes (u + v, u - v), as ggml's fwht (the form
 * llama.cpp's mul_mat takes for its KV-cache rotation), so every rounding is the same.
 */
export function hadamard(x: usize, n: i32, rows: i32): void {
  const scale: f32 = <f32>1.0 / Mathf.sqrt(<f32>n);
  const sv = f32x4.splat(scale);
  for (let r = 0; r < rows; r++) {
    const row = x + <usize>r * (<usize>n << 2);
    let j = 0;
    for (; j + 4 <= n; j += 4) v128.store(row + (<usize>j << 2), f32x4.mul(v128.load(row + (<usize>j << 2)), sv));
    for (; j < n; j++) store<f32>(row + (<usize>j << 2), load<f32>(row + (<usize>j << 2)) * scale);
    for (let len = 1; len < n; len <<= 1) {
      for (let i = 0; i < n; i += len << 1) {
        const a = row + (<usize>i << 2), b = a + (<usize>len << 2);
        let k = 0;
        for (; len >= 4 && k + 4 <= len; k += 4) {
          const u = v128.load(a + (<usize>k << 2)), v = v128.load(b + (<usize>k << 2));
          v128.store(a + (<usize>k << 2), f32x4.add(u, v));
          v128.store(b + (<usize>k << 2), f32x4.sub(u, v));
        }
        for (; k < len; k++) {
          const u = load<f32>(a + (<usize>k << 2)), v = load<f32>(b + (<usize>k << 2));
          store<f32>(a + (<usize>k << 2), u + v);
          store<f32>(b + (<usize>k << 2), u - v);
        }
      }
    }
  }
}
