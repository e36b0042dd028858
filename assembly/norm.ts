// Row reductions: rmsnorm (as ggml_rms_norm followed by the weight multiply), l2norm_rows and cosine_rows
// (for block-influence scores). Sums of squares are accumulated in f64 like ggml's ggml_float. Not matmuls.

/** sum of squares of n f32 at x, in f64 (each square rounded to f32 first, as ggml does) */
// @ts-ignore: decorator
@inline function sumsq(x: usize, n: i32): f64 {
  let a0 = f64x2.splat(0), a1 = f64x2.splat(0);
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    const v = v128.load(x);
    const sq = f32x4.mul(v, v);
    a0 = f64x2.add(a0, f64x2.promote_low_f32x4(sq));
    a1 = f64x2.add(a1, f64x2.promote_low_f32x4(i32x4.shuffle(sq, sq, 2, 3, 2, 3)));
    x += 16;
  }
  const s2 = f64x2.add(a0, a1);
  let s = f64x2.extract_lane(s2, 0) + f64x2.extract_lane(s2, 1);
  for (; k < n; k++) {
    const v = load<f32>(x);
    s += <f64>(v * v);
    x += 4;
  }
  return s;
}

/** out (t, n) = x (t, n) / sqrt(mean(x^2) + eps) * w (n); out may equal x. */
export function rmsnorm(out: usize, x: usize, w: usize, n: i32, eps: f32, t: i32): void {
  for (let j = 0; j < t; j++) {
    const mean = <f32>(sumsq(x, n) / <f64>n);
    const scale: f32 = 1.0 / Mathf.sqrt(mean + eps);
    const sv = f32x4.splat(scale);
    let k = 0;
    let o = out, xp = x, wp = w;
    for (; k + 4 <= n; k += 4) {
      v128.store(o, f32x4.mul(f32x4.mul(v128.load(xp), sv), v128.load(wp)));
      o += 16; xp += 16; wp += 16;
    }
    for (; k < n; k++) {
      store<f32>(o, (load<f32>(xp) * scale) * load<f32>(wp));
      o += 4; xp += 4; wp += 4;
    }
    out += <usize>n << 2;
    x += <usize>n << 2;
  }
}

/** out (t) = Euclidean norm of each row of x (t, n), accumulated in f64. */
export function l2norm_rows(out: usize, x: usize, n: i32, t: i32): void {
  for (let j = 0; j < t; j++) {
    store<f32>(out + (<usize>j << 2), <f32>Math.sqrt(sumsq(x, n)));
    x += <usize>n << 2;
  }
}

/**
 * out (t) = cos(a_j, b_j) for rows of a, b (t, n), accumulated in f64. Zero rows: 1 when both rows are zero
 * (identical), 0 when only one is.
 */
export function cosine_rows(out: usize, a: usize, b: usize, n: i32, t: i32): void {
  for (let j = 0; j < t; j++) {
    let d0 = f64x2.splat(0), d1 = f64x2.splat(0), p0 = f64x2.splat(0), p1 = f64x2.splat(0), q0 = f64x2.splat(0), q1 = f64x2.splat(0);
    let k = 0;
    for (; k + 4 <= n; k += 4) {
      const va = v128.load(a), vb = v128.load(b);
      const al = f64x2.promote_low_f32x4(va), ah = f64x2.promote_low_f32x4(i32x4.shuffle(va, va, 2, 3, 2, 3));
      const bl = f64x2.promote_low_f32x4(vb), bh = f64x2.promote_low_f32x4(i32x4.shuffle(vb, vb, 2, 3, 2, 3));
      d0 = f64x2.add(d0, f64x2.mul(al, bl)); d1 = f64x2.add(d1, f64x2.mul(ah, bh));
      p0 = f64x2.add(p0, f64x2.mul(al, al)); p1 = f64x2.add(p1, f64x2.mul(ah, ah));
      q0 = f64x2.add(q0, f64x2.mul(bl, bl)); q1 = f64x2.add(q1, f64x2.mul(bh, bh));
      a += 16; b += 16;
    }
    const dv = f64x2.add(d0, d1), pv = f64x2.add(p0, p1), qv = f64x2.add(q0, q1);
    let dot = f64x2.extract_lane(dv, 0) + f64x2.extract_lane(dv, 1);
    let aa = f64x2.extract_lane(pv, 0) + f64x2.extract_lane(pv, 1);
    let bb = f64x2.extract_lane(qv, 0) + f64x2.extract_lane(qv, 1);
    for (; k < n; k++) {
      const x = <f64>load<f32>(a), y = <f64>load<f32>(b);
      dot += x * y; aa += x * x; bb += y * y;
      a += 4; b += 4;
    }
    let c: f64;
    if (aa == 0 || bb == 0) c = aa == bb ? 1 : 0;
    else c = dot / Math.sqrt(aa * bb);
    store<f32>(out + (<usize>j << 2), <f32>c);
  }
}
