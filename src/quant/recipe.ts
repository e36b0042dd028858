// Quantization recipes: what type each weight matrix of a file becomes for a `--type` (llama.cpp's llama_ftype),
// following llama-quant.cpp: one format everywhere for the plain types, llama.cpp's tensor mix for Q4_K_M (which
// tensors get Q6_K), and llama.cpp's fallback for rows that do not hold a K-quant super-block. Not the quantizers
// (formats.ts, ref.ts), not the writing (quantize.ts).
import type { GgufTensorInfo } from "../gguf/types.js";
import { formatByName, type FormatName, type QuantFormat } from "./formats.js";

export interface QuantRecipe {
  /** the CLI's name: q4_0, q4_k_m, ... */
  name: string;
  /** the format most matrices get */
  base: QuantFormat;
  /** llama_ftype, written as general.file_type (llama.h) */
  fileType: number;
  /** "q4_k_m": llama.cpp's mix for LLAMA_FTYPE_MOSTLY_Q4_K_M; undefined: the base format everywhere */
  mix?: "q4_k_m";
  /**
   * rows that do not hold a block: "llama" as llama.cpp's tensor_type_fallback (K-quant to a 32-block type, then
   * F16); "keep": the matrix keeps its own type (edgeprune's rule for the 32-block types and F16)
   */
  fallback: "llama" | "keep";
}

const fmt = (n: FormatName) => formatByName(n)!;

/** Every `--type`. The K-quant types behave as llama-quantize does (q4_k, q6_k: its --pure; q4_k_m: its mix). */
export const RECIPES: readonly QuantRecipe[] = [
  { name: "f16", base: fmt("F16"), fileType: 1, fallback: "keep" },
  { name: "q4_0", base: fmt("Q4_0"), fileType: 2, fallback: "keep" },
  { name: "q4_1", base: fmt("Q4_1"), fileType: 3, fallback: "keep" },
  { name: "q5_0", base: fmt("Q5_0"), fileType: 8, fallback: "keep" },
  { name: "q8_0", base: fmt("Q8_0"), fileType: 7, fallback: "keep" },
  { name: "q4_k", base: fmt("Q4_K"), fileType: 14, fallback: "llama" },
  { name: "q6_k", base: fmt("Q6_K"), fileType: 18, fallback: "llama" },
  { name: "q4_k_m", base: fmt("Q4_K"), fileType: 15, mix: "q4_k_m", fallback: "llama" },
];

/** The recipe of a `--type` name (case-insensitive), or undefined. */
export function recipeByName(name: string): QuantRecipe | undefined {
  return RECIPES.find((r) => r.name === name.toLowerCase());
}

/** The plain recipe of one format (its base everywhere), for callers that name a format rather than a type. */
export function recipeOf(f: QuantFormat): QuantRecipe {
  const r = RECIPES.find((x) => x.base === f && !x.mix);
  if (!r) throw new Error(`cannot quantize to ${f.name}`);
  return r;
}

/** llama.cpp's tensor_type_fallback: the 32-block type a K-quant becomes when a row does not hold 256 values. */
const FALLBACK: Partial<Record<FormatName, FormatName>> = { Q2_K: "Q4_0", Q3_K: "Q4_0", Q4_K: "Q5_0", Q5_K: "Q5_1", Q6_K: "Q8_0" };

/** llama.cpp's use_more_bits: the layers whose attn_v and ffn_down get Q6_K under Q4_K_M */
export function useMoreBits(i: number, n: number): boolean {
  const n8 = Math.trunc(n / 8), n78 = Math.trunc((7 * n) / 8); // C integer division
  return i < n8 || i >= n78 || (i - n8) % 3 === 2;
}

/** What the recipe needs to know of a tensor (a GgufTensorInfo has it; synth builds it from a shape) */
export type TensorDesc = Pick<GgufTensorInfo, "name" | "dims" | "format">;

/** A weight matrix llama.cpp may quantize (tensor_allows_quantization, for the llama tensors): 2-D, "*weight", no norm. */
export function isQuantizable(t: TensorDesc): boolean {
  return t.dims.length === 2 && t.name.endsWith("weight") && !t.name.includes("_norm.weight");
}

/** The block layer of a tensor name ("blk.12.…" → 12), −1 for the others: llama.cpp's weight order sorts on it. */
function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

export interface TensorChoice {
  /** the format the tensor is written in */
  format: QuantFormat;
  /** why it is not the recipe's base format, for the user */
  note?: string;
}

/**
 * The format of every tensor (index i is tensors[i]) under a recipe, nLayers being the file's block_count. Vectors
 * and other non-quantizable tensors keep their type; a matrix whose type cannot be decoded keeps it with a note.
 */
export function tensorTypes(tensors: readonly TensorDesc[], r: QuantRecipe, nLayers: number,
                            /** where the mix needs a type edgeprune does not write (Q5_K), use the base instead of refusing (synth's test files) */
                            opts: { approximate?: boolean } = {}): TensorChoice[] {
  const out: TensorChoice[] = tensors.map((t) => ({ format: t.format }));
  // llama.cpp visits weights sorted by layer, then name (llama_model_loader's weight_name_comparer): the attn_v
  // and ffn_down counters of use_more_bits follow that order
  const order = tensors.map((t, i) => i).sort((a, b) => {
    const ta = tensors[a].name, tb = tensors[b].name;
    return layerOf(ta) - layerOf(tb) || (ta < tb ? -1 : ta > tb ? 1 : 0);
  });
  const tied = !tensors.some((t) => t.name === "output.weight");
  const nAttnV = tensors.filter((t) => t.name.includes("attn_v.weight")).length;
  let iAttnV = 0, iFfnDown = 0;
  for (const i of order) {
    const t = tensors[i];
    if (!isQuantizable(t)) continue;
    if (!t.format.dequantize) {
      out[i] = { format: t.format, note: `${t.name}: ${t.format.name} cannot be re-quantized; kept as ${t.format.name}` };
      continue;
    }
    let want = r.base;
    if (r.mix === "q4_k_m") {
      const rowLength = t.dims[0];
      if (t.name === "output.weight" || (tied && t.name === "token_embd.weight")) {
        want = rowLength % r.base.blockSize !== 0 ? fmt("Q8_0") : fmt("Q6_K");
      } else if (t.name.includes("attn_qkv.weight") || t.name.includes("attn_kv_b.weight")) {
        if (!opts.approximate) throw new Error(`${t.name}: llama.cpp's Q4_K_M gives fused attention tensors Q5_K, which edgeprune does not write`);
      } else if (t.name.includes("attn_v.weight")) {
        if (nLayers === 80) throw new Error(`${t.name}: llama.cpp's Q4_K_M gives an 80-layer (70B) llama's attn_v Q5_K, which edgeprune does not write`);
        if (useMoreBits(iAttnV, nAttnV)) want = fmt("Q6_K");
        iAttnV++;
      } else if (t.name.includes("ffn_down")) {
        if (useMoreBits(iFfnDown, nLayers)) want = fmt("Q6_K");
        iFfnDown++;
      }
    }
    out[i] = fit(t, want, r);
  }
  return out;
}

/** The format a matrix gets when `want` is asked for: want itself, or the fallback its row length allows. */
function fit(t: TensorDesc, want: QuantFormat, r: QuantRecipe): TensorChoice {
  const rowLength = t.dims[0];
  if (rowLength % want.blockSize === 0) return { format: want };
  if (r.fallback === "keep") {
    return { format: t.format, note: `${t.name}: row length ${rowLength} is not a multiple of ${want.name}'s block size ${want.blockSize}; kept as ${t.format.name}` };
  }
  const down = FALLBACK[want.name];
  const f = down && rowLength % fmt(down).blockSize === 0 ? fmt(down) : fmt("F16");
  return { format: f, note: `${t.name}: row length ${rowLength} is not a multiple of ${want.name}'s ${want.blockSize}; ${f.name} instead (llama.cpp's fallback)` };
}
