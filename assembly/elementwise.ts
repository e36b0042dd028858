// Element-wise kernels on f32 rows: softmax (max-subtracted, f64 sum like ggml), swiglu, add (residual stream)
// and argmax. SIMD where the op is plain arithmetic; exp is scalar Mathf.exp.

/** x (n) <- softmax(x), in place */
// @ts-ignore: decorator
@inline export function softmax_inplace(x: usize, n: i32): void {
  let m: f32 = -Infinity;
  for (let k = 0; k < n; k++) m = max(m, load<f32>(x + (<usize>k << 2)));
  let sum: f64 = 0;
  for (let k = 0; k < n; k++) {
    const p = x + (<usize>k << 2);
    const e = Mathf.exp(load<f32>(p) - m);
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

/** out (n) = silu(gate) * up = gate / (1 + exp(-gate)) * up; out may alias gate or up. */
export function swiglu(out: usize, gate: usize, up: usize, n: i32): void {
  for (let k = 0; k < n; k++) {
    const o = <usize>k << 2;
    const g = load<f32>(gate + o);
    store<f32>(out + o, (g / (<f32>1.0 + Mathf.exp(-g))) * load<f32>(up + o));
  }
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

/** sum of x (n) in f32 with eight accumulators: a streaming-read probe for benches, not a precise sum */
export function sum_f32(x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let k = 0;
  for (; k + 32 <= n; k += 32) {
    a0 = f32x4.add(a0, v128.load(x, 0)); a1 = f32x4.add(a1, v128.load(x, 16));
    a2 = f32x4.add(a2, v128.load(x, 32)); a3 = f32x4.add(a3, v128.load(x, 48));
    a4 = f32x4.add(a4, v128.load(x, 64)); a5 = f32x4.add(a5, v128.load(x, 80));
    a6 = f32x4.add(a6, v128.load(x, 96)); a7 = f32x4.add(a7, v128.load(x, 112));
    x += 128;
  }
  const v = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  let s = (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
  for (; k < n; k++) {
    s += load<f32>(x);
    x += 4;
  }
  return s;
}
