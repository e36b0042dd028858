// GGUF metadata keys and tensor-name templates for the llama architecture (llama.cpp's llama-arch.cpp).
// The one place these strings are spelled; model/, prune/ and gptq/ import them.

export const KEY = {
  architecture: "general.architecture",
  name: "general.name",
  alignment: "general.alignment",
  fileType: "general.file_type",
  quantizationVersion: "general.quantization_version",
  tokenizerModel: "tokenizer.ggml.model",
  chatTemplate: "tokenizer.chat_template",
  type: "general.type",
  sizeLabel: "general.size_label",
  samplingTopK: "general.sampling.top_k",
  samplingTopP: "general.sampling.top_p",
  samplingTemp: "general.sampling.temp",
} as const;

/** Architecture-scoped hyperparameter keys, e.g. archKey("llama", "block_count") → "llama.block_count". */
export const ARCH_KEY = {
  contextLength: "context_length",
  embeddingLength: "embedding_length",
  feedForwardLength: "feed_forward_length",
  blockCount: "block_count",
  headCount: "attention.head_count",
  headCountKv: "attention.head_count_kv",
  rmsEps: "attention.layer_norm_rms_epsilon",
  ropeDimensionCount: "rope.dimension_count",
  ropeFreqBase: "rope.freq_base",
  ropeScalingType: "rope.scaling.type",
  vocabSize: "vocab_size",
  keyLength: "attention.key_length",
  valueLength: "attention.value_length",
  slidingWindow: "attention.sliding_window",
  ropeFreqBaseSwa: "rope.freq_base_swa",
  ropeScalingFactor: "rope.scaling.factor",
  ropeScalingOrigContext: "rope.scaling.original_context_length",
  ropeScalingAttnFactor: "rope.scaling.attn_factor",
  ropeScalingYarnExtFactor: "rope.scaling.yarn_ext_factor",
  ropeScalingYarnAttnFactor: "rope.scaling.yarn_attn_factor",
  ropeScalingYarnBetaFast: "rope.scaling.yarn_beta_fast",
  ropeScalingYarnBetaSlow: "rope.scaling.yarn_beta_slow",
  finalLogitSoftcapping: "final_logit_softcapping",
} as const;

export function archKey(arch: string, key: string): string {
  return `${arch}.${key}`;
}

/** Keys edgeprune itself writes: which half-layers were removed by sub-block pruning. */
export const EDGEPRUNE_KEY = {
  /** array of u32: layer indices (after renumbering) whose attention half is removed */
  removedAttention: "edgeprune.removed_attention",
  /** array of u32: layer indices (after renumbering) whose FFN half is removed */
  removedFfn: "edgeprune.removed_ffn",
  /** string: what produced this file (prune/quantize steps) */
  history: "edgeprune.history",
} as const;

export const TENSOR = {
  tokenEmbd: "token_embd.weight",
  outputNorm: "output_norm.weight",
  output: "output.weight",
  ropeFreqs: "rope_freqs.weight",
  ropeFactorsLong: "rope_factors_long.weight",
  ropeFactorsShort: "rope_factors_short.weight",
} as const;

/** Per-layer tensors: blk.{i}.{suffix}. */
export const LAYER_TENSOR = {
  attnNorm: "attn_norm.weight",
  attnQ: "attn_q.weight",
  attnK: "attn_k.weight",
  attnV: "attn_v.weight",
  attnOutput: "attn_output.weight",
  ffnNorm: "ffn_norm.weight",
  ffnGate: "ffn_gate.weight",
  ffnUp: "ffn_up.weight",
  ffnDown: "ffn_down.weight",
} as const;

export type LayerTensorKey = keyof typeof LAYER_TENSOR;

export function layerTensorName(layer: number, key: LayerTensorKey): string {
  return `blk.${layer}.${LAYER_TENSOR[key]}`;
}

const LAYER_RE = /^blk\.(\d+)\.(.+)$/;

/** Split "blk.7.attn_q.weight" into { layer: 7, rest: "attn_q.weight" }, or undefined for global tensors. */
export function parseLayerTensorName(name: string): { layer: number; rest: string } | undefined {
  const m = LAYER_RE.exec(name);
  return m ? { layer: Number(m[1]), rest: m[2] } : undefined;
}

/**
 * How many layers the blk.N tensors among `names` are for: one more than the highest N (0 if none). Every layer
 * keeps at least one tensor, so a block_count above this is a lie (checked at load and before convert writes).
 */
export function layersInTensorNames(names: Iterable<string>): number {
  let max = -1;
  for (const n of names) max = Math.max(max, parseLayerTensorName(n)?.layer ?? -1);
  return max + 1;
}
