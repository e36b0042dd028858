// --threads on every command that runs kernels: checked before any output (the option's name in the message),
// results at 2 threads equal to 1 thread's (perplexity, Block Influence, GPTQ's bytes on a model wide enough that
// its rank-1 and block updates are split by rows), and the threads that ran are what is labelled, with a fall-back
// to one thread said on stderr. No timings are asserted (bench/ and the report measure them).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedPath } from "./support/paths.js";

const MODEL = sharedPath("models/stories-deep-16L.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const TASK = "tasks/tinystories-endings.jsonl";
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-threads-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[], nodeFlags: string[] = []) {
  return spawnSync(process.execPath, [...nodeFlags, "bin/edgeprune.js", ...args], { encoding: "utf8" });
}

test("--threads 0 and --threads x are refused by every command before any output, naming the option", () => {
  const out = join(tmp, "never.gguf");
  const commands: string[][] = [
    ["generate", MODEL, "-p", "hi"], ["chat", MODEL], ["serve", MODEL, "--port", "0"], ["ppl", MODEL, "-f", TEXT],
    ["bi", MODEL, "--calib", TEXT], ["prune", MODEL, "--remove", "1", "--calib", TEXT, "-o", out],
    ["quantize", MODEL, "--type", "q8_0", "--method", "gptq", "--calib", TEXT, "-o", out], ["study", "prune", MODEL, "--calib", TEXT, "--eval", TEXT, "--out", tmp],
    ["kld", MODEL, MODEL, "-f", TEXT], ["eval", MODEL, "--task", TASK],
  ];
  for (const c of commands) {
    for (const [v, why] of [["0", "--threads must be from 1 to 256, got 0"], ["x", "--threads must be an integer, got \"x\""]]) {
      const r = cli([...c, "--threads", v]);
      assert.is(r.status, 1, `${c[0]} --threads ${v}: ${r.stderr}`);
      assert.is(r.stdout, "", `${c[0]} --threads ${v} printed`);
      assert.ok(r.stderr.includes(why), `${c[0]} --threads ${v}: ${r.stderr}`);
    }
  }
  assert.not.ok(existsSync(out), "a refused command wrote its output");
});

test("ppl at --threads 2 equals --threads 1, and says it ran on 2", () => {
  const run = (t: string) => {
    const r = cli(["ppl", MODEL, "-f", TEXT, "--ctx", "128", "--chunks", "6", "--threads", t, "--json"]);
    assert.is(r.status, 0, r.stderr);
    return { json: JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>, err: r.stderr };
  };
  const one = run("1"), two = run("2");
  assert.is(one.json.threads, 1);
  assert.is(two.json.threads, 2);
  assert.match(two.err, /on 2 threads/);
  const { threads: _a, ...a } = one.json, { threads: _b, ...b } = two.json;
  assert.equal(b, a);
});

test("bi at --threads 2 gives --threads 1's scores and removal order bit for bit", () => {
  const run = (t: string) => {
    const r = cli(["bi", MODEL, "--calib", TEXT, "--tokens", "1024", "--threads", t, "--json"]);
    assert.is(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { threads: number; units: unknown[]; removalOrder: string[] };
  };
  const one = run("1"), two = run("2");
  assert.equal([one.threads, two.threads], [1, 2]);
  assert.equal(two.units, one.units);
  assert.equal(two.removalOrder, one.removalOrder);
});

test("quantize --method gptq at --threads 2 writes --threads 1's bytes (a model whose GPTQ updates are split by rows)", () => {
  const model = join(tmp, "wide.gguf");
  const s = cli(["synth", "--arch", "llama", "--dim", "256", "--layers", "2", "--heads", "4", "--hidden", "768", "--vocab", "512", "--ctx", "256", "--type", "f32", "-o", model]);
  assert.is(s.status, 0, s.stderr);
  const files = ["1", "2"].map((t) => {
    const out = join(tmp, `gptq-${t}.gguf`);
    const r = cli(["quantize", model, "--type", "q4_0", "--method", "gptq", "--calib", TEXT, "--tokens", "512", "--threads", t, "-o", out]);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`on ${t} thread${t === "1" ? "" : "s"}, peak RSS`));
    return readFileSync(out);
  });
  assert.ok(files[0].length > 100_000);
  assert.ok(files[0].equals(files[1]), "GPTQ at 2 threads wrote other bytes");
});

test("no shared memory (SharedArrayBuffer off): --threads 2 says it runs on 1, and labels 1", () => {
  const r = cli(["ppl", MODEL, "-f", TEXT, "--ctx", "128", "--chunks", "1", "--threads", "2", "--json"], ["--no-harmony-sharedarraybuffer"]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /SharedArrayBuffer is unavailable/);
  assert.match(r.stderr, /edgeprune: running on 1 thread, not the 2 asked for/);
  assert.match(r.stderr, /on 1 thread \(/);
  assert.is((JSON.parse(r.stdout.trim().split("\n").pop()!) as { threads: number }).threads, 1);
  const b = cli(["bi", MODEL, "--calib", TEXT, "--tokens", "256", "--threads", "2", "--json"], ["--no-harmony-sharedarraybuffer"]);
  assert.is(b.status, 0, b.stderr);
  assert.match(b.stderr, /running on 1 thread, not the 2 asked for/);
  assert.is((JSON.parse(b.stdout) as { threads: number }).threads, 1);
});

test.run();
