// One table per model family for `convert`: which Hugging Face architectures it takes, the config defaults
// transformers would fill in, the GGUF hyperparameter keys llama.cpp's converter writes (convert_hf_to_gguf.py,
// conversion/{base,llama,qwen,gemma,phi}.py), how its HF tensor names map to GGUF names and what is done to them
// (llama's Q/K permutation, Gemma's norm + 1, ...). Portable. Not the writing itself (convert.ts) and not the
// runtime's view of a family (the architecture descriptors).
import { ARCH_KEY, archKey, KEY, TENSOR } from "../gguf/names.js";
import { GgufType, type GgufKv } from "../gguf/types.js";
import type { VocabStyle } from "./vocab.js";

type Json = Record<string, unknown>;

/** What a converted tensor's rows go through on the way out. */
export interface TensorTransform {
  /** llama's rotary-half → interleaved reordering of q/k rows (LlamaModel.permute), with this many heads */
  permuteHeads?: number;
  /** added to every value (Gemma's RMSNorm stores weight − 1) */
  add?: number;
  /** keep only the first `rows` rows (Gemma drops padding rows past the real vocabulary) */
  rows?: number;
}

export interface TensorMapping {
  /** GGUF tensor name */
  name: string;
  transform: TensorTransform;
}

/** A tensor the converter generates rather than copies (rope_freqs, Phi-3's LongRoPE factors). */
export interface GeneratedTensor {
  name: string;
  values: Float32Array;
}

export interface FamilyContext {
  /** config.json merged with the family's defaults (and text_config) */
  hp: Json;
  /** the vocabulary size after conversion (Gemma trims the embedding to it) */
  vocabRows: number;
  /** the HF tensor names present */
  has: (name: string) => boolean;
}

export interface Family {
  /** general.architecture */
  arch: string;
  /** config.json "architectures" entries this family converts */
  hfArchitectures: string[];
  /** attributes transformers' config class fills in when config.json omits them (4.57, the converter's pin) */
  defaults: Json;
  /** the vocabulary layout, given what tokenizer.json looks like */
  vocab: (detected: "gpt2" | "llama-hf" | undefined, tokenizerConfig: Json | undefined) => VocabStyle | string;
  /** {arch}.* keys after the common ones, in the converter's order */
  hparams: (ctx: FamilyContext, out: KvList) => void;
  /** HF tensor name → GGUF name and transform; undefined: not converted (lm_head on Gemma, rotary inv_freq) */
  mapTensor: (hfName: string, ctx: FamilyContext) => TensorMapping | undefined;
  generated?: (ctx: FamilyContext) => GeneratedTensor[];
  /** tokenizer keys the family's set_vocab adds after the vocabulary */
  vocabExtra?: (out: KvList) => void;
}

/** Keys in insertion order, a later set of the same key overwriting in place (as GGUFWriter's dict does). */
export class KvList {
  readonly map = new Map<string, GgufKv>();
  constructor(readonly arch: string) {}
  set(key: string, type: GgufType, value: GgufKv["value"]): void {
    this.map.set(key, { key, type, value });
  }
  u32(key: string, v: number): void { this.set(key, GgufType.UINT32, v); }
  f32(key: string, v: number): void { this.set(key, GgufType.FLOAT32, v); }
  str(key: string, v: string): void { this.set(key, GgufType.STRING, v); }
  /** an {arch}.* key */
  a(key: string): string { return archKey(this.arch, key); }
  get values(): GgufKv[] { return [...this.map.values()]; }
}

function num(hp: Json, keys: string[]): number | undefined {
  for (const k of keys) if (typeof hp[k] === "number") return hp[k] as number;
  return undefined;
}

function need(hp: Json, keys: string[], what = keys[0]): number {
  const v = num(hp, keys);
  if (v === undefined) throw new Error(`config.json has no ${what} (${keys.join(" / ")})`);
  return v;
}

/** TextModel's rope_parameters: rope_parameters or rope_scaling, with the global theta etc. mirrored in. */
export function ropeParameters(hp: Json): Json {
  const rp: Json = { ...((hp.rope_parameters ?? hp.rope_scaling ?? {}) as Json) };
  if (!("full_attention" in rp) && !("sliding_attention" in rp)) {
    const local = num(hp, ["local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta", "rope_local_base_freq"]);
    const theta = num(hp, ["global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"]);
    const partial = num(hp, ["partial_rotary_factor", "rope_pct", "rope_percent"]);
    const orig = num(hp, ["original_max_position_embeddings"]);
    if (local !== undefined) rp.sliding_attention = { rope_theta: local };
    if (!("rope_theta" in rp) && theta !== undefined) rp.rope_theta = theta;
    if (!("rope_type" in rp) && rp.type !== undefined) rp.rope_type = rp.type;
    if (!("partial_rotary_factor" in rp) && partial !== undefined) rp.partial_rotary_factor = partial;
    if (!("original_max_position_embeddings" in rp) && orig !== undefined) rp.original_max_position_embeddings = orig;
  }
  return rp;
}

/** TextModel.set_gguf_parameters: the keys every family starts with. */
function commonHparams(ctx: FamilyContext, out: KvList, blockCount: number): void {
  const hp = ctx.hp;
  out.u32(out.a(ARCH_KEY.blockCount), blockCount);
  const nCtx = num(hp, ["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"]);
  if (nCtx !== undefined) out.u32(out.a(ARCH_KEY.contextLength), nCtx);
  const nEmbd = num(hp, ["hidden_size", "n_embd", "dim"]);
  if (nEmbd !== undefined) out.u32(out.a(ARCH_KEY.embeddingLength), nEmbd);
  const nFf = num(hp, ["prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"]);
  if (nFf !== undefined) out.u32(out.a(ARCH_KEY.feedForwardLength), nFf);
  const nHead = num(hp, ["num_attention_heads", "n_head", "n_heads"]);
  if (nHead !== undefined) out.u32(out.a(ARCH_KEY.headCount), nHead);
  const nKv = num(hp, ["num_key_value_heads", "n_kv_heads"]);
  if (nKv !== undefined) out.u32(out.a(ARCH_KEY.headCountKv), nKv);
  const rpAll = ropeParameters(hp);
  const rp = (rpAll.full_attention ?? rpAll) as Json;
  const type = rp.rope_type as string | undefined;
  if (type !== undefined) {
    const factor = rp.factor as number | undefined;
    if (type === "linear" && factor !== undefined) {
      out.str(out.a(ARCH_KEY.ropeScalingType), "linear");
      out.f32(out.a(ARCH_KEY.ropeScalingFactor), factor);
    } else if (type === "yarn" && factor !== undefined) {
      out.str(out.a(ARCH_KEY.ropeScalingType), "yarn");
      out.f32(out.a(ARCH_KEY.ropeScalingFactor), factor);
      out.u32(out.a(ARCH_KEY.ropeScalingOrigContext), need(rp, ["original_max_position_embeddings"], "rope_scaling.original_max_position_embeddings"));
      if (typeof rp.extrapolation_factor === "number") out.f32(out.a(ARCH_KEY.ropeScalingYarnExtFactor), rp.extrapolation_factor);
      const attn = rp.attention_factor ?? rp.attn_factor;
      if (typeof attn === "number") out.f32(out.a(ARCH_KEY.ropeScalingYarnAttnFactor), attn);
      if (typeof rp.beta_fast === "number") out.f32(out.a(ARCH_KEY.ropeScalingYarnBetaFast), rp.beta_fast);
      if (typeof rp.beta_slow === "number") out.f32(out.a(ARCH_KEY.ropeScalingYarnBetaSlow), rp.beta_slow);
    } else if (type === "su" || type === "longrope") {
      out.str(out.a(ARCH_KEY.ropeScalingType), "longrope");
    } else if (type !== "default" && type !== "dynamic" && type.toLowerCase() !== "llama3") {
      throw new Error(`config.json rope_scaling type "${type}" is not one llama.cpp's converter handles`);
    }
  }
  if (typeof rp.rope_theta === "number") out.f32(out.a(ARCH_KEY.ropeFreqBase), rp.rope_theta);
  const swa = (rpAll.sliding_attention as Json | undefined)?.rope_theta;
  if (typeof swa === "number") out.f32(out.a(ARCH_KEY.ropeFreqBaseSwa), swa);
  const rms = num(hp, ["rms_norm_eps", "norm_eps"]);
  if (rms !== undefined) out.f32(out.a(ARCH_KEY.rmsEps), rms);
  if (typeof hp.head_dim === "number") {
    out.u32(out.a(ARCH_KEY.keyLength), hp.head_dim);
    out.u32(out.a(ARCH_KEY.valueLength), hp.head_dim);
  }
}

/** The HF llama layout's per-layer and global tensor names (tensor_mapping.py's entries these families use). */
function standardName(hfName: string, layerNames: Record<string, string>): string | undefined {
  const global: Record<string, string> = {
    "model.embed_tokens.weight": TENSOR.tokenEmbd,
    "model.norm.weight": TENSOR.outputNorm,
    "lm_head.weight": TENSOR.output,
  };
  if (hfName in global) return global[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hfName);
  if (!m) return undefined;
  const part = layerNames[m[2]];
  return part === undefined ? undefined : `blk.${m[1]}.${part}.${m[3]}`;
}

const LLAMA_LAYER: Record<string, string> = {
  "input_layernorm": "attn_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "post_attention_layernorm": "ffn_norm",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};
const QWEN3_LAYER = { ...LLAMA_LAYER, "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm" };
const GEMMA3_LAYER: Record<string, string> = {
  ...QWEN3_LAYER,
  "post_attention_layernorm": "post_attention_norm",
  "pre_feedforward_layernorm": "ffn_norm",
  "post_feedforward_layernorm": "post_ffw_norm",
};
const PHI3_LAYER: Record<string, string> = {
  "input_layernorm": "attn_norm",
  "self_attn.qkv_proj": "attn_qkv",
  "self_attn.o_proj": "attn_output",
  "post_attention_layernorm": "ffn_norm",
  "mlp.gate_up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

/** Tied embeddings stored only as lm_head (transformers dedups tied weights that way): it becomes token_embd. */
function tiedEmbedding(hfName: string, ctx: FamilyContext): string | undefined {
  if (hfName === "lm_head.weight" && ctx.hp.tie_word_embeddings === true && !ctx.has("model.embed_tokens.weight")) return TENSOR.tokenEmbd;
  return undefined;
}

function blockCount(hp: Json): number {
  return need(hp, ["n_layers", "num_hidden_layers", "n_layer", "num_layers"], "num_hidden_layers");
}

/** LlamaModel.generate_extra_tensors: Llama 3.1-style rope scaling as per-dimension frequency factors. */
function llama3RopeFreqs(ctx: FamilyContext): GeneratedTensor[] {
  const rpAll = ropeParameters(ctx.hp);
  const rp = (rpAll.full_attention ?? rpAll) as Json;
  if (String(rp.rope_type ?? "").toLowerCase() !== "llama3") return [];
  const base = (rp.rope_theta as number | undefined) ?? 10000;
  const dim = (ctx.hp.head_dim as number | undefined) ?? need(ctx.hp, ["hidden_size"]) / need(ctx.hp, ["num_attention_heads"]);
  const factor = (rp.factor as number | undefined) ?? 8;
  const lowFreq = (rp.low_freq_factor as number | undefined) ?? 1;
  const highFreq = (rp.high_freq_factor as number | undefined) ?? 4;
  const oldCtx = (rp.original_max_position_embeddings as number | undefined) ?? 8192;
  const lowWavelen = oldCtx / lowFreq;
  const highWavelen = oldCtx / highFreq;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    // torch computes the frequencies in float32
    const freq = Math.fround(1 / Math.fround(base ** Math.fround((2 * i) / dim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = factor;
    else {
      const smooth = (oldCtx / wavelen - lowFreq) / (highFreq - lowFreq);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return [{ name: TENSOR.ropeFreqs, values: out }];
}

const llama: Family = {
  arch: "llama",
  hfArchitectures: ["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM"],
  defaults: { rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 2048, tie_word_embeddings: false, rope_scaling: null },
  vocab: (d) => d ?? "llama.cpp's converter needs tokenizer.model or a BPE tokenizer.json for llama",
  hparams: (ctx, out) => {
    // LlamaConfig fills in head_dim = hidden_size / num_attention_heads, so the converter writes key/value_length
    const hp = { ...ctx.hp, head_dim: ctx.hp.head_dim ?? need(ctx.hp, ["hidden_size"]) / need(ctx.hp, ["num_attention_heads"]) };
    commonHparams({ ...ctx, hp }, out, blockCount(hp));
    out.u32(out.a(ARCH_KEY.vocabSize), need(hp, ["vocab_size"]));
    out.u32(out.a(ARCH_KEY.ropeDimensionCount), hp.head_dim as number);
  },
  mapTensor: (n, ctx) => {
    const name = tiedEmbedding(n, ctx) ?? standardName(n, LLAMA_LAYER);
    if (!name) return undefined;
    const nHead = need(ctx.hp, ["n_heads", "num_attention_heads"]);
    const nKv = need(ctx.hp, ["n_kv_heads", "num_key_value_heads"]);
    if (/\.attn_q\.(weight|bias)$/.test(name)) return { name, transform: { permuteHeads: nHead } };
    if (/\.attn_k\.(weight|bias)$/.test(name)) return { name, transform: { permuteHeads: nKv } };
    return { name, transform: {} };
  },
  generated: llama3RopeFreqs,
};

const qwen2: Family = {
  arch: "qwen2",
  hfArchitectures: ["Qwen2ForCausalLM"],
  defaults: { rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 32768, tie_word_embeddings: false, rope_scaling: null },
  vocab: (d) => d === "gpt2" ? "gpt2" : "Qwen2 needs a byte-level BPE tokenizer.json",
  hparams: (ctx, out) => commonHparams(ctx, out, blockCount(ctx.hp)),
  mapTensor: (n, ctx) => {
    const name = tiedEmbedding(n, ctx) ?? standardName(n, LLAMA_LAYER);
    return name ? { name, transform: {} } : undefined;
  },
};

const qwen3: Family = {
  ...qwen2,
  arch: "qwen3",
  hfArchitectures: ["Qwen3ForCausalLM"],
  defaults: { ...qwen2.defaults, head_dim: 128, max_position_embeddings: 32768 },
  mapTensor: (n, ctx) => {
    const name = tiedEmbedding(n, ctx) ?? standardName(n, QWEN3_LAYER);
    return name ? { name, transform: {} } : undefined;
  },
};

const gemma3: Family = {
  arch: "gemma3",
  hfArchitectures: ["Gemma3ForCausalLM"],
  defaults: {
    head_dim: 256, rope_theta: 1_000_000, rope_local_base_freq: 10_000, rms_norm_eps: 1e-6, max_position_embeddings: 131072,
    sliding_window: 4096, num_attention_heads: 8, num_key_value_heads: 4, final_logit_softcapping: null, attn_logit_softcapping: null,
    rope_scaling: null, tie_word_embeddings: true,
  },
  // the Gemma 3 converter reads tokenizer.model; a folder with only tokenizer.json gets the same layout rebuilt from it
  vocab: () => "spm",
  hparams: (ctx, out) => {
    const hp = ctx.hp;
    commonHparams(ctx, out, blockCount(hp));
    out.u32(out.a(ARCH_KEY.contextLength), num(hp, ["max_position_embeddings"]) ?? 131072);
    out.u32(out.a(ARCH_KEY.headCount), num(hp, ["num_attention_heads"]) ?? 8);
    out.f32(out.a(ARCH_KEY.rmsEps), num(hp, ["rms_norm_eps"]) ?? 1e-6);
    out.u32(out.a(ARCH_KEY.keyLength), num(hp, ["head_dim"]) ?? 256);
    out.u32(out.a(ARCH_KEY.valueLength), num(hp, ["head_dim"]) ?? 256);
    const rp = ropeParameters(hp);
    out.f32(out.a(ARCH_KEY.ropeFreqBase), (((rp.full_attention ?? rp) as Json).rope_theta as number | undefined) ?? 1_000_000);
    if (hp.attn_logit_softcapping != null) throw new Error("config.json: Gemma 3 has no attn_logit_softcapping (the converter asserts this)");
    if (hp.final_logit_softcapping) out.f32(out.a(ARCH_KEY.finalLogitSoftcapping), hp.final_logit_softcapping as number);
    if (hp.sliding_window_pattern !== 1) out.u32(out.a(ARCH_KEY.slidingWindow), need(hp, ["sliding_window"]));
    out.u32(out.a(ARCH_KEY.headCountKv), num(hp, ["num_key_value_heads"]) ?? 4);
  },
  mapTensor: (n, ctx) => {
    if (n === "lm_head.weight") return undefined; // Gemma ties its classifier; the converter skips lm_head
    const name = standardName(n, GEMMA3_LAYER);
    if (!name) return undefined;
    if (name === TENSOR.tokenEmbd) return { name, transform: { rows: ctx.vocabRows } };
    // Gemma3RMSNorm computes x · (1 + weight); llama.cpp multiplies by the stored weight
    if (name.endsWith("norm.weight")) return { name, transform: { add: 1 } };
    return { name, transform: {} };
  },
  vocabExtra: (out) => out.set(KEY_ADD_SPACE_PREFIX, GgufType.BOOL, false),
};

const KEY_ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix";

const phi3: Family = {
  arch: "phi3",
  hfArchitectures: ["Phi3ForCausalLM"],
  defaults: { rope_theta: 10000, rms_norm_eps: 1e-5, max_position_embeddings: 4096, original_max_position_embeddings: 4096, partial_rotary_factor: 1, sliding_window: null, tie_word_embeddings: false, rope_scaling: null },
  // Phi-4's GPT2Tokenizer is converted as BPE; Phi-3's SentencePiece needs tokenizer.model, which edgeprune does not read
  vocab: (d, tc) => tc?.tokenizer_class === "GPT2Tokenizer" && d === "gpt2" ? "gpt2"
    : "llama.cpp's phi3 converter reads tokenizer.model unless tokenizer_config.json's tokenizer_class is GPT2Tokenizer; edgeprune reads tokenizer.json only",
  hparams: (ctx, out) => {
    const hp = ctx.hp;
    const nEmbd = need(hp, ["hidden_size", "n_embd"]);
    const nHead = need(hp, ["num_attention_heads", "n_head"]);
    const rp = ropeParameters(hp);
    const orig = need(rp, ["original_max_position_embeddings"], "original_max_position_embeddings");
    const rot = (rp.partial_rotary_factor as number | undefined) ?? 1;
    out.u32(out.a(ARCH_KEY.contextLength), need(hp, ["n_positions", "max_position_embeddings"]));
    out.u32(out.a(ARCH_KEY.ropeScalingOrigContext), orig);
    out.u32(out.a(ARCH_KEY.embeddingLength), nEmbd);
    out.u32(out.a(ARCH_KEY.feedForwardLength), need(hp, ["intermediate_size"]));
    out.u32(out.a(ARCH_KEY.blockCount), blockCount(hp));
    out.u32(out.a(ARCH_KEY.headCount), nHead);
    out.u32(out.a(ARCH_KEY.headCountKv), need(hp, ["num_key_value_heads", "n_head_kv"]));
    out.f32(out.a(ARCH_KEY.rmsEps), need(hp, ["rms_norm_eps"]));
    out.u32(out.a(ARCH_KEY.ropeDimensionCount), Math.floor(Math.floor(rot * nEmbd) / nHead));
    out.f32(out.a(ARCH_KEY.ropeFreqBase), need((rp.full_attention ?? rp) as Json, ["rope_theta"]));
    // (general.file_type comes here in the converter; convert.ts appends it)
    out.u32(out.a(ARCH_KEY.slidingWindow), (hp.sliding_window as number | null | undefined) ?? 0);
    const gen = phi3RopeFactors(ctx);
    if (gen.attnFactor !== undefined) out.f32(out.a(ARCH_KEY.ropeScalingAttnFactor), gen.attnFactor);
  },
  mapTensor: (n, ctx) => {
    const name = tiedEmbedding(n, ctx) ?? standardName(n, PHI3_LAYER);
    return name ? { name, transform: {} } : undefined;
  },
  generated: (ctx) => phi3RopeFactors(ctx).tensors,
};

/** Phi3MiniModel.generate_extra_tensors: LongRoPE's long and short factors and its attention factor. */
function phi3RopeFactors(ctx: FamilyContext): { tensors: GeneratedTensor[]; attnFactor?: number } {
  const hp = ctx.hp;
  const rp = ropeParameters(hp);
  const long = rp.long_factor as number[] | undefined;
  const short = rp.short_factor as number[] | undefined;
  if (!long || long.length === 0) return { tensors: [] };
  const nEmbd = need(hp, ["hidden_size", "n_embd"]);
  const nHead = need(hp, ["num_attention_heads", "n_head"]);
  const maxPos = need(hp, ["n_positions", "max_position_embeddings"]);
  const orig = need(rp, ["original_max_position_embeddings"]);
  const rot = (rp.partial_rotary_factor as number | undefined) ?? 1;
  const ropeDims = Math.floor(Math.floor(rot * nEmbd) / nHead);
  const scale = maxPos / orig;
  const type = String(rp.rope_type ?? "").toLowerCase();
  if (!type) throw new Error("config.json rope_scaling has factors but no type");
  let attnFactor: number;
  if (type === "su" || type === "longrope") attnFactor = scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(orig)) : 1;
  else if (type === "yarn") attnFactor = scale > 1 ? 0.1 * Math.log(scale) + 1 : 1;
  else throw new Error(`config.json rope scaling type "${type}" is not supported for phi3`);
  if (!short || long.length !== short.length || long.length !== ropeDims / 2) {
    throw new Error(`config.json rope_scaling long_factor and short_factor must both have ${ropeDims / 2} entries`);
  }
  return {
    attnFactor,
    tensors: [{ name: TENSOR.ropeFactorsLong, values: Float32Array.from(long) }, { name: TENSOR.ropeFactorsShort, values: Float32Array.from(short) }],
  };
}

export const FAMILIES: readonly Family[] = [llama, qwen2, qwen3, gemma3, phi3];

/** The family for config.json's architectures, or an error listing what converts. */
export function familyFor(config: Json, dir: string): Family {
  const archs = (config.architectures as string[] | undefined) ?? [];
  for (const a of archs) for (const f of FAMILIES) if (f.hfArchitectures.includes(a)) return f;
  throw new Error(`${dir}/config.json: architectures ${JSON.stringify(archs)} is not one edgeprune converts (${FAMILIES.flatMap((f) => f.hfArchitectures).join(", ")})`);
}

/** config.json with text_config lifted to the top and the family's defaults under it. */
export function hyperparameters(family: Family, config: Json): Json {
  const merged = { ...config, ...((config.text_config as Json | undefined) ?? {}) };
  const hp: Json = { ...family.defaults };
  for (const [k, v] of Object.entries(merged)) if (v !== undefined) hp[k] = v;
  return hp;
}

export { KEY as GGUF_KEY };
