// Pruning: Block Influence of an identity layer is 0 and it goes first; the pruned file equals the dense model
// with the layer skipped; half-layer removal is recorded and honoured by the loader; a 4-of-16 pruned file is
// under 80% of the size and runs in llama.cpp with our greedy tokens; bad input fails cleanly.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../src/model/model.js";
import { generate } from "../src/generate.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { removeLayers } from "../src/prune/remove.js";
import { collectLayerStats, blockInfluence } from "../src/prune/stats.js";
import { rankUnits, selectForRemoval, unitName } from "../src/prune/metrics.js";
import { kendallTau } from "../src/prune/study.js";
import { splitDocuments, tokenizeDocuments, tokenWindows } from "../src/data/documents.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./support/llamacpp.js";
import { assertDistributionsAgree, ourTeacherForced } from "./support/compare.js";
import { teacherSequence } from "./support/fixtures.js";
import { VS_LLAMACPP } from "./tolerances.js";
import { sharedPath } from "./support/paths.js";
import { RefLlama } from "./support/ref-forward.js";
import { refOrder, refScores } from "./support/ref-bi.js";
import { SCORE_VS_F64 } from "./tolerances.js";
import { runCli } from "./support/cli.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const STORIES = sharedPath("models/stories260K.gguf");
const DEEP = sharedPath("models/stories-deep-16L.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const PROMPT = [1, 403, 407, 261, 378];
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-prune-"));

function calibWindows(model: Model, n = 8): number[][] {
  const docs = splitDocuments(readFileSync(TEXT, "utf8")).slice(0, 40);
  return tokenWindows(tokenizeDocuments(model.tokenizer, docs), 64, 64 * n, model.tokenizer.bosId);
}

/** stories260K with layer `l` made an identity: its attention output and FFN down projections are zero. */
function withIdentityLayer(l: number): Uint8Array {
  const bytes = new Uint8Array(readFileSync(STORIES));
  const f = readGgufHeader(bytes);
  for (const name of [`blk.${l}.attn_output.weight`, `blk.${l}.ffn_down.weight`]) {
    const t = f.tensors.find((x) => x.name === name)!;
    bytes.fill(0, f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteSize);
  }
  return bytes;
}

test("a layer with f(x) = 0 has Block Influence 0, is removed first, and the pruned model equals the dense one", () => {
  const bytes = withIdentityLayer(3);
  const model = Model.load(bytes, STUDY_CACHE);
  const windows = calibWindows(model);
  const bi = blockInfluence(collectLayerStats(model, windows));
  assert.ok(Math.abs(bi[3]) < 1e-6, `BI of the identity layer is ${bi[3]}`);
  for (let l = 0; l < bi.length; l++) if (l !== 3) assert.ok(bi[l] > 1e-3, `layer ${l} has BI ${bi[l]}`);
  const chosen = selectForRemoval("bi", 1, { model, windows });
  assert.equal(chosen, [{ layer: 3, part: "layer" }]);

  const { spec, tensorData } = removeLayers(readGgufHeader(bytes), bytesSource(bytes), { layers: [3] });
  const pruned = Model.load(writeGgufBytes(spec, tensorData), STUDY_CACHE);
  const a = pruned.createContext().eval(PROMPT);
  const b = model.createContext().eval(PROMPT, { skipLayers: new Set([3]) });
  const c = model.createContext().eval(PROMPT);
  assert.equal(Array.from(a), Array.from(b), "pruned file = dense model with the layer skipped");
  assert.equal(Array.from(a), Array.from(c), "an identity layer changes nothing");
});

test("sub-block removal with halves dropped (--edgeprune-only) is recorded in the file and the loader skips that half", () => {
  const bytes = new Uint8Array(readFileSync(STORIES));
  const f = readGgufHeader(bytes);
  const { spec, tensorData } = removeLayers(f, bytesSource(bytes), { attention: [1], ffn: [3], halves: "drop" });
  const out = writeGgufBytes(spec, tensorData);
  const g = readGgufHeader(out);
  assert.is(g.tensors.length, f.tensors.length - 5 - 4);
  assert.ok(!g.tensors.some((t) => t.name.startsWith("blk.1.attn_")));
  const pruned = Model.load(out, STUDY_CACHE);
  assert.equal([...pruned.config.removedAttention], [1]);
  assert.equal([...pruned.config.removedFfn], [3]);
  const dense = Model.load(bytes, STUDY_CACHE);
  const want = dense.createContext().eval(PROMPT, { skipAttention: new Set([1]), skipFfn: new Set([3]) });
  assert.equal(Array.from(pruned.createContext().eval(PROMPT)), Array.from(want));
  // pruning a pruned file keeps the records, renumbered
  const again = removeLayers(g, bytesSource(out), { layers: [0], halves: "drop" });
  const twice = Model.load(writeGgufBytes(again.spec, again.tensorData), STUDY_CACHE);
  assert.equal([...twice.config.removedAttention], [0]);
  assert.equal([...twice.config.removedFfn], [2]);
});

test("sub-block removal by default keeps the half as an identity: llama.cpp runs the file and gives the greedy tokens of our model with that half skipped", async () => {
  const out = join(tmp, "halves.gguf");
  const r = runCli("prune", STORIES, "--attention", "1", "--ffn", "3", "-o", out);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /identities/);
  const g = readGgufHeader(new Uint8Array(readFileSync(out)));
  assert.is(g.tensors.length, readGgufHeader(new Uint8Array(readFileSync(STORIES))).tensors.length, "every tensor is kept");
  const pruned = Model.load(new Uint8Array(readFileSync(out)), STUDY_CACHE);
  assert.equal([...pruned.config.removedAttention], [1]);
  assert.equal([...pruned.config.removedFfn], [3]);
  assert.is(pruned.weights.layers[1].attnQ, undefined, "the removed half is not loaded");
  const dense = Model.load(new Uint8Array(readFileSync(STORIES)), STUDY_CACHE);
  const ours = generate(dense.createContext({ contextSize: 256 }), dense.tokenizer, PROMPT, { maxTokens: 64, temperature: 0, stopAtEos: false });
  const skipped = dense.createContext({ contextSize: 256 });
  const want = generate(pruned.createContext({ contextSize: 256 }), pruned.tokenizer, PROMPT, { maxTokens: 64, temperature: 0, stopAtEos: false }).tokens;
  assert.equal(Array.from(pruned.createContext().eval(PROMPT)), Array.from(skipped.eval(PROMPT, { skipAttention: new Set([1]), skipFfn: new Set([3]) })));
  assert.not.equal(ours.tokens, want, "removing the halves changes the text");
  const ref = await llamaCppGreedy(out, PROMPT, 64);
  assert.equal(ref.tokens, want);
  // --edgeprune-only drops the tensors instead: a smaller file llama.cpp cannot load
  const only = join(tmp, "halves-only.gguf");
  const r2 = runCli("prune", STORIES, "--attention", "1", "--ffn", "3", "--edgeprune-only", "-o", only);
  assert.is(r2.status, 0, r2.stderr);
  assert.match(r2.stderr, /llama\.cpp cannot load this file/);
  assert.ok(readFileSync(only).length < readFileSync(out).length);
  assert.equal(Array.from(Model.load(new Uint8Array(readFileSync(only)), STUDY_CACHE).createContext().eval(PROMPT)), Array.from(pruned.createContext().eval(PROMPT)));
});

test("sublayer scores cover both halves and are the float64 reference's; the removal order is the reference's", () => {
  const bytes = new Uint8Array(readFileSync(STORIES));
  const model = Model.load(bytes, STUDY_CACHE);
  const windows = calibWindows(model);
  const r = rankUnits("bi", { model, windows, granularity: "sublayer" });
  const ref = refScores(RefLlama.fromGguf(bytes), "bi", { windows, granularity: "sublayer" });
  assert.equal(r.units.map(unitName), ref.units.map((u) => `${u.layer}.${u.part}`));
  r.scores.forEach((s, i) => assert.ok(Math.abs(s - ref.scores[i]) <= SCORE_VS_F64, `${unitName(r.units[i])}: ${s} vs ${ref.scores[i]}`));
  assert.equal(r.order.map(unitName), refOrder(ref.scores).map((i) => unitName(r.units[i])));
});

test("Kendall's tau-b", () => {
  assert.is(kendallTau([1, 2, 3, 4], [10, 20, 30, 40]), 1);
  assert.is(kendallTau([1, 2, 3, 4], [4, 3, 2, 1]), -1);
  assert.ok(Math.abs(kendallTau([1, 2, 3, 4], [1, 3, 2, 4]) - 2 / 3) < 1e-12);
});

test("4 of 16 layers removed by BI: under 80% of the size, and llama.cpp agrees with us on the file", async () => {
  const out = join(tmp, "deep-12L.gguf");
  const r = runCli("prune", DEEP, "--remove", "4", "--calib", TEXT, "--tokens", "2048", "-o", out);
  assert.is(r.status, 0, r.stderr);
  const size = readFileSync(out).length;
  const original = readFileSync(DEEP).length;
  assert.ok(size < 0.8 * original, `${size} is not under 80% of ${original}`);
  const model = Model.load(new Uint8Array(readFileSync(out)), STUDY_CACHE);
  assert.is(model.config.nLayers, 12);
  const { bound } = VS_LLAMACPP["stories16L-pruned-12L"];
  const seq = teacherSequence(model.tokenizer);
  const c = assertDistributionsAgree(ourTeacherForced(model, seq), await llamaCppTeacherForced(out, seq), bound, "12L");
  const ours = generate(model.createContext({ contextSize: 256 }), model.tokenizer, PROMPT, { maxTokens: 64, temperature: 0, stopAtEos: false }).tokens;
  const ref = await llamaCppGreedy(out, PROMPT, 64);
  assert.equal(ours, ref.tokens);
  console.log(`    12L: max |p - p_llama.cpp| ${c.maxAbs.toExponential(2)} (bound ${bound}); 64 greedy tokens identical`);
});

function assertCleanFailure(args: string[], pattern: RegExp, output: string) {
  const r = runCli(...args);
  assert.is.not(r.status, 0, `${args.join(" ")} should fail`);
  const lines = r.stderr.trim().split("\n");
  assert.is(lines.length, 1, `one line of error, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.not.ok(existsSync(output), "no output file is left behind");
}

test("bad input: unknown metric, k ≥ L, calibration shorter than one window, layer out of range", () => {
  const out = join(tmp, "bad.gguf");
  const short = join(tmp, "short.txt");
  writeFileSync(short, "Once upon a time there was a cat.\n<|endoftext|>\n");
  assertCleanFailure(["prune", DEEP, "--remove", "2", "--metric", "cosine", "--calib", TEXT, "-o", out], /unknown metric "cosine"/, out);
  assertCleanFailure(["prune", DEEP, "--remove", "16", "--calib", TEXT, "-o", out], /cannot remove 16 layers/, out);
  assertCleanFailure(["prune", DEEP, "--remove", "2", "--calib", short, "-o", out], /calibration text too short/, out);
  assertCleanFailure(["prune", DEEP, "--layers", "3,16", "-o", out], /layer index 16 is out of range/, out);
  assertCleanFailure(["bi", DEEP, "--calib", TEXT, "--metric", "nope"], /unknown metric/, out);
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
