// The composition study: does layer removal add up with quantization, and does least-squares healing survive it?
// For k = 0 … ⌊L/2⌋ layers removed by Block Influence, with and without healing (prune/heal.ts), × {F32, Q8_0,
// Q4_0 RTN, Q4_0 GPTQ, Q4_K_M RTN, Q4_K_M GPTQ}, in both orders (prune then quantize; quantize then prune, with BI
// and the heal fit on the quantized model), it measures held-out perplexity, KL divergence from the dense F32
// model, task accuracy, file size and decode speed (interleaved rounds at the end), the interaction term, how BI
// rankings move under quantization, and what the calibration text changes (ranking overlap and the resulting
// accuracy). Portable: returns data; commands/study.ts renders it. Not the pruning curves (prune/study.ts).
import { bytesSource, readGgufHeader } from "../gguf/reader.js";
import { writeGgufBytes } from "../gguf/writer.js";
import { quantizeGptq } from "../gptq/model.js";
import { Model } from "../model/model.js";
import { removeAndHeal, type HealedRun } from "../prune/heal.js";
import { orderByScore } from "../prune/metrics.js";
import { removeLayers } from "../prune/remove.js";
import { blockInfluence, collectLayerStats } from "../prune/stats.js";
import { kendallTau } from "../prune/study.js";
import { formatByName } from "../quant/formats.js";
import { quantizeModel, type QuantTarget } from "../quant/quantize.js";
import { recipeByName } from "../quant/recipe.js";
import type { ChoiceTask } from "../quality/choice.js";
import { argmax } from "../sampler.js";
import { denseReference, measureQuality, type Quality } from "./measure.js";

export interface QuantConfig {
  name: string;
  /** the block format every quantizable matrix gets, or llama.cpp's Q4_K_M mix; none: the dense F32 model */
  format?: "Q8_0" | "Q4_0" | "Q4_K_M";
  method?: "rtn" | "gptq";
  /** when set, this configuration is not run, for this reason */
  pending?: string;
}

export const COMPOSE_CONFIGS: QuantConfig[] = [
  { name: "F32" },
  { name: "Q8_0", format: "Q8_0", method: "rtn" },
  { name: "Q4_0 RTN", format: "Q4_0", method: "rtn" },
  { name: "Q4_0 GPTQ", format: "Q4_0", method: "gptq" },
  { name: "Q4_K_M RTN", format: "Q4_K_M", method: "rtn" },
  { name: "Q4_K_M GPTQ", format: "Q4_K_M", method: "gptq" },
];

export type ComposeOrder = "prune→quantize" | "quantize→prune";
export type Removal = "BI" | "BI+heal";

/** Quality against the dense F32 model: Δ(both) − Δ(prune alone) − Δ(quantize alone), each Δ from dense F32. */
export interface Interaction {
  perplexity: number;
  kld: number;
  /** in accuracy points (fractions), when a task was given */
  accMi?: number;
}

export interface ComposeCell extends Quality {
  k: number;
  config: string;
  removal: Removal;
  order: ComposeOrder;
  removed: number[];
  fileBytes: number;
  /** decode tok/s of a file of this format and k (the median of interleaved rounds; healing and order do not change it) */
  decodeTokensPerSecond: number;
  /** undefined for F32 cells and k = 0 */
  interaction?: Interaction;
  /** on the size/perplexity Pareto front of all cells */
  pareto: boolean;
  /** how healing fitted each run (BI+heal cells) */
  heal?: Pick<HealedRun, "start" | "end" | "anchor" | "residualBefore" | "residualAfter" | "skipped">[];
}

/** A measured cell before the study-wide figures (interaction, Pareto front, decode speed) are known. */
export type MeasuredCell = Omit<ComposeCell, "interaction" | "pareto" | "decodeTokensPerSecond">;

/** What a run has measured so far: a later run with the same settings continues from it. */
export interface ComposeCheckpoint {
  cells: MeasuredCell[];
  rankings: ComposeResult["rankings"];
  ablation?: CalibrationAblation["cells"];
}

function cellKey(c: Pick<MeasuredCell, "k" | "config" | "removal" | "order">): string {
  return `${c.k}|${c.config}|${c.k === 0 ? "" : `${c.removal}|${c.order}`}`;
}

export interface ComposeInput {
  /** the dense model's GGUF bytes (F32) */
  bytes: Uint8Array;
  name?: string;
  /** calibration windows for BI and GPTQ */
  calib: number[][];
  /** calibration windows for the heal fit (default: calib) */
  healCalib?: number[][];
  evalDocs: number[][];
  tasks?: ChoiceTask[];
  /** other calibration texts for the ablation (BI from each; the first is usually calib's own text) */
  ablation?: { name: string; windows: number[][] }[];
  /** largest k (default ⌊L/2⌋) */
  maxK?: number;
  configs?: QuantConfig[];
  /** interleaved decode rounds (default 7) */
  decodeRounds?: number;
  /** cells (and rankings, ablation cells) a previous run with the same settings measured */
  resume?: ComposeCheckpoint;
  /** called after every measurement with everything measured so far */
  onCheckpoint?: (c: ComposeCheckpoint) => void;
  onProgress?: (note: string) => void;
}

export interface CalibrationAblation {
  sources: { name: string; tokens: number; order: number[]; bi: number[] }[];
  /** Kendall's tau-b between every pair of sources' BI scores */
  tau: number[][];
  /** per k: |removed set of a ∩ removed set of b| / k for every pair (index pairs as in tau) */
  overlap: { k: number; pairs: number[][] }[];
  /** F32, BI order of each source, at each k */
  cells: { source: string; k: number; removed: number[]; quality: Quality }[];
}

export interface ComposeResult {
  nLayers: number;
  evalTokens: number;
  evalDocuments: number;
  task?: { tasks: number; chance: number };
  denseOrder: number[];
  /** BI removal order computed on each quantized model, and Kendall's tau of its BI scores with the dense ones */
  rankings: { config: string; order: number[]; tau: number; sameFirst: number; bi: number[] }[];
  cells: ComposeCell[];
  pending: { config: string; reason: string }[];
  ablation?: CalibrationAblation;
  decode: { rounds: number; files: number; promptTokens: number; tokens: number };
}

function quantize(bytes: Uint8Array, cfg: QuantConfig, calib: number[][]): Uint8Array {
  if (!cfg.format) return bytes;
  const file = readGgufHeader(bytes);
  // Q4_K_M: llama-quantize's tensor mix (quant/recipe.ts), with its fall-backs for rows that hold no super-block
  const target: QuantTarget = cfg.format === "Q4_K_M" ? recipeByName("q4_k_m")! : formatByName(cfg.format)!;
  const r = cfg.method === "gptq"
    ? quantizeGptq(file, bytesSource(bytes), calib, target, { method: "gptq" })
    : quantizeModel(file, bytesSource(bytes), target);
  return writeGgufBytes(r.spec, r.tensorData);
}

function prune(bytes: Uint8Array, layers: number[]): Uint8Array {
  if (layers.length === 0) return bytes;
  const r = removeLayers(readGgufHeader(bytes), bytesSource(bytes), { layers });
  return writeGgufBytes(r.spec, r.tensorData);
}

/** Remove and heal, the fit made on `model` (the same weights as bytes). */
function pruneHeal(bytes: Uint8Array, model: Model, layers: number[], calib: number[][]): { bytes: Uint8Array; runs: HealedRun[] } {
  const r = removeAndHeal(readGgufHeader(bytes), bytesSource(bytes), model, calib, layers);
  return { bytes: writeGgufBytes(r.spec, r.tensorData), runs: r.runs };
}

function biScores(model: Model, calib: number[][]): number[] {
  return Array.from(blockInfluence(collectLayerStats(model, calib)));
}

/** tok/s of 64 greedy tokens after the prompt: the best of 3 runs after 2 warm-ups, in one round. */
function decodeOnce(model: Model, prompt: number[], tokens: number): number {
  const ctx = model.createContext({ contextSize: prompt.length + tokens + 1 });
  let best = 0;
  for (let r = 0; r < 5; r++) {
    ctx.reset();
    let logits = ctx.eval(prompt);
    const t0 = performance.now();
    for (let i = 0; i < tokens; i++) logits = ctx.eval([argmax(logits)]);
    if (r >= 2) best = Math.max(best, tokens / ((performance.now() - t0) / 1000));
  }
  return best;
}

export function runComposeStudy(input: ComposeInput): ComposeResult {
  const say = input.onProgress ?? (() => {});
  const dense = Model.load(input.bytes, { name: input.name });
  const L = dense.config.nLayers;
  const maxK = Math.min(input.maxK ?? Math.floor(L / 2), L - 1);
  const configs = input.configs ?? COMPOSE_CONFIGS;
  const healCalib = input.healCalib ?? input.calib;
  const tasks = input.tasks;
  const decodePrompt = input.evalDocs[0].slice(0, 8);
  const decodeTokens = 64;

  say("dense model: reference logits, BI");
  const ref = denseReference(dense, input.evalDocs);
  const denseScores = biScores(dense, input.calib);
  const denseOrder = orderByScore(denseScores);

  const raw: MeasuredCell[] = [];
  const previous = new Map((input.resume?.cells ?? []).map((c) => [cellKey(c), c]));
  const rankings: ComposeResult["rankings"] = [...(input.resume?.rankings ?? [])];
  const checkpoint = () => input.onCheckpoint?.({ cells: raw, rankings });
  /** measure a cell, or take it from the checkpoint; `build` makes its file only when it has to be measured */
  const cell = (k: number, cfg: QuantConfig, removal: Removal, order: ComposeOrder, removed: number[], build: () => { bytes: Uint8Array; runs?: HealedRun[] }) => {
    const done = previous.get(cellKey({ k, config: cfg.name, removal, order }));
    if (done) { raw.push(done); return; }
    const { bytes, runs } = build();
    say(`${cfg.name}, k = ${k}, ${removal}, ${order}: measuring`);
    const model = Model.load(bytes, { name: `${cfg.name} −${k}` });
    raw.push({
      k, config: cfg.name, removal, order, removed, fileBytes: bytes.length, ...measureQuality(model, ref, tasks),
      heal: runs?.map(({ start, end, anchor, residualBefore, residualAfter, skipped }) => ({ start, end, anchor, residualBefore, residualAfter, skipped })),
    });
    checkpoint();
  };

  // prune→quantize starts from the dense model's removals, shared by every configuration (made when first needed)
  const memo = <T>(f: (k: number) => T) => { const m = new Map<number, T>(); return (k: number) => { if (!m.has(k)) m.set(k, f(k)); return m.get(k)!; }; };
  const pruned = memo((k) => prune(input.bytes, denseOrder.slice(0, k)));
  const healed = memo((k) => { say(`dense, k = ${k}: healing`); return pruneHeal(input.bytes, dense, denseOrder.slice(0, k), healCalib); });

  const pending: ComposeResult["pending"] = [];
  for (const cfg of configs) {
    if (cfg.pending) { pending.push({ config: cfg.name, reason: cfg.pending }); continue; }
    let qFull: Uint8Array | undefined;
    const whole = () => { if (!qFull) { say(`${cfg.name}: the whole model`); qFull = quantize(input.bytes, cfg, input.calib); } return qFull; };
    cell(0, cfg, "BI", "prune→quantize", [], () => ({ bytes: whole() }));
    let qModel: Model | undefined;
    const quantized = () => (qModel ??= cfg.format ? Model.load(whole(), { name: cfg.name }) : dense);
    if (cfg.format && !rankings.some((r) => r.config === cfg.name)) {
      const qScores = biScores(quantized(), input.calib);
      const qOrder = orderByScore(qScores);
      let same = 0;
      while (same < L && qOrder[same] === denseOrder[same]) same++;
      rankings.push({ config: cfg.name, order: qOrder, tau: kendallTau(denseScores, qScores), sameFirst: same, bi: qScores });
      checkpoint();
    }
    const qOrder = cfg.format ? rankings.find((r) => r.config === cfg.name)!.order : denseOrder;
    for (let k = 1; k <= maxK; k++) {
      const layers = denseOrder.slice(0, k);
      cell(k, cfg, "BI", "prune→quantize", layers, () => ({ bytes: quantize(pruned(k), cfg, input.calib) }));
      cell(k, cfg, "BI+heal", "prune→quantize", layers, () => { const h = healed(k); return { bytes: quantize(h.bytes, cfg, input.calib), runs: h.runs }; });
      if (!cfg.format) continue;
      const qLayers = qOrder.slice(0, k);
      cell(k, cfg, "BI", "quantize→prune", qLayers, () => ({ bytes: prune(whole(), qLayers) }));
      cell(k, cfg, "BI+heal", "quantize→prune", qLayers, () => pruneHeal(whole(), quantized(), qLayers, healCalib));
    }
  }

  // interaction and the Pareto front
  const f32 = configs[0].name;
  const find = (k: number, config: string, removal: Removal) => raw.find((x) => x.k === k && x.config === config && (k === 0 || x.removal === removal) && x.order === "prune→quantize");
  const base = find(0, f32, "BI")!;
  const cells: ComposeCell[] = raw.map((c) => {
    let interaction: Interaction | undefined;
    if (c.k > 0 && c.config !== f32) {
      const p = find(c.k, f32, c.removal)!, qa = find(0, c.config, "BI")!;
      const term = (pick: (x: Quality) => number) => (pick(c) - pick(base)) - (pick(p) - pick(base)) - (pick(qa) - pick(base));
      interaction = { perplexity: term((x) => x.perplexity), kld: term((x) => x.kld) };
      if (c.accuracy) interaction.accMi = term((x) => x.accuracy!.accMi.value);
    }
    return { ...c, decodeTokensPerSecond: 0, interaction, pareto: false };
  });
  for (const c of cells) {
    c.pareto = !cells.some((o) => o !== c && o.fileBytes <= c.fileBytes && o.perplexity <= c.perplexity && (o.fileBytes < c.fileBytes || o.perplexity < c.perplexity));
  }

  // the calibration-set ablation, on the dense F32 model
  let ablation: CalibrationAblation | undefined;
  if (input.ablation?.length) {
    const sources = input.ablation.map((s) => {
      say(`ablation: BI from ${s.name}`);
      const bi = biScores(dense, s.windows);
      return { name: s.name, tokens: s.windows.reduce((a, w) => a + w.length, 0), bi, order: orderByScore(bi) };
    });
    const tau = sources.map((a) => sources.map((b) => kendallTau(a.bi, b.bi)));
    const overlap: CalibrationAblation["overlap"] = [];
    const memo = new Map<string, Quality>();
    // the F32 BI cells are already measured removals of the dense model
    for (const c of raw) if (c.config === f32 && c.removal === "BI") memo.set([...c.removed].sort((x, y) => x - y).join(","), c);
    for (const c of input.resume?.ablation ?? []) memo.set([...c.removed].sort((x, y) => x - y).join(","), c.quality);
    const abl: CalibrationAblation["cells"] = [];
    for (let k = 1; k <= maxK; k++) {
      overlap.push({ k, pairs: sources.map((a) => sources.map((b) => a.order.slice(0, k).filter((l) => b.order.slice(0, k).includes(l)).length / k)) });
      for (const s of sources) {
        const removed = s.order.slice(0, k);
        const key = [...removed].sort((x, y) => x - y).join(",");
        if (!memo.has(key)) {
          say(`ablation: ${s.name}, k = ${k}`);
          memo.set(key, measureQuality(dense, ref, tasks, { skipLayers: new Set(removed) }));
        }
        abl.push({ source: s.name, k, removed, quality: memo.get(key)! });
        input.onCheckpoint?.({ cells: raw, rankings, ablation: abl });
      }
    }
    ablation = { sources, tau, overlap, cells: abl };
  }

  // decode speed: one file per (format, k), pruned by the dense BI order and rounded to nearest (healing, order and
  // method change weights, not shapes or types), every file once per round, rounds interleaved so that a busy
  // spell slows them all alike
  const rounds = input.decodeRounds ?? 7;
  const shapes = new Map<string, Uint8Array>();
  const rtnWhole = new Map<string, Uint8Array>();
  for (const c of cells) {
    const format = configs.find((x) => x.name === c.config)!.format;
    const shape = `${format ?? "F32"}|${c.k}`;
    if (shapes.has(shape)) continue;
    let whole = input.bytes;
    if (format) {
      if (!rtnWhole.has(format)) rtnWhole.set(format, quantize(input.bytes, { name: format, format, method: "rtn" }, []));
      whole = rtnWhole.get(format)!;
    }
    shapes.set(shape, prune(whole, denseOrder.slice(0, c.k)));
  }
  const speeds = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    say(`decode speed: round ${r + 1} of ${rounds}`);
    for (const [shape, bytes] of shapes) {
      const v = speeds.get(shape) ?? [];
      v.push(decodeOnce(Model.load(bytes), decodePrompt, decodeTokens));
      speeds.set(shape, v);
    }
  }
  const medianOf = (v: number[]) => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  for (const c of cells) {
    const cfg = configs.find((x) => x.name === c.config)!;
    c.decodeTokensPerSecond = medianOf(speeds.get(`${cfg.format ?? "F32"}|${c.k}`)!);
  }

  return {
    nLayers: L, evalTokens: ref.tokens, evalDocuments: input.evalDocs.length,
    task: tasks?.length ? { tasks: tasks.length, chance: tasks.reduce((a, t) => a + 1 / t.endings.length, 0) / tasks.length } : undefined,
    denseOrder, rankings, cells, pending, ablation,
    decode: { rounds, files: shapes.size, promptTokens: decodePrompt.length, tokens: decodeTokens },
  };
}
