// The `bi` and `prune` commands: score layers on calibration text and remove the least important ones into a new
// GGUF (temp file, then rename). Node-only; the work is done by src/prune/.
import { Command, Option } from "commander";
import { FileSource, writeFileAtomic, writeTextFileAtomic } from "../node/files.js";
import { checkModelFile, nonFiniteTensors } from "../model/check.js";
import { loadModelFile, readGgufFileHeader } from "../node/load.js";
import { ProgressBar } from "../node/progress.js";
import { ggufChunks } from "../gguf/writer.js";
import { METRIC_DESCRIPTIONS, METRICS, NonFiniteScoresError, parseMetric, rankUnits, selectForRemoval, unitName, type Granularity, type Metric, type Ranking, type ScoringInput, type Unit } from "../prune/metrics.js";
import { collectLayerStatsStream } from "../prune/stats.js";
import { tokenizerFromGguf } from "../tokenizer/index.js";
import { removeLayers } from "../prune/remove.js";
import { HEAL_DEFAULTS, HEAL_METHODS, removeAndHeal, type HealedRun, type HealMethod } from "../prune/heal.js";
import { barChart } from "../report/svg.js";
import { calibrationWindows, checkFile, int, intList, mib, noteThreads, num, startThreads, threadsAsked, threadsOption } from "./common.js";
import { threadedRuntime } from "../threads/pool.js";

export const PRUNE_DEFAULTS = { window: 128, tokens: 8192, metric: "bi", granularity: "layer" } as const;

interface ScoringFlags {
  calib: string;
  metric: string;
  granularity: Granularity;
  window: number;
  tokens: number;
  includeBos?: boolean;
  iterative?: boolean;
  seed: number;
  threads?: number;
}

function addScoringOptions(cmd: Command, calibRequired: boolean): Command {
  const calib = new Option("--calib <file>", "calibration text (its first 80% of documents is used)");
  if (calibRequired) calib.makeOptionMandatory();
  return cmd
    .addOption(calib)
    .addOption(new Option("--metric <name>", `how layers are scored: ${METRICS.join(", ")}`).default(PRUNE_DEFAULTS.metric))
    .addOption(new Option("--granularity <g>", "score whole layers, or attention and FFN halves separately").choices(["layer", "sublayer"]).default(PRUNE_DEFAULTS.granularity))
    .option("--window <n>", "calibration window length in tokens", int("--window", { min: 2 }), PRUNE_DEFAULTS.window)
    .option("--tokens <n>", "calibration tokens in all", int("--tokens", { min: 1 }), PRUNE_DEFAULTS.tokens)
    .option("--include-bos", "count the first (BOS) position of each window in the statistics")
    .option("--iterative", "remove one unit, rescore, repeat (SLEB-style)")
    .option("--seed <n>", "seed for --metric random", int("--seed"), 0)
    .addOption(threadsOption());
}

/**
 * What scoring reads: for the statistics metrics (bi, angular, relmag, block) the file layer by layer
 * (prune/stats.ts collectLayerStatsStream) in a runtime with --threads threads, so models past wasm32's 4 GiB are
 * scored too; for the others the model in memory (ppl runs it whole), on --threads threads. `threads`: how many run.
 */
async function scoringInput(modelPath: string, metric: Metric, o: ScoringFlags, onProgress: (note: string) => void): Promise<{ input: ScoringInput; close: () => void; threads: number }> {
  const base = { granularity: o.granularity, includeBos: o.includeBos, seed: o.seed, onProgress };
  const asked = await threadsAsked(o);
  if (metric === "bi" || metric === "angular" || metric === "relmag" || metric === "block") {
    const file = readGgufFileHeader(modelPath);
    const config = checkModelFile(file, modelPath);
    const windows = calibrationWindows({ tokenizer: tokenizerFromGguf(file.kv), config }, o.calib, o);
    const runtime = await threadedRuntime(asked);
    const threads = noteThreads(asked, runtime.pool?.size ?? 1);
    const src = new FileSource(modelPath);
    return {
      input: { ...base, windows, nLayers: config.nLayers, collect: (opts) => collectLayerStatsStream(src, file, windows, { ...opts, name: modelPath, runtime }) },
      close: () => { src.close(); runtime.pool?.close(); },
      threads,
    };
  }
  const model = loadModelFile(modelPath, { threads: asked });
  const threads = await startThreads(model, asked);
  return { input: { ...base, model, nLayers: model.config.nLayers, windows: calibrationWindows(model, o.calib, o) }, close: () => model.stopThreads(), threads };
}

/** Scores that came out NaN or infinite, with the tensors of the file that hold NaN/Inf (if any) named. */
function explainNonFinite(e: unknown, modelPath: string): unknown {
  if (!(e instanceof NonFiniteScoresError)) return e;
  const src = new FileSource(modelPath);
  try {
    const bad = nonFiniteTensors(readGgufFileHeader(modelPath), src);
    return new Error(`${modelPath}: ${e.message}; ${bad.length ? `tensors holding NaN or Inf: ${bad.join(", ")}` : "every weight is finite, so the activations overflow"}`);
  } finally {
    src.close();
  }
}

export function registerPruneCommands(program: Command): void {
  addScoringOptions(program
    .command("bi")
    .description("score every layer (or half-layer) on calibration text: Block Influence and the alternatives; print the removal order")
    .argument("<model>", "GGUF file"), true)
    .option("--json", "print the scores as JSON instead of a table")
    .option("--plot <file.svg>", "draw the scores per layer as an SVG bar chart")
    .action(async (modelPath: string, o: ScoringFlags & { json?: boolean; plot?: string }) => {
      checkFile(modelPath, "model");
      const metric = parseMetric(o.metric);
      const bar = new ProgressBar(`scoring (${metric})`, 1);
      const t0 = performance.now();
      const { input, close, threads } = await scoringInput(modelPath, metric, o, (n) => bar.update(0, n));
      const { windows } = input;
      let ranking: Ranking, order: Unit[];
      try {
        ranking = rankUnits(metric, input);
        order = o.iterative
          ? selectForRemoval(metric, Math.min(ranking.units.length - 1, o.granularity === "layer" ? input.nLayers! - 1 : ranking.units.length - 1), input, true, ranking)
          : ranking.order;
      } catch (e) {
        throw explainNonFinite(e, modelPath);
      } finally {
        bar.done();
        close();
      }
      const rank = new Map(order.map((u, i) => [unitName(u), i + 1]));
      const rows = ranking.units.map((u, i) => ({
        unit: unitName(u), layer: u.layer, part: u.part, score: ranking.scores[i],
        inputNorm: ranking.inputNorm?.[u.layer], removalRank: rank.get(unitName(u)) ?? null,
      }));
      const tokens = windows.reduce((a, w) => a + w.length, 0);
      process.stderr.write(`scored ${ranking.units.length} units on ${tokens} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s on ${threads} thread${threads === 1 ? "" : "s"}\n`);
      if (o.json) {
        console.log(JSON.stringify({
          model: modelPath, calib: o.calib, metric, description: METRIC_DESCRIPTIONS[metric], granularity: o.granularity,
          iterative: Boolean(o.iterative), windows: windows.length, windowTokens: o.window, tokens, includeBos: Boolean(o.includeBos), threads,
          units: rows, removalOrder: order.map(unitName),
        }, null, 2));
      } else {
        console.log(`${metric}: ${METRIC_DESCRIPTIONS[metric]}`);
        console.log(`calibration: ${windows.length} windows of ${o.window} tokens (${tokens} tokens) from ${o.calib}${o.includeBos ? ", BOS position counted" : ", BOS position excluded"}`);
        console.log(`${"unit".padEnd(8)} ${"score".padStart(12)} ${"mean ‖h_in‖".padStart(12)} ${"removal rank".padStart(13)}`);
        for (const r of rows) {
          console.log(`${r.unit.padEnd(8)} ${r.score.toPrecision(6).padStart(12)} ${(r.inputNorm?.toFixed(3) ?? "").padStart(12)} ${String(r.removalRank ?? "-").padStart(13)}`);
        }
        console.log(`removal order${o.iterative ? " (iterative)" : ""}: ${order.map(unitName).join(", ")}`);
        if (metric === "block") console.log("note: block removes the best contiguous block for each k; the order above is for k = 1");
      }
      if (o.plot) {
        const svg = barChart(`${metric} per ${o.granularity === "layer" ? "layer" : "half-layer"}: ${modelPath.split("/").pop()}`, rows.map((r) => r.unit), rows.map((r) => r.score), o.granularity === "layer" ? "layer" : "layer.half", metric,
          o.granularity === "layer" ? undefined : rows.map((r) => (r.part === "attn" ? "attention" : "FFN")));
        writeTextFileAtomic(o.plot, svg, { inputs: [modelPath, o.calib] });
        process.stderr.write(`wrote ${o.plot}\n`);
      }
    });

  addScoringOptions(program
    .command("prune")
    .description("remove layers (or attention/FFN halves) and write a smaller GGUF")
    .argument("<model>", "GGUF file"), false)
    .option("--remove <n>", "how many units to remove, chosen by --metric on --calib", int("--remove", { min: 1 }))
    .option("--layers <list>", "remove exactly these layers (comma-separated, 0-based)", intList("--layers"))
    .option("--attention <list>", "remove the attention half of these layers", intList("--attention"))
    .option("--ffn <list>", "remove the FFN half of these layers", intList("--ffn"))
    .option("--edgeprune-only", "drop the tensors of removed halves (a smaller file that llama.cpp refuses) instead of writing them as zeroed identities")
    .addOption(new Option("--heal <method>", "repair each run of removed layers: lstsq folds a least-squares linear map into the ffn_down before it (ReplaceMe), fitted on --calib").choices([...HEAL_METHODS]).default("none"))
    .option("--heal-ridge <f>", "lstsq: ridge λ as a fraction of the mean of diag(XᵀX)", num("--heal-ridge"), HEAL_DEFAULTS.ridge)
    .requiredOption("-o, --output <file>", "output GGUF file")
    .action(async (modelPath: string, o: ScoringFlags & { remove?: number; layers?: number[]; attention?: number[]; ffn?: number[]; output: string; edgepruneOnly?: boolean; heal: HealMethod; healRidge: number }) => {
      checkFile(modelPath, "model");
      const explicit = Boolean(o.layers || o.attention || o.ffn);
      if (explicit === (o.remove !== undefined)) throw new Error("give either --remove N (with --calib) or --layers/--attention/--ffn");
      if (o.heal !== "none") {
        if (!o.calib) throw new Error(`--heal ${o.heal} needs --calib FILE (the fit's calibration text)`);
        if (o.attention || o.ffn || o.granularity !== "layer") throw new Error(`--heal ${o.heal} heals removed whole layers; it does not apply to --attention, --ffn or --granularity sublayer`);
        if (!(o.healRidge >= 0)) throw new Error(`--heal-ridge must be ≥ 0, got ${o.healRidge}`);
      }
      const header = readGgufFileHeader(modelPath);
      // the loader's checks, also when no model is loaded (--layers): a corrupt block_count or head count is refused
      checkModelFile(header, modelPath);
      let model: ReturnType<typeof loadModelFile> | undefined;
      let windows: number[][] | undefined;
      let units: Unit[];
      if (explicit) {
        units = [
          ...(o.layers ?? []).map((layer) => ({ layer, part: "layer" as const })),
          ...(o.attention ?? []).map((layer) => ({ layer, part: "attn" as const })),
          ...(o.ffn ?? []).map((layer) => ({ layer, part: "ffn" as const })),
        ];
      } else {
        const metric = parseMetric(o.metric);
        if (!o.calib) throw new Error("--remove needs --calib FILE");
        const nLayers = checkModelFile(header, modelPath).nLayers;
        const total = o.granularity === "layer" ? nLayers : 2 * nLayers;
        if (o.remove! >= total || o.remove! < 0) throw new Error(`cannot remove ${o.remove} ${o.granularity === "layer" ? "layers" : "half-layers"}: the model has ${total} and at least one must remain`);
        const bar = new ProgressBar(`choosing ${o.remove} (${metric})`, 1);
        const { input, close } = await scoringInput(modelPath, metric, o, (n) => bar.update(0, n));
        try {
          units = selectForRemoval(metric, o.remove!, input, Boolean(o.iterative));
        } catch (e) {
          throw explainNonFinite(e, modelPath);
        } finally {
          bar.done();
          close();
        }
      }
      const src = new FileSource(modelPath);
      try {
        const layers = units.filter((u) => u.part === "layer").map((u) => u.layer);
        let runs: HealedRun[] | undefined;
        let cut: Pick<ReturnType<typeof removeLayers>, "spec" | "tensorData" | "nLayers" | "notes">;
        if (o.heal === "lstsq") {
          const asked = await threadsAsked(o);
          model ??= loadModelFile(modelPath, { threads: asked });
          await startThreads(model, asked);
          windows ??= calibrationWindows(model, o.calib!, o);
          const bar = new ProgressBar("healing (lstsq)", windows.length);
          const healed = removeAndHeal(header, src, model, windows, layers, { ridge: o.healRidge, includeBos: o.includeBos, onProgress: (d) => bar.update(d) });
          bar.done();
          model.stopThreads();
          cut = healed;
          runs = healed.runs;
        } else {
          cut = removeLayers(header, src, {
            layers,
            attention: units.filter((u) => u.part === "attn").map((u) => u.layer),
            ffn: units.filter((u) => u.part === "ffn").map((u) => u.layer),
            halves: o.edgepruneOnly ? "drop" : "identity",
          });
        }
        const { spec, tensorData, nLayers, notes } = cut;
        for (const n of notes) process.stderr.write(`note: ${n}\n`);
        if (o.edgepruneOnly && [...spec.kv].some((e) => e.key.startsWith("edgeprune.removed_"))) {
          process.stderr.write("note: --edgeprune-only: llama.cpp cannot load this file (it needs every tensor of every layer)\n");
        }
        const bar = new ProgressBar("writing", spec.tensors.length);
        const bytes = await writeFileAtomic(o.output, ggufChunks(spec, (i) => { bar.update(i + 1); return tensorData(i); }), { inputs: [modelPath, ...(o.calib ? [o.calib] : [])] });
        bar.done();
        for (const r of runs ?? []) {
          const span = r.start === r.end - 1 ? `layer ${r.start}` : `layers ${r.start}–${r.end - 1}`;
          process.stderr.write(r.skipped
            ? `heal: ${span} not healed: ${r.skipped}\n`
            : `heal: ${span} folded into blk.${r.anchor}.ffn_down (original numbering): ‖XT − Y‖²/‖Y‖² = ${r.residualAfter.toFixed(4)} over ${r.tokens} tokens (without healing ${r.residualBefore.toFixed(4)}); ‖XT‖²/‖Y‖² = ${r.energyAfter.toFixed(4)} (‖X‖²/‖Y‖² = ${r.energyBefore.toFixed(4)})\n`);
        }
        process.stderr.write(`removed ${units.map(unitName).join(", ")}${runs ? ", healed by lstsq" : ""}: ${nLayers} layers remain; wrote ${o.output} (${mib(header.fileSize)} → ${mib(bytes)})\n`);
      } finally {
        src.close();
      }
    });
}
