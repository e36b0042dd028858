// The pruning study: for k = 0 … L−1 layers removed, held-out perplexity, KL divergence from and top-1 agreement
// with the dense model, and multiple-choice accuracy on a task, for every way of choosing layers (Block Influence and its alternatives, one-shot and iterative, Gromov's block,
// the last k, LaCo's merge, and random subsets), plus the calibration-set ablation (Kendall's tau between BI
// rankings from different texts). Portable: returns data; commands/study.ts writes Markdown, SVG and JSON.
import type { Model } from "../model/model.js";
import type { ChoiceTask } from "../quality/choice.js";
import { denseReference, measureQuality, type Quality, type TaskAccuracy } from "../studies/measure.js";
import { collapseLayers, collapsedLayers } from "./laco.js";
import { allUnits, orderByScore, rankUnits, selectForRemoval, skipOptions, statScores, unitName, windowsNll, type Unit } from "./metrics.js";
import { blockDistance, blockInfluence, collectLayerStats } from "./stats.js";
import { mulberry32 } from "../random.js";

export const STUDY_METHODS = ["bi", "bi-iterative", "angular", "relmag", "ppl", "ppl-iterative", "block", "last", "laco"] as const;
export type StudyMethod = (typeof STUDY_METHODS)[number];

export const STUDY_METHOD_NOTES: Record<StudyMethod, string> = {
  "bi": "Block Influence, one-shot (ShortGPT)",
  "bi-iterative": "Block Influence, rescored after each removal",
  "angular": "angular distance arccos(cos)/π, one-shot",
  "relmag": "relative magnitude ‖f(x)‖/‖x+f(x)‖, one-shot",
  "ppl": "calibration perplexity with the layer dropped alone, one-shot",
  "ppl-iterative": "calibration perplexity, greedy: drop the best, rescore (SLEB)",
  "block": "Gromov et al.: best contiguous block of k by angular distance",
  "last": "the last k layers",
  "laco": "LaCo: fold k layers into the one before them (θ_l + Σ(θ_{l+i} − θ_l)), position by calibration loss",
};

export interface PruneStudyInput {
  model: Model;
  /** calibration windows for the statistics metrics */
  calib: number[][];
  /** held-out documents */
  evalDocs: number[][];
  /** largest k (default L−1) */
  maxK?: number;
  /** random subsets per k (default 20) */
  randomSubsets?: number;
  seed?: number;
  /** calibration windows used by the perplexity-driven methods (ppl, ppl-iterative, laco), a prefix of calib; default 16 */
  lossWindows?: number;
  includeBos?: boolean;
  /** a multiple-choice task: accuracy is measured at every k (without one, none is) */
  tasks?: ChoiceTask[];
  /** random subsets per k whose accuracy is measured too (default 5; the task costs far more than perplexity) */
  randomAccuracySubsets?: number;
  onProgress?: (note: string) => void;
}

export interface StudyCell extends Quality {
  k: number;
  method: StudyMethod;
  removed: string[];
}

export interface RandomCell {
  k: number;
  subsets: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  top1Mean: number;
  kldMean: number;
  /** mean acc_norm and acc_mi over the first subsets (randomAccuracySubsets of them) */
  accNormMean?: number;
  accMiMean?: number;
  accuracySubsets: number;
}

export interface PruneStudyResult {
  nLayers: number;
  evalTokens: number;
  evalDocuments: number;
  calibTokens: number;
  densePerplexity: number;
  /** the task: how many and what random choice scores */
  task?: { tasks: number; chance: number };
  cells: StudyCell[];
  random: RandomCell[];
  /** one-shot removal orders, first removed first */
  orders: Record<string, string[]>;
  /** per-layer scores of the statistics metrics, and mean ‖h_in‖ */
  layerScores: { bi: number[]; angular: number[]; relmag: number[]; inputNorm: number[] };
}

/** Kendall's tau-b between two score vectors (ties handled). */
export function kendallTau(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let concordant = 0, discordant = 0, tiesA = 0, tiesB = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const da = Math.sign(a[i] - a[j]);
      const db = Math.sign(b[i] - b[j]);
      if (da === 0 && db === 0) continue;
      if (da === 0) tiesA++;
      else if (db === 0) tiesB++;
      else if (da === db) concordant++;
      else discordant++;
    }
  }
  const denom = Math.sqrt((concordant + discordant + tiesA) * (concordant + discordant + tiesB));
  return denom === 0 ? 0 : (concordant - discordant) / denom;
}

export function runPruneStudy(input: PruneStudyInput): PruneStudyResult {
  const { model, calib, evalDocs } = input;
  const L = model.config.nLayers;
  const maxK = Math.min(input.maxK ?? L - 1, L - 1);
  const nRandom = input.randomSubsets ?? 20;
  const nRandomAccuracy = input.randomAccuracySubsets ?? 5;
  const lossWindows = calib.slice(0, Math.max(1, input.lossWindows ?? 16));
  const say = input.onProgress ?? (() => {});
  const layer = (l: number): Unit => ({ layer: l, part: "layer" });

  say("dense model on the evaluation set");
  const dense = denseReference(model, evalDocs);
  const memo = new Map<string, Quality>();
  const tasks = input.tasks;
  const evalRemoval = (layers: number[], withTasks = true) => {
    const key = [...layers].sort((x, y) => x - y).join(",");
    let r = memo.get(key);
    if (!r || (withTasks && tasks && !r.accuracy)) {
      r = measureQuality(model, dense, withTasks ? tasks : undefined, skipOptions(layers.map(layer)));
      memo.set(key, r);
    }
    return r;
  };

  say("calibration statistics");
  const stats = collectLayerStats(model, calib, { includeBos: input.includeBos });
  const units = allUnits(L, "layer");
  const scores = {
    bi: statScores("bi", stats, units), angular: statScores("angular", stats, units), relmag: statScores("relmag", stats, units),
  };
  const orders: Record<string, number[]> = { bi: orderByScore(scores.bi), angular: orderByScore(scores.angular), relmag: orderByScore(scores.relmag) };
  const scoring = { model, windows: calib, includeBos: input.includeBos };
  say("iterative Block Influence");
  orders["bi-iterative"] = selectForRemoval("bi", maxK, scoring, true).map((u) => u.layer);
  say("perplexity with each layer dropped");
  orders.ppl = rankUnits("ppl", { model, windows: lossWindows }).order.map((u) => u.layer);
  say("iterative perplexity (SLEB)");
  orders["ppl-iterative"] = selectForRemoval("ppl", maxK, { model, windows: lossWindows, onProgress: say }, true).map((u) => u.layer);
  orders.last = Array.from({ length: L }, (_, i) => L - 1 - i);

  const cells: StudyCell[] = [];
  const random: RandomCell[] = [];
  const rand = mulberry32(input.seed ?? 1);
  for (let k = 0; k <= maxK; k++) {
    say(`k = ${k}`);
    const sets: [StudyMethod, number[]][] = [];
    for (const m of ["bi", "bi-iterative", "angular", "relmag", "ppl", "ppl-iterative", "last"] as const) sets.push([m, orders[m].slice(0, k)]);
    let best = 0;
    for (let s = 1; s + k <= L; s++) if (blockDistance(stats, s, k) < blockDistance(stats, best, k)) best = s;
    sets.push(["block", Array.from({ length: k }, (_, i) => best + i)]);
    for (const [method, layers] of sets) {
      const r = evalRemoval(layers);
      cells.push({ k, method, removed: layers.map(String), ...r });
    }
    cells.push(k === 0 ? { k, method: "laco", removed: [], ...evalRemoval([]) } : laco(k));

    const pp: number[] = [];
    const agree: number[] = [];
    const klds: number[] = [];
    const accs: TaskAccuracy[] = [];
    for (let s = 0; s < (k === 0 ? 1 : nRandom); s++) {
      const perm = Array.from({ length: L }, (_, i) => i);
      for (let i = L - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [perm[i], perm[j]] = [perm[j], perm[i]];
      }
      const r = evalRemoval(perm.slice(0, k), s < nRandomAccuracy);
      pp.push(r.perplexity);
      agree.push(r.top1);
      klds.push(r.kld);
      if (r.accuracy && s < nRandomAccuracy) accs.push(r.accuracy);
    }
    const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    const mean = avg(pp);
    const std = Math.sqrt(pp.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, pp.length - 1));
    random.push({
      k, subsets: pp.length, mean, std, min: Math.min(...pp), max: Math.max(...pp), top1Mean: avg(agree), kldMean: avg(klds),
      accNormMean: accs.length ? avg(accs.map((a) => a.accNorm.value)) : undefined, accMiMean: accs.length ? avg(accs.map((a) => a.accMi.value)) : undefined,
      accuracySubsets: accs.length,
    });
  }

  /** LaCo at k: try every merge position, keep the one with the lowest calibration loss, evaluate it. */
  function laco(k: number): StudyCell {
    let bestL = -1;
    let bestLoss = Infinity;
    for (let l = 0; l + k < L; l++) {
      const undo = collapseLayers(model, l, k);
      try {
        const loss = windowsNll(model, lossWindows, collapsedLayers(l, k).map(layer));
        if (loss < bestLoss) { bestLoss = loss; bestL = l; }
      } finally {
        undo();
      }
    }
    const undo = collapseLayers(model, bestL, k);
    try {
      const q = measureQuality(model, dense, tasks, skipOptions(collapsedLayers(bestL, k).map(layer)));
      return { k, method: "laco", removed: [`${bestL + 1}-${bestL + k}→${bestL}`], ...q };
    } finally {
      undo();
    }
  }

  return {
    nLayers: L,
    evalTokens: dense.tokens,
    evalDocuments: evalDocs.length,
    calibTokens: calib.reduce((a, w) => a + w.length, 0),
    densePerplexity: dense.perplexity,
    task: tasks?.length ? { tasks: tasks.length, chance: tasks.reduce((a, t) => a + 1 / t.endings.length, 0) / tasks.length } : undefined,
    cells,
    random,
    orders: Object.fromEntries(Object.entries(orders).map(([m, o]) => [m, o.map(String)])),
    layerScores: { ...scores, inputNorm: Array.from(stats.inputNorm) },
  };
}

/** BI per layer from each calibration source, their removal orders, and Kendall's tau between every pair. */
export function calibrationAblation(model: Model, sources: { name: string; windows: number[][] }[], includeBos = false):
  { sources: { name: string; tokens: number; bi: number[]; order: number[] }[]; tau: number[][] } {
  const out = sources.map((s) => {
    const bi = Array.from(blockInfluence(collectLayerStats(model, s.windows, { includeBos })));
    const order = orderByScore(bi);
    return { name: s.name, tokens: s.windows.reduce((a, w) => a + w.length, 0), bi, order };
  });
  const tau = out.map((a) => out.map((b) => kendallTau(a.bi, b.bi)));
  return { sources: out, tau };
}

export { unitName };
