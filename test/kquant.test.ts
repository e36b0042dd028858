// K-quants end to end: a synthetic Q4_K_M file (`edgeprune synth`, llama.cpp's Q4_K/Q6_K mix) runs in our
// runtime and agrees with llama.cpp (teacher-forced probabilities at every position, greedy tokens up to a tie),
// on whichever CPU backend llama.cpp loads; synth files of the other types likewise. Kernel-level checks against
// the scalar reference are in kernels.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufHeader } from "../src/gguf/reader.js";
import { Model } from "../src/model/model.js";
import { generate } from "../src/generate.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./support/llamacpp.js";
import { assertDistributionsAgree, assertGreedyAgrees, ourTeacherForced } from "./support/compare.js";
import { synthFile, teacherSequence, WIDE_VOCAB_SHAPE } from "./support/fixtures.js";
import { VS_LLAMACPP } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-kquant-"));
const N = 32;

async function agree(path: string, key: keyof typeof VS_LLAMACPP): Promise<string> {
  const model = Model.load(new Uint8Array(readFileSync(path)), STUDY_CACHE);
  const seq = teacherSequence(model.tokenizer);
  const { bound } = VS_LLAMACPP[key];
  const c = assertDistributionsAgree(ourTeacherForced(model, seq), await llamaCppTeacherForced(path, seq), bound, key);
  const prompt = model.tokenizer.encode("Once upon a time", { addBos: true });
  const ours = generate(model.createContext({ contextSize: 256 }), model.tokenizer, prompt, { maxTokens: N, temperature: 0, stopAtEos: false }).tokens;
  const ref = await llamaCppGreedy(path, prompt, N);
  const how = assertGreedyAgrees(ours, ref.tokens, ref.probs, bound, key);
  return `max |p - p_llama.cpp| ${c.maxAbs.toExponential(2)} (bound ${bound}), argmax equal at ${c.decisive}/${c.positions} decisive positions; ${N} greedy tokens ${how}`;
}

test("synth Q4_K_M: the llama.cpp mix (Q6_K output, attn_v/ffn_down on use_more_bits layers), every row a K-quant", () => {
  const file = readGgufHeader(new Uint8Array(readFileSync(synthFile(tmp, "q4_k_m"))));
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

test("synth Q4_K_M: teacher-forced probabilities and greedy tokens agree with llama.cpp's", async () => {
  console.log(`    q4_k_m: ${await agree(synthFile(tmp, "q4_k_m"), "synth-q4_k_m")}`);
});

test("synth Q8_0 / Q4_0 / F16 (a 32000-token vocabulary, GQA): teacher-forced probabilities and greedy tokens agree with llama.cpp's", async () => {
  for (const type of ["q8_0", "q4_0", "f16"] as const) {
    const path = synthFile(tmp, type, WIDE_VOCAB_SHAPE(), "wide");
    const model = Model.load(new Uint8Array(readFileSync(path)), STUDY_CACHE);
    assert.is(model.config.vocabSize, 32000);
    console.log(`    ${type}: ${await agree(path, `synth-${type}`)}`);
  }
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
