// THE table of tensor block formats (ggml's type_traits): GGUF type id, block geometry, scalar reference
// quantize/dequantize, and which wasm kernel multiplies by it. Every reader, writer, kernel caller, test and
// bench iterates this table; nothing else spells out a block size or a block's byte count.
import * as ref from "./ref.js";

export type FormatName =
  | "F32" | "F16" | "BF16" | "Q4_0" | "Q4_1" | "Q5_0" | "Q5_1" | "Q8_0" | "Q8_1"
  | "Q2_K" | "Q3_K" | "Q4_K" | "Q5_K" | "Q6_K" | "Q8_K" | "Q8_0X" | "Q8_0W" | "Q8_0T" | "Q8_KW";

/**
 * Names of the wasm matmul kernels: each is `(out, x, w, n, d, t)`, and a prefill kernel (a format's `prefill`)
 * `(out, x, w, n, d, t, ldo)`, token j's d results at out + 4·ldo·j (ldo = d for a whole matmul; a run of its rows
 * keeps the whole output's). Callers may pass ldo to any of them: the matrix-vector kernels ignore it.
 */
export type MatmulKernel = MatvecKernel | PrefillKernel;
export type MatvecKernel = "matmul_f32" | "matmul_f16" | "matmul_bf16" | "matmul_q8_0" | "matmul_q4_0" | "matmul_q4_1" | "matmul_q5_0" | "matmul_q4_K" | "matmul_q6_K";
export type PrefillKernel = "matmul_q4_0_mm" | "matmul_q8_0_mm" | "matmul_q4_K_mm" | "matmul_q6_K_mm";

export interface QuantFormat {
  name: FormatName;
  /** ggml_type id as stored in GGUF tensor infos; -1 for edgeprune's own activation layouts, never in a file */
  ggmlType: number;
  /** elements per block (1 for plain floats) */
  blockSize: number;
  /** bytes per block */
  typeSize: number;
  /** reference row quantizer: src.length is a multiple of blockSize; dst holds src.length/blockSize blocks */
  quantize?: (src: Float32Array, dst: Uint8Array) => void;
  /** reference row dequantizer: the inverse layout of `quantize` */
  dequantize?: (src: Uint8Array, dst: Float32Array) => void;
  /** the wasm kernel that multiplies a matrix of this type by activations, if we can run it */
  matmul?: MatvecKernel;
  /** the same product for many tokens (prefill), tiled; bit for bit `matmul`'s results (test/kernels.test.ts), on prefillActivationFormat's layout */
  prefill?: PrefillKernel;
  /** the format the activations are converted to before `matmul` (ggml's vec_dot_type) */
  activation?: FormatName;
  /** the SIMD128 kernel build's activation format when it differs (see activationFormat) */
  simd128Activation?: FormatName;
  /** the relaxed build's activation format for `prefill` when it differs from its `activation` (see prefillActivationFormat) */
  prefillActivation?: FormatName;
  /** the fewest tokens `prefill` takes on prefillActivation's layout (see usesPrefill); default 2 */
  prefillMinTokens?: number;
  /** activation layouts only: tokens are laid out in groups of this many (buffers hold whole groups, splits cut between them) */
  tokenGroup?: number;
  /** true when a tensor of this type can be written by our quantizer (`edgeprune quantize --type`) */
  quantTarget?: boolean;
  /** a wasm kernel giving `quantize`'s bytes, faster (quant/fast.ts uses it for whole models) */
  quantizeKernel?: "quantize_q4_K" | "quantize_q6_K";
}

// Sizes follow ggml.c's type_traits. Q4_K and Q6_K run (their activations are Q8_K, as in ggml), Q5_0 too (the
// type llama.cpp's Q4_K_M falls back to for rows that do not hold 256-value super-blocks); Q2_K, Q3_K, Q5_K and
// Q5_1 are listed so files holding them parse and round-trip, but have no kernel yet (the loader refuses them
// with a clear message). Every quantizer here is ggml's reference (`_ref`), byte for byte.
export const FORMATS: readonly QuantFormat[] = [
  { name: "F32", ggmlType: 0, blockSize: 1, typeSize: 4, quantize: ref.quantizeF32, dequantize: ref.dequantizeF32, matmul: "matmul_f32", activation: "F32" },
  { name: "F16", ggmlType: 1, blockSize: 1, typeSize: 2, quantize: ref.quantizeF16, dequantize: ref.dequantizeF16, matmul: "matmul_f16", activation: "F16", quantTarget: true },
  { name: "Q4_0", ggmlType: 2, blockSize: 32, typeSize: 18, quantize: ref.quantizeQ4_0, dequantize: ref.dequantizeQ4_0, matmul: "matmul_q4_0", prefill: "matmul_q4_0_mm", activation: "Q8_0X", simd128Activation: "Q8_0W", prefillActivation: "Q8_0T", prefillMinTokens: 3, quantTarget: true },
  { name: "Q4_1", ggmlType: 3, blockSize: 32, typeSize: 20, quantize: ref.quantizeQ4_1, dequantize: ref.dequantizeQ4_1, matmul: "matmul_q4_1", activation: "Q8_1", quantTarget: true },
  { name: "Q5_0", ggmlType: 6, blockSize: 32, typeSize: 22, quantize: ref.quantizeQ5_0, dequantize: ref.dequantizeQ5_0, matmul: "matmul_q5_0", activation: "Q8_0X", quantTarget: true },
  { name: "Q5_1", ggmlType: 7, blockSize: 32, typeSize: 24 },
  { name: "Q8_0", ggmlType: 8, blockSize: 32, typeSize: 34, quantize: ref.quantizeQ8_0, dequantize: ref.dequantizeQ8_0, matmul: "matmul_q8_0", prefill: "matmul_q8_0_mm", activation: "Q8_0X", quantTarget: true },
  { name: "Q8_1", ggmlType: 9, blockSize: 32, typeSize: 36, quantize: ref.quantizeQ8_1, dequantize: ref.dequantizeQ8_1 },
  { name: "Q2_K", ggmlType: 10, blockSize: 256, typeSize: 84 },
  { name: "Q3_K", ggmlType: 11, blockSize: 256, typeSize: 110 },
  { name: "Q4_K", ggmlType: 12, blockSize: 256, typeSize: 144, quantize: ref.quantizeQ4_K, dequantize: ref.dequantizeQ4_K, matmul: "matmul_q4_K", prefill: "matmul_q4_K_mm", activation: "Q8_K", simd128Activation: "Q8_KW", quantTarget: true, quantizeKernel: "quantize_q4_K" },
  { name: "Q5_K", ggmlType: 13, blockSize: 256, typeSize: 176 },
  { name: "Q6_K", ggmlType: 14, blockSize: 256, typeSize: 210, quantize: ref.quantizeQ6_K, dequantize: ref.dequantizeQ6_K, matmul: "matmul_q6_K", prefill: "matmul_q6_K_mm", activation: "Q8_K", quantTarget: true, quantizeKernel: "quantize_q6_K" },
  { name: "Q8_K", ggmlType: 15, blockSize: 256, typeSize: 292, quantize: ref.quantizeQ8_K, dequantize: ref.dequantizeQ8_K },
  // Activations only (assembly/common.ts): block_q8_0's int8 and scales, rearranged per row as f32 d[nb], i32
  // sum[nb], int8 q[32·nb] so the Q4_0 / Q8_0 kernels load aligned vectors and decode no f16 per weight row.
  { name: "Q8_0X", ggmlType: -1, blockSize: 32, typeSize: 40, quantize: ref.quantizeQ8_0X, dequantize: ref.dequantizeQ8_0X },
  // Q8_0X's numbers, the int8 widened to i16, reordered and pre-scaled for block_q4_0's nibbles read as u16 lanes
  // (assembly/common.ts): the SIMD128 build's Q4_0 activations, 72 bytes per 32 values
  { name: "Q8_0W", ggmlType: -1, blockSize: 32, typeSize: 72, quantize: ref.quantizeQ8_0W, dequantize: ref.dequantizeQ8_0W },
  // Q8_0X's numbers for groups of four tokens, interleaved so that one dot meets four tokens (assembly/common.ts):
  // the relaxed build's prefill activations of Q4_0, 40 bytes per 32 values per token, in whole groups of four
  { name: "Q8_0T", ggmlType: -1, blockSize: 32, typeSize: 40, tokenGroup: 4 },
  // Q8_K's numbers laid out the same way for block_q4_K's nibbles (assembly/common.ts): the SIMD128 build's Q4_K
  // activations, 560 bytes per 256 values
  { name: "Q8_KW", ggmlType: -1, blockSize: 256, typeSize: 560, quantize: ref.quantizeQ8_KW, dequantize: ref.dequantizeQ8_KW },
  { name: "BF16", ggmlType: 30, blockSize: 1, typeSize: 2, quantize: ref.quantizeBF16, dequantize: ref.dequantizeBF16, matmul: "matmul_bf16", activation: "BF16" },
];

const byId = new Map(FORMATS.filter((f) => f.ggmlType >= 0).map((f) => [f.ggmlType, f]));
const byName = new Map(FORMATS.map((f) => [f.name, f]));

/** The format with this GGUF type id, or undefined when we do not know its layout. */
export function formatById(ggmlType: number): QuantFormat | undefined {
  return byId.get(ggmlType);
}

/** The format with this name (case-insensitive: "q4_0" works), or undefined. */
export function formatByName(name: string): QuantFormat | undefined {
  return byName.get(name.toUpperCase() as FormatName);
}

/**
 * The activation format a matmul on weights of format f takes in this kernel build ("simd128" or "relaxed"):
 * the builds' kernels are free to want different layouts of the same numbers.
 */
export function activationFormat(f: QuantFormat, simd: "simd128" | "relaxed"): FormatName | undefined {
  return simd === "simd128" ? f.simd128Activation ?? f.activation : f.activation;
}

/**
 * The activation format the `prefill` kernel of format f takes in this kernel build: the relaxed build may lay out
 * a batch of tokens for it differently (prefillActivation); otherwise activationFormat's.
 */
export function prefillActivationFormat(f: QuantFormat, simd: "simd128" | "relaxed"): FormatName | undefined {
  return simd === "relaxed" && f.prefillActivation ? f.prefillActivation : activationFormat(f, simd);
}

/** true when `kernel` is some format's prefill kernel (it takes ldo, and a run of rows takes every token at once) */
export function isPrefillKernel(kernel: MatmulKernel): boolean {
  return FORMATS.some((f) => f.prefill === kernel);
}

/**
 * Tokens the prefill kernels take at a time (assembly: each weight row meets groups of four tokens): threads that
 * cut a batch by tokens cut it between such groups, and one smaller than two groups per thread by rows.
 */
export const PREFILL_TOKEN_GROUP = 4;

/**
 * Whether a batch of t tokens on weights f runs f's prefill kernel (else the matrix-vector kernel): from 2 tokens,
 * or prefillMinTokens where the relaxed build lays the batch out for it (prefillActivation). There a group of four
 * tokens costs the same with 2 of them real: Q4_0 on a thread's run of rows, weights cold (kernels.bench
 * --small-batch), t = 2 takes 1.28-1.32x the time of two matrix-vector passes, t = 3 0.86-0.90x, t = 4 0.63-0.65x.
 * Elsewhere Q4_0's and Q8_0's prefill kernels run fewer than four tokens as the matrix-vector path once each (the
 * K-quant ones, tokens left over from groups of four, one at a time in their own loop).
 */
export function usesPrefill(f: QuantFormat, t: number, simd: "simd128" | "relaxed"): boolean {
  if (!f.prefill || t < 2) return false;
  return !(simd === "relaxed" && f.prefillActivation) || t >= (f.prefillMinTokens ?? 2);
}

/** rows of a buffer holding t tokens' activations in format a: whole groups of its tokenGroup */
export function activationRows(a: QuantFormat, t: number): number {
  const g = a.tokenGroup ?? 1;
  return Math.ceil(t / g) * g;
}

/**
 * Most bytes per value of any converted activation format a kernel takes (F32 activations are the input itself,
 * no buffer), for planning buffers before the model is known.
 */
export const MAX_ACTIVATION_BYTES_PER_VALUE = Math.max(...FORMATS.flatMap((f) =>
  [f.activation, f.simd128Activation, f.prefillActivation].filter((a): a is FormatName => !!a && a !== "F32").map((a) => {
    const af = FORMATS.find((x) => x.name === a)!;
    return af.typeSize / af.blockSize;
  })));

/** Bytes needed for `nElements` values; nElements must be a multiple of the block size. */
export function formatBytes(f: QuantFormat, nElements: number): number {
  return (nElements / f.blockSize) * f.typeSize;
}

/** Bytes of one row of `rowLength` values in this format. */
export function rowBytes(f: QuantFormat, rowLength: number): number {
  return formatBytes(f, rowLength);
}

/** KV cache types, spelled as llama.cpp's --cache-type-k / --cache-type-v take them (F16 is its default too). */
export const KV_CACHE_TYPES = ["f16", "q8_0", "f32"] as const;
export type KvCacheType = (typeof KV_CACHE_TYPES)[number];
export const DEFAULT_KV_CACHE_TYPE: KvCacheType = "f16";

/**
 * The block format of a KV cache type (what `option` names in the error: "--cache-type-k", "cacheTypeK"), or a
 * clear refusal of anything else.
 */
export function kvCacheFormat(type: string, option = "cache type"): QuantFormat {
  const t = String(type).toLowerCase();
  if (!(KV_CACHE_TYPES as readonly string[]).includes(t)) throw new Error(`invalid ${option} "${type}": expected one of ${KV_CACHE_TYPES.join(", ")}`);
  return formatByName(t)!;
}
