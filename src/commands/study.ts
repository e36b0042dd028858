// `edgeprune study prune`: runs the pruning study and writes its Markdown table, SVG chart and JSON into a folder.
// Node-only; the study itself is src/prune/study.ts.
import { Command } from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadModelFile } from "../node/load.js";
import { writeTextFileAtomic } from "../node/files.js";
import { calibrationAblation, runPruneStudy, STUDY_METHOD_NOTES, STUDY_METHODS, type PruneStudyResult, type StudyMethod } from "../prune/study.js";
import { parseTasks, type ChoiceTask } from "../quality/choice.js";
import type { TaskAccuracy } from "../studies/measure.js";
import { lineChart, scatterChart, type Series } from "../report/svg.js";
import { runComposeStudy, type ComposeCell, type ComposeCheckpoint, type ComposeResult } from "../studies/compose.js";
import { calibrationWindows, checkFile, evaluationDocuments, int, startThreads, threadsAsked, threadsOption } from "./common.js";
import { PRUNE_DEFAULTS } from "./prune.js";

function fmtPpl(v: number): string {
  return v >= 1000 ? v.toExponential(2) : v.toFixed(2);
}

function fmtKld(v: number): string {
  return v === 0 ? "0" : v < 0.001 ? v.toExponential(2) : v.toFixed(4);
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
  if (!r.task) lines.push("No task was given (`--task`), so no accuracy was measured.");
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
  lines.push("KL divergence from the dense model (mean over every predicted token; llama-perplexity's statistic, see `edgeprune kld`):");
  lines.push("");
  lines.push(`| k | ${STUDY_METHODS.join(" | ")} | random |`);
  lines.push(`|---|${STUDY_METHODS.map(() => "---").join("|")}|---|`);
  for (let k = 0; k <= maxK; k++) {
    const row = STUDY_METHODS.map((m) => fmtKld(r.cells.find((x) => x.k === k && x.method === m)!.kld));
    lines.push(`| ${k} | ${row.join(" | ")} | ${fmtKld(r.random.find((x) => x.k === k)!.kldMean)} |`);
  }
  if (r.task) {
    const pct = (v: number | undefined) => (v === undefined ? "—" : `${(100 * v).toFixed(1)}`);
    lines.push("");
    lines.push(`Accuracy on the multiple-choice task (${r.task.tasks} tasks, random chance ${(100 * r.task.chance).toFixed(1)}%), in %: acc_norm / acc_mi (lm-evaluation-harness's length-normalised and mutual-information scores; \`edgeprune eval\` explains both). Random: mean over the first ${r.random.find((x) => x.k > 0)?.accuracySubsets ?? 0} subsets.`);
    lines.push("");
    lines.push(`| k | ${STUDY_METHODS.join(" | ")} | random |`);
    lines.push(`|---|${STUDY_METHODS.map(() => "---").join("|")}|---|`);
    for (let k = 0; k <= maxK; k++) {
      const row = STUDY_METHODS.map((m) => {
        const a = r.cells.find((x) => x.k === k && x.method === m)!.accuracy;
        return a ? `${pct(a.accNorm.value)} / ${pct(a.accMi.value)}` : "—";
      });
      const rnd = r.random.find((x) => x.k === k)!;
      lines.push(`| ${k} | ${row.join(" | ")} | ${pct(rnd.accNormMean)} / ${pct(rnd.accMiMean)} |`);
    }
    lines.push("");
    lines.push("BI (ShortGPT) at every k, with 95% Wilson intervals:");
    lines.push("");
    lines.push("| k | removed | perplexity | KLD | top-1 | acc | acc_norm | acc_token | acc_mi |");
    lines.push("|---|---|---|---|---|---|---|---|---|");
    const iv = (a: { value: number; low: number; high: number }) => `${pct(a.value)} (${pct(a.low)}–${pct(a.high)})`;
    for (const c of r.cells.filter((x) => x.method === "bi")) {
      const a = c.accuracy!;
      lines.push(`| ${c.k} | ${c.removed.join(",") || "—"} | ${fmtPpl(c.perplexity)} | ${fmtKld(c.kld)} | ${(100 * c.top1).toFixed(1)}% | ${iv(a.acc)} | ${iv(a.accNorm)} | ${iv(a.accToken)} | ${iv(a.accMi)} |`);
    }
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

/** The composition study as Markdown: every cell, then what the cells say (interaction, healing, order, rankings, calibration text). */
export function composeStudyMarkdown(r: ComposeResult, meta: { model: string; command: string; seconds: number; calib: string; healTokens: number; resumedCells?: number }): string {
  const mibs = (b: number) => (b / 2 ** 20).toFixed(2);
  const pct = (v: number) => (100 * v).toFixed(1);
  const sign = (v: number, d: number) => `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(d)}`;
  const L: string[] = [];
  const name = path.basename(meta.model);
  L.push(`# Pruning × quantization × healing: ${name}`);
  L.push("");
  L.push(`Made by \`${meta.command}\` in ${meta.seconds.toFixed(0)} s${meta.resumedCells ? ` (this run; ${meta.resumedCells} cells came from an earlier run with the same settings)` : ""}.`);
  L.push("");
  L.push(`- **Removal**: k layers by Block Influence (ShortGPT), k = 0 … ${Math.max(...r.cells.map((c) => c.k))}; *BI+heal* also folds a least-squares map into the ffn_down before each run of removed layers (\`prune --heal lstsq\`, ReplaceMe), fitted on ${meta.healTokens} calibration tokens.`);
  L.push("- **Orders**: *prune→quantize*: BI and the heal fit on the dense F32 model, then the pruned (healed) model is quantized, GPTQ calibrated on it. *quantize→prune*: the whole model is quantized first; BI and the heal fit are computed on the quantized model, and the healed ffn_down is rounded to nearest again.");
  L.push(`- **Measured on** ${r.evalTokens} predicted tokens of ${r.evalDocuments} held-out documents (each its own sequence): perplexity; mean KL divergence from the dense F32 model and top-1 agreement with it${r.task ? `; accuracy on the ${r.task.tasks}-task multiple-choice set (random chance ${pct(r.task.chance)}%), acc_norm and acc_mi as lm-evaluation-harness defines them (\`edgeprune eval\`)` : ""}.`);
  L.push("- **Interaction** = Δ(both) − Δ(prune alone) − Δ(quantize alone), every Δ from dense F32, with the same removal (BI or BI+heal) for \"prune alone\": 0 means the two effects add; for perplexity and KLD a positive sign means they compound (worse than the sum), for accuracy a negative one does.");
  L.push(`- **Decode**: 64 greedy tokens after an 8-token prompt, one thread; each (format, k) file measured once per round (best of 3 runs after 2 warm-ups), ${r.decode.rounds} rounds interleaved over all ${r.decode.files} files, median shown. **The machine is shared with other jobs: these are noisy; compare rows with each other, not with other pages.** Healing and order change weights, not shapes, so cells of one format and k share a figure.`);
  L.push("");
  for (const p of r.pending) L.push(`**${p.config}: pending.** ${p.reason}.`);
  if (r.pending.length) L.push("");
  L.push("## Every cell");
  L.push("");
  const hasTask = Boolean(r.task);
  L.push(`| k | format | removal | order | removed | perplexity | KLD | top-1 |${hasTask ? " acc_norm | acc_mi |" : ""} interaction ppl | interaction KLD |${hasTask ? " interaction acc_mi |" : ""} file MiB | decode tok/s | Pareto |`);
  L.push(`|---|---|---|---|---|---|---|---|${hasTask ? "---|---|" : ""}---|---|${hasTask ? "---|" : ""}---|---|---|`);
  for (const c of r.cells) {
    const a = c.accuracy;
    const it = c.interaction;
    L.push(`| ${c.k} | ${c.config} | ${c.k === 0 ? "—" : c.removal} | ${c.k === 0 ? "—" : c.order} | ${c.removed.join(",") || "—"} | ${fmtPpl(c.perplexity)} | ${fmtKld(c.kld)} | ${pct(c.top1)}% |` +
      (hasTask ? ` ${a ? pct(a.accNorm.value) : "—"} | ${a ? pct(a.accMi.value) : "—"} |` : "") +
      ` ${it ? sign(it.perplexity, 3) : "—"} | ${it ? sign(it.kld, 4) : "—"} |${hasTask ? ` ${it?.accMi !== undefined ? sign(100 * it.accMi, 1) : "—"} |` : ""}` +
      ` ${mibs(c.fileBytes)} | ${c.decodeTokensPerSecond.toFixed(0)} | ${c.pareto ? "★" : ""} |`);
  }
  L.push("");
  L.push("![perplexity against file size](compose-study.svg)");
  L.push("");
  L.push("![perplexity against layers removed](compose-study-k.svg)");
  L.push("");
  L.push("![KL divergence against layers removed](compose-study-kld.svg)");
  if (hasTask) { L.push(""); L.push("![task accuracy against layers removed](compose-study-accuracy.svg)"); }

  // do they compose?
  L.push("");
  L.push("## Do pruning and quantization compose?");
  L.push("");
  L.push("Per quantized format, over its cells that both prune and quantize: how many have a positive perplexity interaction (compounding), its mean and extremes, and |interaction| as a share of the cell's whole perplexity change from dense F32.");
  L.push("");
  L.push("| format | removal | order | cells | ppl interaction > 0 | mean | min | max | mean share | KLD interaction > 0 | mean KLD interaction |");
  L.push("|---|---|---|---|---|---|---|---|---|---|---|");
  const base = r.cells.find((c) => c.k === 0 && c.config === r.cells[0].config)!;
  const configs = [...new Set(r.cells.map((c) => c.config))].filter((c) => c !== base.config);
  for (const cfg of configs) for (const removal of ["BI", "BI+heal"] as const) for (const order of ["prune→quantize", "quantize→prune"] as const) {
    const cs = r.cells.filter((c) => c.config === cfg && c.k > 0 && c.removal === removal && c.order === order && c.interaction);
    if (!cs.length) continue;
    const v = cs.map((c) => c.interaction!.perplexity);
    const share = cs.map((c) => Math.abs(c.interaction!.perplexity) / Math.max(1e-9, Math.abs(c.perplexity - base.perplexity)));
    const kv = cs.map((c) => c.interaction!.kld);
    const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
    L.push(`| ${cfg} | ${removal} | ${order} | ${cs.length} | ${v.filter((x) => x > 0).length} | ${sign(mean(v), 3)} | ${sign(Math.min(...v), 3)} | ${sign(Math.max(...v), 3)} | ${(100 * mean(share)).toFixed(1)}% | ${kv.filter((x) => x > 0).length} | ${sign(mean(kv), 4)} |`);
  }

  // does healing help?
  L.push("");
  L.push("## Does healing help?");
  L.push("");
  L.push("BI+heal against BI at the same k, format and order: the change in perplexity and KLD (negative = healing helps), and the k where it does not.");
  L.push("");
  L.push("| format | order | Δ perplexity at k = 1 … | Δ KLD at k = 1 … | k where healing does not lower perplexity | … or KLD |");
  L.push("|---|---|---|---|---|---|");
  for (const cfg of [base.config, ...configs]) for (const order of ["prune→quantize", "quantize→prune"] as const) {
    const pairs = r.cells.filter((c) => c.config === cfg && c.k > 0 && c.order === order && c.removal === "BI").map((b) => ({ b, h: r.cells.find((x) => x.config === cfg && x.k === b.k && x.order === order && x.removal === "BI+heal")! })).filter((p) => p.h);
    if (!pairs.length) continue;
    const dp = pairs.map((p) => p.h.perplexity - p.b.perplexity), dk = pairs.map((p) => p.h.kld - p.b.kld);
    const notP = pairs.filter((_, i) => dp[i] >= 0).map((p) => p.b.k), notK = pairs.filter((_, i) => dk[i] >= 0).map((p) => p.b.k);
    L.push(`| ${cfg} | ${order} | ${dp.map((x) => sign(x, 2)).join(", ")} | ${dk.map((x) => sign(x, 3)).join(", ")} | ${notP.join(", ") || "none"} | ${notK.join(", ") || "none"} |`);
  }
  const skipped = r.cells.flatMap((c) => (c.heal ?? []).filter((h) => h.skipped).map((h) => `${c.config} k=${c.k} ${c.order}: ${h.skipped}`));
  if (skipped.length) { L.push(""); L.push(`Runs not healed: ${[...new Set(skipped)].join("; ")}.`); }
  const fits = r.cells.filter((c) => c.config === base.config && c.removal === "BI+heal");
  if (fits.length) {
    L.push("");
    L.push("The fit on the dense model, per run (‖X − Y‖²/‖Y‖² without healing → ‖XT − Y‖²/‖Y‖² with it; calibration tokens, not held out):");
    L.push("");
    const span = (h: { start: number; end: number }) => (h.end - h.start === 1 ? `layer ${h.start}` : `layers ${h.start}–${h.end - 1}`);
    for (const c of fits) L.push(`- k = ${c.k}: ${(c.heal ?? []).map((h) => `${span(h)} into ${h.anchor}: ${h.skipped ? "skipped" : `${h.residualBefore.toFixed(3)} → ${h.residualAfter.toFixed(3)}`}`).join("; ")}`);
  }

  // which order?
  L.push("");
  L.push("## Which order?");
  L.push("");
  L.push("| format | removal | k where quantize→prune has the lower perplexity | … the lower KLD |");
  L.push("|---|---|---|---|");
  for (const cfg of configs) for (const removal of ["BI", "BI+heal"] as const) {
    const ks = r.cells.filter((c) => c.config === cfg && c.k > 0 && c.removal === removal && c.order === "prune→quantize").map((a) => ({ a, b: r.cells.find((x) => x.config === cfg && x.k === a.k && x.removal === removal && x.order === "quantize→prune")! })).filter((p) => p.b);
    if (!ks.length) continue;
    L.push(`| ${cfg} | ${removal} | ${ks.filter((p) => p.b.perplexity < p.a.perplexity).map((p) => p.a.k).join(", ") || "none"} (of ${ks.length}) | ${ks.filter((p) => p.b.kld < p.a.kld).map((p) => p.a.k).join(", ") || "none"} |`);
  }

  L.push("");
  L.push("## BI rankings under quantization");
  L.push("");
  L.push(`BI removal order on the dense model: ${r.denseOrder.join(", ")}.`);
  L.push("");
  L.push("| quantized model | Kendall's tau-b of BI scores vs dense | removal order agrees for the first | BI removal order |");
  L.push("|---|---|---|---|");
  for (const q of r.rankings) L.push(`| ${q.config} | ${q.tau.toFixed(3)} | ${q.sameFirst} layers | ${q.order.join(", ")} |`);

  if (r.ablation) {
    const a = r.ablation;
    L.push("");
    L.push("## Does the calibration text matter?");
    L.push("");
    L.push(`BI on the dense model from each text (${a.sources.map((s) => `${s.name}: ${s.tokens} tokens`).join("; ")}). Kendall's tau-b between the BI scores:`);
    L.push("");
    L.push(`| | ${a.sources.map((s) => s.name).join(" | ")} |`);
    L.push(`|---|${a.sources.map(() => "---").join("|")}|`);
    a.sources.forEach((s, i) => L.push(`| ${s.name} | ${a.tau[i].map((t) => t.toFixed(3)).join(" | ")} |`));
    L.push("");
    L.push("Removal orders: " + a.sources.map((s) => `${s.name}: ${s.order.join(", ")}`).join("; ") + ".");
    L.push("");
    const pairs: [number, number][] = [];
    for (let i = 0; i < a.sources.length; i++) for (let j = i + 1; j < a.sources.length; j++) pairs.push([i, j]);
    L.push(`Overlap of the removed sets at each k (|A ∩ B| / k), and what removing each text's choice gives (F32, no healing)${r.task ? ": perplexity / acc_mi %" : ": perplexity"}:`);
    L.push("");
    L.push(`| k | ${pairs.map(([i, j]) => `${a.sources[i].name} ∩ ${a.sources[j].name}`).join(" | ")} | ${a.sources.map((s) => s.name).join(" | ")} |`);
    L.push(`|---|${pairs.map(() => "---").join("|")}|${a.sources.map(() => "---").join("|")}|`);
    for (const o of a.overlap) {
      const q = a.sources.map((s) => a.cells.find((c) => c.source === s.name && c.k === o.k)!.quality);
      L.push(`| ${o.k} | ${pairs.map(([i, j]) => o.pairs[i][j].toFixed(2)).join(" | ")} | ${q.map((x) => `${fmtPpl(x.perplexity)}${x.accuracy ? ` / ${pct(x.accuracy.accMi.value)}` : ""}`).join(" | ")} |`);
    }
    if (r.task) { L.push(""); L.push("![accuracy by calibration text](compose-study-ablation.svg)"); }
  }
  return L.join("\n") + "\n";
}

/** The charts of the composition study, by file name. */
export function composeStudyCharts(r: ComposeResult, model: string): Record<string, string> {
  const name = path.basename(model);
  const out: Record<string, string> = {};
  out["compose-study.svg"] = scatterChart(`${name}: perplexity against file size (★ Pareto front)`, r.cells.map((c) => ({
    x: c.fileBytes / 2 ** 20, y: c.perplexity, label: `${c.config} −${c.k} ${c.removal} ${c.order}`, group: c.config, marked: c.pareto,
  })), "file size (MiB)", "held-out perplexity (log scale)", { logY: true });
  const configs = [...new Set(r.cells.map((c) => c.config))];
  const curves = (pick: (c: ComposeCell) => number | undefined): Series[] => configs.flatMap((cfg, ci) => (["BI", "BI+heal"] as const).map((removal) => ({
    name: `${cfg} ${removal}`, dashed: removal === "BI+heal", color: ci,
    points: r.cells.filter((c) => c.config === cfg && c.order === "prune→quantize" && (c.k === 0 || c.removal === removal)).map((c) => [c.k, pick(c)] as [number, number]).filter((p) => p[1] !== undefined),
  })));
  out["compose-study-k.svg"] = lineChart(`${name}: perplexity, prune→quantize (dashed: healed)`, curves((c) => c.perplexity), "layers removed (k)", "held-out perplexity (log scale)", { logY: true });
  out["compose-study-kld.svg"] = lineChart(`${name}: KLD from dense F32, prune→quantize (dashed: healed)`, curves((c) => (c.kld > 0 ? c.kld : undefined)), "layers removed (k)", "mean KLD (nats, log scale)", { logY: true });
  if (r.task) {
    const maxK = Math.max(...r.cells.map((c) => c.k));
    const s = curves((c) => (c.accuracy ? 100 * c.accuracy.accMi.value : undefined));
    s.push({ name: "chance", dashed: true, color: 8, points: [[0, 100 * r.task.chance], [maxK, 100 * r.task.chance]] });
    out["compose-study-accuracy.svg"] = lineChart(`${name}: acc_mi, prune→quantize (dashed: healed)`, s, "layers removed (k)", "acc_mi %");
    if (r.ablation) {
      const a = r.ablation;
      const dense = r.cells.find((c) => c.k === 0 && c.config === configs[0])!;
      const series: Series[] = a.sources.map((src) => ({ name: `BI from ${src.name}`, points: [[0, 100 * dense.accuracy!.accMi.value] as [number, number], ...a.cells.filter((c) => c.source === src.name).map((c) => [c.k, 100 * c.quality.accuracy!.accMi.value] as [number, number])] }));
      series.push({ name: "chance", dashed: true, color: 8, points: [[0, 100 * r.task.chance], [maxK, 100 * r.task.chance]] });
      out["compose-study-ablation.svg"] = lineChart(`${name}: acc_mi by calibration text (F32, BI)`, series, "layers removed (k)", "acc_mi %");
    }
  }
  return out;
}

/** Tasks from a JSONL file for a study (none without a file). */
function readTasks(file: string | undefined, limit: number | undefined): ChoiceTask[] | undefined {
  if (!file) return undefined;
  checkFile(file, "task file");
  if (limit !== undefined && !(limit >= 1)) throw new Error(`--task-limit must be at least 1, got ${limit}`);
  return parseTasks(fs.readFileSync(file, "utf8"), file).slice(0, limit);
}

/** acc_norm and acc_mi of BI, the best other method by acc_mi and random, against k, with the chance line. */
function accuracyChart(title: string, r: PruneStudyResult): string {
  const maxK = Math.max(...r.cells.map((c) => c.k));
  const of = (m: StudyMethod, pick: (a: TaskAccuracy) => number) => r.cells.filter((c) => c.method === m && c.accuracy).map((c) => [c.k, 100 * pick(c.accuracy!)] as [number, number]);
  const series: Series[] = [
    { name: "BI acc_mi", points: of("bi", (a) => a.accMi.value), band: r.cells.filter((c) => c.method === "bi").map((c) => [100 * c.accuracy!.accMi.low, 100 * c.accuracy!.accMi.high]) },
    { name: "BI acc_norm", points: of("bi", (a) => a.accNorm.value) },
    { name: "ppl-iter acc_mi", points: of("ppl-iterative", (a) => a.accMi.value) },
    { name: "random acc_mi", points: r.random.filter((x) => x.accMiMean !== undefined).map((x) => [x.k, 100 * x.accMiMean!]), dashed: true },
    { name: "chance", points: [[0, 100 * r.task!.chance], [maxK, 100 * r.task!.chance]], dashed: true },
  ];
  return lineChart(title, series, "layers removed (k)", "accuracy % (band: 95% Wilson, BI acc_mi)");
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
    .option("--task <file>", "multiple-choice task (JSONL, as for eval): accuracy at every k")
    .option("--task-limit <n>", "score only the first n tasks", int("--task-limit", { min: 1 }))
    .option("--random-accuracy <n>", "random subsets per k whose task accuracy is measured", int("--random-accuracy", { min: 0 }), 5)
    .addOption(threadsOption())
    .action(async (modelPath: string, o: { calib: string; eval: string; evalDocs: number; ablation?: string[]; out: string; maxK?: number; random: number; seed: number; window: number; tokens: number; lossWindows: number; task?: string; taskLimit?: number; randomAccuracy: number; threads?: number }) => {
      checkFile(modelPath, "model");
      const asked = await threadsAsked(o);
      const model = loadModelFile(modelPath, { threads: asked });
      const threads = await startThreads(model, asked);
      const L = model.config.nLayers;
      if (o.maxK !== undefined && (o.maxK < 0 || o.maxK >= L)) throw new Error(`--max-k ${o.maxK} is out of range: the model has ${L} layers, so k must be 0..${L - 1}`);
      if (!(o.random >= 1)) throw new Error(`--random must be at least 1, got ${o.random}`);
      const calib = calibrationWindows(model, o.calib, o);
      const evalDocs = evaluationDocuments(model, o.eval, o.evalDocs);
      const ablation = (o.ablation ?? []).map((f) => ({ name: path.basename(f), windows: calibrationWindows(model, f, o) }));
      const tasks = readTasks(o.task, o.taskLimit);
      fs.mkdirSync(o.out, { recursive: true });
      const t0 = performance.now();
      const result = runPruneStudy({
        model, calib, evalDocs, maxK: o.maxK, randomSubsets: o.random, seed: o.seed, lossWindows: o.lossWindows, tasks, randomAccuracySubsets: o.randomAccuracy,
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
      const kldSeries: Series[] = STUDY_METHODS.map((m) => ({
        name: m, points: result.cells.filter((c) => c.method === m && c.k > 0).map((c) => [c.k, c.kld] as [number, number]),
      }));
      kldSeries.push({ name: "random (mean)", points: result.random.filter((r) => r.k > 0).map((r) => [r.k, r.kldMean]), dashed: true });
      writeTextFileAtomic(path.join(o.out, "prune-study-kld.svg"), lineChart(`${path.basename(modelPath)}: KL divergence from the dense model`, kldSeries, "layers removed (k)", "mean KLD (nats, log scale)", { logY: true }));
      if (result.task) {
        md += `\n![task accuracy against layers removed](prune-study-accuracy.svg)\n\n![KL divergence against layers removed](prune-study-kld.svg)\n`;
        writeTextFileAtomic(path.join(o.out, "prune-study-accuracy.svg"), accuracyChart(`${path.basename(modelPath)}: task accuracy against layers removed`, result));
      } else {
        md += `\n![KL divergence against layers removed](prune-study-kld.svg)\n`;
      }
      writeTextFileAtomic(path.join(o.out, "prune-study.md"), md);
      writeTextFileAtomic(path.join(o.out, "prune-study.svg"), svg);
      writeTextFileAtomic(path.join(o.out, "prune-study.json"), JSON.stringify({ model: modelPath, calib: o.calib, eval: o.eval, seconds, ...result, ablation: abl }, null, 2));
      process.stdout.write(md);
      model.stopThreads();
      process.stderr.write(`wrote ${o.out}/prune-study.{md,svg,json} in ${seconds.toFixed(0)} s on ${threads} thread${threads === 1 ? "" : "s"}\n`);
    });
  study
    .command("compose")
    .description("layers removed (0 … L/2) by BI and BI+heal × {F32, Q8_0, Q4_0 RTN/GPTQ, Q4_K_M RTN/GPTQ} in both orders: perplexity, KLD, task accuracy, size, decode speed, interaction, BI rankings, calibration-text ablation")
    .argument("<model>", "GGUF file (F32)")
    .requiredOption("--calib <file>", "calibration text (first 80% of its documents)")
    .requiredOption("--eval <file>", "evaluation text (last 20% of its documents, held out)")
    .option("--out <dir>", "folder for compose-study.md, the .svg charts and .json", "study-out")
    .option("--eval-docs <n>", "held-out documents to evaluate on (the first n of the last 20%)", int("--eval-docs", { min: 1 }), 60)
    .option("--max-k <n>", "largest number of layers removed (default L/2)", int("--max-k", { min: 0 }))
    .option("--window <n>", "calibration window length in tokens", int("--window", { min: 2 }), PRUNE_DEFAULTS.window)
    .option("--tokens <n>", "calibration tokens (BI and GPTQ)", int("--tokens", { min: 1 }), 4096)
    .option("--heal-tokens <n>", "calibration tokens for the heal fit", int("--heal-tokens", { min: 1 }), 32768)
    .option("--task <file>", "multiple-choice task (JSONL, as for eval): accuracy in every cell")
    .option("--task-limit <n>", "score only the first n tasks", int("--task-limit", { min: 1 }))
    .option("--ablation <files...>", "calibration texts to compare BI rankings and the resulting accuracy on")
    .option("--decode-rounds <n>", "interleaved decode-speed rounds", int("--decode-rounds", { min: 1 }), 7)
    .option("--resume", "keep the cells a previous run with the same settings measured (its checkpoint, else its compose-study.json) and measure the rest")
    .action((modelPath: string, o: { calib: string; eval: string; evalDocs: number; out: string; maxK?: number; window: number; tokens: number; healTokens: number; task?: string; taskLimit?: number; ablation?: string[]; decodeRounds: number; resume?: boolean }) => {
      checkFile(modelPath, "model");
      const bytes = new Uint8Array(fs.readFileSync(modelPath));
      const model = loadModelFile(modelPath);
      const L = model.config.nLayers;
      if (o.maxK !== undefined && (o.maxK < 0 || o.maxK >= L)) throw new Error(`--max-k ${o.maxK} is out of range: the model has ${L} layers`);
      if (!(o.decodeRounds >= 1)) throw new Error(`--decode-rounds must be at least 1, got ${o.decodeRounds}`);
      const calib = calibrationWindows(model, o.calib, o);
      const healCalib = calibrationWindows(model, o.calib, { window: o.window, tokens: o.healTokens });
      const evalDocs = evaluationDocuments(model, o.eval, o.evalDocs);
      const tasks = readTasks(o.task, o.taskLimit);
      const ablation = (o.ablation ?? []).map((f) => ({ name: path.basename(f), windows: calibrationWindows(model, f, o) }));
      fs.mkdirSync(o.out, { recursive: true });
      // what a checkpoint must have been made with to be reused
      const settings = {
        model: path.basename(modelPath), modelBytes: bytes.length, maxK: o.maxK ?? Math.floor(L / 2), calibTokens: calib.reduce((a, w) => a + w.length, 0),
        healTokens: healCalib.reduce((a, w) => a + w.length, 0), evalTokens: evalDocs.reduce((a, d) => a + d.length, 0), tasks: tasks?.length ?? 0,
        ablation: ablation.map((a) => a.name),
      };
      const checkpointPath = path.join(o.out, "compose-study.checkpoint.json");
      let resume: ComposeCheckpoint | undefined;
      if (o.resume) {
        const from = [checkpointPath, path.join(o.out, "compose-study.json")].find((f) => fs.existsSync(f));
        if (from) {
          const saved = JSON.parse(fs.readFileSync(from, "utf8")) as ComposeCheckpoint & { settings?: unknown };
          if (JSON.stringify(saved.settings) !== JSON.stringify(settings)) throw new Error(`${from} was made with other settings (${JSON.stringify(saved.settings)}); drop --resume or match them`);
          resume = { cells: saved.cells, rankings: saved.rankings, ablation: (saved as { ablation?: { cells?: ComposeCheckpoint["ablation"] } }).ablation?.cells ?? saved.ablation };
          process.stderr.write(`compose: resuming from ${from}: ${resume.cells.length} cells measured\n`);
        }
      }
      const t0 = performance.now();
      const result = runComposeStudy({
        bytes, name: modelPath, calib, healCalib, evalDocs, tasks, ablation, maxK: o.maxK, decodeRounds: o.decodeRounds, resume,
        onCheckpoint: (c) => writeTextFileAtomic(checkpointPath, JSON.stringify({ settings, ...c })),
        onProgress: (n) => process.stderr.write(`compose: ${n}\n`),
      });
      const seconds = (performance.now() - t0) / 1000;
      const command = `edgeprune study compose ${process.argv.slice(4).join(" ")}`.trim();
      const md = composeStudyMarkdown(result, { model: modelPath, command, seconds, calib: o.calib, healTokens: settings.healTokens, resumedCells: resume?.cells.length ?? 0 });
      for (const [file, svg] of Object.entries(composeStudyCharts(result, modelPath))) writeTextFileAtomic(path.join(o.out, file), svg);
      writeTextFileAtomic(path.join(o.out, "compose-study.md"), md);
      writeTextFileAtomic(path.join(o.out, "compose-study.json"), JSON.stringify({ model: modelPath, calib: o.calib, eval: o.eval, task: o.task, seconds, settings, ...result }, null, 2));
      fs.rmSync(checkpointPath, { force: true });
      process.stdout.write(md);
      process.stderr.write(`wrote ${o.out}/compose-study.{md,json} and its charts in ${seconds.toFixed(0)} s\n`);
    });
  return study;
}
