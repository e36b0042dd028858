// The model files the llama.cpp comparisons run on, built the way the tests build them (our quantizer, `synth`
// with fixed seeds), and the fixed token sequence they are teacher-forced over. Shared by the tests and by the
// cross-backend spread tool (test/support/spread.ts), so the tolerances are measured on exactly what is tested.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bytesSource, readGgufHeader } from "../../src/gguf/reader.js";
import { ggufChunks } from "../../src/gguf/writer.js";
import { writeFileAtomicSync } from "../../src/node/files.js";
import { parseQuantType, quantizeModel } from "../../src/quant/quantize.js";
import { resolveShape, synthModel, type SynthType } from "../../src/commands/synth.js";
import type { Tokenizer } from "../../src/tokenizer/index.js";
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

/** Every file the cross-backend comparisons cover, by the name tolerances.ts uses. */
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
  };
}
