// The wasm forward pass against the independent float64 forward (test/support/ref-forward.ts) on both F32 models:
// teacher-forced next-token probabilities and every layer's residual stream; prefill split into batches and
// single-token decode over the KV cache; skipped layers and halves. The bounds sit near the measured error, far
// below what a wrong epsilon or RoPE base does (test/tolerances.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { Model, planBytes } from "../src/model/model.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { parseQuantType, quantizeModel } from "../src/quant/quantize.js";
import { STUDY_CACHE, type LinearSite } from "../src/model/forward.js";
import { RefLlama, refTeacherForced, type RefSkip } from "./support/ref-forward.js";
import { STORIES_16L, STORIES_260K, teacherSequence } from "./support/fixtures.js";
import { ourTeacherForced } from "./support/compare.js";
import { sharedPath } from "./support/paths.js";
import { PROB_VS_F64, Q_PROB_VS_F64, STREAM_VS_F64 } from "./tolerances.js";

const files = { stories260K: STORIES_260K(), "stories-deep-16L": STORIES_16L() };

/** max |a − b| over every position and token */
function maxProbDiff(a: ArrayLike<number>[], b: ArrayLike<number>[]): { diff: number; pos: number } {
  let diff = 0, pos = -1;
  a.forEach((row, j) => { for (let i = 0; i < row.length; i++) { const d = Math.abs(row[i] - b[j][i]); if (d > diff) { diff = d; pos = j; } } });
  return { diff, pos };
}

/** worst per-token ‖a − b‖ / ‖b‖ over rows of dim values */
function worstRowError(a: ArrayLike<number>, b: ArrayLike<number>, dim: number): number {
  let worst = 0;
  for (let j = 0; j < b.length / dim; j++) {
    let num = 0, den = 0;
    for (let i = j * dim; i < (j + 1) * dim; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
    worst = Math.max(worst, Math.sqrt(num / den));
  }
  return worst;
}

/** the residual stream entering, between the halves of, and leaving each layer, ours and the reference's */
function layerOutputs(model: Model, ref: RefLlama, tokens: number[], skip: RefSkip = {}) {
  const ours: Float32Array[] = [], theirs: Float64Array[] = [];
  const ctx = model.createContext({ contextSize: tokens.length });
  const n = tokens.length * model.config.dim;
  ctx.eval(tokens, {
    logits: "none", skipLayers: skip.layers, skipAttention: skip.attention, skipFfn: skip.ffn,
    onLayer: (_l, xIn, xMid, xOut) => { for (const p of [xIn, xMid, xOut]) ours.push(model.rt.f32At(p, n).slice()); },
  });
  ref.forward(tokens, { ...skip, logits: false, onLayer: (_l, xIn, xMid, xOut) => { theirs.push(xIn, xMid, xOut); } });
  return { ours, theirs };
}

for (const [name, path] of Object.entries(files)) {
  test(`${name} F32: teacher-forced probabilities and every layer's output agree with the float64 forward`, () => {
    const bytes = new Uint8Array(readFileSync(path));
    const model = Model.load(bytes, STUDY_CACHE);
    const ref = RefLlama.fromGguf(bytes);
    const seq = teacherSequence(model.tokenizer);
    const { diff, pos } = maxProbDiff(ourTeacherForced(model, seq), refTeacherForced(ref, seq));
    assert.ok(diff <= PROB_VS_F64, `max |p − p_f64| = ${diff.toExponential(3)} at position ${pos}, over ${PROB_VS_F64}`);
    const { ours, theirs } = layerOutputs(model, ref, seq);
    assert.is(ours.length, 3 * model.config.nLayers);
    const worst = Math.max(...ours.map((o, l) => worstRowError(o, theirs[l], model.config.dim)));
    assert.ok(worst <= STREAM_VS_F64, `worst residual stream error ${worst.toExponential(3)} over ${STREAM_VS_F64}`);
    console.log(`    ${name}: max |p − p_f64| ${diff.toExponential(2)} (position ${pos}); layer outputs within ${worst.toExponential(2)}`);
  });
}

test("prefill cut into batches of 24, then decode token by token over the KV cache, gives the reference's distributions", () => {
  const bytes = new Uint8Array(readFileSync(STORIES_260K()));
  const model = Model.load(bytes, STUDY_CACHE);
  const ref = RefLlama.fromGguf(bytes);
  const seq = model.tokenizer.encode(readFileSync(sharedPath("data/tinystories/tinystories-validation-first1000.txt"), "utf8").slice(0, 2000), { addBos: true }).slice(0, 90);
  assert.is(seq.length, 90);
  const v = model.config.vocabSize;
  const ctx = model.createContext({ contextSize: 96, batchSize: 24 });
  const prefill = ctx.eval(seq.slice(0, 70), { logits: "all" }); // batches of 24, 24, 22
  const rows: Float64Array[] = [];
  const softmax = (l: Float32Array, off: number) => {
    let max = -Infinity;
    for (let i = 0; i < v; i++) max = Math.max(max, l[off + i]);
    let s = 0;
    const p = new Float64Array(v);
    for (let i = 0; i < v; i++) s += (p[i] = Math.exp(l[off + i] - max));
    return p.map((x) => x / s);
  };
  for (let j = 0; j < 70; j++) rows.push(softmax(prefill, j * v));
  for (let j = 70; j < 90; j++) rows.push(softmax(ctx.eval([seq[j]]), 0)); // "last" logits of one token at position j
  assert.is(ctx.nPast, 90);
  const { diff, pos } = maxProbDiff(rows, refTeacherForced(ref, seq));
  assert.ok(diff <= PROB_VS_F64, `max |p − p_f64| = ${diff.toExponential(3)} at position ${pos}`);
  console.log(`    batched prefill + decode: max |p − p_f64| ${diff.toExponential(2)} (position ${pos})`);
});

test("skipped layers and halves: our outputs equal the float64 forward without them", () => {
  const bytes = new Uint8Array(readFileSync(STORIES_16L()));
  const model = Model.load(bytes, STUDY_CACHE);
  const ref = RefLlama.fromGguf(bytes);
  const seq = teacherSequence(model.tokenizer, 48);
  const skip: RefSkip = { layers: new Set([2, 9]), attention: new Set([4, 15]), ffn: new Set([0, 11]) };
  const { ours, theirs } = layerOutputs(model, ref, seq, skip);
  assert.is(ours.length, 3 * (model.config.nLayers - 2), "skipped layers are not observed");
  const worst = Math.max(...ours.map((o, l) => worstRowError(o, theirs[l], model.config.dim)));
  assert.ok(worst <= STREAM_VS_F64, `worst layer output error ${worst.toExponential(3)}`);
  const logits = model.createContext({ contextSize: 48 }).eval(seq, { logits: "all", skipLayers: skip.layers, skipAttention: skip.attention, skipFfn: skip.ffn });
  const refSkipped = ref.forward(seq, skip), refDense = ref.forward(seq);
  let maxLogit = 0, diff = 0, change = 0;
  for (let i = 0; i < logits.length; i++) {
    maxLogit = Math.max(maxLogit, Math.abs(refSkipped[i]));
    diff = Math.max(diff, Math.abs(logits[i] - refSkipped[i]));
    change = Math.max(change, Math.abs(refDense[i] - refSkipped[i]));
  }
  assert.ok(diff <= STREAM_VS_F64 * maxLogit, `logits differ by ${diff} (largest |logit| ${maxLogit})`);
  assert.ok(change > 0.1 * maxLogit, "the skips change the logits");
  console.log(`    6 units skipped: layer outputs within ${worst.toExponential(2)}, logits within ${(diff / maxLogit).toExponential(2)} of the largest`);
});

test("the linear observer sees every site's input in order, and stopAfterLayer stops after that layer", () => {
  const bytes = new Uint8Array(readFileSync(STORIES_16L()));
  const model = Model.load(bytes, STUDY_CACHE);
  const ref = RefLlama.fromGguf(bytes);
  const seq = teacherSequence(model.tokenizer, 32);
  const ours: { l: number; site: LinearSite; x: Float32Array; n: number }[] = [];
  const ctx = model.createContext({ contextSize: 32 });
  const out = ctx.eval(seq, { logits: "all", stopAfterLayer: 6, onLinearInput: (l, site, x, n, t) => { ours.push({ l, site, x: model.rt.f32At(x, t * n).slice(), n }); } });
  assert.is(out.length, 0, "no logits when stopped early");
  assert.is(ctx.nPast, 32);
  const theirs: { l: number; site: string; x: Float64Array }[] = [];
  ref.forward(seq, { logits: false, onLinear: (l, site, x) => { if (l < 6) theirs.push({ l, site, x }); } });
  assert.equal(ours.map((o) => `${o.l}.${o.site}`), theirs.map((o) => `${o.l}.${o.site}`));
  assert.is(model.createContext({ contextSize: 32 }).eval(seq, { stopAfterLayer: model.config.nLayers }).length, model.config.vocabSize, "stopping after the last layer still gives logits");
  const worst = Math.max(...ours.map((o, i) => { assert.is(o.n, o.site === "ffn_down" ? model.config.hiddenDim : model.config.dim); return worstRowError(o.x, theirs[i].x, o.n); }));
  assert.ok(worst <= STREAM_VS_F64, `linear inputs within ${worst.toExponential(3)}`);
});

for (const type of ["q8_0", "q4_0"]) {
  test(`stories-deep-16L ${type.toUpperCase()} (our quantizer): teacher-forced probabilities near the float64 forward on the same weights`, () => {
    const dense = new Uint8Array(readFileSync(STORIES_16L()));
    const { spec, tensorData } = quantizeModel(readGgufHeader(dense), bytesSource(dense), parseQuantType(type));
    const bytes = writeGgufBytes(spec, tensorData);
    const model = Model.load(bytes, STUDY_CACHE);
    const seq = teacherSequence(model.tokenizer);
    const ours = ourTeacherForced(model, seq);
    // the reference dequantizes the same blocks and computes exactly: the difference is our activations' Q8 rounding
    const { diff, pos } = maxProbDiff(ours, refTeacherForced(RefLlama.fromGguf(bytes), seq));
    const toDense = maxProbDiff(ours, refTeacherForced(RefLlama.fromGguf(dense), seq)).diff;
    assert.ok(diff <= Q_PROB_VS_F64, `max |p − p_f64| = ${diff.toExponential(3)} at position ${pos}`);
    // Q4_0 moves the model far more than our activation rounding does: the reference really read the Q4_0 blocks
    if (type === "q4_0") assert.ok(toDense > 3 * diff, `the reference sees the quantized weights (${toDense.toExponential(2)} from the dense model's)`);
    console.log(`    ${type}: max |p − p_f64(same weights)| ${diff.toExponential(2)} (position ${pos}); from the F32 model's ${toDense.toExponential(2)}`);
  });
}

test("contexts: sizes, refusals, reset and truncate (a truncated cache continues as a fresh one would)", () => {
  const model = Model.load(new Uint8Array(readFileSync(STORIES_260K())), STUDY_CACHE);
  const v = model.config.vocabSize;
  assert.is(model.createContext().contextSize, 2048);
  assert.is(Model.load(new Uint8Array(readFileSync(STORIES_16L())), STUDY_CACHE).createContext().contextSize, 512, "the model's context length when under 2048");
  assert.is(model.createContext({ contextSize: 1, batchSize: 1 }).eval([1]).length, v, "one token of context works");
  assert.is(model.createContext({ contextSize: 16, batchSize: 64 }).batchSize, 16);
  assert.is(model.createContext({ contextSize: 100 }).batchSize, 64);
  assert.throws(() => model.createContext({ contextSize: 0 }), /context size must be at least 1/);
  assert.throws(() => model.createContext({ contextSize: 8, batchSize: 0 }), /batch size must be at least 1/);
  const ctx = model.createContext({ contextSize: 8 });
  assert.throws(() => ctx.eval([]), /at least one token/);
  for (const bad of [v, -1, 1.5]) assert.throws(() => ctx.eval([1, bad]), /outside the vocabulary \(0\.\.511\)/);
  assert.is(ctx.nPast, 0, "a refused eval caches nothing");
  const seq = [1, 403, 407, 261, 378, 432, 383, 286];
  ctx.eval(seq.slice(0, 5));
  assert.throws(() => ctx.eval(seq.slice(0, 4)), /context is full: 5 cached \+ 4 new tokens > context size 8/);
  assert.is(ctx.nPast, 5);
  ctx.eval(seq.slice(5, 8), { logits: "none" });
  assert.is(ctx.nPast, 8);
  assert.throws(() => ctx.truncate(9), /cannot truncate a 8-token cache to 9/);
  assert.throws(() => ctx.truncate(-1), /cannot truncate/);
  ctx.truncate(8);
  assert.is(ctx.nPast, 8);
  ctx.truncate(3);
  assert.is(ctx.nPast, 3);
  const cont = ctx.eval([500, 7], { logits: "all" });
  const fresh = model.createContext({ contextSize: 8 });
  fresh.eval(seq.slice(0, 3));
  assert.equal(Array.from(cont), Array.from(fresh.eval([500, 7], { logits: "all" })));
  const last = model.createContext({ contextSize: 8 }).eval(seq, { logits: "last" });
  const all = model.createContext({ contextSize: 8 }).eval(seq, { logits: "all" });
  assert.is(last.length, v);
  assert.equal(Array.from(last), Array.from(all.subarray(7 * v)));
  ctx.reset();
  assert.is(ctx.nPast, 0);
  assert.equal(Array.from(ctx.eval(seq, { logits: "all" })), Array.from(all), "after reset the cache starts over");
  ctx.truncate(0);
  assert.is(ctx.eval(seq, { logits: "none" }).length, 0, "no logits asked, none returned");
  // logits into a caller's array: exactly the size, longer (a view of it), shorter (refused)
  for (const [mode, need] of [["last", v], ["all", 8 * v]] as const) {
    for (const extra of [0, 5]) {
      const out = new Float32Array(need + extra);
      ctx.reset();
      const got = ctx.eval(seq, { logits: mode, out });
      assert.is(got.buffer, out.buffer);
      assert.is(got.length, need);
      assert.equal(Array.from(got), Array.from(mode === "all" ? all : last));
    }
    ctx.reset();
    assert.throws(() => ctx.eval(seq, { logits: mode, out: new Float32Array(need - 1) }), /opts\.out holds/);
  }
});

test("loading plans the memory a default context needs: it never grows afterwards, and the plan is not padded", () => {
  for (const path of [STORIES_260K(), STORIES_16L()]) {
    const bytes = new Uint8Array(readFileSync(path));
    const model = Model.load(bytes, STUDY_CACHE);
    const planned = model.memoryBytes;
    const base = model.rt.k.heap_base();
    model.createContext();
    assert.is(model.memoryBytes, planned, `${path}: memory grew from ${planned} to ${model.memoryBytes}`);
    const used = model.rt.mark() - base;
    const plan = planBytes(readGgufHeader(bytes), model.config, STUDY_CACHE);
    assert.ok(used <= plan && used >= 0.95 * plan, `${path}: ${used} bytes used of ${plan} planned`);
  }
});

test.run();
