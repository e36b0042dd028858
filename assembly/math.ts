// Vector transcendental helpers: exp and silu on four f32 lanes at once, after ggml's ggml_v_expf (Arm's
// optimized-routines expf: Cody-Waite reduction by ln2, degree-5 polynomial, exponent built from the rounding
// shift). SIMD128 has no FMA, so there each fused step is a multiply then an add, as in ggml's SSE2 variant; the
// relaxed build fuses them (relaxed_madd), as ggml's AVX2 one. Either way the error stays within 2 ulp
// (test/kernels.test.ts measures it). Nothing here loops over memory.
import { fmadd, fnmadd } from "./common";

// Constants live in memory and are loaded where used: V8 re-materialises v128.const inside loops (wasm-facts.md).
const EXP_TABLE: usize = memory.data<u32>([
  0x4b400000, 0x4b400000, 0x4b400000, 0x4b400000, //   0: 0x1.8p23, the round-to-integer shift
  0x3fb8aa3b, 0x3fb8aa3b, 0x3fb8aa3b, 0x3fb8aa3b, //  16: 1/ln2
  0x3f317200, 0x3f317200, 0x3f317200, 0x3f317200, //  32: ln2, high part (exact when multiplied by n < 2^9)
  0x35bfbe8e, 0x35bfbe8e, 0x35bfbe8e, 0x35bfbe8e, //  48: ln2, low part
  0x3c072010, 0x3c072010, 0x3c072010, 0x3c072010, //  64: c0 (b^5)
  0x3d2b9f17, 0x3d2b9f17, 0x3d2b9f17, 0x3d2b9f17, //  80: c1 (b^4)
  0x3e2aaf33, 0x3e2aaf33, 0x3e2aaf33, 0x3e2aaf33, //  96: c2 (b^3)
  0x3efffedb, 0x3efffedb, 0x3efffedb, 0x3efffedb, // 112: c3 (b^2)
  0x3f7ffff6, 0x3f7ffff6, 0x3f7ffff6, 0x3f7ffff6, // 128: c4 (b)
  0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, // 144: 1.0
  0x42fc0000, 0x42fc0000, 0x42fc0000, 0x42fc0000, // 160: 126: past it 2^n alone over/underflows
  0x43400000, 0x43400000, 0x43400000, 0x43400000, // 176: 192: past it the result is 0 or inf
  0x82000000, 0x82000000, 0x82000000, 0x82000000, // 192: exponent split for the large-|n| path
  0x7f000000, 0x7f000000, 0x7f000000, 0x7f000000, // 208: 2^127 as bits
], 16);

// @ts-ignore: decorator
@inline function c(off: usize): v128 {
  return v128.load(EXP_TABLE + off);
}

/**
 * exp of four f32 lanes, max error about 1.5 ulp + rounding (ggml_v_expf). Inputs above ~88.38 give +inf,
 * below ~-103.97 give 0, NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function exp_f32x4(x: v128): v128 {
  const r = c(0);
  const z = fmadd(x, c(16), r);                          // round(x / ln2) sits in z's low mantissa bits
  const n = f32x4.sub(z, r);
  const b = fnmadd(n, c(48), fnmadd(n, c(32), x));      // x - n ln2, |b| <= ln2/2
  const e = i32x4.shl(z, 23);                            // n moved into the exponent field
  const k = i32x4.add(e, c(144));                        // 2^n (valid while |n| <= 126)
  const an = f32x4.abs(n);
  const big = f32x4.gt(an, c(160));
  const u = f32x4.mul(b, b);
  const j = fmadd(fmadd(fmadd(c(64), b, c(80)), u, fmadd(c(96), b, c(112))), u, f32x4.mul(c(128), b)); // exp(b) - 1
  if (!v128.any_true(big)) return fmadd(k, j, k);
  // |n| > 126: 2^n as the product of two representable powers s1 * s2; past 192 the answer is 0 or inf
  const g = v128.and(f32x4.le(n, f32x4.splat(0)), c(192));
  const s1 = i32x4.add(g, c(208));
  const s2 = i32x4.sub(e, g);
  const huge = f32x4.gt(an, c(176));
  return v128.bitselect(f32x4.mul(s1, s1),
    v128.bitselect(f32x4.mul(fmadd(s2, j, s2), s1), fmadd(k, j, k), big), huge);
}

/** silu(x) = x / (1 + exp(-x)) on four lanes (ggml_v_silu); -inf-bound inputs give -0, large ones x. */
// @ts-ignore: decorator
@inline export function silu_f32x4(x: v128): v128 {
  return f32x4.div(x, f32x4.add(c(144), exp_f32x4(f32x4.neg(x))));
}

/** out (n) = exp(x) lane by lane with exp_f32x4 (the tail goes through the same vector path); out may alias x. */
export function exp_f32(out: usize, x: usize, n: i32): void {
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    v128.store(out, exp_f32x4(v128.load(x)));
    out += 16; x += 16;
  }
  for (; k < n; k++) {
    store<f32>(out, f32x4.extract_lane(exp_f32x4(f32x4.splat(load<f32>(x))), 0));
    out += 4; x += 4;
  }
}
