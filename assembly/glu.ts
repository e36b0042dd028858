// Gated linear units of the FFN: out = act(gate) * up with act = SiLU (SwiGLU: llama, Qwen, Phi-3) or GELU's tanh
// approximation (GeGLU: Gemma). GELU goes through ggml's f16 table exactly as llama.cpp's CPU backend does
// (GGML_GELU_FP16: the input rounded to f16, gelu of that value stored as f16), filled once per memory by
// fill_gelu_table. Gate and up may be separate buffers or the two halves of one fused row (Phi-3's ffn_up).
// Not the projections themselves.
import { f16_table, F16_TABLE_BYTES, f16_to_f32, f32_to_f16 } from "./common";
import { silu_f32x4 } from "./math";

/** address of the GELU table: 65536 u16, entry h = f16(gelu(f32 of f16 h)); right after the f16 -> f32 table */
// @ts-ignore: decorator
@inline export function gelu_table(): usize { return f16_table() + F16_TABLE_BYTES; }
export const GELU_TABLE_BYTES: usize = 65536 * 2;

/** ggml_gelu_f32: 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))), in ggml's order of f32 operations */
// @ts-ignore: decorator
@inline export function gelu_f32(x: f32): f32 {
  const a: f32 = 0.044715;
  const c: f32 = 0.79788456080286535587989211986876;
  return (<f32>0.5 * x) * (<f32>1.0 + Mathf.tanh((c * x) * (<f32>1.0 + (a * x) * x)));
}

/** fills the GELU table (the host calls it through init_tables, once per memory) */
export function fill_gelu_table(): void {
  const t = gelu_table();
  for (let h: u32 = 0; h < 65536; h++) store<u16>(t + (<usize>h << 1), <u16>f32_to_f16(gelu_f32(f16_to_f32(h))));
}

/** ggml_vec_geglu_f32 with GGML_GELU_FP16: 0 below -10, x above 10, else the table at f16(x) */
// @ts-ignore: decorator
@inline function gelu_lookup(x: f32): f32 {
  if (x <= <f32>-10.0) return 0;
  if (x >= <f32>10.0) return x;
  const g = load<u16>(gelu_table() + (<usize>f32_to_f16(x) << 1));
  return load<f32>(f16_table() + (<usize>g << 2));
}

/**
 * out (t, n) = act(gate) * up, row j of gate and up at j * stride floats (stride n for separate buffers, 2n for
 * the halves of one fused row: gate = row, up = row + n); gelu != 0 picks GELU, else SiLU. out may alias gate
 * when stride is n.
 */
export function glu(out: usize, gate: usize, up: usize, n: i32, t: i32, stride: i32, gelu: i32): void {
  for (let j = 0; j < t; j++) {
    let o = out + ((<usize>j * n) << 2);
    let g = gate + ((<usize>j * stride) << 2), u = up + ((<usize>j * stride) << 2);
    let k = 0;
    if (gelu) {
      for (; k < n; k++) {
        store<f32>(o, gelu_lookup(load<f32>(g)) * load<f32>(u));
        o += 4; g += 4; u += 4;
      }
      continue;
    }
    for (; k + 4 <= n; k += 4) {
      v128.store(o, f32x4.mul(silu_f32x4(v128.load(g)), v128.load(u)));
      o += 16; g += 16; u += 16;
    }
    for (; k < n; k++) {
      store<f32>(o, f32x4.extract_lane(silu_f32x4(f32x4.splat(load<f32>(g))), 0) * load<f32>(u));
      o += 4; g += 4; u += 4;
    }
  }
}
