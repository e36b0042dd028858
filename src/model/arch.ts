// The architecture descriptors: what each model family has, in one place (MLX's ModelArgs and llama.cpp's
// per-architecture tensor lists in spirit). A descriptor names the tensors of a layer (with the half each belongs
// to, whether it is required, optional or one of two layouts, and the GPTQ site of each matrix), the RoPE style and
// which frequency factors it reads, and the switches of the one generic block the forward pass runs: embedding
// scale, q/k norms, query pre-scaling, post-norms, GeGLU or SwiGLU, fused gate-up, sliding windows, soft-capping.
// Config (config.ts), tensor checks (weights.ts), the forward pass, removal, GPTQ's sites, `info` and `synth` all
// read these; adding a family is adding a descriptor (and any missing kernel). Not the hyperparameters themselves.
import type { GlobalTensorKey, LayerTensorKey } from "../gguf/names.js";

export type Half = "attention" | "ffn";

/** Where a linear layer reads its input: the sites GPTQ collects calibration statistics at, in forward order. */
export type LinearSite = "attn_qkv" | "attn_output" | "ffn_gate_up" | "ffn_down";
export const LINEAR_SITES: readonly LinearSite[] = ["attn_qkv", "attn_output", "ffn_gate_up", "ffn_down"];

/** The sizes shapes are written in (fields of ModelConfig, plus the two stacked widths). */
export interface ShapeSizes {
  dim: number;
  hiddenDim: number;
  /** nHeads · headSize: the width of q and of attn_output's input */
  qDim: number;
  kvDim: number;
  headSize: number;
}

/** One tensor a layer of the family may have. */
export interface LayerRole {
  key: LayerTensorKey;
  half: Half;
  kind: "norm" | "matrix" | "bias";
  /** expected row-major shape */
  shape: (s: ShapeSizes) => number[];
  /**
   * required; optional (used when the file has it: llama.cpp's TENSOR_NOT_REQUIRED); split (attn_q/k/v: required
   * unless the layer has the fused attn_qkv); fused (attn_qkv.bias: only next to attn_qkv)
   */
  need: "required" | "optional" | "split" | "fused";
  /** the GPTQ site whose calibration inputs this matrix multiplies */
  site?: LinearSite;
  /** synth writes it: the family's real models have it */
  synth: boolean;
}

export interface Architecture {
  /** general.architecture */
  name: string;
  /** the models it covers, for the README and `info` */
  models: string;
  /** llama.cpp's rope type: interleaved pairs (norm) or halves (neox) */
  rope: "norm" | "neox";
  /** which RoPE frequency-factor tensors it reads: rope_freqs (Llama 3), LongRoPE's long/short pair, or none */
  ropeFactors: "freqs" | "longrope" | "none";
  /** llama.cpp refuses rope.dimension_count != head size for it */
  fullRotary: boolean;
  layer: LayerRole[];
  /** optional global tensors it uses when present, beyond token_embd, output_norm and output */
  globals: readonly GlobalTensorKey[];
  /** the embeddings are multiplied by sqrt(dim) (Gemma) */
  embedScale: boolean;
  /** q is multiplied by the attention scale after RoPE and the scores are left unscaled (Gemma, Phi-3) */
  queryPrescale: boolean;
  /** the attention scale is 1/sqrt(dim/heads) instead of 1/sqrt(headSize) for models of this many layers (Gemma's 27B) */
  scaleByDimForLayers?: number;
  /** the FFN gate's activation: SiLU (SwiGLU) or GELU's tanh approximation (GeGLU) */
  activation: "silu" | "gelu";
  /** gate and up are one (2·hiddenDim, dim) ffn_up (Phi-3) */
  fusedGateUp: boolean;
  /**
   * interleaved sliding-window attention: layer l is local when l % pattern < pattern - 1, with its own RoPE base
   * (rope.freq_base_swa, default 10000). `always`: even without the sliding_window key (Gemma 2's 4096).
   */
  swa?: { always: boolean; defaultWindow: number; defaultPattern: number };
  /** attention scores soft-capped at attn_logit_softcapping (default as given): Gemma 2 */
  attnSoftcap?: number;
  /** logits soft-capped at final_logit_softcapping; the default when the key is absent (0: none) */
  finalSoftcap?: number;
}

const attnNorm = (): LayerRole => ({ key: "attnNorm", half: "attention", kind: "norm", shape: (s) => [s.dim], need: "required", synth: true });
const ffnNorm = (): LayerRole => ({ key: "ffnNorm", half: "ffn", kind: "norm", shape: (s) => [s.dim], need: "required", synth: true });

/**
 * The attention half as llama.cpp's create_tensor_qkv builds it for every family here: q, k, v (each with an
 * optional bias) or one fused attn_qkv (optional bias), then attn_output.
 */
function attentionHalf(o: { fused?: boolean; qkvBias?: boolean; qkNorm?: boolean; outputBias?: boolean; postNorm?: boolean } = {}): LayerRole[] {
  const a = (key: LayerTensorKey, kind: LayerRole["kind"], shape: LayerRole["shape"], need: LayerRole["need"], synth: boolean, site?: LinearSite): LayerRole =>
    ({ key, half: "attention", kind, shape, need, synth, site });
  const roles: LayerRole[] = [
    attnNorm(),
    a("attnQkv", "matrix", (s) => [s.qDim + 2 * s.kvDim, s.dim], "optional", !!o.fused, "attn_qkv"),
    a("attnQkvBias", "bias", (s) => [s.qDim + 2 * s.kvDim], "fused", false),
    a("attnQ", "matrix", (s) => [s.qDim, s.dim], "split", !o.fused, "attn_qkv"),
    a("attnK", "matrix", (s) => [s.kvDim, s.dim], "split", !o.fused, "attn_qkv"),
    a("attnV", "matrix", (s) => [s.kvDim, s.dim], "split", !o.fused, "attn_qkv"),
    a("attnQBias", "bias", (s) => [s.qDim], "optional", !!o.qkvBias),
    a("attnKBias", "bias", (s) => [s.kvDim], "optional", !!o.qkvBias),
    a("attnVBias", "bias", (s) => [s.kvDim], "optional", !!o.qkvBias),
  ];
  if (o.qkNorm) {
    roles.push(a("attnQNorm", "norm", (s) => [s.headSize], "required", true), a("attnKNorm", "norm", (s) => [s.headSize], "required", true));
  }
  roles.push(a("attnOutput", "matrix", (s) => [s.dim, s.qDim], "required", true, "attn_output"));
  if (o.outputBias) roles.push(a("attnOutputBias", "bias", (s) => [s.dim], "optional", false));
  if (o.postNorm) roles.push(a("attnPostNorm", "norm", (s) => [s.dim], "required", true));
  return roles;
}

/** The FFN half: gate, up, down (optional biases where llama.cpp reads them), or Phi-3's fused up and down. */
function ffnHalf(o: { fused?: boolean; biases?: boolean; postNorm?: boolean } = {}): LayerRole[] {
  const f = (key: LayerTensorKey, kind: LayerRole["kind"], shape: LayerRole["shape"], need: LayerRole["need"], synth: boolean, site?: LinearSite): LayerRole =>
    ({ key, half: "ffn", kind, shape, need, synth, site });
  const roles: LayerRole[] = [ffnNorm()];
  if (o.fused) {
    roles.push(f("ffnUp", "matrix", (s) => [2 * s.hiddenDim, s.dim], "required", true, "ffn_gate_up"));
  } else {
    roles.push(f("ffnGate", "matrix", (s) => [s.hiddenDim, s.dim], "required", true, "ffn_gate_up"),
      f("ffnUp", "matrix", (s) => [s.hiddenDim, s.dim], "required", true, "ffn_gate_up"));
  }
  roles.push(f("ffnDown", "matrix", (s) => [s.dim, s.hiddenDim], "required", true, "ffn_down"));
  if (o.biases) {
    roles.push(f("ffnGateBias", "bias", (s) => [s.hiddenDim], "optional", false), f("ffnUpBias", "bias", (s) => [s.hiddenDim], "optional", false),
      f("ffnDownBias", "bias", (s) => [s.dim], "optional", false));
  }
  if (o.postNorm) roles.push(f("ffnPostNorm", "norm", (s) => [s.dim], "required", true));
  return roles;
}

const base = {
  ropeFactors: "none", fullRotary: false, globals: [], embedScale: false, queryPrescale: false, activation: "silu", fusedGateUp: false,
} as const;

/** Every family edgeprune runs, by general.architecture. */
export const ARCHITECTURES: Record<string, Architecture> = {
  llama: {
    ...base, name: "llama", rope: "norm", ropeFactors: "freqs", fullRotary: true,
    models: "Llama 1/2, Llama 3.x (3.1/3.2 rope_freqs), TinyLlama, SmolLM/SmolLM2 (their own tokenizer), Mistral 7B and other llama-architecture GGUFs without experts",
    layer: [...attentionHalf({ outputBias: true }), ...ffnHalf({ biases: true })],
    globals: ["ropeFreqs", "ropeFactorsLong", "ropeFactorsShort"],
  },
  qwen2: {
    ...base, name: "qwen2", rope: "neox", fullRotary: true,
    models: "Qwen2, Qwen2.5 (0.5B-72B, Coder, Math) dense models",
    layer: [...attentionHalf({ qkvBias: true }), ...ffnHalf()],
    globals: ["outputBias"],
  },
  qwen3: {
    ...base, name: "qwen3", rope: "neox", fullRotary: true,
    models: "Qwen3 dense models (0.6B-32B)",
    layer: [...attentionHalf({ qkNorm: true }), ...ffnHalf()],
  },
  gemma: {
    ...base, name: "gemma", rope: "neox", embedScale: true, queryPrescale: true, activation: "gelu",
    models: "Gemma (2B, 7B)",
    layer: [...attentionHalf(), ...ffnHalf()],
  },
  gemma2: {
    ...base, name: "gemma2", rope: "neox", embedScale: true, queryPrescale: true, activation: "gelu", scaleByDimForLayers: 46,
    models: "Gemma 2 (2B, 9B, 27B)",
    layer: [...attentionHalf({ postNorm: true }), ...ffnHalf({ postNorm: true })],
    swa: { always: true, defaultWindow: 4096, defaultPattern: 2 },
    attnSoftcap: 50, finalSoftcap: 30,
  },
  gemma3: {
    ...base, name: "gemma3", rope: "neox", embedScale: true, queryPrescale: true, activation: "gelu", scaleByDimForLayers: 62,
    models: "Gemma 3 text models (270M, 1B; the 4B-27B text towers)",
    layer: [...attentionHalf({ qkNorm: true, postNorm: true }), ...ffnHalf({ postNorm: true })],
    swa: { always: false, defaultWindow: 0, defaultPattern: 6 },
    finalSoftcap: 0,
  },
  phi3: {
    ...base, name: "phi3", rope: "neox", ropeFactors: "longrope", queryPrescale: true, fusedGateUp: true,
    models: "Phi-3 / Phi-3.5 mini and medium, Phi-4-mini (fused QKV and gate-up, partial rotary, LongRoPE)",
    layer: [...attentionHalf({ fused: true, outputBias: true }), ...ffnHalf({ fused: true })],
    globals: ["outputBias", "ropeFactorsLong", "ropeFactorsShort"],
  },
};

/** Known architectures edgeprune does not run, and why (so a user is not left guessing). */
export const REFUSED: Record<string, string> = {
  qwen2moe: "mixture-of-experts FFNs are not implemented",
  qwen3moe: "mixture-of-experts FFNs are not implemented",
  llama4: "mixture-of-experts FFNs and chunked attention are not implemented",
  phimoe: "mixture-of-experts FFNs are not implemented",
  deepseek2: "multi-head latent attention and experts are not implemented",
  gemma3n: "per-layer embeddings, AltUp and LAuReL blocks are not implemented",
  phi2: "LayerNorm with biases and the parallel attention/FFN block are not implemented",
  gptneox: "LayerNorm with biases and the parallel block are not implemented",
  stablelm: "LayerNorm with biases is not implemented",
  falcon: "LayerNorm and the parallel block are not implemented",
  starcoder2: "LayerNorm with biases and the plain GELU MLP are not implemented",
  olmo2: "full-width q/k norms and post-norm-only blocks are not implemented",
  smollm3: "layers without RoPE (NoPE) are not implemented",
  granite: "Granite's embedding, residual and logit multipliers are not implemented",
  cohere2: "LayerNorm and the parallel block are not implemented",
  mistral3: "its YaRN variant and vision tower are not implemented",
};

/** The descriptor for an architecture name, or an error that says why it is not run. */
export function architectureFor(name: string): Architecture {
  const a = ARCHITECTURES[name];
  if (a) return a;
  const why = REFUSED[name];
  throw new Error(`architecture "${name}" is not supported${why ? `: ${why}` : ""} (edgeprune runs: ${Object.keys(ARCHITECTURES).join(", ")})`);
}

/** The tensors of a half (all layers' roles of that half), by name key. */
export function halfKeys(a: Architecture, half: Half): Set<LayerTensorKey> {
  return new Set(a.layer.filter((r) => r.half === half).map((r) => r.key));
}

/** The matrices read at each linear site, in forward order (GPTQ's true-sequential walk). */
export function siteKeys(a: Architecture): { site: LinearSite; keys: LayerTensorKey[] }[] {
  return LINEAR_SITES.map((site) => ({ site, keys: a.layer.filter((r) => r.site === site).map((r) => r.key) }));
}

/** The matrix whose output a half adds to the residual stream: zeroing it makes the half an identity. */
export const HALF_OUTPUT: Record<Half, LayerTensorKey> = { attention: "attnOutput", ffn: "ffnDown" };
