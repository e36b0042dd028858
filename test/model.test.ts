// The whole model against llama.cpp (node-llama-cpp, F32 KV cache): greedy tokens on stories260K in F32 and in the
// Q8_0/Q4_0 files our own quantizer writes, next-token probabilities over the whole vocabulary, and the pruning
// hook (observed residual streams; skipping a layer equals a file without it).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../src/model/model.js";
import { generate } from "../src/generate.js";
import { generateStream } from "../src/index.js";
import { readGgufHeader, bytesSource } from "../src/gguf/reader.js";
import { writeGgufBytes, ggufChunks } from "../src/gguf/writer.js";
import { quantizeModel, parseQuantType } from "../src/quant/quantize.js";
import { removeLayers } from "../src/prune/remove.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { softmax } from "../src/sampler.js";
import { disposeOracle, llamaCppGreedy, llamaCppNextTokenProbs } from "./support/llamacpp.js";
import { sharedPath } from "./support/paths.js";
import { PROB_VS_LLAMACPP, TIE_PROB } from "./tolerances.js";

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

/**
 * Ours must equal llama.cpp's token for token, except that where they first diverge the two candidates must have
 * been within TIE_PROB in llama.cpp's probabilities at that step (after that the texts legitimately differ).
 */
function assertSameOrTie(ours: number[], theirs: number[], probs: Float32Array[], label: string): string {
  for (let i = 0; i < theirs.length; i++) {
    if (ours[i] === theirs[i]) continue;
    const p = probs[i];
    const gap = Math.abs(p[theirs[i]] - p[ours[i]]);
    assert.ok(gap < TIE_PROB, `${label}: step ${i} we chose ${ours[i]}, llama.cpp ${theirs[i]}; probabilities ${p[ours[i]]} vs ${p[theirs[i]]} differ by ${gap} ≥ ${TIE_PROB}`);
    return `diverged at step ${i} on a tie (gap ${gap.toExponential(2)})`;
  }
  return "identical";
}

test("stories260K F32: greedy 64 tokens equal llama.cpp's token for token", async () => {
  const ours = greedy(Model.load(bytes), PROMPT, N);
  const ref = await llamaCppGreedy(MODEL, PROMPT, N);
  assert.equal(ours, ref.tokens);
});

test("stories260K F32: next-token probabilities match llama.cpp within 2e-4 over the whole vocabulary", async () => {
  const model = Model.load(bytes);
  const logits = model.createContext().eval(PROMPT);
  const ours = softmax(Array.from(logits));
  const theirs = await llamaCppNextTokenProbs(MODEL, PROMPT);
  assert.is(theirs.length, ours.length);
  let maxDiff = 0;
  for (let i = 0; i < ours.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ours[i] - theirs[i]));
  assert.ok(maxDiff < PROB_VS_LLAMACPP, `max |p - p_llama.cpp| = ${maxDiff}`);
  const top = (p: ArrayLike<number>) => Array.from(p).indexOf(Math.max(...Array.from(p)));
  assert.is(top(ours), top(theirs));
  console.log(`    max |p - p_llama.cpp| over ${ours.length} tokens: ${maxDiff.toExponential(2)}`);
});

for (const type of ["q8_0", "q4_0"]) {
  test(`stories260K ${type.toUpperCase()} written by our quantizer: greedy tokens equal llama.cpp's on the same file (tie rule)`, async () => {
    const file = readGgufHeader(bytes);
    const { spec, tensorData } = quantizeModel(file, bytesSource(bytes), parseQuantType(type));
    const path = join(tmp, `stories260K-${type}.gguf`);
    writeFileAtomicSync(path, ggufChunks(spec, tensorData));
    const ours = greedy(Model.load(new Uint8Array(readFileSync(path))), PROMPT, N);
    const ref = await llamaCppGreedy(path, PROMPT, N);
    const how = assertSameOrTie(ours, ref.tokens, ref.probs, type);
    console.log(`    ${type}: ${how}`);
  });
}

test("the forward pass exposes each layer's residual stream in, between halves, and out", () => {
  const model = Model.load(bytes);
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
  const dense = Model.load(bytes);
  const file = readGgufHeader(bytes);
  for (let i = 0; i < dense.config.nLayers; i++) {
    const skipped = dense.createContext().eval(PROMPT, { skipLayers: new Set([i]) });
    const { spec, tensorData } = removeLayers(file, bytesSource(bytes), { layers: [i] });
    const pruned = Model.load(writeGgufBytes(spec, tensorData));
    assert.is(pruned.config.nLayers, dense.config.nLayers - 1);
    const logits = pruned.createContext().eval(PROMPT);
    assert.equal(Array.from(logits), Array.from(skipped), `layer ${i}`);
    const full = dense.createContext().eval(PROMPT);
    assert.ok(full.some((v, k) => v !== logits[k]), "removing a layer changes the logits");
  }
});

test("eval writes into opts.out when given (the decode loop's one logits array) and refuses one too short", () => {
  const model = Model.load(bytes);
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
  const model = Model.load(bytes);
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
