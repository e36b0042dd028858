// Every tolerance the kernel and format tests use, in one place (house-style.md). Tune here, nowhere else.
import type { Tolerance } from "./support/util.js";

/** f32 kernels (matmul_f32, rmsnorm, rope, softmax, swiglu, add, attention, cosine, l2norm) vs the f64 reference */
export const F32_KERNEL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
/** the vector exp (ggml_v_expf without FMA) against Math.exp rounded to f32, in units in the last place */
export const EXP_ULP = 2;
/** f16/bf16 matmul vs the f64 reference on the same half-precision bytes (products exact; f32 accumulation) */
export const HALF_MATMUL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
/**
 * Q8/Q4 matmul vs the reference on the same bytes: the integer sums are exact, only the f32 sum of per-block
 * terms rounds. atol is this times the largest |output| of the case (a sum of terms can cancel to ~0).
 */
export const QUANT_MATMUL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
/** quantize_q8 kernel vs ggml's _ref rounding: int8 values may differ by this many units (ties: half-even vs away) */
export const Q8_TIE_UNITS = 1;
/**
 * Round trip on 0.1 + 2cos(i), 4096 values, measured as ggml's test-quantize-fns does: sqrt(sum diff^2) / n for
 * quantize -> dequantize, and |dot - exact dot| / n for the format's matmul against its activation format.
 */
export const ROUNDTRIP_ERROR = 0.002;
export const ROUNDTRIP_DOT_ERROR = 0.02;

/** Whole model against llama.cpp: next-token probabilities, absolute, over the whole vocabulary (issue 2). */
export const PROB_VS_LLAMACPP = 2e-4;
/** Where greedy tokens diverge from llama.cpp's, the two candidates' probabilities must be this close. */
export const TIE_PROB = 1e-3;

/**
 * gptq_accumulate_h vs the f64 reference: each entry sums t products in f32 before the f64 add, so the error
 * grows with t; atol is this times t (inputs are N(0,1)).
 */
export const GPTQ_HESSIAN: Tolerance = { atol: 1e-5, rtol: 1e-5 };

/**
 * kld against the KLD computed from llama.cpp's own teacher-forced distributions, relative (stories260K without
 * layer 3 from the whole model, 31 positions: measured 7.5e-7)
 */
export const KLD_VS_LLAMACPP = 5e-6;

/**
 * prune --heal lstsq's streamed T (f32 products within a batch of ≤ 64 rows, f64 across) against a float64 solve
 * of X and Y collected directly, relative to max |T| (stories260K, layers 2–3, 1900 tokens: measured 2.3e-7)
 */
export const HEAL_FIT = 2e-6;
