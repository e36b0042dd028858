// Crafted model files (test/support/crafted.ts) against every command that reads a model (issue 18 items 6 and 8):
// the lies the issue found, each through the real CLI, then every crafted file × info, generate, quantize, prune
// and bi in one capped child process (test/support/sweep.ts), and crafted Hugging Face folders through convert:
// a one-line error naming the file and the field, exit 1, nothing written, no hang, no gigabytes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { craftedModels, craftedStructures, header, writeCrafted, writeCraftedFolders } from "./support/crafted.js";
import type { SweepRun } from "./support/sweep.js";
import { runCli } from "./server-support.js";
import { sharedPath } from "./support/paths.js";

const tmp = fs.mkdtempSync(path.join(tmpdir(), "edgeprune-crafted-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const CALIB = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const files = Object.fromEntries(writeCrafted(path.join(tmp, "files")).map((c) => [c.name, c]));
const out = path.join(tmp, "out.gguf");

function oneLineError(r: { code: number; stderr: string }, pattern: RegExp): void {
  assert.is(r.code, 1, r.stderr.slice(-400));
  const lines = r.stderr.trim().split("\n");
  assert.is(lines.length, 1, r.stderr.slice(-400));
  assert.match(lines[0], /^edgeprune: error: /);
  assert.match(lines[0], pattern);
}

test("the crafted files really carry their lies", () => {
  assert.is(header(files["block-count-max"].bytes).kv.get("llama.block_count")!.value, 0xffffffff);
  assert.is(header(files["tokenizer-smaller"].bytes).kv.get("tokenizer.ggml.tokens")!.value && (header(files["tokenizer-smaller"].bytes).kv.get("tokenizer.ggml.tokens")!.value as { items: { length: number } }).items.length, 400);
  assert.ok(!header(files["tensor-missing"].bytes).tensors.some((t) => t.name === "blk.2.attn_q.weight"));
  assert.is(header(files["f32-as-f16"].bytes).tensors.find((t) => t.name === "blk.2.attn_k.weight")!.format.name, "F16");
  assert.is(files["f32-as-f16"].bytes.length, fs.statSync(sharedPath("models/stories260K.gguf")).size, "same bytes, one type field changed");
  assert.ok(craftedModels().length >= 15 && craftedStructures().length >= 10);
});

test("item 6: prune --layers refuses block_count 2^32-1 and 10^6 and a head-count lie at once; nothing is written", async () => {
  for (const name of ["block-count-max", "block-count-million", "head-count", "rms-eps-zero"]) {
    const t0 = performance.now();
    const r = await runCli(["prune", files[name].path, "--layers", "1", "-o", out], {}, 30_000);
    const ms = performance.now() - t0;
    oneLineError(r, files[name].error);
    assert.not.ok(fs.existsSync(out), `${name}: no output`);
    assert.ok(ms < 10_000, `${name}: ${ms.toFixed(0)} ms`);
  }
});

test("item 8: info on a model missing a tensor says which one (and that it cannot run)", async () => {
  const r = await runCli(["info", files["tensor-missing"].path]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /runnable\s+no: .*tensor "blk\.2\.attn_q\.weight" is missing/);
  assert.not.match(r.stdout + r.stderr, /Cannot read properties/);
  const j = JSON.parse((await runCli(["info", files["tensor-missing"].path, "--json"])).stdout) as { runnable: string; memoryBytes?: number };
  assert.match(j.runnable, /is missing/);
  assert.is(j.memoryBytes, undefined);
});

test("item 8: a tokenizer smaller than token_embd is refused at load, by generate and by serve before it is ready", async () => {
  oneLineError(await runCli(["generate", files["tokenizer-smaller"].path, "-p", "Once", "-n", "4"]), files["tokenizer-smaller"].error);
  const s = await runCli(["serve", files["tokenizer-smaller"].path, "--port", "0", "--warmup", "0"], {}, 30_000);
  assert.is(s.code, 1, s.stderr);
  assert.match(s.stderr.trim().split("\n").pop()!, files["tokenizer-smaller"].error);
});

test("item 8: F32 data labelled F16 is refused (llama.cpp's contiguous layout), in the middle and at the end", async () => {
  for (const name of ["f32-as-f16", "f32-as-f16-last"]) {
    oneLineError(await runCli(["generate", files[name].path, "-p", "Once", "-n", "4"]), files[name].error);
  }
});

test("item 8: bi on NaN or Inf weights refuses, naming the tensor, and prints no removal order", async () => {
  for (const name of ["nan-weights", "inf-weights"]) {
    const r = await runCli(["bi", files[name].path, "--calib", CALIB, "--tokens", "512", "--window", "64"]);
    oneLineError(r, files[name].error);
    assert.not.match(r.stdout, /removal order/);
    assert.not.match(r.stdout, /NaN/);
  }
});

test("crafted Hugging Face folders (safetensors headers that lie, an escaping index, a lying config): convert refuses each, nothing written", async () => {
  const root = path.join(tmp, "hf");
  for (const c of writeCraftedFolders(root)) {
    const target = path.join(root, `${c.name}.gguf`);
    const t0 = performance.now();
    const r = await runCli(["convert", c.dir, "-o", target], {}, 30_000);
    const ms = performance.now() - t0;
    oneLineError(r, c.error);
    assert.ok(r.stderr.includes(c.dir), `${c.name}: the error names the folder or file`);
    assert.not.ok(fs.existsSync(target), `${c.name}: no output`);
    assert.equal(fs.readdirSync(root).filter((n) => n.startsWith(".")), [], `${c.name}: no temp file`);
    assert.ok(ms < 15_000, `${c.name}: ${ms.toFixed(0)} ms`);
  }
});

test("sweep: every crafted file × info, generate, quantize, prune, prune --remove, bi: one-line errors, nothing written, bounded", () => {
  const dir = path.join(tmp, "sweep");
  // a heap cap far below what a runaway allocation would take: such a file fails the test instead of the machine
  const r = spawnSync(process.execPath, ["--max-old-space-size=256", "dist/test/support/sweep.js", dir, CALIB], { encoding: "utf8", timeout: 120_000, maxBuffer: 64 * 2 ** 20 });
  assert.is(r.status, 0, `the sweep process ended with ${r.status ?? r.signal}: ${r.stderr.slice(-1000)}`);
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as SweepRun & { maxRssBytes?: number });
  const { maxRssBytes } = lines.pop()!;
  const runs = lines as SweepRun[];
  const cases = Object.fromEntries([...craftedModels(), ...craftedStructures()].map((c) => [c.name, c]));
  const problems: string[] = [];
  let slowest = { ms: 0, what: "" };
  for (const run of runs) {
    const c = cases[run.file];
    const what = `${run.file} × ${run.command}`;
    if (run.ms > slowest.ms) slowest = { ms: run.ms, what };
    const nonFinite = run.file === "nan-weights" || run.file === "inf-weights";
    if (nonFinite && !["bi", "prune --remove"].includes(run.command)) continue; // the weights are a valid model's; only ranking them is refused
    if (run.command === "info" && !c.structural) {
      if (run.code !== 0 || !c.error.test(run.stdout) || !/runnable\s+no: /.test(run.stdout)) problems.push(`${what}: info should describe it as not runnable: ${run.stdout.slice(-300)}`);
      continue;
    }
    const err = run.stderr.trim().split("\n");
    if (run.code !== 1 || err.length !== 1 || !err[0].startsWith("edgeprune: error: ") || !c.error.test(err[0])) problems.push(`${what}: exit ${run.code}, ${JSON.stringify(run.stderr.slice(-300))}`);
    if (!err[0].includes(run.file)) problems.push(`${what}: the error does not name the file`);
    if (run.leftovers.length > 0) problems.push(`${what}: left ${run.leftovers.join(", ")}`);
    if (run.ms > 10_000) problems.push(`${what}: ${run.ms.toFixed(0)} ms`);
  }
  console.log(`  sweep: ${runs.length} runs of ${Object.keys(cases).length} crafted files; slowest ${slowest.what} ${slowest.ms.toFixed(0)} ms; peak RSS of the whole sweep ${((maxRssBytes ?? 0) / 2 ** 20).toFixed(0)} MiB`);
  assert.equal(problems, []);
  assert.is(runs.length, Object.keys(cases).length * 6);
  assert.ok((maxRssBytes ?? 0) < 512 * 2 ** 20, `peak RSS ${maxRssBytes}`);
});

test.run();
