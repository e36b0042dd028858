// The study commands end to end on stories260K, kept small (few documents, small k): they write their Markdown,
// SVG and JSON, the tables hold every method or cell, and the numbers obey what must hold by construction.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STUDY_METHODS } from "../src/prune/study.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";

const MODEL = sharedPath("models/stories260K.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const WIKI = sharedPath("data/wikitext-2-raw/wiki.test.raw");
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-study-"));

const cli = runCli;

test("study prune: every method at every k, random baseline, calibration ablation", () => {
  const out = join(tmp, "prune");
  const r = cli("study", "prune", MODEL, "--calib", TEXT, "--eval", TEXT, "--eval-docs", "4", "--max-k", "2", "--random", "3",
    "--tokens", "512", "--window", "64", "--loss-windows", "2", "--ablation", TEXT, WIKI, "--out", out);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(readFileSync(join(out, "prune-study.json"), "utf8"));
  assert.is(j.cells.length, 3 * STUDY_METHODS.length);
  // k = 0 is the dense model for every method, with full agreement
  for (const c of j.cells.filter((c: { k: number }) => c.k === 0)) {
    assert.ok(Math.abs(c.perplexity - j.densePerplexity) < 1e-9);
    assert.is(c.top1, 1);
  }
  for (const c of j.cells) assert.is(c.removed.length, c.method === "laco" && c.k > 0 ? 1 : c.k);
  assert.is(j.random.length, 3);
  assert.is(j.ablation.tau.length, 2);
  assert.is(j.ablation.tau[0][0], 1);
  const md = readFileSync(join(out, "prune-study.md"), "utf8");
  assert.match(md, /\| k \| bi \| bi-iterative \|/);
  assert.match(md, /Kendall's tau/);
  assert.match(readFileSync(join(out, "prune-study.svg"), "utf8"), /^<svg[^>]+xmlns="http:\/\/www.w3.org\/2000\/svg"/);
});

test("study compose: both orders, interaction 0 for F32, a Pareto front", () => {
  const out = join(tmp, "compose");
  const r = cli("study", "compose", MODEL, "--calib", TEXT, "--eval", TEXT, "--eval-docs", "3", "--max-k", "1", "--tokens", "256", "--window", "64", "--out", out);
  assert.is(r.status, 0, r.stderr);
  const j = JSON.parse(readFileSync(join(out, "compose-study.json"), "utf8"));
  // F32: k = 0, 1; each of 5 quantized configs: k = 0, and k = 1 in both orders
  assert.is(j.cells.length, 2 + 5 * 3);
  for (const c of j.cells.filter((c: { config: string }) => c.config === "F32")) assert.ok(Math.abs(c.interaction) < 1e-9);
  assert.ok(j.cells.some((c: { pareto: boolean }) => c.pareto));
  assert.is(j.rankings.length, 5);
  const sizes = Object.fromEntries(j.cells.filter((c: { k: number }) => c.k === 0).map((c: { config: string; fileBytes: number }) => [c.config, c.fileBytes]));
  assert.ok(sizes["Q4_0 GPTQ"] < sizes["Q8_0 GPTQ"] && sizes["Q8_0 GPTQ"] < sizes["F32"]);
  assert.match(readFileSync(join(out, "compose-study.md"), "utf8"), /\| k \| format \| order \|/);
});

test("study: bad input is one line and a non-zero exit", () => {
  const r = cli("study", "prune", MODEL, "--calib", TEXT, "--eval", TEXT, "--max-k", "5", "--out", join(tmp, "bad"));
  assert.is.not(r.status, 0);
  assert.match(r.stderr.trim(), /^edgeprune: error: --max-k 5 is out of range/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
