// The whole model against llama.cpp (node-llama-cpp, F32 KV cache), on whichever CPU backend it loads: next-token
// probabilities teacher-forced at every position of a fixed 64-token sequence, and greedy tokens, on stories260K
// and stories-deep-16L in F32 and on the Q8_0/Q4_0 files our own quantizer writes; then the pruning hook (observed
// residual streams; skipping a layer equals a file without it).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../src/model/model.js";
import { generate } from "../src/generate.js";
import { generateStream } from "../src/index.js";
import { readGgufHeader, bytesSource } from "../src/gguf/reader.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { removeLayers } from "../src/prune/remove.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./support/llamacpp.js";
import { sharedPath } from "./support/paths.js";
import { assertDistributionsAgree, assertGreedyAgrees, ourTeacherForced, smallestTop2Gap } from "./support/compare.js";
import { quantizedStories, teacherSequence, STORIES_16L } from "./support/fixtures.js";
import { VS_LLAMACPP } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const MODEL = sharedPath("models/stories260K.gguf");
const bytes = new Uint8Array(readFileSync(MODEL));
/** [BOS] + "Once upon a time" */
const PROMPT = [1, 403, 407, 261, 378];
const N = 64;
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-model-"));

function greedy(model: Model, prompt: number[], n: number): number[] {
  const ctx = model.createContext({ contextSize: 256 });
  return generate(ctx, model.tokenizer, prompt, { maxTokens: n, temperature: 0, stopAtEos: false }).tokens;
}

const F32 = VS_LLAMACPP["stories260K-f32"].bound;

test("stories260K F32: greedy 64 tokens equal llama.cpp's token for token, every step decisive", async () => {
  const ours = greedy(Model.load(bytes, STUDY_CACHE), PROMPT, N);
  const ref = await llamaCppGreedy(MODEL, PROMPT, N);
  assert.equal(ours, ref.tokens);
  const gap = smallestTop2Gap(ref.probs);
  assert.ok(gap > 2 * F32, `llama.cpp's smallest top-2 gap along the run is ${gap}: some step is a tie at this precision`);
});

async function teacherForced(path: string, key: keyof typeof VS_LLAMACPP, minDecisive?: number): Promise<string> {
  const model = Model.load(new Uint8Array(readFileSync(path)), STUDY_CACHE);
  const seq = teacherSequence(model.tokenizer);
  const { bound } = VS_LLAMACPP[key];
  const c = assertDistributionsAgree(ourTeacherForced(model, seq), await llamaCppTeacherForced(path, seq), bound, key, minDecisive);
  return `max |p - p_llama.cpp| ${c.maxAbs.toExponential(2)} (bound ${bound}); argmax equal at ${c.decisive}/${c.positions} decisive positions`;
}

test("stories260K F32: teacher-forced next-token probabilities at 64 positions within 4e-6 of llama.cpp's", async () => {
  console.log(`    stories260K f32: ${await teacherForced(MODEL, "stories260K-f32")}`);
});

test("stories-deep-16L F32: teacher-forced next-token probabilities at 64 positions within 2e-6 of llama.cpp's", async () => {
  console.log(`    stories-deep-16L f32: ${await teacherForced(STORIES_16L(), "stories16L-f32")}`);
});

for (const type of ["q8_0", "q4_0"] as const) {
  test(`stories260K ${type.toUpperCase()} written by our quantizer: teacher-forced probabilities and greedy tokens agree with llama.cpp's on the same file`, async () => {
    const path = quantizedStories(tmp, type);
    const key = `stories260K-${type}` as const;
    const tf = await teacherForced(path, key);
    const ours = greedy(Model.load(new Uint8Array(readFileSync(path)), STUDY_CACHE), PROMPT, N);
    const ref = await llamaCppGreedy(path, PROMPT, N);
    const how = assertGreedyAgrees(ours, ref.tokens, ref.probs, VS_LLAMACPP[key].bound, type);
    console.log(`    ${type}: ${tf}; greedy ${how}`);
  });
}

test("the forward pass exposes each layer's residual stream in, between halves, and out", () => {
  const model = Model.load(bytes, STUDY_CACHE);
  const c = model.config;
  const ins: Float32Array[] = [];
  const outs: Float32Array[] = [];
  const ctx = model.createContext();
  ctx.eval(PROMPT, {
    onLayer: (l, xIn, xMid, xOut, t) => {
      assert.is(l, ins.length);
      assert.is(t, PROMPT.length);
      ins.push(model.rt.f32At(xIn, t * c.dim).slice());
      outs.push(model.rt.f32At(xOut, t * c.dim).slice());
      const mid = model.rt.f32At(xMid, t * c.dim);
      assert.ok(mid.some((v, i) => v !== ins[l][i]), "attention changes the residual stream");
    },
  });
  assert.is(ins.length, c.nLayers);
  for (let l = 1; l < c.nLayers; l++) assert.equal(ins[l], outs[l - 1], `layer ${l} starts where layer ${l - 1} ended`);
  // layer 0's input is the token embeddings
  const embd = model.rt.f32At(model.weights.tokenEmbd.ptr, c.vocabSize * c.dim);
  PROMPT.forEach((id, j) => assert.equal(ins[0].subarray(j * c.dim, (j + 1) * c.dim), embd.subarray(id * c.dim, (id + 1) * c.dim)));
});

test("skipping layer i gives the same logits as a model file without layer i", () => {
  const dense = Model.load(bytes, STUDY_CACHE);
  const file = readGgufHeader(bytes);
  for (let i = 0; i < dense.config.nLayers; i++) {
    const skipped = dense.createContext().eval(PROMPT, { skipLayers: new Set([i]) });
    const { spec, tensorData } = removeLayers(file, bytesSource(bytes), { layers: [i] });
    const pruned = Model.load(writeGgufBytes(spec, tensorData), STUDY_CACHE);
    assert.is(pruned.config.nLayers, dense.config.nLayers - 1);
    const logits = pruned.createContext().eval(PROMPT);
    assert.equal(Array.from(logits), Array.from(skipped), `layer ${i}`);
    const full = dense.createContext().eval(PROMPT);
    assert.ok(full.some((v, k) => v !== logits[k]), "removing a layer changes the logits");
  }
});

test("eval writes into opts.out when given (the decode loop's one logits array) and refuses one too short", () => {
  const model = Model.load(bytes, STUDY_CACHE);
  const n = model.config.vocabSize;
  const fresh = model.createContext().eval(PROMPT, { logits: "all" });
  const ctx = model.createContext();
  const out = new Float32Array(PROMPT.length * n + 7);
  const got = ctx.eval(PROMPT, { logits: "all", out });
  assert.is(got.buffer, out.buffer);
  assert.is(got.length, PROMPT.length * n);
  assert.equal(Array.from(got), Array.from(fresh));
  const last = new Float32Array(n);
  ctx.reset();
  assert.is(ctx.eval(PROMPT, { out: last }), last);
  assert.equal(Array.from(last), Array.from(fresh.subarray((PROMPT.length - 1) * n)));
  ctx.reset();
  assert.throws(() => ctx.eval(PROMPT, { out: new Float32Array(n - 1) }), /opts\.out holds/);
});

test("generateStream reuses pooled KV caches: repeated calls give the same text and allocate nothing new", async () => {
  const model = Model.load(bytes, STUDY_CACHE);
  const run = async () => {
    let text = "";
    for await (const t of generateStream(model, "Once upon a time", { maxTokens: 16, temperature: 0 })) text += t.text;
    return text;
  };
  const first = await run();
  const mem = model.memoryBytes;
  for (let i = 0; i < 3; i++) assert.is(await run(), first);
  assert.is(model.memoryBytes, mem);
  assert.ok(first.startsWith(", there was a little girl named Lily."), first);
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
