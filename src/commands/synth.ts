// The `synth` command: a random-weight llama GGUF of any shape (named presets or explicit dims) with a generated
// SentencePiece vocabulary, for speed measurement only; llama.cpp loads it too. Tensors are generated and
// quantized one at a time while the file streams to disk, so a 1 GB model is never held in memory.
// Not a trained model, not a converter.
import { Command, Option } from "commander";
import { KEY, ARCH_KEY, archKey, TENSOR, layerTensorName, type LayerTensorKey } from "../gguf/names.js";
import { GgufType, type GgufKv } from "../gguf/types.js";
import { ggufChunks, layoutGguf, type GgufWriteSpec, type GgufWriteTensor } from "../gguf/writer.js";
import { writeFileAtomic } from "../node/files.js";
import { ProgressBar } from "../node/progress.js";
import { formatByName, formatBytes, type QuantFormat } from "../quant/formats.js";
import { int, mib } from "./common.js";

/** A llama shape. Every preset is a real model's published configuration (weights are random). */
export interface SynthShape {
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
}

export const SYNTH_SHAPES: Record<string, SynthShape> = {
  /** TinyLlama-1.1B (1.10 B parameters) */
  "tinyllama-1.1b": { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, vocabSize: 32000, contextLength: 2048, tiedOutput: false, ropeFreqBase: 10000 },
  /** a 246M llama (dim 1024, 16 layers, GQA 16/4), the mid-size model of docs/speed.md */
  "llama-250m": { dim: 1024, hiddenDim: 2816, nLayers: 16, nHeads: 16, nKvHeads: 4, vocabSize: 32000, contextLength: 2048, tiedOutput: false, ropeFreqBase: 10000 },
  /** SmolLM-135M (134.5 M parameters, tied embeddings) */
  "smollm-135m": { dim: 576, hiddenDim: 1536, nLayers: 30, nHeads: 9, nKvHeads: 3, vocabSize: 49152, contextLength: 2048, tiedOutput: true, ropeFreqBase: 10000 },
  /** the stories15M shape of llama2.c (24 M with a 32000 vocabulary) */
  "stories-15m": { dim: 288, hiddenDim: 768, nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, contextLength: 256, tiedOutput: false, ropeFreqBase: 10000 },
};

/** Weight-type recipes: one format everywhere, or llama.cpp's Q4_K_M mix. */
export const SYNTH_TYPES = ["f32", "f16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q4_k", "q6_k"] as const;
export type SynthType = (typeof SYNTH_TYPES)[number];

/** llama.cpp's llama_ftype for general.file_type */
const FILE_TYPE: Record<SynthType, number> = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, q4_k_m: 15, q4_k: 14, q6_k: 18 };

export interface SynthOptions {
  shape: SynthShape;
  type: SynthType;
  seed?: number;
  name?: string;
}

// ---- vocabulary -------------------------------------------------------------------------------------------

const SPACE = "\u2581"; // SentencePiece's word-boundary mark
/** llama_token_type values */
const TT = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

/**
 * A valid SentencePiece (llama) vocabulary of exactly `size` tokens: <unk>, <s>, </s>, the 256 byte-fallback
 * tokens, then unique printable pieces (single characters, "▁x", and lower-case words of growing length), each
 * scored so shorter, earlier pieces merge first. Any text tokenizes (bytes are the fallback).
 */
export function synthVocab(size: number): { tokens: string[]; scores: Float32Array; types: Int32Array } {
  if (size < 300) throw new Error(`vocabulary of ${size} tokens is too small: the specials and byte tokens alone take 259`);
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
  const scores = new Float32Array(size);
  for (let i = 0; i < size; i++) scores[i] = types[i] === TT.normal ? -i : 0;
  return { tokens, scores, types: Int32Array.from(types) };
}

// ---- tensors ----------------------------------------------------------------------------------------------

/** llama.cpp's use_more_bits(): the layers whose attn_v and ffn_down get Q6_K in a Q4_K_M file */
function useMoreBits(layer: number, nLayers: number): boolean {
  const n8 = Math.floor(nLayers / 8), n78 = Math.floor((7 * nLayers) / 8); // C integer division
  return layer < n8 || layer >= n78 || (layer - n8) % 3 === 2;
}

/** The format of one weight matrix under a recipe; falls back to Q8_0 where a row does not hold whole blocks. */
function matrixFormat(type: SynthType, name: string, layer: number, nLayers: number, rowLength: number): QuantFormat {
  let f: string = type.toUpperCase();
  if (type === "q4_k_m") {
    f = "Q4_K";
    if (name === TENSOR.output) f = "Q6_K";
    else if ((name.endsWith("attn_v.weight") || name.endsWith("ffn_down.weight")) && useMoreBits(layer, nLayers)) f = "Q6_K";
  }
  const fmt = formatByName(f);
  if (!fmt?.quantize) throw new Error(`synth: no quantizer for ${f}`);
  if (rowLength % fmt.blockSize !== 0) return formatByName("Q8_0")!;
  return fmt;
}

interface PlannedTensor {
  info: GgufWriteTensor;
  format: QuantFormat;
  /** rows (outermost) x row length */
  rows: number;
  rowLength: number;
  /** standard deviation of the random values, or 0 for a norm vector (gain times 1 + small noise) */
  std: number;
  gain?: number;
}

function planTensors(opts: SynthOptions): PlannedTensor[] {
  const s = opts.shape;
  const headSize = s.dim / s.nHeads;
  const kvDim = headSize * s.nKvHeads;
  const out: PlannedTensor[] = [];
  const matrix = (name: string, layer: number, rows: number, rowLength: number, std: number) => {
    const format = matrixFormat(opts.type, name, layer, s.nLayers, rowLength);
    out.push({ info: { name, dims: [rowLength, rows], type: format.ggmlType }, format, rows, rowLength, std });
  };
  const norm = (name: string, n: number, gain = 1) => {
    const format = formatByName("F32")!;
    out.push({ info: { name, dims: [n], type: format.ggmlType }, format, rows: 1, rowLength: n, std: 0, gain });
  };
  // Scales keep the residual stream and the logits in a sane range, so the next-token distribution is peaked
  // (a flat one would make every greedy step a tie): unit-variance embeddings, 1/sqrt(fan-in) projections and a
  // classifier whose logits have a standard deviation of about 3.
  const proj = (n: number) => 1 / Math.sqrt(n);
  matrix(TENSOR.tokenEmbd, -1, s.vocabSize, s.dim, 1);
  for (let l = 0; l < s.nLayers; l++) {
    const name = (k: LayerTensorKey) => layerTensorName(l, k);
    norm(name("attnNorm"), s.dim);
    matrix(name("attnQ"), l, s.dim, s.dim, proj(s.dim));
    matrix(name("attnK"), l, kvDim, s.dim, proj(s.dim));
    matrix(name("attnV"), l, kvDim, s.dim, proj(s.dim));
    matrix(name("attnOutput"), l, s.dim, s.dim, proj(s.dim) / Math.sqrt(s.nLayers));
    norm(name("ffnNorm"), s.dim);
    matrix(name("ffnGate"), l, s.hiddenDim, s.dim, proj(s.dim));
    matrix(name("ffnUp"), l, s.hiddenDim, s.dim, proj(s.dim));
    matrix(name("ffnDown"), l, s.dim, s.hiddenDim, proj(s.hiddenDim) / Math.sqrt(s.nLayers));
  }
  // a tied classifier is token_embd itself (unit variance): the final norm's gain brings the logits to std ~3
  norm(TENSOR.outputNorm, s.dim, s.tiedOutput ? 3 / Math.sqrt(s.dim) : 1);
  if (!s.tiedOutput) matrix(TENSOR.output, -1, s.vocabSize, s.dim, 3 / Math.sqrt(s.dim));
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
    t.format.quantize!(src, out.subarray(r * rowOut, (r + n) * rowOut));
  }
  return out;
}

/** Header and a lazy tensor source for a synthetic model; pass both to ggufChunks. */
export function synthModel(opts: SynthOptions): { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; parameters: number } {
  const s = opts.shape;
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === "number" && !(Number.isInteger(v) && v > 0)) throw new Error(`synth: ${k} must be a positive integer, got ${v}`);
  }
  if (s.dim % s.nHeads !== 0) throw new Error(`synth: dim ${s.dim} is not a multiple of heads ${s.nHeads}`);
  if (s.nHeads % s.nKvHeads !== 0) throw new Error(`synth: heads ${s.nHeads} is not a multiple of kv heads ${s.nKvHeads}`);
  if ((s.dim / s.nHeads) % 2 !== 0) throw new Error(`synth: head size ${s.dim / s.nHeads} must be even (RoPE)`);
  const plan = planTensors(opts);
  const seed = opts.seed ?? 1;
  const vocab = synthVocab(s.vocabSize);
  const arch = "llama";
  const k = (key: string) => archKey(arch, key);
  const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.UINT32, value });
  const f32 = (key: string, value: number): GgufKv => ({ key, type: GgufType.FLOAT32, value });
  const str = (key: string, value: string): GgufKv => ({ key, type: GgufType.STRING, value });
  const kv: GgufKv[] = [
    str(KEY.architecture, arch),
    str(KEY.name, opts.name ?? "edgeprune-synth"),
    u32(KEY.fileType, FILE_TYPE[opts.type]),
    u32(KEY.quantizationVersion, 2),
    u32(k(ARCH_KEY.contextLength), s.contextLength),
    u32(k(ARCH_KEY.embeddingLength), s.dim),
    u32(k(ARCH_KEY.feedForwardLength), s.hiddenDim),
    u32(k(ARCH_KEY.blockCount), s.nLayers),
    u32(k(ARCH_KEY.headCount), s.nHeads),
    u32(k(ARCH_KEY.headCountKv), s.nKvHeads),
    f32(k(ARCH_KEY.rmsEps), 1e-5),
    u32(k(ARCH_KEY.ropeDimensionCount), s.dim / s.nHeads),
    f32(k(ARCH_KEY.ropeFreqBase), s.ropeFreqBase),
    str(KEY.tokenizerModel, "llama"),
    { key: "tokenizer.ggml.tokens", type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: vocab.tokens } },
    { key: "tokenizer.ggml.scores", type: GgufType.ARRAY, value: { itemType: GgufType.FLOAT32, items: vocab.scores } },
    { key: "tokenizer.ggml.token_type", type: GgufType.ARRAY, value: { itemType: GgufType.INT32, items: vocab.types } },
    u32("tokenizer.ggml.bos_token_id", 1),
    u32("tokenizer.ggml.eos_token_id", 2),
    u32("tokenizer.ggml.unknown_token_id", 0),
    { key: "tokenizer.ggml.add_bos_token", type: GgufType.BOOL, value: true },
    { key: "tokenizer.ggml.add_eos_token", type: GgufType.BOOL, value: false },
  ];
  const parameters = plan.reduce((a, t) => a + t.rows * t.rowLength, 0);
  return {
    spec: { kv, tensors: plan.map((t) => t.info) },
    tensorData: (i: number) => tensorBytes(plan[i], seed, i),
    parameters,
  };
}

/** The shape named by --shape, with any explicit dims applied on top (or explicit dims alone). */
export function resolveShape(o: { shape?: string; dim?: number; layers?: number; heads?: number; kvHeads?: number; hidden?: number; vocab?: number; ctx?: number }): SynthShape {
  let base: SynthShape | undefined;
  if (o.shape) {
    base = SYNTH_SHAPES[o.shape];
    if (!base) throw new Error(`unknown --shape "${o.shape}": expected one of ${Object.keys(SYNTH_SHAPES).join(", ")}`);
  } else {
    if (o.dim === undefined || o.layers === undefined || o.heads === undefined) throw new Error("synth needs --shape, or at least --dim, --layers and --heads");
    base = { dim: o.dim, hiddenDim: 0, nLayers: o.layers, nHeads: o.heads, nKvHeads: o.heads, vocabSize: 32000, contextLength: 2048, tiedOutput: false, ropeFreqBase: 10000 };
  }
  const s = { ...base };
  if (o.dim !== undefined) s.dim = o.dim;
  if (o.layers !== undefined) s.nLayers = o.layers;
  if (o.heads !== undefined) { s.nHeads = o.heads; if (o.kvHeads === undefined && !o.shape) s.nKvHeads = o.heads; }
  if (o.kvHeads !== undefined) s.nKvHeads = o.kvHeads;
  if (o.vocab !== undefined) s.vocabSize = o.vocab;
  if (o.ctx !== undefined) s.contextLength = o.ctx;
  if (o.hidden !== undefined) s.hiddenDim = o.hidden;
  else if (!s.hiddenDim) s.hiddenDim = Math.ceil((8 * s.dim) / 3 / 32) * 32; // llama's 8/3 ratio, a multiple of 32
  return s;
}

export function registerSynthCommand(program: Command): void {
  program
    .command("synth")
    .description("write a random-weight llama GGUF of a given shape (for speed measurement; llama.cpp loads it too)")
    .addOption(new Option("--shape <name>", "a named shape").choices(Object.keys(SYNTH_SHAPES)))
    .option("--dim <n>", "embedding length", int("--dim", { min: 1 }))
    .option("--layers <n>", "number of layers", int("--layers", { min: 1 }))
    .option("--heads <n>", "attention heads", int("--heads", { min: 1 }))
    .option("--kv-heads <n>", "key/value heads (GQA)", int("--kv-heads", { min: 1 }))
    .option("--hidden <n>", "FFN hidden size (default: 8/3 dim, rounded up to 32)", int("--hidden", { min: 1 }))
    .option("--vocab <n>", "vocabulary size", int("--vocab", { min: 1 }))
    .option("--ctx <n>", "context length written to the file", int("--ctx", { min: 1 }))
    .addOption(new Option("--type <t>", "weight type (q4_k_m: llama.cpp's Q4_K/Q6_K mix)").choices([...SYNTH_TYPES]).default("q4_0"))
    .option("--seed <n>", "random seed", int("--seed"), 1)
    .requiredOption("-o, --output <file>", "output GGUF")
    .action(async (o: { shape?: string; dim?: number; layers?: number; heads?: number; kvHeads?: number; hidden?: number; vocab?: number; ctx?: number; type: SynthType; seed: number; output: string }) => {
      const shape = resolveShape(o);
      const name = `edgeprune-synth ${o.shape ?? "custom"} ${o.type}`;
      const { spec, tensorData, parameters } = synthModel({ shape, type: o.type, seed: o.seed, name });
      const layout = layoutGguf(spec);
      const bar = new ProgressBar(`synth ${(parameters / 1e6).toFixed(1)}M params`, spec.tensors.length);
      let done = 0;
      const bytes = await writeFileAtomic(o.output, ggufChunks(spec, (i) => { const b = tensorData(i); bar.update(++done); return b; }, layout));
      bar.done();
      console.log(`wrote ${o.output}: ${mib(bytes)}, ${parameters.toLocaleString("en-US")} parameters, dim ${shape.dim}, ${shape.nLayers} layers, heads ${shape.nHeads}/${shape.nKvHeads}, ffn ${shape.hiddenDim}, vocab ${shape.vocabSize}, ${o.type}`);
    });
}
