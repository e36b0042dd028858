// The model files the per-family llama.cpp comparisons run on: one tiny synthetic shape per architecture family
// (`edgeprune synth`, logits with a standard deviation of 8 so the top candidates are well apart), each
// switching on what makes its family different (rope_freqs, YaRN, q/k norms and head size != dim/heads, sliding
// windows with pattern and linear scaling, soft-capping, fused projections with partial rotary and LongRoPE), in F32
// and as the Q8_0 / Q4_0 files our quantizer writes and synth's Q4_K_M. Shared by the family tests and the
// cross-backend spread tool (spread.ts --families), so tolerances are measured on exactly what is tested.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bytesSource, readGgufHeader } from "../../src/gguf/reader.js";
import { ggufChunks } from "../../src/gguf/writer.js";
import { writeFileAtomicSync } from "../../src/node/files.js";
import { parseQuantType, quantizeModel } from "../../src/quant/quantize.js";
import { resolveShape, synthModel, type SynthShape } from "../../src/commands/synth.js";

/** every row length a multiple of 256, so Q4_K_M files are K-quants throughout */
const BASE = { dim: 256, layers: 4, heads: 4, kvHeads: 2, hidden: 256, vocab: 1024, ctx: 4096 };

/**
 * The families compared with llama.cpp, the synthetic shape of each and its seed: the first seed (from 1) whose
 * F32 greedy path has its top two candidates over 5x the F32 bound apart at every step and whose quantized files
 * have a top-2 gap over 2x the quantized bound at 40 or more of the 64 teacher-forced positions (on zen4; Gemma 2's
 * soft-capped logits need a sharper classifier for that).
 */
export const FAMILY_FIXTURES: Record<string, { shape: () => SynthShape; seed: number; logitStd?: number }> = {
  // Llama 3.x: rope_freqs from the llama3 formula, with an original context short enough that the factors vary
  llama3: { seed: 1, shape: () => ({ ...resolveShape({ arch: "llama3", ...BASE }), llama3Rope: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, origContext: 64 } }) },
  // Qwen2.5 with its long-context YaRN scaling (factor 4 over a short original context, so the ramp matters)
  qwen2: { seed: 3, shape: () => ({ ...resolveShape({ arch: "qwen2", ...BASE }), ropeScaling: { type: "yarn", factor: 4, origContext: 32 } }) },
  // Qwen3: q/k norms, head size 128 != dim/heads 64
  qwen3: { seed: 3, shape: () => resolveShape({ arch: "qwen3", ...BASE, headDim: 128 }) },
  // Gemma 3: windows of 16 on layers 0, 1 and 3 (pattern 3), layer 2 global with linear scaling 8 (as the 4B)
  gemma3: { seed: 6, shape: () => ({ ...resolveShape({ arch: "gemma3", ...BASE, headDim: 128, window: 16 }), slidingWindowPattern: 3, ropeScaling: { type: "linear", factor: 8 } }) },
  // Phi-3.5 / Phi-4-mini: fused QKV and gate-up, 48 of 64 dims rotated, LongRoPE (short factors: the context stays within 512)
  phi3: { seed: 3, shape: () => ({ ...resolveShape({ arch: "phi3", ...BASE }), ropeDim: 48, longRope: { origContext: 512 } }) },
  // the same with an original context of 128: the long factors are in use
  "phi3-long": { seed: 1, shape: () => ({ ...resolveShape({ arch: "phi3", ...BASE }), ropeDim: 48, longRope: { origContext: 128 } }) },
  // SmolLM2: llama architecture, tied embeddings, base 100000
  smollm: { seed: 1, shape: () => resolveShape({ arch: "smollm", ...BASE }) },
  // Gemma 2: windows of 16 on every other layer; attention capped at 10 and logits at 50 (the real models' 50 and
  // 30 would not bite on these scores, and squeeze these logits into near-ties)
  gemma2: { seed: 9, logitStd: 12, shape: () => ({ ...resolveShape({ arch: "gemma2", ...BASE, window: 16 }), attnSoftcap: 10, finalSoftcap: 50 }) },
  // Gemma: GeGLU, embedding scale, multi-query attention
  gemma: { seed: 2, shape: () => resolveShape({ arch: "gemma", ...BASE, kvHeads: 1 }) },
};

export type FamilyType = "f32" | "q8_0" | "q4_0" | "q4_k_m";
export const FAMILY_TYPES: FamilyType[] = ["f32", "q8_0", "q4_0", "q4_k_m"];
/** the classifier's logit standard deviation: sharp enough for a real margin between the top two candidates */
export const FAMILY_LOGIT_STD = 8;
/** the context the comparisons run at (llama.cpp's oracle default; LongRoPE picks its factors by it) */
export const FAMILY_CONTEXT = 512;

/** The family's file of this type in dir (written once): F32 and Q4_K_M by synth, Q8_0/Q4_0 by our RTN quantizer. */
export function familyFile(dir: string, family: string, type: FamilyType): string {
  const path = join(dir, `family-${family}-${type}.gguf`);
  const { shape, seed, logitStd } = FAMILY_FIXTURES[family];
  if (type === "f32" || type === "q4_k_m") {
    const { spec, tensorData } = synthModel({ shape: shape(), type, seed, logitStd: logitStd ?? FAMILY_LOGIT_STD, name: `family ${family}` });
    writeFileAtomicSync(path, ggufChunks(spec, tensorData));
    return path;
  }
  const bytes = new Uint8Array(readFileSync(familyFile(dir, family, "f32")));
  const { spec, tensorData } = quantizeModel(readGgufHeader(bytes), bytesSource(bytes), parseQuantType(type));
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return path;
}

/** Every family file, by the name tolerances.ts uses ("qwen3-q4_0"). */
export function familyComparisonFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of Object.keys(FAMILY_FIXTURES)) for (const t of FAMILY_TYPES) out[`${f}-${t}`] = familyFile(dir, f, t);
  return out;
}
