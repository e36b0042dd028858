// The composition study: does layer removal add up with quantization? For k = 0 … ⌊L/3⌋ layers removed by Block
// Influence × {F32, Q8_0 RTN, Q8_0 GPTQ, Q4_0 RTN, Q4_0 GPTQ, Q4_1 GPTQ}, in both orders (prune then quantize;
// quantize then prune, with BI recomputed on the quantized model), it measures held-out perplexity, file size,
// wasm memory and decode speed, the interaction term, and how BI rankings move under quantization.
// Portable: returns data; commands/study.ts renders it. Not the pruning curves (prune/study.ts).
import { bytesSource, readGgufHeader } from "../gguf/reader.js";
import { writeGgufBytes } from "../gguf/writer.js";
import { quantizeGptq } from "../gptq/model.js";
import { Model } from "../model/model.js";
import { evaluateDocuments } from "../prune/evaluate.js";
import { orderByScore } from "../prune/metrics.js";
import { removeLayers } from "../prune/remove.js";
import { blockInfluence, collectLayerStats } from "../prune/stats.js";
import { kendallTau } from "../prune/study.js";
import { formatByName } from "../quant/formats.js";
import { quantizeModel } from "../quant/quantize.js";
import { argmax } from "../sampler.js";

export interface QuantConfig {
  name: string;
  format?: "Q8_0" | "Q4_0" | "Q4_1";
  method?: "rtn" | "gptq";
}

export const COMPOSE_CONFIGS: QuantConfig[] = [
  { name: "F32" },
  { name: "Q8_0 RTN", format: "Q8_0", method: "rtn" },
  { name: "Q8_0 GPTQ", format: "Q8_0", method: "gptq" },
  { name: "Q4_0 RTN", format: "Q4_0", method: "rtn" },
  { name: "Q4_0 GPTQ", format: "Q4_0", method: "gptq" },
  { name: "Q4_1 GPTQ", format: "Q4_1", method: "gptq" },
];

export type ComposeOrder = "prune→quantize" | "quantize→prune";

export interface ComposeCell {
  k: number;
  config: string;
  order: ComposeOrder;
  removed: number[];
  perplexity: number;
  fileBytes: number;
  /** wasm memory with the model loaded and one evaluation context */
  memoryBytes: number;
  decodeTokensPerSecond: number;
  /** Δppl(both) − Δppl(prune alone) − Δppl(quantize alone), Δ against dense F32 */
  interaction: number;
  /** on the size/perplexity Pareto front of all cells */
  pareto: boolean;
}

export interface ComposeInput {
  /** the dense model's GGUF bytes */
  bytes: Uint8Array;
  name?: string;
  calib: number[][];
  evalDocs: number[][];
  /** largest k (default ⌊L/3⌋) */
  maxK?: number;
  configs?: QuantConfig[];
  onProgress?: (note: string) => void;
}

export interface ComposeResult {
  nLayers: number;
  evalTokens: number;
  denseOrder: number[];
  /** BI removal order computed on each quantized model, and Kendall's tau of its BI scores with the dense ones */
  rankings: { config: string; order: number[]; tau: number; sameFirst: number }[];
  cells: ComposeCell[];
}

function quantize(bytes: Uint8Array, cfg: QuantConfig, calib: number[][]): Uint8Array {
  if (!cfg.format) return bytes;
  const file = readGgufHeader(bytes);
  const target = formatByName(cfg.format)!;
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

function biScores(model: Model, calib: number[][]): number[] {
  return Array.from(blockInfluence(collectLayerStats(model, calib)));
}

/**
 * Decode speed: 64 greedy tokens after an 8-token prompt, the best of 5 runs after 3 warm-ups (the kernels tier up
 * to optimized code in the first runs of a process; on a shared machine the fastest run is the least disturbed).
 */
function decodeSpeed(model: Model, prompt: number[]): number {
  const runs: number[] = [];
  const ctx = model.acquireContext({ contextSize: 128 });
  try {
    for (let r = 0; r < 8; r++) {
      ctx.reset();
      let logits = ctx.eval(prompt);
      const t0 = performance.now();
      for (let i = 0; i < 64; i++) logits = ctx.eval([argmax(logits)]);
      if (r >= 3) runs.push(64 / ((performance.now() - t0) / 1000));
    }
  } finally {
    model.releaseContext(ctx);
  }
  return Math.max(...runs);
}

export function runComposeStudy(input: ComposeInput): ComposeResult {
  const say = input.onProgress ?? (() => {});
  const dense = Model.load(input.bytes, { name: input.name });
  const L = dense.config.nLayers;
  const maxK = Math.min(input.maxK ?? Math.floor(L / 3), L - 1);
  const configs = input.configs ?? COMPOSE_CONFIGS;
  const prompt = input.evalDocs[0].slice(0, 8);
  say("BI on the dense model");
  const denseScores = biScores(dense, input.calib);
  const denseOrder = orderByScore(denseScores);

  const raw: Omit<ComposeCell, "interaction" | "pareto">[] = [];
  const measure = (bytes: Uint8Array, k: number, config: string, order: ComposeOrder, removed: number[]) => {
    const model = Model.load(bytes, { name: `${config} −${k}` });
    const e = evaluateDocuments(model, input.evalDocs);
    raw.push({
      k, config, order, removed, perplexity: e.perplexity, fileBytes: bytes.length,
      memoryBytes: model.memoryBytes, decodeTokensPerSecond: decodeSpeed(model, prompt),
    });
  };

  const rankings: ComposeResult["rankings"] = [];
  for (const cfg of configs) {
    say(`${cfg.name}: quantize the whole model`);
    const qFull = quantize(input.bytes, cfg, input.calib);
    const qModel = Model.load(qFull);
    const qScores = cfg.format ? biScores(qModel, input.calib) : denseScores;
    const qOrder = orderByScore(qScores);
    if (cfg.format) {
      let same = 0;
      while (same < L && qOrder[same] === denseOrder[same]) same++;
      rankings.push({ config: cfg.name, order: qOrder, tau: kendallTau(denseScores, qScores), sameFirst: same });
    }
    for (let k = 0; k <= maxK; k++) {
      say(`${cfg.name}, k = ${k}`);
      if (k === 0) {
        measure(qFull, 0, cfg.name, "prune→quantize", []);
        continue;
      }
      const layers = denseOrder.slice(0, k);
      measure(quantize(prune(input.bytes, layers), cfg, input.calib), k, cfg.name, "prune→quantize", layers);
      if (cfg.format) measure(prune(qFull, qOrder.slice(0, k)), k, cfg.name, "quantize→prune", qOrder.slice(0, k));
    }
  }

  const base = raw.find((c) => c.k === 0 && c.config === configs[0].name)!.perplexity;
  const cells: ComposeCell[] = raw.map((c) => {
    const pruneAlone = raw.find((x) => x.k === c.k && x.config === configs[0].name)!.perplexity;
    const quantAlone = raw.find((x) => x.k === 0 && x.config === c.config)!.perplexity;
    return { ...c, interaction: (c.perplexity - base) - (pruneAlone - base) - (quantAlone - base), pareto: false };
  });
  for (const c of cells) {
    c.pareto = !cells.some((o) => o !== c && o.fileBytes <= c.fileBytes && o.perplexity <= c.perplexity && (o.fileBytes < c.fileBytes || o.perplexity < c.perplexity));
  }
  return { nLayers: L, evalTokens: cells.length ? evaluateTokens(input.evalDocs, dense) : 0, denseOrder, rankings, cells };
}

function evaluateTokens(docs: number[][], model: Model): number {
  const max = Math.min(512, model.config.trainContext);
  return docs.reduce((a, d) => a + Math.max(0, Math.min(d.length, max) - 1), 0);
}
