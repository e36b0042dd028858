// The study commands end to end on stories260K, kept small (few documents, small k, few tasks): they write their
// Markdown, SVG and JSON, the tables hold every method or cell, and the numbers are checked against the float64
// references (held-out perplexities, the layers BI removes, the ablation's BI and Kendall's tau) and against what
// must hold by construction (k = 0 is the dense model; round-to-nearest commutes with removing layers; the
// interaction is the difference it is defined as; --resume measures nothing twice).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STUDY_METHODS } from "../src/prune/study.js";
import { Model } from "../src/model/model.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";
import { RefLlama, refDocumentsPerplexity } from "./support/ref-forward.js";
import { refCalibrationWindows, refOrder, refScores } from "./support/ref-bi.js";
import { PPL_VS_F64, SCORE_VS_F64 } from "./tolerances.js";

const MODEL = sharedPath("models/stories260K.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const WIKI = sharedPath("data/wikitext-2-raw/wiki.test.raw");
const TASK = "tasks/tinystories-endings.jsonl";
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-study-"));

const cli = runCli;
const bytes = new Uint8Array(readFileSync(MODEL));
const tokenizer = Model.load(bytes).tokenizer;
const ref = RefLlama.fromGguf(bytes);
const text = readFileSync(TEXT, "utf8");
const encode = (s: string) => tokenizer.encode(s, { addBos: true });

/** the first n held-out stories (the last 20% of the file), BOS + tokens, as the README describes the evaluation set */
function heldOut(n: number): number[][] {
  const docs = text.split(/^<\|endoftext\|>[ \t]*$/m).map((d) => d.trim()).filter((d) => d !== "");
  return docs.slice(Math.round(docs.length * 0.8)).slice(0, n).map(encode);
}

/** the reference's BI removal order on the CLI's calibration windows */
function refBiOrder(tokens: number, window: number, t = text): number[] {
  return refOrder(refScores(ref, "bi", { windows: refCalibrationWindows(encode, tokenizer.bosId, t, tokens, window) }).scores);
}

/** Kendall's tau-b, written out from its definition (ties in either ranking leave the pair out of the numerator) */
function tauB(a: number[], b: number[]): number {
  let nc = 0, nd = 0, ta = 0, tb = 0;
  for (let i = 0; i < a.length; i++) for (let j = i + 1; j < a.length; j++) {
    const x = Math.sign(a[i] - a[j]) * Math.sign(b[i] - b[j]);
    if (x > 0) nc++; else if (x < 0) nd++;
    if (a[i] === a[j] && b[i] !== b[j]) ta++;
    if (b[i] === b[j] && a[i] !== a[j]) tb++;
  }
  return (nc - nd) / Math.sqrt((nc + nd + ta) * (nc + nd + tb));
}

const close = (a: number, b: number) => Math.abs(a - b) <= PPL_VS_F64 * b;

test("study prune: every method at every k, random baseline, calibration ablation", () => {
  const out = join(tmp, "prune");
  const r = cli("study", "prune", MODEL, "--calib", TEXT, "--eval", TEXT, "--eval-docs", "4", "--max-k", "2", "--random", "3",
    "--tokens", "512", "--window", "64", "--loss-windows", "2", "--ablation", TEXT, WIKI, "--task", TASK, "--task-limit", "4", "--random-accuracy", "1", "--out", out);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(readFileSync(join(out, "prune-study.json"), "utf8"));
  assert.is(j.cells.length, 3 * STUDY_METHODS.length);
  // k = 0 is the dense model for every method, with full agreement
  for (const c of j.cells.filter((c: { k: number }) => c.k === 0)) {
    assert.ok(Math.abs(c.perplexity - j.densePerplexity) < 1e-9);
    assert.is(c.top1, 1);
    assert.is(c.kld, 0);
  }
  for (const c of j.cells) {
    assert.ok(c.accuracy && c.accuracy.accMi.low <= c.accuracy.accMi.value, `${c.method} k=${c.k} has its accuracy`);
    if (c.k > 0 && c.method !== "laco") assert.ok(c.kld > 0, `${c.method} k=${c.k}: removing a layer moves the distribution`);
  }
  assert.is(j.task.tasks, 4);
  assert.ok(j.random.every((r: { k: number; accuracySubsets: number }) => r.accuracySubsets === 1));
  for (const c of j.cells) assert.is(c.removed.length, c.method === "laco" && c.k > 0 ? 1 : c.k);
  assert.is(j.random.length, 3);
  // held-out perplexities: dense, and with the layers BI removes (the reference's lowest BI) and the last k
  const evalDocs = heldOut(4);
  assert.ok(close(j.densePerplexity, refDocumentsPerplexity(ref, evalDocs)), `dense ${j.densePerplexity}`);
  const order = refBiOrder(512, 64);
  for (const k of [1, 2]) {
    const bi = j.cells.find((c: { k: number; method: string }) => c.k === k && c.method === "bi");
    assert.equal(bi.removed.map(Number).sort(), order.slice(0, k).sort(), `bi removes the reference's ${k} lowest`);
    assert.ok(close(bi.perplexity, refDocumentsPerplexity(ref, evalDocs, { layers: new Set(order.slice(0, k)) })), `bi k=${k}: ${bi.perplexity}`);
    const last = j.cells.find((c: { k: number; method: string }) => c.k === k && c.method === "last");
    assert.equal(last.removed.map(Number), [4, 3].slice(0, k));
    assert.ok(close(last.perplexity, refDocumentsPerplexity(ref, evalDocs, { layers: new Set([4, 3].slice(0, k)) })), `last k=${k}`);
  }
  // the ablation: BI from each text equals the reference's, tau is tau-b of those scores (and the texts disagree)
  assert.is(j.ablation.tau.length, 2);
  const sources = [text, readFileSync(WIKI, "utf8")];
  j.ablation.sources.forEach((src: { bi: number[] }, i: number) => {
    if (i === 1) return; // WikiText is one document, split by characters: not the README's story windows
    const want = refScores(ref, "bi", { windows: refCalibrationWindows(encode, tokenizer.bosId, sources[i], 512, 64) }).scores;
    src.bi.forEach((b, l) => assert.ok(Math.abs(b - want[l]) <= SCORE_VS_F64, `ablation source ${i} layer ${l}: ${b} vs ${want[l]}`));
  });
  const tau = tauB(j.ablation.sources[0].bi, j.ablation.sources[1].bi);
  assert.ok(Math.abs(j.ablation.tau[0][1] - tau) < 1e-12 && Math.abs(j.ablation.tau[1][0] - tau) < 1e-12, `tau ${j.ablation.tau[0][1]} vs ${tau}`);
  assert.ok(tau < 1, "the two texts rank the layers differently");
  const md = readFileSync(join(out, "prune-study.md"), "utf8");
  assert.match(md, /\| k \| bi \| bi-iterative \|/);
  assert.match(md, /Kendall's tau/);
  assert.match(md, /\| k \| removed \| perplexity \| KLD \| top-1 \| acc \| acc_norm \| acc_token \| acc_mi \|/);
  for (const f of ["prune-study.svg", "prune-study-kld.svg", "prune-study-accuracy.svg"]) {
    assert.match(readFileSync(join(out, f), "utf8"), /^<svg[^>]+xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  }
});

test("study compose: every cell in both orders with and without healing, interaction as defined, RTN commutes with removal", () => {
  const out = join(tmp, "compose");
  const args = ["study", "compose", MODEL, "--calib", TEXT, "--eval", TEXT, "--eval-docs", "3", "--max-k", "1", "--tokens", "256", "--heal-tokens", "512",
    "--window", "64", "--task", TASK, "--task-limit", "3", "--ablation", TEXT, WIKI, "--decode-rounds", "1", "--out", out];
  const r = cli(...args);
  assert.is(r.status, 0, r.stderr);
  type Cell = { k: number; config: string; removal: string; order: string; removed: number[]; perplexity: number; kld: number; top1: number; fileBytes: number; decodeTokensPerSecond: number; pareto: boolean; interaction?: { perplexity: number; kld: number }; accuracy: { accMi: { value: number } } };
  const j = JSON.parse(readFileSync(join(out, "compose-study.json"), "utf8")) as { cells: Cell[]; pending: { config: string }[]; rankings: unknown[]; ablation: { tau: number[][]; cells: unknown[] } };
  // F32: k = 0, and k = 1 by BI and BI+heal; each of 5 quantized configs: k = 0, and k = 1 × 2 removals × 2 orders
  assert.is(j.cells.length, 3 + 5 * 5);
  assert.equal(j.pending, []);
  const dense = j.cells.find((c) => c.k === 0 && c.config === "F32")!;
  assert.is(dense.kld, 0);
  assert.is(dense.top1, 1);
  // F32 against the float64 reference: dense, and without the layer the reference's BI ranks lowest
  const evalDocs = heldOut(3);
  const f32bi = j.cells.find((c) => c.config === "F32" && c.k === 1 && c.removal === "BI")!;
  const lowest = refBiOrder(256, 64)[0];
  assert.equal(f32bi.removed, [lowest]);
  assert.ok(close(dense.perplexity, refDocumentsPerplexity(ref, evalDocs)), `F32 k=0 ${dense.perplexity}`);
  assert.ok(close(f32bi.perplexity, refDocumentsPerplexity(ref, evalDocs, { layers: new Set([lowest]) })), `F32 k=1 ${f32bi.perplexity}`);
  for (const c of j.cells) {
    assert.ok(c.accuracy && c.decodeTokensPerSecond > 0, `${c.config} k=${c.k}`);
    if (c.config === "F32" || c.k === 0) assert.is(c.interaction, undefined);
    else {
      const p = j.cells.find((x) => x.config === "F32" && x.k === c.k && x.removal === c.removal)!;
      const q = j.cells.find((x) => x.config === c.config && x.k === 0)!;
      assert.ok(Math.abs(c.interaction!.perplexity - (c.perplexity - p.perplexity - q.perplexity + dense.perplexity)) < 1e-9);
    }
  }
  assert.ok(j.cells.some((c) => c.interaction && Math.abs(c.interaction.perplexity) > 1e-6), "quantization and pruning interact somewhere");
  // quantize→prune with RTN removes the same layers from the same rounded tensors as prune→quantize
  for (const cfg of ["Q8_0", "Q4_0 RTN", "Q4_K_M RTN"]) {
    const a = j.cells.find((c) => c.config === cfg && c.k === 1 && c.removal === "BI" && c.order === "prune→quantize")!;
    const b = j.cells.find((c) => c.config === cfg && c.k === 1 && c.removal === "BI" && c.order === "quantize→prune")!;
    if (a.removed.join() === b.removed.join()) assert.is(a.perplexity, b.perplexity, cfg);
  }
  const size = (cfg: string) => j.cells.find((c) => c.config === cfg && c.k === 0)!.fileBytes;
  assert.ok(size("Q4_0 GPTQ") < size("Q8_0") && size("Q8_0") < size("F32"));
  assert.ok(size("Q4_K_M GPTQ") === size("Q4_K_M RTN") && size("Q4_K_M RTN") < size("Q8_0"));
  assert.ok(j.cells.some((c) => c.pareto));
  assert.is(j.rankings.length, 5);
  assert.is(j.ablation.tau.length, 2);
  const md = readFileSync(join(out, "compose-study.md"), "utf8");
  assert.match(md, /\| k \| format \| removal \| order \|/);
  assert.match(md, /\| Q4_K_M GPTQ \|/);
  assert.match(md, /## Does healing help\?/);
  assert.match(md, /noisy/);
  for (const f of ["compose-study.svg", "compose-study-k.svg", "compose-study-kld.svg", "compose-study-accuracy.svg", "compose-study-ablation.svg"]) {
    assert.match(readFileSync(join(out, f), "utf8"), /^<svg/);
  }
  // --resume measures nothing again and gives the same cells
  const again = cli(...args, "--resume");
  assert.is(again.status, 0, again.stderr);
  assert.match(again.stderr, /resuming from .*compose-study\.json: 28 cells measured/);
  assert.not.match(again.stderr, /measuring/);
  const k = JSON.parse(readFileSync(join(out, "compose-study.json"), "utf8")) as { cells: Cell[] };
  assert.equal(k.cells.map((c) => [c.config, c.k, c.removal, c.order, c.perplexity, c.kld]), j.cells.map((c) => [c.config, c.k, c.removal, c.order, c.perplexity, c.kld]));
  const other = cli(...args.map((a) => (a === "--heal-tokens" ? a : a === "512" ? "1024" : a)), "--resume");
  assert.is.not(other.status, 0);
  assert.match(other.stderr, /was made with other settings/);
});

test("study: bad input is one line and a non-zero exit", () => {
  const r = cli("study", "prune", MODEL, "--calib", TEXT, "--eval", TEXT, "--max-k", "5", "--out", join(tmp, "bad"));
  assert.is.not(r.status, 0);
  assert.match(r.stderr.trim(), /^edgeprune: error: --max-k 5 is out of range/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
