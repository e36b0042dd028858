// The kernel ABI: every export here is callable from src/wasm.ts (typed in its `Kernels` interface).
// Pointers are byte offsets into the host-owned memory; output first, inputs next, sizes last.

import { QK, QK_K, STREAMS, f16_table, f16_to_f32, mv_streams, settings } from "./common";
import { fill_gelu_table, gelu_table, GELU_TABLE_BYTES } from "./glu";

/** first byte the host may allocate: after the module's static data, its f16 -> f32 table (common.ts) and GELU table (glu.ts) */
export function heap_base(): usize {
  return gelu_table() + GELU_TABLE_BYTES;
}

/** fills the f16 -> f32 and GELU tables; the host calls it once per memory, before any kernel that reads them */
export function init_tables(): void {
  const t = f16_table();
  for (let h: u32 = 0; h < 65536; h++) store<f32>(t + (<usize>h << 2), f16_to_f32(h));
  fill_gelu_table();
}

export { quantize_q8_0, quantize_q8_0x, quantize_q8_0w, quantize_q8_0t, quantize_q8_1, matmul_q8_0, matmul_q8_0_mm } from "./matmul_q8";
export { convert_f16, convert_bf16, matmul_f16, matmul_bf16 } from "./matmul_f16";
export { matmul_f32 } from "./matmul_f32";
export { matmul_q4_0, matmul_q4_0_mm, matmul_q4_1 } from "./matmul_q4";
export { matmul_q5_0 } from "./matmul_q5";
export { quantize_q8_K, quantize_q8_kw, matmul_q4_K, matmul_q6_K } from "./matmul_k";
export { matmul_q4_K_mm, matmul_q6_K_mm } from "./matmul_k_mm";
export { quantize_q4_K, quantize_q6_K } from "./quantize_k";
export { rmsnorm, l2norm_rows, cosine_rows } from "./norm";
export { rope_norm, rope_neox, rope_ext } from "./rope";
export { softmax, swiglu, add, argmax, sum_f32, scale, add_rows, softcap, hadamard } from "./elementwise";
export { glu } from "./glu";
export { attention, attention_range, attention_kv } from "./attention";
export { exp_f32 } from "./math";
export { gptq_accumulate_h, gptq_rank1_update, gptq_block_update, gptq_cholesky, gptq_trinv_lower, gptq_linalg_scratch } from "./gptq";

/** sets the runs per matrix-vector pass (2, 4 or 8; anything else means 8) for every instance over this memory (common.ts, mv_streams) */
export function set_matvec_streams(s: i32): void {
  store<i32>(settings(), s == 2 || s == 4 ? s : STREAMS);
}

/** the runs per matrix-vector pass the kernels use now */
export function matvec_streams(): i32 {
  return mv_streams();
}

/** elements per quantized block, so the host can check it against src/quant/formats.ts */
export function qk(): i32 {
  return QK;
}

/** elements per K-quant super-block, checked against src/quant/formats.ts like qk() */
export function qk_k(): i32 {
  return QK_K;
}
