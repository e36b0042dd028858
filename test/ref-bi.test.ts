// Layer ranking against the independent float64 references (test/support/ref-bi.ts) on stories260K and
// stories-deep-16L: every metric `bi` offers, per layer and per half-layer, with and without the BOS position,
// one-shot and iterative; the CLI's calibration windows and its --json scores; and `prune --remove 4` removing
// exactly the reference's four lowest-BI layers (checked on the written file's tensors, not on our own ranking).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../src/model/model.js";
import { readGgufHeader } from "../src/gguf/reader.js";
import { calibrationWindows } from "../src/data/documents.js";
import { rankUnits, selectForRemoval, windowsNll, type Metric, type Unit } from "../src/prune/metrics.js";
import { blockDistance, blockInfluence, collectLayerStats } from "../src/prune/stats.js";
import { RefLlama } from "./support/ref-forward.js";
import { refBestBlock, refCalibrationWindows, refLayerStats, refOrder, refScores, refStatScores, refUnits, type RefGranularity, type RefStats, type RefUnit } from "./support/ref-bi.js";
import { STORIES_16L, STORIES_260K } from "./support/fixtures.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";
import { PPL_SCORE_VS_F64, SCORE_VS_F64 } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const text = readFileSync(TEXT, "utf8");
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-ref-bi-"));

/** EDGEPRUNE_TEST_QUICK=1 (the mutation runs, docs/testing.md): stories260K only, 4 windows of 32, no CLI runs */
const QUICK = process.env.EDGEPRUNE_TEST_QUICK === "1";

interface Case { name: string; path: string; model: Model; ref: RefLlama; windows: number[][] }
const files: [string, string][] = QUICK ? [["stories260K", STORIES_260K()]] : [["stories260K", STORIES_260K()], ["stories-deep-16L", STORIES_16L()]];
const cases: Case[] = files.map(([name, path]) => {
  const bytes = new Uint8Array(readFileSync(path));
  const model = Model.load(bytes, STUDY_CACHE);
  const windows = refCalibrationWindows((s) => model.tokenizer.encode(s, { addBos: true }), model.tokenizer.bosId, text, QUICK ? 128 : 512, QUICK ? 32 : 64);
  return { name, path, model, ref: RefLlama.fromGguf(bytes), windows };
});
const WINDOW = QUICK ? 32 : 64;

const key = (u: { layer: number; part: string }) => `${u.layer}.${u.part}`;

/** one reference statistics pass per (model, includeBos), shared by the tests below */
const statsCache = new Map<string, RefStats>();
function refStats(c: Case, includeBos: boolean): RefStats {
  const k = `${c.name}/${includeBos}`;
  if (!statsCache.has(k)) statsCache.set(k, refLayerStats(c.ref, c.windows, { includeBos }));
  return statsCache.get(k)!;
}

/** |ours − ref| ≤ atol + rtol·|ref| for every unit, with the worst pair in the message */
function assertScores(label: string, units: Unit[], ours: number[], ref: { units: RefUnit[]; scores: number[] }, atol: number, rtol = 0): number {
  assert.equal(units.map(key), ref.units.map(key), `${label}: the same units`);
  let worst = 0;
  ours.forEach((s, i) => {
    const d = Math.abs(s - ref.scores[i]);
    worst = Math.max(worst, d / (atol + rtol * Math.abs(ref.scores[i])));
    assert.ok(d <= atol + rtol * Math.abs(ref.scores[i]), `${label}: unit ${key(units[i])} scores ${s}, the reference ${ref.scores[i]} (Δ ${d.toExponential(2)})`);
  });
  return worst;
}

/** our removal order equals the reference's, except that units whose reference scores are within `tie` may swap */
function assertOrder(label: string, order: Unit[], ref: { units: RefUnit[]; scores: number[] }, tie: number): void {
  const score = new Map(ref.units.map((u, i) => [key(u), ref.scores[i]]));
  const want = refOrder(ref.scores).map((i) => ref.units[i]);
  assert.is(order.length, want.length);
  order.forEach((u, i) => {
    const d = Math.abs(score.get(key(u))! - score.get(key(want[i]))!);
    assert.ok(d <= tie, `${label}: removal rank ${i + 1} is ${key(u)}, the reference's ${key(want[i])} (scores ${d.toExponential(2)} apart)`);
  });
}

test("the CLI's calibration windows are the README's: first 80% of the stories, BOS + tokens, cut into BOS-led windows", () => {
  for (const c of cases) {
    for (const [tokens, window] of [[512, 64], [2048, 128]]) {
      const ours = calibrationWindows(c.model.tokenizer, text, tokens, c.model.config.trainContext, window).windows;
      const ref = refCalibrationWindows((s) => c.model.tokenizer.encode(s, { addBos: true }), c.model.tokenizer.bosId, text, tokens, window);
      assert.equal(ours, ref, `${c.name} ${tokens}/${window}`);
    }
  }
});

for (const c of cases) {
  test(`${c.name}: bi, angular and relmag of every layer and half-layer, block distances, with and without BOS, equal the float64 reference`, () => {
    const lines: string[] = [];
    for (const includeBos of [false, true]) {
      const stats = refStats(c, includeBos);
      const wasm = collectLayerStats(c.model, c.windows, { includeBos });
      assert.is(wasm.tokens, stats.tokens, "counted tokens");
      assert.is(stats.tokens, c.windows.length * (includeBos ? WINDOW : WINDOW - 1));
      let worst = 0;
      for (const granularity of ["layer", "sublayer"] as const) {
        for (const metric of ["bi", "angular", "relmag"] as const) {
          const r = rankUnits(metric, { model: c.model, windows: c.windows, granularity, includeBos });
          const units = refUnits(c.model.config.nLayers, granularity);
          const ref = { units, scores: refStatScores(stats, metric, units) };
          worst = Math.max(worst, assertScores(`${metric} ${granularity} bos=${includeBos}`, r.units, r.scores, ref, SCORE_VS_F64));
          assertOrder(`${metric} ${granularity} bos=${includeBos}`, r.order, ref, 2 * SCORE_VS_F64);
        }
      }
      const L = c.model.config.nLayers;
      for (let l = 0; l < L; l++) {
        const d = Math.abs(wasm.inputNorm[l] - stats.inputNorm[l]);
        assert.ok(d <= SCORE_VS_F64 * stats.inputNorm[l], `mean ‖h_${l}‖ ${wasm.inputNorm[l]} vs ${stats.inputNorm[l]}`);
      }
      // Gromov et al.'s block distance for every start and length, and the block chosen for every k
      for (let a = 0; a < L; a++) for (let b = a + 1; b <= L; b++) {
        const d = Math.abs(blockDistance(wasm, a, b - a) - stats.boundaryAngular(a, b));
        worst = Math.max(worst, d / SCORE_VS_F64);
        assert.ok(d <= SCORE_VS_F64, `block distance (${a}, ${b}): Δ ${d.toExponential(2)}`);
      }
      if (!includeBos) {
        for (let k = 1; k < L; k++) {
          const chosen = selectForRemoval("block", k, { model: c.model, windows: c.windows }).map((u) => u.layer);
          const s = refBestBlock(stats, k);
          const gap = Math.abs(stats.boundaryAngular(chosen[0], chosen[0] + k) - stats.boundaryAngular(s, s + k));
          assert.ok(chosen[0] === s || gap <= 2 * SCORE_VS_F64, `block of ${k}: we chose ${chosen[0]}, the reference ${s}`);
          assert.equal(chosen, Array.from({ length: k }, (_, i) => chosen[0] + i));
        }
      }
      lines.push(`bos=${includeBos}: worst |Δ| ${(worst * SCORE_VS_F64).toExponential(2)}`);
    }
    console.log(`    ${c.name}: ${lines.join("; ")}`);
  });

  test(`${c.name}: ppl, last and random (layer and half-layer) equal the float64 reference`, () => {
    // one unit removed per forward pass: a short calibration set keeps the float64 side quick
    const windows = c.model.config.nLayers > 8 ? [c.windows[0].slice(0, 32)] : c.windows.slice(0, 2);
    let worst = 0;
    for (const granularity of ["layer", "sublayer"] as RefGranularity[]) {
      const r = rankUnits("ppl", { model: c.model, windows, granularity });
      const ref = refScores(c.ref, "ppl", { windows, granularity });
      worst = Math.max(worst, assertScores(`ppl ${granularity}`, r.units, r.scores, ref, 0, PPL_SCORE_VS_F64));
      assertOrder(`ppl ${granularity}`, r.order, ref, 2 * PPL_SCORE_VS_F64 * Math.max(...ref.scores));
      for (const metric of ["last", "random"] as Metric[]) {
        for (const seed of [0, 5]) {
          const o = rankUnits(metric, { model: c.model, windows, granularity, seed });
          const want = refScores(c.ref, metric as "last" | "random", { windows, granularity, seed });
          assert.equal(o.scores, want.scores, `${metric} ${granularity} seed ${seed}`);
          assert.equal(o.order.map(key), refOrder(want.scores).map((i) => key(want.units[i])));
        }
      }
    }
    console.log(`    ${c.name} ppl: worst relative Δ ${(worst * PPL_SCORE_VS_F64).toExponential(2)}`);
  });

  test(`${c.name}: iterative Block Influence (remove, rescore, repeat) picks the reference's units`, () => {
    const windows = c.windows.slice(0, 4);
    for (const granularity of ["layer", "sublayer"] as const) {
      const k = 3;
      const ours = selectForRemoval("bi", k, { model: c.model, windows, granularity }, true);
      // the reference rescored after each of our removals picks what we picked next (or a unit tied with it)
      for (let i = 0; i < k; i++) {
        const step = refScores(c.ref, "bi", { windows, granularity }, ours.slice(0, i));
        const pick = step.units.findIndex((u) => key(u) === key(ours[i]));
        const best = refOrder(step.scores)[0];
        assert.ok(pick >= 0 && step.scores[pick] - step.scores[best] <= 2 * SCORE_VS_F64, `${granularity} step ${i + 1}: we removed ${key(ours[i])}, the reference ${key(step.units[best])}`);
      }
      const oneShot = rankUnits("bi", { model: c.model, windows, granularity }).order.slice(0, k);
      if (ours.some((u, i) => key(u) !== key(oneShot[i]))) console.log(`    ${c.name} ${granularity}: iterative ${ours.map(key)} differs from one-shot ${oneShot.map(key)}`);
    }
  });
}

test("windowsNll: windows of different lengths are each evaluated whole (the context fits the longest); ppl's progress per unit", () => {
  const c = cases[0];
  const a = c.windows[0].slice(0, 20), b = c.windows[1].slice(0, 7);
  const both = windowsNll(c.model, [b, a]);
  const want = (19 * windowsNll(c.model, [a]) + 6 * windowsNll(c.model, [b])) / 25;
  // the same per-token terms summed in another order: measured 1.4e-16 relative
  assert.ok(Math.abs(both - want) <= 1e-12 * want, `${both} vs ${want}`);
  // its own f32 KV cache whatever the model was loaded with (the default f16 cache moves it by ~6e-6 relative)
  const plain = Model.load(new Uint8Array(readFileSync(c.path)));
  assert.is(windowsNll(plain, [b, a]), both);
  const notes: string[] = [];
  rankUnits("ppl", { model: c.model, windows: [b], onProgress: (n) => notes.push(n) });
  const L = c.model.config.nLayers;
  assert.equal(notes, Array.from({ length: L }, (_, l) => `ppl without ${l} (${l + 1}/${L})`));
});

test("collectLayerStats: windows of different lengths (one longer than a batch), progress per window, memory given back, refusals", () => {
  const c = cases[0];
  const windows = [c.windows[0].slice(0, 20), [...c.windows[1], ...c.windows[2], ...c.windows[3].slice(0, 16)], c.windows[2].slice(0, 7)];
  assert.ok(windows[1].length > 64, "one window spans two batches of the default size");
  const progress: string[] = [];
  const mark = c.model.rt.mark();
  const stats = collectLayerStats(c.model, windows, { onProgress: (done, total) => progress.push(`${done}/${total}`) });
  assert.is(c.model.rt.mark(), mark, "the scratch memory is released");
  assert.equal(progress, ["1/3", "2/3", "3/3"]);
  const ref = refLayerStats(c.ref, windows);
  assert.is(stats.tokens, ref.tokens);
  const bi = blockInfluence(stats);
  for (let l = 0; l < c.model.config.nLayers; l++) {
    assert.ok(Math.abs(bi[l] - ref.bi[l]) <= SCORE_VS_F64, `layer ${l}: BI ${bi[l]} vs ${ref.bi[l]}`);
    assert.ok(Math.abs(stats.relMagnitude[l] - ref.relmag[l]) <= SCORE_VS_F64, `layer ${l}: relmag`);
    assert.ok(Math.abs(stats.ffnAngular[l] - ref.ffnAngular[l]) <= SCORE_VS_F64, `layer ${l}: ffn angular`);
  }
  assert.throws(() => collectLayerStats(c.model, []), /no calibration windows/);
  assert.throws(() => collectLayerStats(c.model, [[1], [1]]), /no calibration tokens were counted/);
});

if (!QUICK) test("bi --json: the CLI's per-layer scores (BOS excluded by default, counted with --include-bos) are the reference's", () => {
  const c = cases[1];
  for (const bos of [false, true]) {
    const r = runCli("bi", c.path, "--calib", TEXT, "--tokens", "512", "--window", "64", "--json", ...(bos ? ["--include-bos"] : []));
    assert.is(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.is(j.tokens, 512);
    const units = refUnits(16, "layer");
    const ref = { units, scores: refStatScores(refStats(c, bos), "bi", units) };
    assertScores(`bi --json bos=${bos}`, j.units, j.units.map((u: { score: number }) => u.score), ref, SCORE_VS_F64);
    assert.equal(j.removalOrder, refOrder(ref.scores).map(String));
  }
});

if (!QUICK) test("prune --remove 4 on stories-deep-16L removes exactly the reference's four lowest-BI layers", () => {
  const c = cases[1];
  const out = join(tmp, "deep-12L.gguf");
  // the windows of the tests above (512 tokens in windows of 64, BOS not counted), so that the reference's
  // statistics are the ones already computed
  const r = runCli("prune", c.path, "--remove", "4", "--calib", TEXT, "--tokens", "512", "--window", "64", "-o", out);
  assert.is(r.status, 0, r.stderr);
  const bi = refStatScores(refStats(c, false), "bi", refUnits(16, "layer"));
  const order = refOrder(bi);
  const lowest = order.slice(0, 4).sort((a, b) => a - b);
  const margin = bi[order[4]] - bi[order[3]];
  assert.ok(margin > 10 * SCORE_VS_F64, `the 4th and 5th lowest BI are ${margin} apart: too close to tell`);
  const keep = Array.from({ length: 16 }, (_, l) => l).filter((l) => !lowest.includes(l));
  const dense = new Uint8Array(readFileSync(c.path)), pruned = new Uint8Array(readFileSync(out));
  const fd = readGgufHeader(dense), fp = readGgufHeader(pruned);
  const bytesOf = (b: Uint8Array, f: typeof fd, name: string) => {
    const t = f.tensors.find((x) => x.name === name);
    assert.ok(t, `${name} is in the file`);
    return b.subarray(f.dataOffset + t!.offset, f.dataOffset + t!.offset + t!.byteSize);
  };
  keep.forEach((l, i) => {
    for (const s of ["attn_q", "attn_output", "ffn_down"]) {
      assert.ok(Buffer.from(bytesOf(pruned, fp, `blk.${i}.${s}.weight`)).equals(bytesOf(dense, fd, `blk.${l}.${s}.weight`)), `pruned blk.${i} is dense blk.${l} (the reference removes ${lowest})`);
    }
  });
  assert.not.ok(fp.tensors.some((t) => t.name.startsWith("blk.12.")), "12 layers remain");
  console.log(`    removed ${lowest} (the reference's lowest four; the 5th is ${margin.toExponential(2)} higher)`);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
