// Every tolerance the kernel and format tests use, in one place (house-style.md). Tune here, nowhere else.
import type { Tolerance } from "./support/util.js";

/** a bound and the figure it was derived from */
export interface Bound {
  bound: number;
  measured: number;
}

/**
 * Each kernel against its scalar reference (src/kernels/reference.ts, float64 arithmetic) on the test's odd sizes:
 * the bound τ in |a − e| ≤ τ·(s + |e|), where s is 1, or the case's largest |output| for the quantized matmuls
 * (a sum of block terms can cancel to ~0), √(columns) for gptq_block_update and t for gptq_accumulate_h.
 * `measured` is the largest τ any case needed, from EDGEPRUNE_TOL_REPORT=FILE npm test then
 * `node dist/test/support/tolerance-report.js FILE` (2026-12-03, SIMD128 and relaxed builds, the same on every
 * x86 with FMA: wasm is deterministic there). Exact kernels (element-wise adds, cosine of rows) have τ = 0.
 * Each τ is above its measured figure and at most 10× it (tolerances.test checks).
 */
export const KERNEL = {
  matmul_f32: { tol: 3e-6, measured: 8.6e-7 },
  matmul_f16: { tol: 1.5e-6, measured: 3.4e-7 },
  matmul_bf16: { tol: 1e-6, measured: 1.9e-7 },
  matmul_q8_0: { tol: 1e-6, measured: 1.5e-7 },
  matmul_q5_0: { tol: 1e-6, measured: 2.1e-7 },
  matmul_q4_0: { tol: 5e-7, measured: 9.7e-8 },
  matmul_q4_1: { tol: 3e-6, measured: 8.4e-7 },
  matmul_q4_K: { tol: 1.5e-6, measured: 3.6e-7 },
  matmul_q6_K: { tol: 5e-7, measured: 8.7e-8 },
  rmsnorm: { tol: 5e-7, measured: 1.1e-7 },
  rope: { tol: 5e-7, measured: 1.3e-7 }, // rope_norm and rope_neox
  rope_ext: { tol: 1e-5, measured: 4.2e-6 }, // YaRN x4 at position 300: angles through float32 powers
  glu_silu: { tol: 5e-7, measured: 1.4e-7 },
  swiglu: { tol: 5e-7, measured: 1.5e-7 },
  scale: { tol: 5e-7, measured: 1.2e-7 },
  softcap: { tol: 1e-6, measured: 2.0e-7 },
  softmax: { tol: 1e-7, measured: 1.3e-8 },
  sum_f32: { tol: 1e-6, measured: 2.0e-7 }, // τ·√n
  attention: { tol: 1e-6, measured: 2.7e-7 },
  attention_kv_f32: { tol: 1e-5, measured: 3.9e-6 }, // attention_kv over F32 caches, soft-capped scores: tanh through the vector exp
  attention_kv: { tol: 5e-6, measured: 1.5e-6 }, // every K type with an F32 or Q8_0 V, against the reference on the same cache bytes
  hadamard: { tol: 2e-6, measured: 3.9e-7 },
  l2norm_rows: { tol: 2e-7, measured: 4.5e-8 },
  add: { tol: 0, measured: 0 },
  add_rows: { tol: 0, measured: 0 },
  cosine_rows: { tol: 0, measured: 0 },
  gptq_rank1_update: { tol: 5e-7, measured: 9.1e-8 },
  gptq_block_update: { tol: 2e-6, measured: 5.1e-7 },
  gptq_accumulate_h: { tol: 1e-6, measured: 1.5e-7 },
} as const satisfies Record<string, { tol: number; measured: number }>;

/** KERNEL[name] as an assertClose tolerance, with atol scaled by s (see KERNEL) */
export function kernelTol(name: keyof typeof KERNEL, s = 1): Tolerance {
  const { tol } = KERNEL[name];
  return { atol: tol * s, rtol: tol };
}

/**
 * GeGLU's GELU goes through ggml's f16 table while the reference evaluates it in float64, so an entry may be one
 * f16 step off: measured 8.4e-1 of this bound (glu fused gelu=1 n=33 t=3).
 */
export const GELU_TABLE: Tolerance = { atol: 1e-6, rtol: 1e-3 };
/**
 * attention_kv with an F16 V cache vs the reference: the share of head rows where one softmax weight rounds to
 * the other f16 neighbour (our f32 softmax and the float64 one a few f32 ulp apart across a midpoint). Measured:
 * 2 of 960 rows (0.0021, SIMD128 build; the relaxed build passes the same bound); a truncating rounding moves most rows.
 */
export const F16_V_WEIGHT_FLIPS = 0.017;
/** the vector exp (ggml_v_expf without FMA) against Math.exp rounded to f32, in units in the last place */
export const EXP_ULP = 2;
/**
 * quantize_q8 kernel vs ggml's _ref rounding: int8 values may differ by this many units (ties: half-even vs away).
 * Measured 1 on the test's exact-tie inputs (a tie is one unit by definition), 0 everywhere else.
 */
export const Q8_TIE_UNITS = 1;
/**
 * Round trip on 0.1 + 2cos(i), 4096 values, measured as ggml's test-quantize-fns does: `error` is
 * sqrt(sum diff²) / n for quantize → dequantize, `drift` the same for a second pass over the dequantized values
 * (exact for every format but Q8_K, whose f32 scale is recomputed), `dot` |dot − exact dot| / n for the format's
 * matmul against its activation format (the same in the SIMD128 and relaxed builds). Measured 2026-12-03; each
 * bound about 3× its figure, exact where the figure is 0.
 */
export const ROUNDTRIP: Record<string, { error: Bound; drift: Bound; dot?: Bound }> = {
  F32: { error: { bound: 0, measured: 0 }, drift: { bound: 0, measured: 0 }, dot: { bound: 1e-06, measured: 2.91e-07 } },
  F16: { error: { bound: 1.5e-05, measured: 4.37e-06 }, drift: { bound: 0, measured: 0 }, dot: { bound: 3e-05, measured: 9.72e-06 } },
  Q4_0: { error: { bound: 5e-03, measured: 1.12e-03 }, drift: { bound: 0, measured: 0 }, dot: { bound: 5e-03, measured: 1.14e-03 } },
  Q4_1: { error: { bound: 5e-03, measured: 1.14e-03 }, drift: { bound: 0, measured: 0 }, dot: { bound: 3e-02, measured: 7.93e-03 } },
  Q5_0: { error: { bound: 2e-03, measured: 5.91e-04 }, drift: { bound: 0, measured: 0 }, dot: { bound: 5e-03, measured: 1.35e-03 } },
  Q8_0: { error: { bound: 3e-04, measured: 7.44e-05 }, drift: { bound: 0, measured: 0 }, dot: { bound: 3e-04, measured: 9.17e-05 } },
  Q8_1: { error: { bound: 3e-04, measured: 7.44e-05 }, drift: { bound: 0, measured: 0 } },
  Q4_K: { error: { bound: 3e-03, measured: 9.82e-04 }, drift: { bound: 0, measured: 0 }, dot: { bound: 1e-02, measured: 2.32e-03 } },
  Q6_K: { error: { bound: 1e-03, measured: 2.61e-04 }, drift: { bound: 0, measured: 0 }, dot: { bound: 1e-03, measured: 1.91e-04 } },
  Q8_K: { error: { bound: 3e-04, measured: 7.52e-05 }, drift: { bound: 2e-09, measured: 6.42e-10 } },
  Q8_0X: { error: { bound: 3e-04, measured: 7.44e-05 }, drift: { bound: 0, measured: 0 } },
  Q8_0W: { error: { bound: 3e-04, measured: 7.44e-05 }, drift: { bound: 0, measured: 0 } },
  Q8_KW: { error: { bound: 3e-04, measured: 7.52e-05 }, drift: { bound: 2e-09, measured: 6.42e-10 } },
  BF16: { error: { bound: 1.5e-04, measured: 3.57e-05 }, drift: { bound: 0, measured: 0 }, dot: { bound: 1e-03, measured: 1.69e-04 } },
};

/**
 * Whole models against llama.cpp (node-llama-cpp 3.21.1), teacher-forced over the fixed 64-token sequence
 * (test/support/fixtures.ts teacherSequence; comparison in test/support/compare.ts): the bound on |p − p_llama.cpp|
 * at every position and token, per file. Beside each bound what it was derived from, measured on 2026-12-03 on an
 * AMD EPYC (Zen 4) by `node dist/test/support/spread.js` (after the oracle's probabilities were renormalized in
 * float64: node-llama-cpp's addon sums them in float32, off by up to 9e-6), which forces llama.cpp's CPU backends
 * one at a time (EDGEPRUNE_LLAMA_CPU = zen4, icelake, skylakex, haswell (AVX2), sse42, x64): `spread` is the largest difference
 * between two of llama.cpp's own backends on that file, `ours` our largest difference from any of them. Quantized
 * activations make the backends disagree: one Q8 rounding tie in one activation (x86 SIMD rounds half to even,
 * the scalar path and some AVX2 paths half away) changes a K/V row and every later position, by up to 3e-2 on
 * the tiny stories models. Every bound is at most 10× max(spread, ours) (a test checks it), and an argmax must
 * agree wherever llama.cpp's top two are further apart than 2 × the bound.
 */
export const VS_LLAMACPP = {
  "stories260K-f32": { bound: 4e-6, spread: 2.18e-6, ours: 1.67e-6 },
  "stories16L-f32": { bound: 2e-6, spread: 7.75e-7, ours: 6.56e-7 },
  "stories16L-pruned-12L": { bound: 2.5e-6, spread: 5.96e-7, ours: 1.01e-6 },
  "stories260K-q8_0": { bound: 4e-2, spread: 2.78e-2, ours: 2.78e-2 },
  "stories260K-q4_0": { bound: 5e-2, spread: 3.39e-2, ours: 2.95e-2 },
  "synth-q4_k_m": { bound: 3e-2, spread: 1.88e-2, ours: 1.14e-2 },
  "synth-q8_0": { bound: 3e-3, spread: 1.62e-3, ours: 1.63e-3 },
  "synth-q4_0": { bound: 1.5e-3, spread: 7.23e-4, ours: 7.17e-4 },
  "synth-f16": { bound: 4e-4, spread: 2.26e-4, ours: 2.01e-4 },
  "stories16L-gptq-q4_0": { bound: 2e-2, spread: 3.58e-3, ours: 1.06e-2 },
  "stories260K-gptq-q8_0": { bound: 3e-2, spread: 1.62e-2, ours: 1.62e-2 },
  "stories260K-gptq-q4_1-g64-act": { bound: 3e-2, spread: 1.95e-2, ours: 1.87e-2 },
} as const satisfies Record<string, { bound: number; spread: number; ours: number }>;

/**
 * The KV cache types against llama.cpp with the same cache type (node-llama-cpp 3.21.1; its classic attention path
 * for F16, flash attention for a Q8_0 V, which needs it), teacher-forced as VS_LLAMACPP. Measured 2026-12-03 on this
 * AMD EPYC VM (no AVX-512 exposed, so llama.cpp's zen4 backend does not load: haswell (AVX2), sse42 and x64
 * instead) by `node dist/test/support/spread.js --kv-files --kv f16|q8_0 --variants haswell,sse42,x64`; `ours` is
 * our largest difference from any of them (on stories260K, 2.14e-4 from haswell, 1.25e-3 from sse42). An F16
 * cache rounds k, v, q and the softmax to f16, so an f32 difference of one ulp anywhere can move a value to the
 * other f16 neighbour: llama.cpp's own backends then differ by 1.5e-4 to 1.3e-3. Q8_0 (with llama.cpp's
 * Hadamard rotation, head size 64) matches haswell's and x64's to 4e-7 on an F32 file (the same int8 codes);
 * sse42 quantizes with the scalar path (1/d, ties away from zero) and differs from them all by 3.15e-5.
 */
export const VS_LLAMACPP_KV = {
  "stories260K-f16": { bound: 2.5e-3, spread: 1.25e-3, ours: 1.25e-3 },
  "stories16L-f16": { bound: 5e-4, spread: 2.26e-4, ours: 2.43e-4 },
  "synth-f32-f16": { bound: 3e-4, spread: 1.97e-5, ours: 9.10e-5 },
  "synth-f32-q8_0": { bound: 1e-4, spread: 3.15e-5, ours: 3.15e-5 },
  // mixed pairings: ours against haswell and against sse42, one backend at a time (spread.js sets one type for
  // both caches, so `spread` was not measured for them)
  "synth-f32-q8_0k-f16v": { bound: 2e-4, spread: 0, ours: 7.51e-5 },
  "synth-f32-f16k-q8_0v": { bound: 3e-5, spread: 0, ours: 8.34e-6 },
} as const satisfies Record<string, { bound: number; spread: number; ours: number }>;

// ---- against the float64 references in test/support/ref-*.ts (written from the definitions; see docs/testing.md) ----
/**
 * Our teacher-forced next-token probabilities vs the float64 forward (exact RoPE angles), max |Δp| over the 64
 * positions of the teacher sequence and the whole vocabulary. Measured 8.6e-7 (stories260K), 6.0e-7
 * (stories-deep-16L), 9.7e-7 with the prefill cut into batches and decoded. rmsEps × 10 moves them by 2.0e-3 /
 * 4.8e-3, RoPE base × 1.02 by 1.6e-2 / 5.9e-3.
 */
export const PROB_VS_F64 = 5e-6;
/**
 * Each layer's output, ‖h − h_f64‖ / ‖h_f64‖ per token, worst over layers and tokens. Measured 8.2e-7 / 8.6e-7, 1.35e-6
 * with six layers and half-layers skipped; also the bound on those logits relative to the largest |logit| (8.5e-7).
 */
export const STREAM_VS_F64 = 5e-6;
/**
 * Block Influence, angular distance and relative magnitude of every layer and half-layer, and Gromov's block
 * distances, vs the float64 reference on the same windows: absolute (scores are 3e-3 … 0.6). Measured 1.9e-8
 * (stories-deep-16L half-layer relmag); counting the BOS position moves them by 2e-4. Also the relative bound on
 * mean ‖h_l‖ (measured 2.1e-8).
 */
export const SCORE_VS_F64 = 1e-7;
/** The ppl metric (calibration perplexity with a unit removed), relative. Measured 7.4e-7 (stories260K half-layers). */
export const PPL_SCORE_VS_F64 = 5e-6;
/**
 * The wasm GPTQ's codes vs the float64 reference GPTQ that takes the wasm's decision only at a rounding tie: how
 * close to a boundary counts as a tie, in code units (x/d + offset) and relative to d for the f16 scale. Measured:
 * the one tie on the 64×576 test matrices sat 8.1e-7 from its boundary (Q4_0 act-order); no scale tie occurred.
 * Without the cross-block update, 1600–2000 codes per matrix differ, 0.002–0.07 from any boundary.
 */
export const GPTQ_CODE_TIE = 5e-6;
export const GPTQ_SCALE_TIE = 5e-6;
/**
 * ‖(W − Ŵ)X‖² of the wasm GPTQ over the free-running float64 reference's (which may break one tie the other way and
 * diverge along that row). Measured 1 − 3.9e-3 (Q4_0 act-order); without the cross-block update the error is 4×.
 */
export const GPTQ_ERROR_RATIO = 1.02;
/**
 * Perplexities vs the float64 forward on the same tokens, relative: held-out documents in the studies (measured
 * 1.9e-7 with two layers removed) and `ppl`'s windows (6.1e-8).
 */
export const PPL_VS_F64 = 1e-6;
/**
 * Q8_0 / Q4_0 stories-deep-16L vs the float64 forward on the same dequantized weights, max |Δp| over the teacher
 * sequence: our activations are rounded to Q8 blocks as ggml's are, which the reference does not do. Measured
 * 1.3e-2 (Q8_0), 2.4e-2 (Q4_0). A coarse check of the quantized paths (activation conversion and its reuse).
 */
export const Q_PROB_VS_F64 = 0.1;

/**
 * Each architecture family against llama.cpp (test/family-*.test.ts), in VS_LLAMACPP's form: max |p − p_llama.cpp|
 * over the 64 teacher-forced positions and the whole vocabulary, on the family's synthetic F32 file
 * (test/support/families.ts). Measured on AMD EPYC with `node dist/test/support/spread.js --variants
 * zen4,icelake,skylakex,haswell,sse42 --families` (every backend this CPU loads): `ours` against the worst backend,
 * `spread` the backends among themselves. The GeGLU families (Gemma) are 100× looser because llama.cpp's CPU GELU
 * rounds its input and output to f16 (GGML_GELU_FP16): a last-bit difference upstream moves an activation a whole
 * f16 step, in llama.cpp's backends as in ours.
 *
 * `quantized` covers the Q8_0 / Q4_0 files our quantizer writes and synth's Q4_K_M, every family and type (the worst
 * of all of them): random-weight models amplify one int8 activation rounded the other way into differences of the
 * size of the quantization error itself, and llama.cpp's backends differ among themselves as much (ours 1.41e-1 on
 * gemma Q4_K_M, backends 1.16e-1 on gemma3 Q4_K_M).
 */
export const FAMILY_VS_LLAMACPP = {
  "llama3-f32": { bound: 1.5e-5, spread: 1.79e-6, ours: 1.55e-6 },
  "qwen2-f32": { bound: 2e-5, spread: 2.80e-6, ours: 4.38e-6 },
  "qwen3-f32": { bound: 2e-5, spread: 5.42e-6, ours: 4.59e-6 },
  "phi3-f32": { bound: 2e-5, spread: 2.47e-6, ours: 2.62e-6 },
  "phi3-long-f32": { bound: 1.5e-5, spread: 1.91e-6, ours: 1.91e-6 },
  "smollm-f32": { bound: 2e-5, spread: 3.87e-6, ours: 5.25e-6 },
  "gemma3-f32": { bound: 2e-3, spread: 4.83e-4, ours: 4.36e-4 },
  "gemma2-f32": { bound: 2e-3, spread: 4.30e-4, ours: 5.62e-4 },
  "gemma-f32": { bound: 4e-3, spread: 1.34e-3, ours: 1.11e-3 },
  quantized: { bound: 0.2, spread: 1.16e-1, ours: 1.41e-1 },
} as const satisfies Record<string, { bound: number; spread: number; ours: number }>;

/** The F32 bound of a family's fixture. */
export function familyF32Bound(family: string): number {
  const t = (FAMILY_VS_LLAMACPP as Record<string, { bound: number }>)[`${family}-f32`];
  if (!t) throw new Error(`tolerances.ts has no F32 bound for ${family}`);
  return t.bound;
}
export const FAMILY_QUANT_VS_LLAMACPP = FAMILY_VS_LLAMACPP.quantized.bound;

/**
 * kld against the KLD computed from llama.cpp's own teacher-forced distributions, relative (stories260K without
 * layer 3 from the whole model, 31 positions: measured 1.3e-7 with the oracle's float64 renormalization, 7.5e-7
 * before it)
 */
export const KLD_VS_LLAMACPP = 1e-6;

/**
 * prune --heal lstsq's streamed T (f32 products within a batch of ≤ 64 rows, f64 across) against a float64 solve
 * of X and Y collected directly, relative to max |T| (stories260K, layers 2–3, 1900 tokens: measured 2.3e-7)
 */
export const HEAL_FIT = 2e-6;

/**
 * convert's output for each family's random-weight Hugging Face folder (test/support/hf-folders.ts, in the type
 * convert.test writes) against llama.cpp: max |ln p − ln p_llama.cpp| over 32 teacher-forced positions, wherever
 * llama.cpp's p > 1e-30 (the random folders give nearly one-hot distributions, so probabilities alone say little).
 * Measured 2026-12-03 on AMD EPYC with llama.cpp's zen4 / haswell (AVX2) / sse42 backends forced in turn. It checks that edgeprune
 * reads the converted file as llama.cpp does (the float64 pass over the safetensors in convert.test checks the
 * conversion itself, on tinystories-656k); log-probabilities span 69 there. The quantized files are loose because
 * llama.cpp's backends round int8 activations differently (sse42 alone moves them by 0.23).
 */
export const CONVERT_VS_LLAMACPP = {
  llama: { bound: 0.5, ours: { zen4: 1.34e-5, haswell: 1.34e-5, sse42: 2.35e-1 } }, // Q8_0
  qwen2: { bound: 1e-2, ours: { zen4: 3.24e-4, haswell: 1.33e-5, sse42: 1.79e-3 } }, // F16
  qwen3: { bound: 1e-4, ours: { zen4: 1.27e-5, haswell: 1.34e-5, sse42: 1.34e-5 } }, // auto: BF16 kept
  gemma3: { bound: 5e-2, ours: { zen4: 7.05e-5, haswell: 4.56e-3, sse42: 8.95e-3 } }, // F16; GeGLU's f16 GELU table
  phi3: { bound: 0.5, ours: { zen4: 1.34e-5, haswell: 1.34e-5, sse42: 2.28e-1 } }, // Q4_0
} as const satisfies Record<string, { bound: number; ours: Record<string, number> }>;

/**
 * Embeddings (src/embedding.ts, last and mean pooling, Euclidean-normalized) vs llama.cpp through node-llama-cpp
 * 3.21.1 (the last token's final-normed state; the mean from each prefix's), max |Δ| per component over
 * test/embeddings.test.ts's three texts, and the raw last state's |Δ| relative to its largest component; `measured`
 * is the largest of the three. "-F32": a context with embeddings on and an F32 KV cache; "-default":
 * node-llama-cpp's own embedding context, whose KV cache is llama.cpp's default F16 (the rounding of every cached
 * key and value is what the figure shows). Measured 2026-12-03 on the AMD EPYC (Zen 4), llama.cpp's haswell
 * backend (the one it loads here by default).
 */
export const EMBEDDING_VS_LLAMACPP = {
  "stories260K-F32": { bound: 4e-6, measured: 4.41e-7 },
  "stories-deep-16L-F32": { bound: 4e-6, measured: 4.41e-7 },
  "stories260K-default": { bound: 2e-3, measured: 3.87e-4 },
  "stories-deep-16L-default": { bound: 2e-3, measured: 6.57e-4 },
} as const satisfies Record<string, { bound: number; measured: number }>;
