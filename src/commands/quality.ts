// The `kld` and `eval` commands: KL divergence of a candidate from a base model on llama-perplexity's windows
// (directly, or against a saved llama.cpp kl-divergence-base file), and multiple-choice accuracy on a JSONL task.
// Node-only; the work is in src/quality/.
import { Command } from "commander";
import * as fs from "node:fs";
import { calibrationSplit, END_OF_TEXT, splitDocuments } from "../data/documents.js";
import { FileSource, writeFileAtomic } from "../node/files.js";
import { loadModelFile } from "../node/load.js";
import { ProgressBar } from "../node/progress.js";
import { windowCount } from "../perplexity.js";
import { parseTasks, scoreTasks, type Accuracy } from "../quality/choice.js";
import { formatKldSummary } from "../quality/kld.js";
import { kldAgainstBase, kldBaseFile, kldModels, type KldRunResult } from "../quality/kldeval.js";
import { cacheTypeK, cacheTypeV, cacheTypes, checkFile, int, startThreads, threadsAsked, threadsOption, type CacheTypeFlags } from "./common.js";

/**
 * The text a measurement reads: the whole file, or with heldOut only its last 20% of documents (the part
 * `--calib` never sees; documents rejoined with their `<|endoftext|>` lines).
 */
export function measurementText(path: string, heldOut: boolean): string {
  checkFile(path, "text file");
  const text = fs.readFileSync(path, "utf8");
  if (!heldOut) return text;
  const docs = splitDocuments(text);
  const held = calibrationSplit(docs).eval;
  return docs.length > 1 ? held.map((d) => `${d}\n${END_OF_TEXT}\n`).join("") : held[0];
}

/** A number for the last line: six significant digits. */
function figure(v: number): string {
  return Number(v.toPrecision(6)).toString();
}

function accuracyLine(name: string, a: Accuracy, what: string): string {
  const p = (v: number) => `${(100 * v).toFixed(2)}%`;
  return `${name.padEnd(10)} ${p(a.value).padStart(7)}  (${a.correct} correct; 95% Wilson interval ${p(a.low)} – ${p(a.high)})  ${what}`;
}

export function registerQualityCommands(program: Command, defaults: { pplContext: number }): void {
  program
    .command("kld")
    .description("KL divergence of a candidate model from a base model on llama-perplexity's windows, with llama-perplexity --kl-divergence's statistics")
    .argument("<models...>", "BASE.gguf CANDIDATE.gguf; or BASE.gguf with --save-base; or CANDIDATE.gguf with --base")
    .option("-f, --file <text>", "UTF-8 text file (as for ppl)")
    .option("--ctx <n>", "window length in tokens", int("--ctx"))
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .option("--chunks <n>", "compare at most this many windows", int("--chunks"))
    .option("--held-out", "read only the last 20% of the file's documents (the part --calib never sees)")
    .option("--save-base <file>", "write the base's distributions as a llama.cpp kl-divergence-base file")
    .option("--base <file>", "compare the candidate against a saved kl-divergence-base file (ours or llama-perplexity's)")
    .addOption(threadsOption())
    .option("--json", "print the statistics as JSON (before the last line)")
    .action(async (models: string[], o: { file?: string; ctx?: number; chunks?: number; heldOut?: boolean; saveBase?: string; base?: string; threads?: number; json?: boolean } & CacheTypeFlags) => {
      if (o.chunks !== undefined && !(o.chunks >= 1)) throw new Error(`--chunks must be at least 1, got ${o.chunks}`);
      for (const m of models) checkFile(m, "model");
      const asked = await threadsAsked(o);
      let threads = 1;
      let result: KldRunResult;
      let label: { base: string; candidate: string };
      if (o.base) {
        if (models.length !== 1) throw new Error(`with --base give one model (the candidate), got ${models.length}`);
        if (o.file || o.ctx !== undefined || o.heldOut || o.saveBase) throw new Error("--base holds its own tokens and window length: drop --file, --ctx, --held-out and --save-base");
        checkFile(o.base, "kl-divergence base file");
        const src = new FileSource(o.base);
        try {
          const candidate = loadModelFile(models[0], { threads: asked, ...cacheTypes(o) });
          threads = await startThreads(candidate, asked);
          let bar: ProgressBar | undefined;
          result = kldAgainstBase(candidate, src, o.base, { maxChunks: o.chunks, onProgress: (d, t) => { bar ??= new ProgressBar("kld", t); bar.update(d); } });
          bar?.done();
          candidate.stopThreads();
        } finally {
          src.close();
        }
        label = { base: o.base, candidate: models[0] };
      } else {
        if (!o.file) throw new Error("give --file TEXT (or --base FILE to compare against a saved base)");
        if (models.length > 2) throw new Error(`give at most two models (BASE CANDIDATE), got ${models.length}`);
        if (models.length === 1 && !o.saveBase) throw new Error("one model needs --save-base FILE; to compare give BASE.gguf CANDIDATE.gguf, or CANDIDATE.gguf with --base FILE");
        const ctxSize = o.ctx ?? defaults.pplContext;
        const base = loadModelFile(models[0], { contextSize: ctxSize, threads: asked, ...cacheTypes(o) });
        threads = await startThreads(base, asked);
        const tokens = base.tokenizer.encode(measurementText(o.file, Boolean(o.heldOut)), { addBos: base.tokenizer.addBos });
        const total = windowCount(tokens.length, ctxSize, o.chunks);
        if (o.saveBase) {
          const bar = new ProgressBar("base", total);
          let nll = 0, count = 0;
          const bytes = await writeFileAtomic(o.saveBase, kldBaseFile(base, tokens, {
            contextSize: ctxSize, maxChunks: o.chunks, onProgress: (d) => bar.update(d), onNll: (s, c) => { nll += s; count += c; },
          }), { inputs: [...models, o.file] });
          bar.done();
          process.stderr.write(`wrote ${o.saveBase}: ${total} windows of ${ctxSize} tokens, ${count} distributions over ${base.config.vocabSize} tokens (${(bytes / 2 ** 20).toFixed(2)} MiB)\n`);
          if (models.length === 1) {
            base.stopThreads();
            console.log(`perplexity: ${Math.exp(nll / count).toFixed(4)}`);
            return;
          }
        }
        const candidate = loadModelFile(models[1], { contextSize: ctxSize, threads: asked, ...cacheTypes(o) });
        threads = Math.min(threads, await startThreads(candidate, asked));
        const bar = new ProgressBar("kld", total);
        result = kldModels(base, candidate, tokens, { contextSize: ctxSize, maxChunks: o.chunks, onProgress: (d) => bar.update(d) });
        bar.done();
        base.stopThreads();
        candidate.stopThreads();
        label = { base: models[0], candidate: models[1] };
      }
      const s = result.summary;
      process.stderr.write(`${result.chunks} windows of ${result.contextSize} tokens, ${s.count} positions compared on ${threads} thread${threads === 1 ? "" : "s"}\n`);
      console.log(formatKldSummary(s));
      if (o.json) console.log(JSON.stringify({ ...label, chunks: result.chunks, contextSize: result.contextSize, ...s }));
      console.log(`mean KLD: ${figure(s.kld.mean)}`);
    });

  program
    .command("eval")
    .description("multiple-choice accuracy by log-likelihood (lm-evaluation-harness's acc, acc_norm and acc_mutual_info, llama.cpp's per-token score) on a JSONL task")
    .argument("<model>", "GGUF file")
    .requiredOption("--task <file>", "JSONL task: {\"context\", \"endings\", \"label\"} per line, or HellaSwag's layout")
    .option("--limit <n>", "score only the first n tasks", int("--limit"))
    .option("--ctx <n>", "window length in tokens (longer contexts lose their beginning)", int("--ctx"))
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .addOption(threadsOption())
    .option("--json", "print the result as JSON (before the last line)")
    .action(async (modelPath: string, o: { task: string; limit?: number; ctx?: number; threads?: number; json?: boolean } & CacheTypeFlags) => {
      checkFile(modelPath, "model");
      checkFile(o.task, "task file");
      if (o.limit !== undefined && !(o.limit >= 1)) throw new Error(`--limit must be at least 1, got ${o.limit}`);
      const tasks = parseTasks(fs.readFileSync(o.task, "utf8"), o.task).slice(0, o.limit);
      const asked = await threadsAsked(o);
      const model = loadModelFile(modelPath, { contextSize: o.ctx, threads: asked, ...cacheTypes(o) });
      const threads = await startThreads(model, asked);
      const bar = new ProgressBar("eval", tasks.length);
      const r = scoreTasks(model, tasks, { contextSize: o.ctx, onProgress: (d) => bar.update(d) });
      bar.done();
      model.stopThreads();
      process.stderr.write(`eval: ${r.tasks} tasks on ${threads} thread${threads === 1 ? "" : "s"}\n`);
      const counts = [...new Set(tasks.map((t) => t.endings.length))].sort((a, b) => a - b);
      console.log(`task ${o.task}: ${r.tasks} tasks, ${counts.join(" or ")} endings each; random chance ${(100 * r.chance).toFixed(2)}%${r.truncatedTasks ? `; ${r.truncatedTasks} contexts cut to fit the window` : ""}`);
      console.log(accuracyLine("acc", r.acc, "sum of log p over the ending's tokens"));
      console.log(accuracyLine("acc_norm", r.accNorm, "the sum divided by the ending's length in characters (lm-evaluation-harness)"));
      console.log(accuracyLine("acc_token", r.accToken, "mean log p per token of the ending (llama.cpp's HellaSwag score)"));
      console.log(accuracyLine("acc_mi", r.accMi, "the sum minus the ending's log p without the context (lm-evaluation-harness's acc_mutual_info)"));
      if (o.json) {
        const { scores, ...summary } = r;
        console.log(JSON.stringify({ model: modelPath, task: o.task, ...summary, predictions: scores.map((s) => ({ pred: s.pred, predNorm: s.predNorm, predToken: s.predToken, predMi: s.predMi, logLikelihood: s.logLikelihood, unconditional: s.unconditional })) }));
      }
      console.log(`acc_norm: ${figure(r.accNorm.value)}`);
    });
}
