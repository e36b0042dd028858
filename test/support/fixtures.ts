// The model files the llama.cpp comparisons run on, built the way the tests build them (our quantizer, `synth`
// with fixed seeds), and the fixed token sequence they are teacher-forced over. Shared by the tests and by the
// cross-backend spread tool (test/support/spread.ts), so the tolerances are measured on exactly what is tested.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bytesSource, readGgufHeader } from "../../src/gguf/reader.js";
import type { GgufFile } from "../../src/gguf/types.js";
import { ggufChunks } from "../../src/gguf/writer.js";
import { writeFileAtomicSync } from "../../src/node/files.js";
import { parseQuantType, quantizeModel } from "../../src/quant/quantize.js";
import { resolveShape, synthModel, type SynthType } from "../../src/commands/synth.js";
import { tokenizerFromGguf, type Tokenizer } from "../../src/tokenizer/index.js";
import { calibrationWindows } from "../../src/data/documents.js";
import { quantizeGptq } from "../../src/gptq/model.js";
import type { GptqModelOptions, GptqModelResult } from "../../src/gptq/model.js";
import { formatByName } from "../../src/quant/formats.js";
import { configFromGguf } from "../../src/model/config.js";
import { Model } from "../../src/model/model.js";
import { selectForRemoval } from "../../src/prune/metrics.js";
import { removeLayers } from "../../src/prune/remove.js";
import { sharedPath } from "./paths.js";

export const STORIES_260K = () => sharedPath("models/stories260K.gguf");
export const STORIES_16L = () => sharedPath("models/stories-deep-16L.gguf");

/** The first held-out TinyStories story (story 801 of 1000): the text every teacher-forced comparison reads. */
export function heldOutStory(): string {
  const text = readFileSync(sharedPath("data/tinystories/tinystories-validation-first1000.txt"), "utf8");
  const stories = text.split(/^<\|endoftext\|>$/m).map((s) => s.trim()).filter((s) => s.length > 0);
  if (stories.length < 801) throw new Error(`expected 1000 stories, found ${stories.length}`);
  return stories[800];
}

/** BOS + the first n-1 tokens of the held-out story: a fixed sequence of n tokens for teacher forcing. */
export function teacherSequence(tokenizer: Tokenizer, n = 64): number[] {
  const ids = tokenizer.encode(heldOutStory(), { addBos: true });
  if (ids.length < n) throw new Error(`the held-out story has only ${ids.length} tokens, ${n} wanted`);
  return ids.slice(0, n);
}

/** stories260K quantized by our own round-to-nearest quantizer, written to dir. */
export function quantizedStories(dir: string, type: "q8_0" | "q4_0" | "q4_1", model = STORIES_260K()): string {
  const bytes = new Uint8Array(readFileSync(model));
  const { spec, tensorData } = quantizeModel(readGgufHeader(bytes), bytesSource(bytes), parseQuantType(type));
  const path = join(dir, `${model.split("/").pop()!.replace(/\.gguf$/, "")}-${type}.gguf`);
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return path;
}

/** dims that are multiples of 256, so every matrix of a K-quant file is a K-quant (no Q8_0 fall-back) */
export const KQUANT_SHAPE = () => resolveShape({ dim: 512, layers: 4, heads: 8, kvHeads: 4, hidden: 1536, vocab: 4096, ctx: 512 });
/** a 32000-token vocabulary with grouped-query attention */
export const WIDE_VOCAB_SHAPE = () => resolveShape({ dim: 256, layers: 2, heads: 4, kvHeads: 2, hidden: 512, vocab: 32000, ctx: 256 });

/** A synthetic model (`edgeprune synth`, seed 7) written to dir. */
export function synthFile(dir: string, type: SynthType, shape = KQUANT_SHAPE(), label = "kq"): string {
  const path = join(dir, `synth-${label}-${type}.gguf`);
  const { spec, tensorData } = synthModel({ shape, type, seed: 7 });
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return path;
}

export const STORIES_TEXT = () => sharedPath("data/tinystories/tinystories-validation-first1000.txt");

/** The CLI's calibration windows (`--calib` the TinyStories file, `--tokens` tokens) for the model in file. */
export function storiesWindows(file: GgufFile, tokens: number, contextLength: number, maxWindow?: number): number[][] {
  return calibrationWindows(tokenizerFromGguf(file.kv), readFileSync(STORIES_TEXT(), "utf8"), tokens, contextLength, maxWindow).windows;
}

/** GPTQ of a model on 512 calibration tokens of the first 800 stories (what gptq.test.ts runs), written to dir. */
export function gptqFile(dir: string, model: string, type: "Q4_0" | "Q8_0" | "Q4_1", opts: GptqModelOptions = {}): { path: string; result: GptqModelResult } {
  const bytes = new Uint8Array(readFileSync(model));
  const file = readGgufHeader(bytes);
  const config = configFromGguf(file, model);
  const result = quantizeGptq(file, bytesSource(bytes), storiesWindows(file, 512, Math.min(512, config.trainContext)), formatByName(type)!, opts);
  const path = join(dir, `${model.split("/").pop()!.replace(/\.gguf$/, "")}-gptq-${type}${opts.group ? `-g${opts.group}` : ""}${opts.actOrder ? "-act" : ""}.gguf`);
  writeFileAtomicSync(path, ggufChunks(result.spec, result.tensorData));
  return { path, result };
}

/** stories-deep-16L with the 4 layers of lowest Block Influence removed (2048 calibration tokens), written to dir. */
export function prunedDeep(dir: string): { path: string; removed: number[] } {
  const bytes = new Uint8Array(readFileSync(STORIES_16L()));
  const model = Model.load(bytes);
  const windows = calibrationWindows(model.tokenizer, readFileSync(STORIES_TEXT(), "utf8"), 2048, model.config.trainContext).windows;
  const removed = selectForRemoval("bi", 4, { model, windows, granularity: "layer" }).map((u) => u.layer).sort((a, b) => a - b);
  const { spec, tensorData } = removeLayers(readGgufHeader(bytes), bytesSource(bytes), { layers: removed });
  const path = join(dir, "stories-deep-12L.gguf");
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return { path, removed };
}

/** Every file the cross-backend comparisons cover, by the name tolerances.ts uses. */
/** The files the KV cache types are compared on: the two stories models (head size 8: F16 only) and an F32 synth file of head size 64 (Q8_0 too). */
export function kvComparisonFiles(dir: string): Record<string, string> {
  return { "stories260K": STORIES_260K(), "stories16L": STORIES_16L(), "synth-f32": synthFile(dir, "f32", WIDE_VOCAB_SHAPE(), "wide") };
}

export function comparisonFiles(dir: string): Record<string, string> {
  return {
    "stories260K-f32": STORIES_260K(),
    "stories260K-q8_0": quantizedStories(dir, "q8_0"),
    "stories260K-q4_0": quantizedStories(dir, "q4_0"),
    "stories16L-f32": STORIES_16L(),
    "synth-q4_k_m": synthFile(dir, "q4_k_m"),
    "synth-q8_0": synthFile(dir, "q8_0", WIDE_VOCAB_SHAPE(), "wide"),
    "synth-q4_0": synthFile(dir, "q4_0", WIDE_VOCAB_SHAPE(), "wide"),
    "synth-f16": synthFile(dir, "f16", WIDE_VOCAB_SHAPE(), "wide"),
    "stories16L-gptq-q4_0": gptqFile(dir, STORIES_16L(), "Q4_0").path,
    "stories260K-gptq-q8_0": gptqFile(dir, STORIES_260K(), "Q8_0").path,
    "stories260K-gptq-q4_1-g64-act": gptqFile(dir, STORIES_260K(), "Q4_1", { group: 64, actOrder: true }).path,
    "stories16L-pruned-12L": prunedDeep(dir).path,
  };
}
