// K-quants end to end: a synthetic Q4_K_M file (`edgeprune synth`, llama.cpp's Q4_K/Q6_K mix) runs in our
// runtime and gives llama.cpp's greedy tokens (tie rule) and next-token probabilities; synth files of the other
// types load in both. Kernel-level checks against the scalar reference are in kernels.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { synthModel, resolveShape, type SynthType } from "../src/commands/synth.js";
import { ggufChunks } from "../src/gguf/writer.js";
import { readGgufHeader } from "../src/gguf/reader.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { Model } from "../src/model/model.js";
import { generate } from "../src/generate.js";
import { softmax } from "../src/sampler.js";
import { disposeOracle, llamaCppGreedy, llamaCppNextTokenProbs } from "./support/llamacpp.js";
import { PROB_VS_LLAMACPP, TIE_PROB } from "./tolerances.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-kquant-"));
/** dims that are multiples of 256, so every matrix is a K-quant (no Q8_0 fall-back) */
const SHAPE = resolveShape({ dim: 512, layers: 4, heads: 8, kvHeads: 4, hidden: 1536, vocab: 4096, ctx: 512 });
const N = 32;

function synthFile(type: SynthType, shape = SHAPE): string {
  const path = join(tmp, `synth-${type}.gguf`);
  const { spec, tensorData } = synthModel({ shape, type, seed: 7 });
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return path;
}

test("synth Q4_K_M: the llama.cpp mix (Q6_K output, attn_v/ffn_down on use_more_bits layers), every row a K-quant", () => {
  const file = readGgufHeader(new Uint8Array(readFileSync(synthFile("q4_k_m"))));
  const types = new Map(file.tensors.map((t) => [t.name, t.format.name]));
  assert.is(types.get("output.weight"), "Q6_K");
  assert.is(types.get("token_embd.weight"), "Q4_K");
  // n = 4: n/8 = 0 and 7n/8 = 3 in C's integer division, so layers 2 ((2 - 0) % 3 == 2) and 3 get Q6_K
  assert.is(types.get("blk.0.attn_v.weight"), "Q4_K");
  assert.is(types.get("blk.1.ffn_down.weight"), "Q4_K");
  assert.is(types.get("blk.2.attn_v.weight"), "Q6_K");
  assert.is(types.get("blk.3.ffn_down.weight"), "Q6_K");
  assert.is(types.get("blk.1.attn_q.weight"), "Q4_K");
  assert.is(types.get("blk.1.attn_norm.weight"), "F32");
});

test("synth Q4_K_M: greedy tokens equal llama.cpp's (tie rule) and probabilities agree", async () => {
  const path = synthFile("q4_k_m");
  const model = Model.load(new Uint8Array(readFileSync(path)));
  const prompt = model.tokenizer.encode("Once upon a time", { addBos: true });
  const ours = generate(model.createContext({ contextSize: 256 }), model.tokenizer, prompt, { maxTokens: N, temperature: 0, stopAtEos: false }).tokens;
  const ref = await llamaCppGreedy(path, prompt, N);
  let how = "identical";
  for (let i = 0; i < N; i++) {
    if (ours[i] === ref.tokens[i]) continue;
    const p = ref.probs[i];
    const gap = Math.abs(p[ref.tokens[i]] - p[ours[i]]);
    assert.ok(gap < TIE_PROB, `step ${i}: we chose ${ours[i]}, llama.cpp ${ref.tokens[i]}; probabilities differ by ${gap}`);
    how = `diverged at step ${i} on a tie (gap ${gap.toExponential(2)})`;
    break;
  }
  const top = Math.max(...ref.probs.map((p, i) => p[ref.tokens[i]]));
  assert.ok(top > 0.05, `the synthetic model's distribution is peaked enough to make the check meaningful (top p ${top})`);
  const mine = softmax(Array.from(model.createContext().eval(prompt)));
  const theirs = await llamaCppNextTokenProbs(path, prompt);
  let maxDiff = 0;
  for (let i = 0; i < mine.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine[i] - theirs[i]));
  assert.ok(maxDiff < PROB_VS_LLAMACPP, `max |p - p_llama.cpp| = ${maxDiff}`);
  console.log(`    q4_k_m: ${N} greedy tokens ${how}; max |p - p_llama.cpp| ${maxDiff.toExponential(2)}`);
});

test("synth Q8_0 / Q4_0 / F16 (a 32000-token vocabulary, GQA): llama.cpp loads them and picks our first token", async () => {
  const shape = resolveShape({ dim: 256, layers: 2, heads: 4, kvHeads: 2, hidden: 512, vocab: 32000, ctx: 256 });
  for (const type of ["q8_0", "q4_0", "f16"] as const) {
    const path = synthFile(type, shape);
    const model = Model.load(new Uint8Array(readFileSync(path)));
    assert.is(model.config.vocabSize, 32000);
    const prompt = model.tokenizer.encode("Hello world", { addBos: true });
    const ours = softmax(Array.from(model.createContext().eval(prompt)));
    const ref = await llamaCppGreedy(path, prompt, 1);
    const best = ours.indexOf(Math.max(...ours));
    const gap = Math.abs(ref.probs[0][ref.tokens[0]] - ref.probs[0][best]);
    assert.ok(best === ref.tokens[0] || gap < TIE_PROB, `${type}: first token ${best} vs llama.cpp ${ref.tokens[0]}`);
  }
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
