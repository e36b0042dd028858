// Layer ranking (src/prune/metrics.ts) on hand-made statistics, without a model: unit names, metric names, the
// checks on k and granularity, removal of already-removed units, one-shot against iterative selection (SLEB's remove,
// rescore, repeat, with a statistics pass whose scores change with what is removed), Gromov's block choice and its
// ties, the non-finite refusal and its message, and how many statistics passes each selection costs. The scores
// against the float64 reference on real models are in ref-bi.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { METRIC_DESCRIPTIONS, METRICS, NonFiniteScoresError, parseMetric, rankUnits, selectForRemoval, unitName, type ScoringInput, type Unit } from "../src/prune/metrics.js";
import type { LayerStats, StatsOptions } from "../src/prune/stats.js";

const key = (u: Unit) => unitName(u);

/**
 * A statistics pass over L layers: layer l's Block Influence is bi[l], lowered by `drop` when the layer after it is
 * removed (so iterative removal can differ from one-shot); angular distances between boundaries a < b are
 * (b − a)·0.1 + angular[a], filled beyond neighbours only when pairs are asked for (NaN otherwise, as
 * collectLayerStatsStream leaves them). Each call is recorded with its options.
 */
function fakeStats(L: number, bi: number[], o: { drop?: number; angular?: number[]; calls?: (StatsOptions & { pairs?: boolean })[] } = {}) {
  return (opts: StatsOptions & { pairs?: boolean }): LayerStats => {
    o.calls?.push(opts);
    const B = L + 1;
    const boundaryCos = new Float64Array(B * B).fill(NaN);
    const boundaryAngular = new Float64Array(B * B).fill(NaN);
    for (let a = 0; a < L; a++) for (let b = a + 1; b <= L; b++) {
      if (b > a + 1 && !opts.pairs) continue;
      const removedNext = opts.skipLayers?.has(a + 1) ? (o.drop ?? 0) : 0;
      boundaryCos[a * B + b] = 1 - bi[a] + removedNext;
      boundaryAngular[a * B + b] = (b - a) * 0.1 + (o.angular?.[a] ?? 0);
    }
    const per = (f: (l: number) => number) => Float64Array.from({ length: L }, (_, l) => f(l));
    return {
      nLayers: L, tokens: 10, boundaryCos, boundaryAngular,
      relMagnitude: per((l) => bi[l]), inputNorm: per(() => 1),
      attnCos: per((l) => 1 - bi[l] / 2), ffnCos: per((l) => 1 - bi[l] / 3),
      attnAngular: per((l) => bi[l] / 2), ffnAngular: per((l) => bi[l] / 3),
      attnRelMagnitude: per((l) => bi[l] / 2), ffnRelMagnitude: per((l) => bi[l] / 3),
    };
  };
}

// one-shot order 1, 2, 0, 3; once layer 1 is removed, layer 0's BI falls to 0.05 and it goes next
const BI = [0.3, 0.1, 0.2, 0.4];
const input = (extra: Partial<ScoringInput> = {}): ScoringInput => ({ nLayers: 4, windows: [], collect: fakeStats(4, BI, { drop: 0.25 }), ...extra });

test("unit and metric names; every metric has a description", () => {
  assert.is(unitName({ layer: 3, part: "layer" }), "3");
  assert.is(unitName({ layer: 3, part: "attn" }), "3.attn");
  assert.is(unitName({ layer: 0, part: "ffn" }), "0.ffn");
  for (const m of METRICS) {
    assert.is(parseMetric(m), m);
    assert.ok(METRIC_DESCRIPTIONS[m]?.length > 10, `${m} has a description`);
  }
  assert.throws(() => parseMetric("cosine"), /unknown metric "cosine": expected one of bi, angular/);
});

test("scoring without a model: the layer count is enough for statistics, last and random; ppl and a missing pass are refused", () => {
  assert.equal(rankUnits("last", { nLayers: 3, windows: [] }).order.map(key), ["2", "1", "0"]);
  assert.throws(() => rankUnits("last", { windows: [] }), /needs a model or its layer count/);
  assert.throws(() => rankUnits("ppl", { nLayers: 2, windows: [[1, 2]] }), /--metric ppl runs the whole model/);
  assert.throws(() => rankUnits("bi", { nLayers: 2, windows: [[1, 2]] }), /--metric bi runs the whole model/);
  assert.throws(() => rankUnits("block", input({ granularity: "sublayer" })), /contiguous whole layers/);
});

test("one-shot scores and order; pairs are asked for only by the block metric; removed units are left out", () => {
  const calls: (StatsOptions & { pairs?: boolean })[] = [];
  const inp = input({ collect: fakeStats(4, BI, { calls }) });
  const r = rankUnits("bi", inp);
  assert.equal(r.order.map(key), ["1", "2", "0", "3"]);
  rankUnits("block", inp);
  rankUnits("angular", inp);
  assert.equal(calls.map((c) => c.pairs), [false, true, false]);
  // a whole layer removed takes both its halves; a half removed leaves the other half
  const sub = input({ granularity: "sublayer" });
  assert.equal(rankUnits("bi", sub, [{ layer: 1, part: "layer" }]).units.map(key), ["0.attn", "0.ffn", "2.attn", "2.ffn", "3.attn", "3.ffn"]);
  assert.equal(rankUnits("bi", sub, [{ layer: 1, part: "attn" }]).units.map(key), ["0.attn", "0.ffn", "1.ffn", "2.attn", "2.ffn", "3.attn", "3.ffn"]);
});

test("selectForRemoval: one-shot takes the k lowest, iterative rescores after each removal, with one pass per step", () => {
  const calls: (StatsOptions & { pairs?: boolean })[] = [];
  const inp = input({ collect: fakeStats(4, BI, { drop: 0.25, calls }) });
  assert.equal(selectForRemoval("bi", 2, inp).map(key), ["1", "2"], "one-shot is the default");
  assert.equal(selectForRemoval("bi", 2, inp, false).map(key), ["1", "2"]);
  assert.is(calls.length, 2);
  calls.length = 0;
  assert.equal(selectForRemoval("bi", 2, inp, true).map(key), ["1", "0"], "after 1 goes, layer 0's BI is the lowest");
  assert.equal(calls.map((c) => [...(c.skipLayers ?? [])]), [[], [1]]);
  // a ranking already made saves the first pass, and only the first
  const ranking = rankUnits("bi", inp);
  calls.length = 0;
  assert.equal(selectForRemoval("bi", 3, inp, true, ranking).map(key), ["1", "0", "2"]);
  assert.is(calls.length, 2);
  calls.length = 0;
  assert.equal(selectForRemoval("bi", 2, inp, false, ranking).map(key), ["1", "2"]);
  assert.is(calls.length, 0);
  assert.equal(selectForRemoval("bi", 0, inp, true), []);
  assert.equal(selectForRemoval("bi", 0, inp), []);
  assert.is(calls.length, 0, "removing nothing costs no pass");
  // "last" and "random" are never rescored: iterative gives the one-shot order
  for (const seed of [0, 1, 2, 3]) {
    const oneShot = rankUnits("random", { nLayers: 6, windows: [], seed }).order.slice(0, 3).map(key);
    assert.equal(selectForRemoval("random", 3, { nLayers: 6, windows: [], seed }, true).map(key), oneShot, `seed ${seed}`);
  }
  assert.equal(selectForRemoval("last", 2, { nLayers: 6, windows: [] }, true).map(key), ["5", "4"]);
});

test("selectForRemoval: progress per iterative step", () => {
  const notes: string[] = [];
  selectForRemoval("bi", 2, input({ onProgress: (n) => notes.push(n) }), true);
  assert.equal(notes, ["iterative bi: removing unit 1 of 2", "iterative bi: removing unit 2 of 2"]);
});

test("selectForRemoval: k from 0 to one less than the units, per granularity", () => {
  for (const k of [-1, 1.5, NaN]) assert.throws(() => selectForRemoval("bi", k, input()), /invalid number of units to remove/);
  assert.throws(() => selectForRemoval("bi", 4, input()), /cannot remove 4 layers: the model has 4 and at least one must remain/);
  assert.throws(() => selectForRemoval("bi", 8, input({ granularity: "sublayer" })), /cannot remove 8 half-layers: the model has 8/);
  assert.is(selectForRemoval("bi", 3, input()).length, 3);
  assert.equal(selectForRemoval("bi", 7, input({ granularity: "sublayer" })).length, 7);
  assert.throws(() => selectForRemoval("block", 2, input({ granularity: "sublayer" })), /contiguous whole layers/);
});

test("block: the contiguous block of k layers with the smallest distance, the first of tied blocks, its own pairs pass", () => {
  // distance (start s, length k) = 0.1·k + angular[s]: the lowest angular start wins; 1 and 3 tie
  const calls: (StatsOptions & { pairs?: boolean })[] = [];
  const inp = (angular: number[]) => ({ nLayers: 5, windows: [], collect: fakeStats(5, [0.1, 0.1, 0.1, 0.1, 0.1], { angular, calls }) });
  assert.equal(selectForRemoval("block", 2, inp([0.5, 0.2, 0.4, 0.2, 0.3])).map(key), ["1", "2"]);
  assert.equal(selectForRemoval("block", 2, inp([0.5, 0.3, 0.4, 0.1, 0.3])).map(key), ["3", "4"]);
  assert.ok(calls.every((c) => c.pairs === true));
  // from a block ranking's statistics, without another pass
  const ranking = rankUnits("block", inp([0.5, 0.3, 0.4, 0.1, 0.3]));
  calls.length = 0;
  assert.equal(selectForRemoval("block", 3, inp([0.5, 0.3, 0.4, 0.1, 0.3]), false, ranking).map(key), ["1", "2", "3"]);
  assert.is(calls.length, 0);
});

test("non-finite scores are refused, naming the first eight units and counting the rest", () => {
  const nan = (L: number, bad: number[]) => ({ nLayers: L, windows: [], collect: fakeStats(L, Array.from({ length: L }, (_, l) => (bad.includes(l) ? NaN : 0.1))) });
  const err = (f: () => unknown): NonFiniteScoresError => {
    try { f(); } catch (e) { if (e instanceof NonFiniteScoresError) return e; throw e; }
    throw new Error("no error");
  };
  let e = err(() => rankUnits("bi", nan(4, [2])));
  assert.equal(e.units, ["2"]);
  assert.match(e.message, /the bi scores of units 2 are not finite/);
  e = err(() => rankUnits("relmag", nan(10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])));
  assert.match(e.message, /units 0, 1, 2, 3, 4, 5, 6, 7 and 2 more are not finite/);
  e = err(() => rankUnits("relmag", nan(8, [0, 1, 2, 3, 4, 5, 6, 7])));
  assert.match(e.message, /units 0, 1, 2, 3, 4, 5, 6, 7 are not finite/);
  // a NaN block distance names the block's first layer
  const angular = [0.1, NaN, 0.3, 0.2];
  e = err(() => selectForRemoval("block", 2, { nLayers: 4, windows: [], collect: fakeStats(4, BI, { angular }) }));
  assert.equal(e.units, ["1"]);
});

test.run();
