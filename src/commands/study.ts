// `edgeprune study prune`: runs the pruning study and writes its Markdown table, SVG chart and JSON into a folder.
// Node-only; the study itself is src/prune/study.ts.
import { Command } from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModelFile } from "../node/load.js";
import { writeTextFileAtomic } from "../node/files.js";
import { calibrationAblation, runPruneStudy, STUDY_METHOD_NOTES, STUDY_METHODS, type PruneStudyResult } from "../prune/study.js";
import { lineChart, scatterChart, type Series } from "../report/svg.js";
import { runComposeStudy, type ComposeResult } from "../studies/compose.js";
import { calibrationWindows, checkFile, evaluationDocuments, int } from "./common.js";
import { PRUNE_DEFAULTS } from "./prune.js";

function fmtPpl(v: number): string {
  return v >= 1000 ? v.toExponential(2) : v.toFixed(2);
}

/** The study as Markdown: the main table, the random baseline, per-layer scores, and notes on each method. */
export function pruneStudyMarkdown(r: PruneStudyResult, meta: { model: string; command: string; calib: string; eval: string; seconds: number }): string {
  const lines: string[] = [];
  lines.push(`# Pruning study: ${path.basename(meta.model)}`);
  lines.push("");
  lines.push(`Made by \`${meta.command}\` in ${meta.seconds.toFixed(0)} s.`);
  lines.push(`Calibration: ${r.calibTokens} tokens from the first 80% of ${path.basename(meta.calib)}; evaluation: ${r.evalTokens} predicted tokens of ${r.evalDocuments} documents from the held-out last 20% of ${path.basename(meta.eval)}, each document its own sequence. Dense perplexity ${fmtPpl(r.densePerplexity)}.`);
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

/** The composition study as Markdown: every cell, the BI rankings under quantization, and a summary of interactions. */
export function composeStudyMarkdown(r: ComposeResult, meta: { model: string; command: string; seconds: number }): string {
  const mibs = (b: number) => (b / 2 ** 20).toFixed(2);
  const lines: string[] = [];
  lines.push(`# Pruning × quantization: ${path.basename(meta.model)}`);
  lines.push("");
  lines.push(`Made by \`${meta.command}\` in ${meta.seconds.toFixed(0)} s. Evaluation: ${r.evalTokens} predicted tokens of held-out documents. Layers are removed by Block Influence: in *prune→quantize* BI is computed on the dense model and the pruned model is then quantized (GPTQ calibrated on the pruned model); in *quantize→prune* the whole model is quantized first and BI is recomputed on the quantized model. Interaction = Δppl(both) − Δppl(prune alone) − Δppl(quantize alone), every Δ against dense F32; 0 means the two effects add. Memory: wasm memory with the model and one evaluation context loaded. Decode: 64 greedy tokens, one thread, best of 5 runs.`);
  lines.push("");
  lines.push("| k | format | order | removed | perplexity | interaction | file MiB | memory MiB | decode tok/s | Pareto |");
  lines.push("|---|---|---|---|---|---|---|---|---|---|");
  for (const c of r.cells) {
    lines.push(`| ${c.k} | ${c.config} | ${c.k === 0 ? "—" : c.order} | ${c.removed.join(",") || "—"} | ${fmtPpl(c.perplexity)} | ${c.k === 0 ? "—" : (c.interaction >= 0 ? "+" : "") + c.interaction.toFixed(3)} | ${mibs(c.fileBytes)} | ${mibs(c.memoryBytes)} | ${c.decodeTokensPerSecond.toFixed(0)} | ${c.pareto ? "★" : ""} |`);
  }
  lines.push("");
  lines.push(`BI removal order on the dense model: ${r.denseOrder.join(", ")}.`);
  lines.push("");
  lines.push("| quantized model | Kendall's tau of BI scores vs dense | removal order agrees for the first | BI removal order |");
  lines.push("|---|---|---|---|");
  for (const q of r.rankings) lines.push(`| ${q.config} | ${q.tau.toFixed(3)} | ${q.sameFirst} layers | ${q.order.join(", ")} |`);
  const both = r.cells.filter((c) => c.k > 0 && c.config !== r.cells[0].config);
  const rel = both.map((c) => Math.abs(c.interaction) / Math.max(1e-9, Math.abs(c.perplexity - r.cells[0].perplexity)));
  if (both.length) {
    lines.push("");
    lines.push(`Over the ${both.length} cells that both prune and quantize, |interaction| is on average ${(100 * rel.reduce((a, b) => a + b, 0) / rel.length).toFixed(1)}% of the total perplexity change (largest ${(100 * Math.max(...rel)).toFixed(1)}%).`);
  }
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
    .option("--eval-docs <n>", "held-out documents to evaluate on (the first n of the last 20%)", int("--eval-docs", { min: 1 }), 60)
    .option("--ablation <files...>", "also rank layers by BI on each of these calibration texts and compare (Kendall's tau)")
    .option("--out <dir>", "folder for prune-study.md, .svg and .json", "study-out")
    .option("--max-k <n>", "largest number of layers removed (default L−1)", int("--max-k", { min: 0 }))
    .option("--random <n>", "random subsets per k", int("--random", { min: 1 }), 20)
    .option("--seed <n>", "seed of the random subsets", int("--seed"), 1)
    .option("--window <n>", "calibration window length in tokens", int("--window", { min: 2 }), PRUNE_DEFAULTS.window)
    .option("--tokens <n>", "calibration tokens in all", int("--tokens", { min: 1 }), PRUNE_DEFAULTS.tokens)
    .option("--loss-windows <n>", "calibration windows for the perplexity-driven methods", int("--loss-windows", { min: 1 }), 16)
    .action((modelPath: string, o: { calib: string; eval: string; evalDocs: number; ablation?: string[]; out: string; maxK?: number; random: number; seed: number; window: number; tokens: number; lossWindows: number }) => {
      checkFile(modelPath, "model");
      const model = loadModelFile(modelPath);
      const L = model.config.nLayers;
      if (o.maxK !== undefined && (o.maxK < 0 || o.maxK >= L)) throw new Error(`--max-k ${o.maxK} is out of range: the model has ${L} layers, so k must be 0..${L - 1}`);
      if (!(o.random >= 1)) throw new Error(`--random must be at least 1, got ${o.random}`);
      const calib = calibrationWindows(model, o.calib, o);
      const evalDocs = evaluationDocuments(model, o.eval, o.evalDocs);
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
      series.push({ name: "random (min–max)", points: result.random.map((r) => [r.k, r.mean]), band: result.random.map((r) => [r.min, r.max]), dashed: true });
      const svg = lineChart(`${path.basename(modelPath)}: perplexity against layers removed`, series, "layers removed (k)", "held-out perplexity (log scale)", { logY: true });
      writeTextFileAtomic(path.join(o.out, "prune-study.md"), md);
      writeTextFileAtomic(path.join(o.out, "prune-study.svg"), svg);
      writeTextFileAtomic(path.join(o.out, "prune-study.json"), JSON.stringify({ model: modelPath, calib: o.calib, eval: o.eval, seconds, ...result, ablation: abl }, null, 2));
      process.stdout.write(md);
      process.stderr.write(`wrote ${o.out}/prune-study.{md,svg,json} in ${seconds.toFixed(0)} s\n`);
    });
  study
    .command("compose")
    .description("layers removed (0 … L/3) × {F32, Q8_0 RTN/GPTQ, Q4_0 RTN/GPTQ, Q4_1 GPTQ} in both orders: perplexity, size, memory, speed, interaction")
    .argument("<model>", "GGUF file (F32)")
    .requiredOption("--calib <file>", "calibration text (first 80% of its documents)")
    .requiredOption("--eval <file>", "evaluation text (last 20% of its documents, held out)")
    .option("--out <dir>", "folder for compose-study.md, .svg and .json", "study-out")
    .option("--eval-docs <n>", "held-out documents to evaluate on (the first n of the last 20%)", int("--eval-docs", { min: 1 }), 60)
    .option("--max-k <n>", "largest number of layers removed (default L/3)", int("--max-k", { min: 0 }))
    .option("--window <n>", "calibration window length in tokens", int("--window", { min: 2 }), PRUNE_DEFAULTS.window)
    .option("--tokens <n>", "calibration tokens (BI and GPTQ)", int("--tokens", { min: 1 }), 4096)
    .action((modelPath: string, o: { calib: string; eval: string; evalDocs: number; out: string; maxK?: number; window: number; tokens: number }) => {
      checkFile(modelPath, "model");
      const bytes = new Uint8Array(fs.readFileSync(modelPath));
      const model = loadModelFile(modelPath);
      const L = model.config.nLayers;
      if (o.maxK !== undefined && (o.maxK < 0 || o.maxK >= L)) throw new Error(`--max-k ${o.maxK} is out of range: the model has ${L} layers`);
      const calib = calibrationWindows(model, o.calib, o);
      const evalDocs = evaluationDocuments(model, o.eval, o.evalDocs);
      fs.mkdirSync(o.out, { recursive: true });
      const t0 = performance.now();
      const result = runComposeStudy({ bytes, name: modelPath, calib, evalDocs, maxK: o.maxK, onProgress: (n) => process.stderr.write(`compose: ${n}\n`) });
      const seconds = (performance.now() - t0) / 1000;
      const command = `edgeprune study compose ${process.argv.slice(4).join(" ")}`.trim();
      const md = composeStudyMarkdown(result, { model: modelPath, command, seconds }) + `\n![perplexity against file size](compose-study.svg)\n`;
      const svg = scatterChart(`${path.basename(modelPath)}: perplexity against file size (★ Pareto front)`, result.cells.map((c) => ({
        x: c.fileBytes / 2 ** 20, y: c.perplexity, label: `${c.config} −${c.k} ${c.order}`, group: c.config, marked: c.pareto,
      })), "file size (MiB)", "held-out perplexity (log scale)", { logY: true });
      writeTextFileAtomic(path.join(o.out, "compose-study.md"), md);
      writeTextFileAtomic(path.join(o.out, "compose-study.svg"), svg);
      writeTextFileAtomic(path.join(o.out, "compose-study.json"), JSON.stringify({ model: modelPath, calib: o.calib, eval: o.eval, seconds, ...result }, null, 2));
      process.stdout.write(md);
      process.stderr.write(`wrote ${o.out}/compose-study.{md,svg,json} in ${seconds.toFixed(0)} s\n`);
    });
  return study;
}
