// The kernel ABI: every export here is callable from src/wasm.ts (typed in its `Kernels` interface).
// Pointers are byte offsets into the host-owned memory; output first, inputs next, sizes last.

/** first free byte after the module's static data: the host's bump allocator starts here */
export function heap_base(): usize {
  return __heap_base;
}

import { QK, QK_K } from "./common";

export { quantize_q8_0, quantize_q8_0x, quantize_q8_1, matmul_q8_0 } from "./matmul_q8";
export { convert_f16, convert_bf16, matmul_f16, matmul_bf16 } from "./matmul_f16";
export { matmul_f32 } from "./matmul_f32";
export { matmul_q4_0, matmul_q4_1 } from "./matmul_q4";
export { quantize_q8_K, matmul_q4_K, matmul_q6_K } from "./matmul_k";
export { rmsnorm, l2norm_rows, cosine_rows } from "./norm";
export { rope_norm, rope_neox } from "./rope";
export { softmax, swiglu, add, argmax, sum_f32 } from "./elementwise";
export { attention, attention_range } from "./attention";
export { exp_f32 } from "./math";
export { gptq_accumulate_h, gptq_rank1_update, gptq_block_update } from "./gptq";

/** elements per quantized block, so the host can check it against src/quant/formats.ts */
export function qk(): i32 {
  return QK;
}

/** elements per K-quant super-block, checked against src/quant/formats.ts like qk() */
export function qk_k(): i32 {
  return QK_K;
}
