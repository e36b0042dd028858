// `edgeprune study prune`: runs the pruning study and writes its Markdown table, SVG chart and JSON into a folder.
// Node-only; the study itself is src/prune/study.ts.
import { Command } from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModelFile } from "../node/load.js";
import { writeFileAtomic } from "../node/files.js";
import { calibrationAblation, runPruneStudy, STUDY_METHOD_NOTES, STUDY_METHODS, type PruneStudyResult } from "../prune/study.js";
import { lineChart, type Series } from "../report/svg.js";
import { calibrationWindows, checkFile, evaluationDocuments, int } from "./common.js";
import { PRUNE_DEFAULTS } from "./prune.js";

function writeText(file: string, text: string): void {
  writeFileAtomic(file, [new TextEncoder().encode(text)]);
}

function fmtPpl(v: number): string {
  return v >= 1000 ? v.toExponential(2) : v.toFixed(2);
}

/** The study as Markdown: the main table, the random baseline, per-layer scores, and notes on each method. */
export function pruneStudyMarkdown(r: PruneStudyResult, meta: { model: string; command: string; calib: string; eval: string; seconds: number }): string {
  const lines: string[] = [];
  lines.push(`# Pruning study: ${path.basename(meta.model)}`);
  lines.push("");
  lines.push(`Made by \`${meta.command}\` in ${meta.seconds.toFixed(0)} s.`);
  lines.push(`Calibration: ${r.calibTokens} tokens from the first 80% of ${path.basename(meta.calib)}; evaluation: ${r.evalTokens} predicted tokens of the held-out last 20% of ${path.basename(meta.eval)}, each document its own sequence. Dense perplexity ${fmtPpl(r.densePerplexity)}.`);
  lines.push("");
  lines.push("Each cell: evaluation perplexity, and in brackets the top-1 agreement with the dense model's next-token predictions. Random: mean ± standard deviation over random subsets.");
  lines.push("");
  lines.push(`| k | ${STUDY_METHODS.join(" | ")} | random |`);
  lines.push(`|---|${STUDY_METHODS.map(() => "---").join("|")}|---|`);
  const maxK = Math.max(...r.cells.map((c) => c.k));
  for (let k = 0; k <= maxK; k++) {
    const row = STUDY_METHODS.map((m) => {
      const c = r.cells.find((x) => x.k === k && x.method === m)!;
      return `${fmtPpl(c.perplexity)} (${(c.top1 * 100).toFixed(0)}%)`;
    });
    const rnd = r.random.find((x) => x.k === k)!;
    lines.push(`| ${k} | ${row.join(" | ")} | ${fmtPpl(rnd.mean)} ± ${fmtPpl(rnd.std)} (${(rnd.top1Mean * 100).toFixed(0)}%) |`);
  }
  lines.push("");
  lines.push("Layers removed at the largest k by each method (first removed first):");
  lines.push("");
  for (const m of STUDY_METHODS) {
    const c = r.cells.find((x) => x.k === maxK && x.method === m)!;
    lines.push(`- **${m}**: ${STUDY_METHOD_NOTES[m]}. ${c.removed.join(", ") || "(none)"}`);
  }
  lines.push("");
  lines.push("Per-layer scores from the calibration pass (lower is removed first) and the mean norm of the residual stream entering each layer:");
  lines.push("");
  lines.push("| layer | BI | angular | relative magnitude | mean ‖h_in‖ |");
  lines.push("|---|---|---|---|---|");
  r.layerScores.bi.forEach((_, l) => {
    lines.push(`| ${l} | ${r.layerScores.bi[l].toFixed(4)} | ${r.layerScores.angular[l].toFixed(4)} | ${r.layerScores.relmag[l].toFixed(4)} | ${r.layerScores.inputNorm[l].toFixed(3)} |`);
  });
  return lines.join("\n") + "\n";
}

export function registerStudyCommands(program: Command): Command {
  const study = program.command("study").description("studies that answer questions with numbers: pruning curves, composition with quantization");
  study
    .command("prune")
    .description("perplexity and top-1 agreement for k = 0 … L−1 layers removed, for every metric, the last k, LaCo and random subsets")
    .argument("<model>", "GGUF file")
    .requiredOption("--calib <file>", "calibration text (first 80% of its documents)")
    .requiredOption("--eval <file>", "evaluation text (last 20% of its documents, held out)")
    .option("--ablation <files...>", "also rank layers by BI on each of these calibration texts and compare (Kendall's tau)")
    .option("--out <dir>", "folder for prune-study.md, .svg and .json", "study-out")
    .option("--max-k <n>", "largest number of layers removed (default L−1)", int("--max-k"))
    .option("--random <n>", "random subsets per k", int("--random"), 20)
    .option("--seed <n>", "seed of the random subsets", int("--seed"), 1)
    .option("--window <n>", "calibration window length in tokens", int("--window"), PRUNE_DEFAULTS.window)
    .option("--tokens <n>", "calibration tokens in all", int("--tokens"), PRUNE_DEFAULTS.tokens)
    .option("--loss-windows <n>", "calibration windows for the perplexity-driven methods", int("--loss-windows"), 16)
    .action((modelPath: string, o: { calib: string; eval: string; ablation?: string[]; out: string; maxK?: number; random: number; seed: number; window: number; tokens: number; lossWindows: number }) => {
      checkFile(modelPath, "model");
      const model = loadModelFile(modelPath);
      const L = model.config.nLayers;
      if (o.maxK !== undefined && (o.maxK < 0 || o.maxK >= L)) throw new Error(`--max-k ${o.maxK} is out of range: the model has ${L} layers, so k must be 0..${L - 1}`);
      if (!(o.random >= 1)) throw new Error(`--random must be at least 1, got ${o.random}`);
      const calib = calibrationWindows(model, o.calib, o);
      const evalDocs = evaluationDocuments(model, o.eval);
      const ablation = (o.ablation ?? []).map((f) => ({ name: path.basename(f), windows: calibrationWindows(model, f, o) }));
      fs.mkdirSync(o.out, { recursive: true });
      const t0 = performance.now();
      const result = runPruneStudy({
        model, calib, evalDocs, maxK: o.maxK, randomSubsets: o.random, seed: o.seed, lossWindows: o.lossWindows,
        onProgress: (note) => process.stderr.write(`study: ${note}\n`),
      });
      const abl = ablation.length ? calibrationAblation(model, ablation) : undefined;
      const seconds = (performance.now() - t0) / 1000;
      const command = `edgeprune study prune ${process.argv.slice(4).join(" ")}`.trim();
      let md = pruneStudyMarkdown(result, { model: modelPath, command, calib: o.calib, eval: o.eval, seconds });
      md += `\n![perplexity against layers removed](prune-study.svg)\n`;
      if (abl) {
        md += `\n## Does the calibration set matter?\n\nBI per layer from each calibration text (${abl.sources.map((s) => `${s.name}: ${s.tokens} tokens`).join("; ")}), and Kendall's tau-b between the BI scores:\n\n`;
        md += `| | ${abl.sources.map((s) => s.name).join(" | ")} |\n|---|${abl.sources.map(() => "---").join("|")}|\n`;
        abl.sources.forEach((s, i) => { md += `| ${s.name} | ${abl.tau[i].map((t) => t.toFixed(3)).join(" | ")} |\n`; });
        md += `\nRemoval orders:\n\n${abl.sources.map((s) => `- ${s.name}: ${s.order.join(", ")}`).join("\n")}\n`;
      }
      const series: Series[] = STUDY_METHODS.map((m) => ({
        name: m, points: result.cells.filter((c) => c.method === m).map((c) => [c.k, c.perplexity] as [number, number]),
      }));
      series.push({ name: "random (mean ± sd)", points: result.random.map((r) => [r.k, r.mean]), spread: result.random.map((r) => r.std), dashed: true });
      const svg = lineChart(`${path.basename(modelPath)}: perplexity against layers removed`, series, "layers removed (k)", "held-out perplexity (log scale)", { logY: true });
      writeText(path.join(o.out, "prune-study.md"), md);
      writeText(path.join(o.out, "prune-study.svg"), svg);
      writeText(path.join(o.out, "prune-study.json"), JSON.stringify({ model: modelPath, calib: o.calib, eval: o.eval, seconds, ...result, ablation: abl }, null, 2));
      process.stdout.write(md);
      process.stderr.write(`wrote ${o.out}/prune-study.{md,svg,json} in ${seconds.toFixed(0)} s\n`);
    });
  return study;
}
