// GGUF metadata keys and tensor-name templates of the LLaMA-family architectures (llama.cpp's llama-arch.cpp).
// The one place these strings are spelled; model/ (the architecture descriptors), prune/ and gptq/ import them.
// Which family has which of them is not here: that is model/arch.ts.

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
  ropeScalingFactor: "rope.scaling.factor",
  /** the older name of rope.scaling.factor, which llama.cpp still reads */
  ropeScaleLinear: "rope.scale_linear",
  ropeScalingAttnFactor: "rope.scaling.attn_factor",
  ropeScalingOrigContext: "rope.scaling.original_context_length",
  /** RoPE base of sliding-window layers (Gemma 2/3) */
  ropeFreqBaseSwa: "rope.freq_base_swa",
  /** head size of keys and values when it is not embedding_length / head_count */
  keyLength: "attention.key_length",
  valueLength: "attention.value_length",
  slidingWindow: "attention.sliding_window",
  slidingWindowPattern: "attention.sliding_window_pattern",
  attnLogitSoftcapping: "attn_logit_softcapping",
  finalLogitSoftcapping: "final_logit_softcapping",
  vocabSize: "vocab_size",
  /** YaRN's parameters as the converter writes them (llama.cpp reads them only for grok and mistral3) */
  ropeScalingYarnExtFactor: "rope.scaling.yarn_ext_factor",
  ropeScalingYarnAttnFactor: "rope.scaling.yarn_attn_factor",
  ropeScalingYarnBetaFast: "rope.scaling.yarn_beta_fast",
  ropeScalingYarnBetaSlow: "rope.scaling.yarn_beta_slow",
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
  outputBias: "output.bias",
  /** Llama 3.x per-pair RoPE frequency divisors (ropeDim/2) */
  ropeFreqs: "rope_freqs.weight",
  /** LongRoPE's divisors (Phi-3.5, Phi-4-mini): long beyond the original context, short within it */
  ropeFactorsLong: "rope_factors_long.weight",
  ropeFactorsShort: "rope_factors_short.weight",
} as const;

export type GlobalTensorKey = keyof typeof TENSOR;

/** Per-layer tensors: blk.{i}.{suffix}. */
export const LAYER_TENSOR = {
  attnNorm: "attn_norm.weight",
  attnQ: "attn_q.weight",
  attnK: "attn_k.weight",
  attnV: "attn_v.weight",
  /** q, k and v in one matrix (Phi-3; llama.cpp accepts it for every family) */
  attnQkv: "attn_qkv.weight",
  attnQBias: "attn_q.bias",
  attnKBias: "attn_k.bias",
  attnVBias: "attn_v.bias",
  attnQkvBias: "attn_qkv.bias",
  /** per-head RMSNorm of q and k (Qwen3, Gemma 3) */
  attnQNorm: "attn_q_norm.weight",
  attnKNorm: "attn_k_norm.weight",
  attnOutput: "attn_output.weight",
  attnOutputBias: "attn_output.bias",
  /** RMSNorm of the attention output before the residual add (Gemma 2/3) */
  attnPostNorm: "post_attention_norm.weight",
  ffnNorm: "ffn_norm.weight",
  ffnGate: "ffn_gate.weight",
  /** (hiddenDim, dim), or gate and up stacked, (2·hiddenDim, dim), in a family with a fused gate-up (Phi-3) */
  ffnUp: "ffn_up.weight",
  ffnDown: "ffn_down.weight",
  ffnGateBias: "ffn_gate.bias",
  ffnUpBias: "ffn_up.bias",
  ffnDownBias: "ffn_down.bias",
  /** RMSNorm of the FFN output before the residual add (Gemma 2/3) */
  ffnPostNorm: "post_ffw_norm.weight",
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
