// Shared @inline helpers for the kernels: block geometry, f16 <-> f32 bit tricks, horizontal sums and the
// constant table. Nothing here allocates or touches GGUF; it only turns bits into numbers.

/** elements per quantized block (ggml QK4_0 = QK4_1 = QK8_0 = QK8_1 = 32) */
export const QK: i32 = 32;
/** bytes of block_q8_0 (f16 d + 32 int8) */
export const Q8_0_BYTES: i32 = 34;
/** bytes of block_q8_1 (f16 d, f16 s + 32 int8) */
export const Q8_1_BYTES: i32 = 36;
/**
 * bytes per 32 activations in the Q8_0X row layout (the activations of Q4_0 and Q8_0 weights): a row of n values
 * is nb = n/32 f32 scales d (each exactly the f16 of a block_q8_0, widened), then nb i32 sums of each block's
 * int8, then the 32·nb int8. Kept apart, every 16-byte load of a row is aligned, four scales load as one vector,
 * and no kernel decodes an f16 or re-sums x per weight row (the same int8 and d as block_q8_0, so the same dots).
 */
export const Q8_0X_BYTES: i32 = 40;
/** Q8_0X row of nb blocks at x: its scales, sums and int8 */
// @ts-ignore: decorator
@inline export function q8x_d(x: usize, nb: i32): usize { return x; }
// @ts-ignore: decorator
@inline export function q8x_s(x: usize, nb: i32): usize { return x + (<usize>nb << 2); }
// @ts-ignore: decorator
@inline export function q8x_q(x: usize, nb: i32): usize { return x + (<usize>nb << 3); }
/**
 * bytes per 32 activations in the Q8_0W row layout (the SIMD128 build's activations of Q4_0 weights): Q8_0X's
 * scales and sums, then per block the same int8 widened to i16 and laid out for block_q4_0's nibbles read as
 * eight u16 lanes (lane j of the 16 packed bytes holds elements 2j, 2j+16, 2j+1, 2j+17 at bits 0, 4, 8, 12):
 * 256·x[0,2..14], 16·x[16,18..30], x[1,3..15], 256·x[17,19..31]. Then `q & 0x000f`, `q & 0x00f0`, `q & 0x0f00`
 * and `q >> 12` each meet their activations in one i32x4.dot_i16x8_s, every product scaled by exactly 256.
 */
export const Q8_0W_BYTES: i32 = 72; // q8x_d, q8x_s and q8x_q find its parts too (its i16 blocks are 64 bytes each)
/**
 * bytes per block of a group of four tokens in the Q8_0T layout (the relaxed build's prefill activations of Q4_0
 * weights): block_q8_0's numbers for tokens 4g .. 4g + 3, per group nb f32x4 scales d (lane m = token m), nb
 * i32x4 sums, then per block 128 int8 in eight 16-byte chunks. Chunk r < 4 holds in lane m (bytes 4m .. 4m + 3)
 * token m's elements 4·((m + r) & 3) .. + 3, chunk 4 + r the same of elements 16 + 4·((m + r) & 3): a block_q4_0's
 * low (high) nibbles rotated by r lanes meet all four tokens in one dot, and the eight dots of a block sum in i16
 * lanes to each token's Σu·x without moving a lane across tokens. A group is 4·nb·40 bytes, four Q8_0X rows' worth.
 */
export const Q8_0T_BYTES: i32 = 160;
/** bytes of block_q4_0 (f16 d + 16 bytes of nibbles) */
export const Q4_0_BYTES: i32 = 18;
/** bytes of block_q4_1 (f16 d, f16 m + 16 bytes of nibbles) */
export const Q4_1_BYTES: i32 = 20;

// Masks live in memory, not in v128.const: V8 re-materialises SIMD constants inside loops, while a value loaded
// once before the loop stays in a register (wasm-facts.md).
export const TABLE: usize = memory.data<u32>([
  0x0f0f0f0f, 0x0f0f0f0f, 0x0f0f0f0f, 0x0f0f0f0f, //   0: low-nibble mask
  0x8fffe000, 0x8fffe000, 0x8fffe000, 0x8fffe000, //  16: f16-in-top-half >> 3 keeps sign, exponent, mantissa
  0x77800000, 0x77800000, 0x77800000, 0x77800000, //  32: 2^112 as f32 bits (f16 -> f32 exponent re-bias)
  0xffff0000, 0xffff0000, 0xffff0000, 0xffff0000, //  48: top-half mask (odd f16/bf16 lanes)
  0x000f000f, 0x000f000f, 0x000f000f, 0x000f000f, //  64: u16 lanes' bits 0-3   (Q4_0 nibbles against Q8_0W)
  0x00f000f0, 0x00f000f0, 0x00f000f0, 0x00f000f0, //  80: u16 lanes' bits 4-7
  0x0f000f00, 0x0f000f00, 0x0f000f00, 0x0f000f00, //  96: u16 lanes' bits 8-11
  0x00010001, 0x00010001, 0x00010001, 0x00010001, // 112: i16 1 (sums of i16 pairs through i32x4.dot_i16x8_s)
], 16);
export const T_NIBBLE: usize = 0;
export const T_F16MASK: usize = 16;
export const T_F16SCALE: usize = 32;
export const T_HI16: usize = 48;
export const T_U16_N0: usize = 64;
export const T_U16_N1: usize = 80;
export const T_U16_N2: usize = 96;
export const T_ONES16: usize = 112;

// An f16 -> f32 table (ggml keeps the same one, ggml_table_f32_f16): four scales become four loads instead of
// twenty integer ops. It sits right after the static data; heap_base() (index.ts) starts the host's allocations
// after it, and init_tables() fills it once per memory (workers sharing that memory read the same table).
/**
 * address of the kernels' settings, 64 bytes just below the f16 table: i32 at 0 = the matrix-vector streams
 * (mv_streams). In memory, not in a global, so that one store by the host reaches every instance over the memory
 * (kernel workers); never written by a data segment, so a worker's instantiation does not reset it.
 */
// @ts-ignore: decorator
@inline export function settings(): usize { return (__heap_base + 63) & ~(<usize>63); }
/** address of the f16 -> f32 table: 65536 f32, entry h = f16_to_f32(h) */
// @ts-ignore: decorator
@inline export function f16_table(): usize { return settings() + 64; }
export const F16_TABLE_BYTES: usize = 65536 * 4;

/** f32 of the f16 at p, from the table */
// @ts-ignore: decorator
@inline export function f16_at(p: usize): f32 { return load<f32>(f16_table() + (<usize>load<u16>(p) << 2)); }

/** the f16 scales at p, p+stride, p+2·stride, p+3·stride as f32x4, from the table (exact, subnormals included) */
// @ts-ignore: decorator
@inline export function scales4(p: usize, stride: usize): v128 {
  const t = f16_table();
  let v = v128.load32_zero(t + (<usize>load<u16>(p) << 2));
  v = v128.load32_lane(t + (<usize>load<u16>(p + stride) << 2), v, 1);
  v = v128.load32_lane(t + (<usize>load<u16>(p + 2 * stride) << 2), v, 2);
  return v128.load32_lane(t + (<usize>load<u16>(p + 3 * stride) << 2), v, 3);
}

/** 2^112: multiplying by it re-biases an f16 exponent placed in an f32 (also right for f16 subnormals) */
// @ts-ignore: decorator
@inline export const F16_SCALE: f32 = reinterpret<f32>(0x77800000);

/**
 * f16 bits -> f32. Exact for normal and subnormal values; Inf/NaN are not preserved (weights never hold them).
 * Only integer ops and normal-float arithmetic: a subnormal f16 (a Q8_0 scale of small weights is one) goes
 * through 2^-14·(1 + m/1024) − 2^-14, because multiplying an f32 subnormal by 2^112 costs x86 a microcode assist
 * of ~100 cycles (it made a TinyLlama-shape Q8_0 ffn_down 12x slower).
 */
// @ts-ignore: decorator
@inline export function f16_to_f32(h: u32): f32 {
  if ((h & 0x7c00) == 0x7c00) return reinterpret<f32>(((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)); // Inf, NaN
  const o = (h & 0x7fff) << 13;
  const f = (h & 0x7c00) != 0
    ? reinterpret<f32>(o + 0x38000000)                                   // re-bias the exponent: 15 -> 127
    : reinterpret<f32>(o + 0x38800000) - reinterpret<f32>(0x38800000);    // m·2^-24, exactly
  return reinterpret<f32>(reinterpret<u32>(f) | ((h & 0x8000) << 16));
}

/** f32 -> f16 bits, round to nearest even, subnormals exact, overflow to Inf, NaN -> sign|0x7e00 (ggml generic). */
// @ts-ignore: decorator
@inline export function f32_to_f16(f: f32): u32 {
  const w = reinterpret<u32>(f);
  const shl1 = w + w;
  const sign = w & 0x80000000;
  let bias = shl1 & 0xff000000;
  if (bias < 0x71000000) bias = 0x71000000;
  // (|f| * 2^112) * 2^-110 lets the FPU do the rounding at the f16 precision of this exponent
  let base = (Mathf.abs(f) * reinterpret<f32>(0x77800000)) * reinterpret<f32>(0x08800000);
  base = reinterpret<f32>((bias >> 1) + 0x07800000) + base;
  const bits = reinterpret<u32>(base);
  const nonsign = ((bits >> 13) & 0x7c00) + (bits & 0x0fff);
  return (sign >> 16) | (shl1 > 0xff000000 ? 0x7e00 : nonsign);
}

/** f32 -> bf16 bits, round to nearest even, NaN forced quiet (ggml_compute_fp32_to_bf16). */
// @ts-ignore: decorator
@inline export function f32_to_bf16(f: f32): u32 {
  const u = reinterpret<u32>(f);
  if ((u & 0x7fffffff) > 0x7f800000) return (u >> 16) | 64;
  return (u + (0x7fff + ((u >> 16) & 1))) >> 16;
}

/** Sum of the four f32 lanes (pairwise, so the order is fixed). */
// @ts-ignore: decorator
@inline export function hsum_f32x4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Sum of the four f32 lanes of v widened to f64. */
// @ts-ignore: decorator
@inline export function hsum_f64x2(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

/** Max of the four f32 lanes. */
// @ts-ignore: decorator
@inline export function hmax_f32x4(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** Sum of the four i32 lanes. */
// @ts-ignore: decorator
@inline export function hsum_i32x4(v: v128): i32 {
  return i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
}

/**
 * Eight f16 (one v128) -> two f32x4 holding lanes (0,2,4,6) and (1,3,5,7). A dot product does not care about
 * the order, and this split costs 7 integer ops: each half-word is moved to the top of its i32, shifted right
 * arithmetically by 3 (sign stays, exponent and mantissa land where f32 keeps them), masked and scaled by 2^112.
 */
// @ts-ignore: decorator
@inline export function f16x8_even(v: v128, mask: v128, scale: v128): v128 {
  return f16_scaled(v128.and(i32x4.shr_s(i32x4.shl(v, 16), 3), mask), scale);
}
// @ts-ignore: decorator
@inline export function f16x8_odd(v: v128, mask: v128, scale: v128): v128 {
  return f16_scaled(v128.and(i32x4.shr_s(v, 3), mask), scale);
}
/** the scaling step of f16x8_even/odd; f16 Inf and NaN (exponent 31, which the scale would make 2^16·1.m) stay Inf and NaN, as ggml's table keeps them */
// @ts-ignore: decorator
@inline function f16_scaled(t: v128, scale: v128): v128 {
  const e = i32x4.splat(0x0f800000); // the f16 exponent's five bits where the shift put them
  return v128.or(f32x4.mul(t, scale), v128.and(i32x4.eq(v128.and(t, e), e), i32x4.splat(0x7f800000)));
}

/** Number of tokens of activations (rows of xRowBytes) to keep hot in L2 while one weight tile streams past. */
// @ts-ignore: decorator
@inline export function token_chunk(xRowBytes: i32): i32 {
  let c = (256 * 1024) / max(xRowBytes, 1);
  c &= ~3;
  return max(c, 4);
}

/**
 * Stores lane 0 of v at o, a slot its kernel overwrites with the final result later. V8's scheduler hoists every
 * load of a loop body above the arithmetic that consumes it; with four tokens' activations in flight that spills
 * dozens of vectors to the stack (seen in --print-wasm-code). A store sits in the order of memory operations, so
 * the arithmetic before it must run before the loads after it: one token's work at a time, in registers.
 */
// @ts-ignore: decorator
@inline export function pin(o: usize, v: v128): void {
  store<i32>(o, i32x4.extract_lane(v, 0));
}

/**
 * Weight rows a matrix-matrix kernel (matmul_*_mm) takes at a time against one group of four tokens: as many as
 * keep those rows and the group's activations within about 24 KiB of the 32 KiB L1, at least 1, at most 64.
 */
// @ts-ignore: decorator
@inline export function mm_row_tile(wRowBytes: i32, xRowBytes: i32): i32 {
  const room = 24 * 1024 - 4 * xRowBytes;
  return min(64, max(1, room / max(wRowBytes, 1)));
}

/**
 * Integer dot of 32 weights already widened to i16 (w0..w3 = elements 0-7, 8-15, 16-23, 24-31) with the 32 int8
 * at q0 (elements 0-15) and q1 (16-31), as four i32 partial sums.
 */
// @ts-ignore: decorator
@inline export function idot_w16(w0: v128, w1: v128, w2: v128, w3: v128, q0: v128, q1: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(w0, i16x8.extend_low_i8x16_s(q0)), i32x4.dot_i16x8_s(w1, i16x8.extend_high_i8x16_s(q0))),
    i32x4.add(i32x4.dot_i16x8_s(w2, i16x8.extend_low_i8x16_s(q1)), i32x4.dot_i16x8_s(w3, i16x8.extend_high_i8x16_s(q1))));
}

/**
 * Rows a matrix-vector pass reads side by side. A matvec kernel cuts its d rows into STREAMS equal runs and
 * computes row i of every run together (rows i, i + d/STREAMS, ...): each run is contiguous, so the pass is
 * STREAMS sequential streams as long as the matrix, not rows of a few KiB that end before the hardware prefetcher
 * has ramped up. Cold 11008 x 4096 (relaxed build, GB/s): Q4_0 6.8 with two adjacent rows and software prefetch
 * (a batch of loads a few KiB ahead: they must retire, so compute waits on them), 10.5 with four runs, 11.8 with
 * eight; Q8_0 9.6 with eight adjacent rows, 12.5 with eight runs. Kernels with more live registers per row cut
 * into fewer runs (F32, F16 and BF16 four). A row's rounding does not depend on the rows beside it.
 */
export const STREAMS: i32 = 8;

/**
 * Runs per matrix-vector pass for the quantized kernels that can vary it (Q4_0, Q8_0, Q4_K, Q6_K): 2, 4 or STREAMS,
 * as set_matvec_streams stored it in settings() (anything else, such as the 0 of a fresh memory, means STREAMS).
 * How many long streams read best depends on the CPU's prefetchers: the Intel Xeon of docs/speed.md gained from
 * two to eight, the AMD EPYC Zen 3 there reads faster with fewer (docs/speed.md, Zen 3 decode). A row's rounding
 * does not depend on the rows beside it, so every setting gives the same bits.
 */
// @ts-ignore: decorator
@inline export function mv_streams(): i32 {
  const s = load<i32>(settings());
  return s == 2 || s == 4 ? s : STREAMS;
}

/** the eight results of a STREAMS pass: hsum of each accumulator, to o, o + os, ... o + 7·os */
// @ts-ignore: decorator
@inline export function store8_f32x4(o: usize, os: usize, a0: v128, a1: v128, a2: v128, a3: v128, a4: v128, a5: v128, a6: v128, a7: v128): void {
  store<f32>(o, hsum_f32x4(a0));
  store<f32>(o + os, hsum_f32x4(a1));
  store<f32>(o + 2 * os, hsum_f32x4(a2));
  store<f32>(o + 3 * os, hsum_f32x4(a3));
  store<f32>(o + 4 * os, hsum_f32x4(a4));
  store<f32>(o + 5 * os, hsum_f32x4(a5));
  store<f32>(o + 6 * os, hsum_f32x4(a6));
  store<f32>(o + 7 * os, hsum_f32x4(a7));
}

/** elements per K-quant super-block (ggml QK_K) */
export const QK_K: i32 = 256;
/** bytes of block_q4_K (f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles) */
export const Q4_K_BYTES: i32 = 144;
/** bytes of block_q6_K (128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d) */
export const Q6_K_BYTES: i32 = 210;
/** bytes of block_q8_K (f32 d, 256 int8, 16 int16 bsums) */
export const Q8_K_BYTES: i32 = 292;
/**
 * bytes per 256 activations in the Q8_KW layout (the SIMD128 build's activations of Q4_K weights): Q8_K's
 * numbers with the int8 widened to i16 and laid out for block_q4_K's nibbles read as u16 lanes, as Q8_0W is for
 * Q4_0. f32 d at 0, 12 zero bytes, then for each 32 nibble bytes (sub-blocks A = 2p and B = 2p + 1) and each
 * half h of them, 64 bytes: 256·A[16h + 0, 2..14], 16·B[16h + 0, 2..14], A[16h + 1, 3..15], 256·B[16h + 1, 3..15];
 * Q8_K's 16 bsums at 528.
 */
export const Q8_KW_BYTES: i32 = 560;
/** offset of the bsums in a Q8_KW block */
export const Q8_KW_BSUMS: usize = 528;

/**
 * Integer dot of 16 unsigned weights w (each 0..127) with 16 int8 activations x, as four i32 partial sums.
 * The relaxed build uses i16x8.relaxed_dot_i8x16_i7x16_s (its i7 operand must be 0..127, which w is; the i16x8
 * form, not the i32x4 "_add" one that V8 11.3's Liftoff gets wrong: wasm-facts.md); SIMD128 widens to i16.
 */
// @ts-ignore: decorator
@inline export function dot_u7_i8(w: v128, x: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, w));
  } else {
    return i32x4.add(
      i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(w), i16x8.extend_low_i8x16_s(x)),
      i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(w), i16x8.extend_high_i8x16_s(x)));
  }
}

/**
 * Relaxed build only (a SIMD128 build must not reach it): i16x8 partial sums of w0·x0 + w1·x1, 32 unsigned
 * weights w (0..127) against 32 int8 x, through i16x8.relaxed_dot_i8x16_i7x16_s. Each lane sums four products,
 * so callers keep the weights small enough for i16 (nibbles: 4·15·127; 6-bit: 4·63·127).
 */
// @ts-ignore: decorator
@inline export function rdot_nib(w0: v128, w1: v128, x0: v128, x1: v128): v128 {
  return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, w0), i16x8.relaxed_dot_i8x16_i7x16_s(x1, w1));
}

/** a·b + c on four f32 lanes: fused (relaxed_madd, an FMA on x86/ARM) in the relaxed build, mul then add in SIMD128 */
// @ts-ignore: decorator
@inline export function fmadd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_madd(a, b, c);
  } else {
    return f32x4.add(f32x4.mul(a, b), c);
  }
}

/** c − a·b on four f32 lanes (relaxed_nmadd in the relaxed build) */
// @ts-ignore: decorator
@inline export function fnmadd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_nmadd(a, b, c);
  } else {
    return f32x4.sub(c, f32x4.mul(a, b));
  }
}

/** the first step of reduce4_i32: lanes (a0+a1, b0+b1, a2+a3, b2+b3) of a and b */
// @ts-ignore: decorator
@inline export function fold2(a: v128, b: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(a, b, 0, 4, 1, 5), v128.shuffle<i32>(a, b, 2, 6, 3, 7));
}

/** the last step of reduce4_i32, on two fold2 results */
// @ts-ignore: decorator
@inline export function fold4(ab: v128, cd: v128): v128 {
  return i32x4.add(v128.shuffle<i32>(ab, cd, 0, 1, 4, 5), v128.shuffle<i32>(ab, cd, 2, 3, 6, 7));
}

/** fold2 on i16 lanes: each i32 lane of the result holds two i16 sums of two lanes each (a and b never mix) */
// @ts-ignore: decorator
@inline export function fold2_i16(a: v128, b: v128): v128 {
  return i16x8.add(v128.shuffle<i32>(a, b, 0, 4, 1, 5), v128.shuffle<i32>(a, b, 2, 6, 3, 7));
}

/** fold4 on i16 lanes: i32 lane k of the result holds two i16 sums of four lanes each, of input k */
// @ts-ignore: decorator
@inline export function fold4_i16(ab: v128, cd: v128): v128 {
  return i16x8.add(v128.shuffle<i32>(ab, cd, 0, 1, 4, 5), v128.shuffle<i32>(ab, cd, 2, 3, 6, 7));
}

/**
 * [sum a0, sum a1, sum a2, sum a3] of four i16x8 whose lanes are each at most 8191 in size (so four of them
 * summed fit i16): folded in i16, then one i32x4.dot_i16x8_s with ones (the T_ONES16 vector) for the last pair.
 */
// @ts-ignore: decorator
@inline export function reduce4_i16(a0: v128, a1: v128, a2: v128, a3: v128, ones: v128): v128 {
  return i32x4.dot_i16x8_s(fold4_i16(fold2_i16(a0, a1), fold2_i16(a2, a3)), ones);
}

/** [sum a0, sum a1, sum a2, sum a3] of four i32x4 */
// @ts-ignore: decorator
@inline export function reduce4_i32(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  return fold4(fold2(a0, a1), fold2(a2, a3));
}
