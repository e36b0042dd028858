// Quality measurements checked against computations we did not make with them: KLD, Δp and argmax agreement of
// hand-made distributions and of llama.cpp's own distributions; llama.cpp's kl-divergence-base layout read back
// by offsets; the Wilson interval against Newcombe's published values; multiple-choice log-likelihoods against
// a plain evaluation of each whole sequence; the shipped task against its generator; and the CLI's bad input.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { ggufChunks } from "../src/gguf/writer.js";
import { removeLayers } from "../src/prune/remove.js";
import { Model } from "../src/model/model.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { logSoftmaxAt } from "../src/perplexity.js";
import { hellaswagPreprocess, parseTasks, scoreTasks } from "../src/quality/choice.js";
import { KldAccumulator, logSoftmaxRow } from "../src/quality/kld.js";
import { decodeRecord, encodeRecord, recordLength } from "../src/quality/kldbase.js";
import { kldModels } from "../src/quality/kldeval.js";
import { meanAndError, median, percentile, wilsonInterval } from "../src/quality/stats.js";
import { resolveShape, synthModel } from "../src/commands/synth.js";
import { disposeOracle, llamaCppTeacherForced } from "./support/llamacpp.js";
import { quantizedStories, STORIES_260K, teacherSequence } from "./support/fixtures.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";
import { KLD_VS_LLAMACPP } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const TASK = "tasks/tinystories-endings.jsonl";
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-quality-"));
const lastLine = (s: string) => s.trim().split("\n").pop()!;

test("KLD, Δp and same-top of two known distributions, by hand", () => {
  // base p = (1/2, 1/4, 1/4), candidate q = (1/4, 1/2, 1/4); true token 0
  const base = { logProbs: Float64Array.from([0.5, 0.25, 0.25].map(Math.log)), floor: -Infinity, argmax: 0 };
  const acc = new KldAccumulator(3);
  const kld = acc.add(base, [Math.log(0.25) + 7, Math.log(0.5) + 7, Math.log(0.25) + 7], 0, 0); // logits shifted: softmax is the same
  // KL(p‖q) = ½ ln 2 + ¼ ln ½ + ¼ ln 1 = ¼ ln 2
  assert.ok(Math.abs(kld - 0.25 * Math.LN2) < 1e-12, `${kld}`);
  // a second position: q = p exactly, true token 2
  acc.add(base, [Math.log(0.5), Math.log(0.25), Math.log(0.25)], 0, 2);
  const s = acc.summary();
  assert.is(s.count, 2);
  assert.ok(Math.abs(s.kld.mean - 0.125 * Math.LN2) < 1e-12);
  assert.ok(Math.abs(s.kld.max - 0.25 * Math.LN2) < 1e-7 && s.kld.min === 0);
  assert.is(s.sameTop.value, 0.5); // argmax 1 against 0, then 0 against 0
  // Δp: q(0) − p(0) = −¼, then 0; mean −⅛, RMS sqrt(1/32)
  assert.ok(Math.abs(s.deltaP.mean + 0.125) < 1e-12);
  assert.ok(Math.abs(s.deltaP.rms - Math.sqrt(1 / 32)) < 1e-12);
  // PPL(Q) = exp(mean(ln 4, ln 4)) = 4; PPL(base) = exp(mean(ln 2, ln 4)) = √8
  assert.ok(Math.abs(s.ppl.value - 4) < 1e-12 && Math.abs(s.pplBase.value - Math.sqrt(8)) < 1e-12);
  assert.ok(Math.abs(s.logPplRatio.value - (Math.log(4) - Math.log(Math.sqrt(8)))) < 1e-12);
});

test("statistics: mean, standard error, percentiles and median against direct computation", () => {
  const v = Array.from({ length: 25 }, (_, i) => ((i * 7919) % 101) / 10);
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
  const m = meanAndError(v.reduce((a, b) => a + b, 0), v.reduce((a, b) => a + b * b, 0), v.length);
  assert.ok(Math.abs(m.mean - mean) < 1e-12);
  assert.ok(Math.abs(m.error - Math.sqrt(variance / (v.length - 1))) < 1e-9);
  const sorted = Float64Array.from(v).sort();
  assert.is(percentile(sorted, 0), sorted[0]);
  assert.is(percentile(sorted, 1), sorted[24]);
  assert.ok(Math.abs(percentile(sorted, 0.9) - sorted[21].valueOf() * 0.4 - sorted[22] * 0.6) < 1e-12); // 0.9·24 = 21.6
  assert.is(median(sorted), sorted[12]);
  assert.is(median([1, 2, 3, 10]), 2.5);
});

test("Wilson interval: Newcombe (1998) Table I values", () => {
  // Statistics in Medicine 17:857-872, method 3 (score interval without continuity correction)
  for (const [k, n, lo, hi] of [[81, 263, 0.2553, 0.3662], [15, 148, 0.0624, 0.1605], [0, 20, 0, 0.1611], [1, 29, 0.0061, 0.1718]]) {
    const w = wilsonInterval(k, n);
    assert.ok(Math.abs(w.low - lo) < 5e-5 && Math.abs(w.high - hi) < 5e-5, `${k}/${n}: ${w.low} – ${w.high}`);
  }
});

test("kl-divergence base record: llama.cpp's layout, and decoding within half a 16-bit step", () => {
  const n = 301; // odd: the record pads to an even count
  const logits = Float32Array.from({ length: n }, (_, i) => 6 * Math.sin(i * 1.7) + (i === 5 ? 9 : 0) - 30 * (i % 97 === 0 ? 1 : 0));
  const rec = new Uint16Array(recordLength(n));
  assert.is(rec.length, 2 * 151 + 4);
  encodeRecord(logits, 0, n, rec);
  // by offsets, as perplexity.cpp reads it: f32 scale, f32 min log-prob, then u16 steps
  const dv = new DataView(rec.buffer);
  const scale = dv.getFloat32(0, true), minLp = dv.getFloat32(4, true);
  const exact = new Float64Array(n);
  logSoftmaxRow(logits, 0, n, exact);
  const top = Math.max(...exact);
  assert.ok(Math.abs(scale - 16 / 65535) < 1e-9, `scale ${scale}: the range is 16 nats below the top`);
  assert.ok(Math.abs(minLp - (top - 16)) < 1e-5);
  let floored = 0;
  for (let i = 0; i < n; i++) {
    const stored = scale * dv.getUint16(8 + 2 * i, true) + minLp;
    if (exact[i] <= top - 16) { floored++; assert.ok(Math.abs(stored - minLp) < 1e-6); continue; }
    assert.ok(Math.abs(stored - exact[i]) <= 0.5 * scale + 1e-5, `token ${i}: ${stored} against ${exact[i]}`);
  }
  assert.ok(floored > 0, "some logits fall below the 16-nat range");
  const out = { logProbs: new Float64Array(n), floor: 0, argmax: -1 };
  decodeRecord(rec, n, out);
  assert.is(out.argmax, 5);
  assert.is(out.floor, -16);
});

test("kld: a file against itself is 0 with the same top token everywhere", () => {
  const r = runCli("kld", STORIES_260K(), STORIES_260K(), "-f", TEXT, "--held-out", "--ctx", "128", "--chunks", "3", "--json");
  assert.is(r.status, 0, r.stderr);
  assert.is(lastLine(r.stdout), "mean KLD: 0");
  const lines = r.stdout.trim().split("\n");
  const j = JSON.parse(lines[lines.length - 2]);
  assert.is(j.count, 3 * 63);
  assert.is(j.kld.max, 0);
  assert.is(j.sameTop.value, 1);
  assert.is(j.pplRatio.value, 1);
  assert.match(r.stdout, /Same top p: 100\.000 ± 0\.000 %/);
});

test("kld of stories260K without layer 3 from the whole model equals the KLD of llama.cpp's own distributions", async () => {
  // a candidate with fewer layers; F32, where our distributions and llama.cpp's agree to ~1e-6 (a Q4_0 file would
  // compare our Q4_0 arithmetic with theirs as well, which is model.test's business)
  const bytes = new Uint8Array(readFileSync(STORIES_260K()));
  const pruned = join(tmp, "260k-no3.gguf");
  const cut = removeLayers(readGgufHeader(bytes), bytesSource(bytes), { layers: [3] });
  writeFileAtomicSync(pruned, ggufChunks(cut.spec, cut.tensorData));
  const base = Model.load(bytes, { ...STUDY_CACHE, name: "whole" });
  const cand = Model.load(new Uint8Array(readFileSync(pruned)), { ...STUDY_CACHE, name: "pruned" });
  const window = teacherSequence(base.tokenizer, 64);
  const ours = kldModels(base, cand, window, { contextSize: 64 }).summary;
  // positions 32 … 62 predict tokens 33 … 63 (the second half of the window, as llama-perplexity scores it)
  const pb = (await llamaCppTeacherForced(STORIES_260K(), window, { from: 32 })).slice(0, 31);
  const pc = (await llamaCppTeacherForced(pruned, window, { from: 32 })).slice(0, 31);
  let kld = 0, same = 0, dp = 0;
  const arg = (v: Float32Array) => v.indexOf(Math.max(...v));
  pb.forEach((p, i) => {
    for (let t = 0; t < p.length; t++) if (p[t] > 0) kld += p[t] * Math.log(p[t] / pc[i][t]);
    if (arg(p) === arg(pc[i])) same++;
    dp += pc[i][window[33 + i]] - p[window[33 + i]];
  });
  kld /= 31;
  assert.is(ours.count, 31);
  assert.ok(kld > 1e-2, `removing a layer changes the distributions (KLD ${kld})`);
  assert.ok(Math.abs(ours.kld.mean - kld) <= KLD_VS_LLAMACPP * kld, `ours ${ours.kld.mean} against llama.cpp's ${kld}`);
  assert.ok(Math.abs(ours.deltaP.mean - dp / 31) < 1e-5, `Δp ${ours.deltaP.mean} against ${dp / 31}`);
  assert.is(Math.round(ours.sameTop.value * 31), same);
  console.log(`    KLD ${ours.kld.mean.toFixed(6)}, llama.cpp's distributions ${kld.toFixed(6)} (relative difference ${(Math.abs(ours.kld.mean - kld) / kld).toExponential(1)})`);
});

test("kld --save-base then --base: the saved file gives the direct comparison's numbers", () => {
  const q8 = quantizedStories(tmp, "q8_0");
  const baseFile = join(tmp, "260k.kld");
  const save = runCli("kld", STORIES_260K(), "-f", TEXT, "--held-out", "--ctx", "128", "--chunks", "4", "--save-base", baseFile);
  assert.is(save.status, 0, save.stderr);
  assert.match(lastLine(save.stdout), /^perplexity: \d+\.\d+$/);
  assert.is(readFileSync(baseFile).subarray(0, 8).toString(), "_logits_");
  const viaFile = runCli("kld", q8, "--base", baseFile, "--json");
  const direct = runCli("kld", STORIES_260K(), q8, "-f", TEXT, "--held-out", "--ctx", "128", "--chunks", "4", "--json");
  assert.is(viaFile.status, 0, viaFile.stderr);
  assert.is(direct.status, 0, direct.stderr);
  const j = (r: typeof direct) => { const l = r.stdout.trim().split("\n"); return JSON.parse(l[l.length - 2]); };
  const a = j(viaFile), b = j(direct);
  assert.is(a.count, b.count);
  assert.is(a.ppl.value, b.ppl.value, "the candidate's perplexity does not depend on how the base is stored");
  // the file keeps each log-probability to half a step of 16/65535 nats: a KLD floor of about 1e-7 (measured 2e-7 on 16L)
  assert.ok(Math.abs(a.kld.mean - b.kld.mean) < 1e-6 + 1e-3 * b.kld.mean, `${a.kld.mean} against ${b.kld.mean}`);
  assert.is(a.sameTop.value, b.sameTop.value);
  const self = runCli("kld", STORIES_260K(), "--base", baseFile);
  assert.ok(Number(lastLine(self.stdout).split(": ")[1]) < 1e-6, self.stdout);
});

test("kld: bad input is one line, a non-zero exit and no file", () => {
  const bad = (args: string[], pattern: RegExp) => {
    const r = runCli("kld", ...args);
    assert.is.not(r.status, 0, args.join(" "));
    assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  };
  bad([STORIES_260K(), "-f", TEXT], /one model needs --save-base/);
  bad([STORIES_260K(), STORIES_260K()], /give --file TEXT/);
  bad([STORIES_260K(), "--base", TEXT, "-f", TEXT], /--base holds its own tokens/);
  const notBase = join(tmp, "not.kld");
  writeFileSync(notBase, "hello, this is not a base file at all");
  bad([STORIES_260K(), "--base", notBase], /not a llama\.cpp kl-divergence base file: it starts with "hello, t"/);
  const good = join(tmp, "short.kld");
  assert.is(runCli("kld", STORIES_260K(), "-f", TEXT, "--ctx", "64", "--chunks", "1", "--save-base", good).status, 0);
  const cut = join(tmp, "cut.kld");
  writeFileSync(cut, readFileSync(good).subarray(0, 1000));
  bad([STORIES_260K(), "--base", cut], /1000 bytes, but n_ctx 64, n_vocab 512 and n_chunk 1 make \d+/);
  // a model with another vocabulary
  const other = join(tmp, "vocab600.gguf");
  const { spec, tensorData } = synthModel({ shape: resolveShape({ dim: 64, layers: 1, heads: 2, vocab: 600, ctx: 256 }), type: "f32", seed: 3 });
  writeFileAtomicSync(other, ggufChunks(spec, tensorData));
  bad([STORIES_260K(), other, "-f", TEXT, "--ctx", "64"], /vocabulary of 512 tokens, the candidate .* 600/);
  bad([other, "--base", good], /distributions over 512 tokens, the candidate .* has 600/);
  const out = join(tmp, "never.kld");
  bad([STORIES_260K(), "-f", TEXT, "--ctx", "4096", "--save-base", out], /exceeds its context length/);
  assert.not.ok(existsSync(out));
});

test("tasks: our JSONL layout, HellaSwag's as lm-evaluation-harness preprocesses it, and errors naming line and field", () => {
  const ours = parseTasks('{"context": "A cat sat.", "endings": ["It purred.", "It flew."], "label": 0}\n\n{"context": "x", "endings": ["a", "b", "c"], "label": "2", "delimiter": "\\n"}\n', "t.jsonl");
  assert.equal(ours, [
    { context: "A cat sat.", endings: ["It purred.", "It flew."], label: 0, delimiter: " " },
    { context: "x", endings: ["a", "b", "c"], label: 2, delimiter: "\n" },
  ]);
  // the first record of HellaSwag's hellaswag_val.jsonl, verbatim
  const hs = parseTasks(JSON.stringify({
    ind: 24, activity_label: "Roof shingle removal", ctx_a: "A man is sitting on a roof.", ctx_b: "he", ctx: "A man is sitting on a roof. he",
    split: "val", split_type: "indomain", label: 3,
    endings: ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
    source_id: "activitynet~v_-JhWjGDPHMY",
  }), "hellaswag.jsonl");
  assert.is(hs[0].context, "Roof shingle removal: A man is sitting on a roof. He");
  assert.is(hs[0].label, 3);
  // the harness strips before it drops the markers, so a leading marker leaves its space
  assert.is(hellaswagPreprocess(" [header] How to  fix a roof [title] Get a ladder. "), " How to fix a roof. Get a ladder.");
  const err = (text: string, pattern: RegExp) => assert.throws(() => parseTasks(text, "bad.jsonl"), pattern);
  err('{"context": "a", "endings": ["x"], "label": 0}', /bad\.jsonl line 1: "endings" must be an array of 2/);
  err('\n{"context": "a", "endings": ["x", "y"], "label": 2}', /bad\.jsonl line 2: "label" must be the index of the true ending, 0 … 1, got 2/);
  err('{"context": "a", "endings": ["x", "y"], "label": 0}\n{nope', /bad\.jsonl line 2: invalid JSON/);
  err('{"endings": ["x", "y"], "label": 0}', /line 1: "context" must be a non-empty string/);
  err("\n\n", /no tasks/);
});

test("multiple choice: each ending's log-likelihood equals a plain evaluation of its whole sequence", () => {
  const model = Model.load(new Uint8Array(readFileSync(STORIES_260K())));
  const tasks = parseTasks(readFileSync(TASK, "utf8"), TASK).slice(0, 3);
  // and one task the model cannot get wrong under any normalisation: its own greedy continuation against noise
  const context = "Once upon a time, there was a little girl named Lily.";
  const ids = model.tokenizer.encode(context, { addBos: true });
  const ctx = model.createContext({ contextSize: 128 });
  let logits = ctx.eval(ids);
  const greedy: number[] = [];
  for (let i = 0; i < 12; i++) { let b = 0; for (let v = 1; v < logits.length; v++) if (logits[v] > logits[b]) b = v; greedy.push(b); logits = ctx.eval([b]); }
  const continuation = model.tokenizer.decode(greedy).trim();
  tasks.push({ context, endings: ["zq xv jj kw qq zz pf", continuation], label: 1, delimiter: " " });
  const r = scoreTasks(model, tasks, { contextSize: 512 });
  const V = model.config.vocabSize;
  tasks.forEach((t, i) => {
    const ctxLen = model.tokenizer.encode(t.context, { addBos: true }).length;
    t.endings.forEach((e, k) => {
      const whole = model.tokenizer.encode(t.context + t.delimiter + e, { addBos: true });
      const lg = model.createContext({ contextSize: 512 }).eval(whole, { logits: "all" });
      let sum = 0;
      for (let j = ctxLen; j < whole.length; j++) sum += logSoftmaxAt(lg, (j - 1) * V, V, whole[j]);
      assert.ok(Math.abs(r.scores[i].logLikelihood[k] - sum) < 1e-3, `task ${i} ending ${k}: ${r.scores[i].logLikelihood[k]} against ${sum}`);
      assert.is(r.scores[i].tokens[k], whole.length - ctxLen);
    });
  });
  const last = r.scores[3];
  assert.equal([last.pred, last.predNorm, last.predToken, last.predMi], [1, 1, 1, 1]);
  assert.is(r.chance, (3 * 0.25 + 0.5) / 4);
  assert.is(r.acc.correct, r.scores.filter((s, i) => s.pred === tasks[i].label).length);
});

test("the shipped TinyStories task is what its generator script writes", () => {
  const out = join(tmp, "task.jsonl");
  const r = spawnSync(process.execPath, ["scripts/make-tinystories-task.mjs", TEXT, out], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  assert.ok(readFileSync(out).equals(readFileSync(TASK)), "tasks/tinystories-endings.jsonl differs from the script's output: regenerate it");
  const tasks = parseTasks(readFileSync(TASK, "utf8"), TASK);
  assert.is(tasks.length, 200);
  for (const t of tasks) assert.is(new Set(t.endings).size, 4);
});

test("eval: the last line is acc_norm, --json has every accuracy, bad input is one line", () => {
  const r = runCli("eval", STORIES_260K(), "--task", TASK, "--limit", "8", "--json");
  assert.is(r.status, 0, r.stderr);
  assert.match(lastLine(r.stdout), /^acc_norm: [\d.]+$/);
  assert.match(r.stdout, /random chance 25\.00%/);
  const lines = r.stdout.trim().split("\n");
  const j = JSON.parse(lines[lines.length - 2]);
  assert.is(j.tasks, 8);
  for (const k of ["acc", "accNorm", "accToken", "accMi"]) assert.ok(j[k].low <= j[k].value && j[k].value <= j[k].high, k);
  assert.is(j.predictions.length, 8);
  const badTask = join(tmp, "bad.jsonl");
  writeFileSync(badTask, '{"context": "a", "endings": ["x", "y"], "label": 5}\n');
  const b = runCli("eval", STORIES_260K(), "--task", badTask);
  assert.is.not(b.status, 0);
  assert.match(b.stderr.trim(), /^edgeprune: error: .*bad\.jsonl line 1: "label" must be the index/);
  const missing = runCli("eval", STORIES_260K(), "--task", join(tmp, "none.jsonl"));
  assert.match(missing.stderr, /task file .*none\.jsonl does not exist/);
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});
test.run();
