// Ranking layers (or half-layers) for removal: ShortGPT's Block Influence and the alternatives its reviewers asked
// about (angular distance, relative magnitude, perplexity when dropped, Gromov et al.'s block distance, the last
// layers, random choice), each one-shot or iterative (remove one, rescore, repeat, as SLEB does).
// Not the file surgery (remove.ts) and not evaluation (evaluate.ts).
import type { ForwardOptions } from "../model/forward.js";
import type { Model } from "../model/model.js";
import { logSoftmaxAt } from "../perplexity.js";
import { mulberry32 } from "../random.js";
import { blockDistance, collectLayerStats, type LayerStats, type StatsOptions } from "./stats.js";
import { STUDY_CACHE } from "../model/forward.js";

export const METRICS = ["bi", "angular", "relmag", "ppl", "block", "last", "random"] as const;
export type Metric = (typeof METRICS)[number];
export type Granularity = "layer" | "sublayer";

export const METRIC_DESCRIPTIONS: Record<Metric, string> = {
  bi: "Block Influence, 1 − mean cos(h_in, h_out) (ShortGPT)",
  angular: "mean angular distance arccos(cos)/π between h_in and h_out",
  relmag: "relative magnitude ‖f(x)‖/‖x+f(x)‖ of the layer's update",
  ppl: "calibration perplexity with the unit removed",
  block: "Gromov et al.: the contiguous block of k layers with the smallest angular distance between its input and output",
  last: "the last k layers",
  random: "a random choice (seeded)",
};

/** A removable unit: a whole layer, or its attention or FFN half. */
export interface Unit {
  layer: number;
  part: "layer" | "attn" | "ffn";
}

export function unitName(u: Unit): string {
  return u.part === "layer" ? `${u.layer}` : `${u.layer}.${u.part}`;
}

export function parseMetric(name: string): Metric {
  if (!(METRICS as readonly string[]).includes(name)) throw new Error(`unknown metric "${name}": expected one of ${METRICS.join(", ")}`);
  return name as Metric;
}

export interface ScoringInput {
  /** the model in memory; scoring by statistics may instead give `collect` (and nLayers) */
  model?: Model;
  /** the statistics pass to use instead of collectLayerStats on `model` (collectLayerStatsStream, layer by layer); pairs: Gromov's block distance needs every pair */
  collect?: (opts: StatsOptions & { pairs?: boolean }) => LayerStats;
  /** layers, when there is no model */
  nLayers?: number;
  /** calibration windows (token ids) */
  windows: number[][];
  granularity?: Granularity;
  includeBos?: boolean;
  /** seed for "random" */
  seed?: number;
  onProgress?: (note: string) => void;
}

function layersOf(input: ScoringInput): number {
  const L = input.model?.config.nLayers ?? input.nLayers;
  if (L === undefined) throw new Error("scoring needs a model or its layer count");
  return L;
}

function modelOf(input: ScoringInput, metric: string): Model {
  if (!input.model) throw new Error(`--metric ${metric} runs the whole model; it needs the model in memory`);
  return input.model;
}

/** the statistics pass: the caller's (layer by layer), or collectLayerStats on the model in memory */
function statsOf(input: ScoringInput, opts: StatsOptions & { pairs?: boolean }): LayerStats {
  return input.collect ? input.collect(opts) : collectLayerStats(modelOf(input, "bi"), input.windows, opts);
}

/** Every unit of the model at a granularity, in layer order. */
export function allUnits(nLayers: number, granularity: Granularity): Unit[] {
  const out: Unit[] = [];
  for (let l = 0; l < nLayers; l++) {
    if (granularity === "layer") out.push({ layer: l, part: "layer" });
    else out.push({ layer: l, part: "attn" }, { layer: l, part: "ffn" });
  }
  return out;
}

/** Indices of `scores` from lowest to highest (removed first first); ties keep index order. */
export function orderByScore(scores: ArrayLike<number>): number[] {
  return Array.from(scores, (v, i) => ({ v, i })).sort((a, b) => a.v - b.v || a.i - b.i).map((e) => e.i);
}

/** Forward options that remove a set of units. */
export function skipOptions(units: Iterable<Unit>): { skipLayers: Set<number>; skipAttention: Set<number>; skipFfn: Set<number> } {
  const skipLayers = new Set<number>();
  const skipAttention = new Set<number>();
  const skipFfn = new Set<number>();
  for (const u of units) (u.part === "layer" ? skipLayers : u.part === "attn" ? skipAttention : skipFfn).add(u.layer);
  return { skipLayers, skipAttention, skipFfn };
}

/** Mean negative log-likelihood of the windows' next tokens (positions 1 … t−1 predicted), with units removed. */
export function windowsNll(model: Model, windows: number[][], removed: Iterable<Unit> = []): number {
  const vocab = model.config.vocabSize;
  const t = Math.max(...windows.map((w) => w.length));
  const ctx = model.createContext({ contextSize: t, batchSize: Math.min(t, 64), ...STUDY_CACHE });
  const skip = skipOptions(removed);
  let nll = 0;
  let n = 0;
  for (const w of windows) {
    ctx.reset();
    const logits = ctx.eval(w, { ...skip, logits: "all" });
    for (let j = 0; j + 1 < w.length; j++) {
      nll -= logSoftmaxAt(logits, j * vocab, vocab, w[j + 1]);
      n++;
    }
  }
  return nll / n;
}

/** Per-unit scores from one statistics pass; lower means less change, removed first. */
export function statScores(metric: "bi" | "angular" | "relmag" | "block", stats: LayerStats, units: Unit[]): number[] {
  const B = stats.nLayers + 1;
  return units.map((u) => {
    const l = u.layer;
    if (u.part === "layer") {
      switch (metric) {
        case "bi": return 1 - stats.boundaryCos[l * B + l + 1];
        case "angular": case "block": return stats.boundaryAngular[l * B + l + 1];
        case "relmag": return stats.relMagnitude[l];
      }
    }
    const attn = u.part === "attn";
    switch (metric) {
      case "bi": return 1 - (attn ? stats.attnCos[l] : stats.ffnCos[l]);
      case "angular": return attn ? stats.attnAngular[l] : stats.ffnAngular[l];
      case "relmag": return attn ? stats.attnRelMagnitude[l] : stats.ffnRelMagnitude[l];
      case "block": throw new Error("the block metric removes contiguous whole layers; use --granularity layer");
    }
  });
}

export interface Ranking {
  metric: Metric;
  granularity: Granularity;
  units: Unit[];
  /** score per unit (same order as units); for "last" and "random", the position in the removal order */
  scores: number[];
  /** units in removal order (first removed first); for "block" this is only the 1-layer order */
  order: Unit[];
  /** mean ‖h‖ entering each layer (from the statistics pass), when one was made */
  inputNorm?: number[];
  stats?: LayerStats;
}

/** Scores that are NaN or infinite: the model's activations are not finite on this text, so nothing can be ranked. */
export class NonFiniteScoresError extends Error {
  constructor(readonly metric: Metric, readonly units: string[]) {
    super(`the ${metric} scores of units ${units.slice(0, 8).join(", ")}${units.length > 8 ? ` and ${units.length - 8} more` : ""} are not finite (NaN or infinity): the model's activations are not finite on this text (NaN or Inf weights, or values that overflow), so no removal order can be derived`);
    this.name = "NonFiniteScoresError";
  }
}

function checkFinite(metric: Metric, units: Unit[], scores: ArrayLike<number>): void {
  const bad = units.filter((_, i) => !Number.isFinite(scores[i])).map(unitName);
  if (bad.length > 0) throw new NonFiniteScoresError(metric, bad);
}

/** Score every unit once and order them for removal. Throws NonFiniteScoresError rather than rank NaN. */
export function rankUnits(metric: Metric, input: ScoringInput, removed: Unit[] = []): Ranking {
  const { windows } = input;
  const granularity = input.granularity ?? "layer";
  const L = layersOf(input);
  const isRemoved = (u: Unit) => removed.some((r) => r.layer === u.layer && (r.part === u.part || r.part === "layer"));
  const units = allUnits(L, granularity).filter((u) => !isRemoved(u));
  let scores: number[];
  let stats: LayerStats | undefined;
  switch (metric) {
    case "bi": case "angular": case "relmag": case "block": {
      stats = statsOf(input, { includeBos: input.includeBos, ...skipOptions(removed), pairs: metric === "block" });
      scores = statScores(metric, stats, units);
      break;
    }
    case "ppl": {
      scores = units.map((u, i) => {
        input.onProgress?.(`ppl without ${unitName(u)} (${i + 1}/${units.length})`);
        return Math.exp(windowsNll(modelOf(input, "ppl"), windows, [...removed, u]));
      });
      break;
    }
    case "last":
      scores = units.map((_, i) => units.length - i);
      break;
    case "random": {
      const rand = mulberry32(input.seed ?? 0);
      const perm = units.map((_, i) => i);
      for (let i = perm.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [perm[i], perm[j]] = [perm[j], perm[i]];
      }
      scores = new Array(units.length);
      perm.forEach((unitIndex, pos) => { scores[unitIndex] = pos; });
      break;
    }
  }
  checkFinite(metric, units, scores);
  const order = orderByScore(scores).map((i) => units[i]);
  return { metric, granularity, units, scores, order, inputNorm: stats ? Array.from(stats.inputNorm) : undefined, stats };
}

/**
 * The k units to remove. One-shot: the k lowest scores (for "block", the best contiguous block of k layers).
 * Iterative: remove the lowest, rescore the model without it, repeat k times.
 */
export function selectForRemoval(metric: Metric, k: number, input: ScoringInput, iterative = false, ranking?: Ranking): Unit[] {
  const L = layersOf(input);
  const granularity = input.granularity ?? "layer";
  const total = granularity === "layer" ? L : 2 * L;
  if (!(Number.isInteger(k) && k >= 0)) throw new Error(`invalid number of units to remove: ${k}`);
  if (k >= total) {
    throw new Error(`cannot remove ${k} ${granularity === "layer" ? "layers" : "half-layers"}: the model has ${total} and at least one must remain`);
  }
  if (k === 0) return [];
  if (metric === "block") {
    if (granularity !== "layer") throw new Error("the block metric removes contiguous whole layers; use --granularity layer");
    const stats = ranking?.stats ?? statsOf(input, { includeBos: input.includeBos, pairs: true });
    const distances = Array.from({ length: L - k + 1 }, (_, s) => blockDistance(stats, s, k));
    checkFinite(metric, distances.map((_, s) => ({ layer: s, part: "layer" as const })), distances);
    let best = 0;
    for (let s = 1; s + k <= L; s++) if (distances[s] < distances[best]) best = s;
    return Array.from({ length: k }, (_, i) => ({ layer: best + i, part: "layer" as const }));
  }
  if (!iterative || metric === "last" || metric === "random") {
    return (ranking ?? rankUnits(metric, input)).order.slice(0, k);
  }
  const removed: Unit[] = [];
  for (let i = 0; i < k; i++) {
    input.onProgress?.(`iterative ${metric}: removing unit ${i + 1} of ${k}`);
    const r = i === 0 && ranking ? ranking : rankUnits(metric, input, removed);
    removed.push(r.order[0]);
  }
  return removed;
}
