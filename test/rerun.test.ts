// Fast by default: on an engine with relaxed SIMD only behind --experimental-wasm-relaxed-simd (Node 20), the CLI
// re-runs itself with the flag and uses the relaxed kernels after their self-test; a failed self-test falls back to
// SIMD128 with one stderr line and the same tokens; exit codes, standard input and signals pass through the re-run
// (SIGINT, SIGTERM, and a terminal's Ctrl-C that reaches both processes at once). Also the self-test itself, in
// both V8 tiers, and its instruction probe catching V8 11.3's Liftoff bug.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { hasRelaxedSimd } from "../src/wasm.js";
import { sharedPath } from "./support/paths.js";

const MODEL = sharedPath("models/stories-deep-16L.gguf");
/** a 2048-token context: long enough to be interrupted */
const LONG = sharedPath("models/stories260K.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
/** this test process runs without the flag: on Node 20 that is the engine the re-run exists for */
const behindFlag = !hasRelaxedSimd();

function cli(args: string[], env: Record<string, string> = {}, input?: string) {
  const e: NodeJS.ProcessEnv = { ...process.env };
  delete e.EDGEPRUNE_SIMD;
  delete e.EDGEPRUNE_NO_RERUN;
  Object.assign(e, env);
  return spawnSync(process.execPath, ["bin/edgeprune.js", ...args], { encoding: "utf8", env: e, input });
}

interface InfoKernels { build: string; why: string; selfTestMs?: number; i32DotAddBaselineTierOk?: boolean }
const kernelsOf = (r: ReturnType<typeof cli>) => (JSON.parse(r.stdout) as { kernels: InfoKernels }).kernels;

test("without node flags the CLI runs the relaxed kernels (re-run on Node 20, directly where relaxed SIMD is on)", () => {
  const r = cli(["info", MODEL, "--json"]);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, "");
  const k = kernelsOf(r);
  assert.is(k.build, "relaxed");
  assert.match(k.why, behindFlag ? /^re-run with --experimental-wasm-relaxed-simd; self-test passed/ : /^relaxed SIMD is on in this engine/);
  // generate says which kernels ran, and with EDGEPRUNE_DEBUG the start-up line names them
  const g = cli(["generate", MODEL, "-p", "Once upon a time", "-n", "4", "--temp", "0", "--threads", "1", "--json"], { EDGEPRUNE_DEBUG: "1" });
  assert.is(g.status, 0, g.stderr);
  assert.is((JSON.parse(g.stdout) as { kernels: string }).kernels, "relaxed");
  assert.match(g.stderr, /^edgeprune: kernels: relaxed \(/);
});

test("EDGEPRUNE_NO_RERUN=1 opts out (SIMD128 on Node 20); EDGEPRUNE_SIMD=simd128 is never re-run", () => {
  const off = kernelsOf(cli(["info", MODEL, "--json"], { EDGEPRUNE_NO_RERUN: "1" }));
  assert.is(off.build, behindFlag ? "simd128" : "relaxed");
  if (behindFlag) assert.is(off.why, "EDGEPRUNE_NO_RERUN is set");
  const forced = kernelsOf(cli(["info", MODEL, "--json"], { EDGEPRUNE_SIMD: "simd128" }));
  assert.equal([forced.build, forced.why], ["simd128", "EDGEPRUNE_SIMD=simd128"]);
});

test("a failed self-test: one line on stderr, the SIMD128 kernels, and the tokens SIMD128 gives", () => {
  const args = ["generate", MODEL, "-p", "Once upon a time", "-n", "24", "--temp", "0", "--threads", "1", "--json"];
  const failed = cli(args, { EDGEPRUNE_TEST_SELFTEST_FAIL: "1" });
  assert.is(failed.status, 0, failed.stderr);
  const lines = failed.stderr.split("\n").filter((l) => /self-test/.test(l));
  assert.is(lines.length, 1, failed.stderr);
  assert.match(lines[0], /^edgeprune: the relaxed SIMD kernels failed their start-up self-test \(matmul_q4_0 \(t = 1\): .*\); using the SIMD128 kernels$/);
  const simd = cli(args, { EDGEPRUNE_SIMD: "simd128" });
  const a = JSON.parse(failed.stdout) as { tokens: number[]; kernels: string }, b = JSON.parse(simd.stdout) as { tokens: number[]; kernels: string };
  assert.is(a.kernels, "simd128");
  assert.equal(a.tokens, b.tokens);
  // info says why
  assert.match(kernelsOf(cli(["info", MODEL, "--json"], { EDGEPRUNE_TEST_SELFTEST_FAIL: "1" })).why, /^relaxed self-test failed: matmul_q4_0/);
});

test("through the re-run: exit codes, -p - from standard input, bad options", () => {
  const piped = cli(["generate", MODEL, "-p", "-", "-n", "12", "--temp", "0", "--threads", "1"], {}, "Lily and Tom\n");
  assert.is(piped.status, 0, piped.stderr);
  const direct = cli(["generate", MODEL, "-p", "Lily and Tom", "-n", "12", "--temp", "0", "--threads", "1"]);
  assert.is(piped.stdout, direct.stdout);
  assert.ok(piped.stdout.startsWith("Lily and Tom") && piped.stdout.length > "Lily and Tom".length + 10, piped.stdout);
  const missing = cli(["ppl", "no-such-model.gguf", "-f", TEXT]);
  assert.is(missing.status, 1);
  assert.is(missing.stderr, "edgeprune: error: model no-such-model.gguf does not exist\n");
  const bad = cli(["ppl", MODEL, "-f", TEXT, "--threads", "x"]);
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /--threads must be an integer, got "x"/);
  assert.is(cli(["--version"]).status, 0);
});

/** Starts a CLI process; resolves with its exit code, signal and output. `detached`: its own process group. */
function start(args: string[], opts: { detached?: boolean; env?: Record<string, string> } = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.EDGEPRUNE_SIMD;
  delete env.EDGEPRUNE_NO_RERUN;
  Object.assign(env, opts.env);
  const child = spawn(process.execPath, ["bin/edgeprune.js", ...args], { stdio: ["pipe", "pipe", "pipe"], env, detached: opts.detached });
  let out = "", err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, out, err })));
  return { child, done, out: () => out, err: () => err };
}

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("SIGINT to the CLI's pid reaches the re-run child: generate stops with its timings and exit 130", async () => {
  const p = start(["generate", LONG, "-p", "Once upon a time", "-n", "2000", "--ctx", "2048", "--ignore-eos", "--temp", "0", "--threads", "1"]);
  await until("text", () => p.out().length > 60);
  p.child.kill("SIGINT");
  const r = await p.done;
  assert.is(r.code, 130, r.err);
  assert.match(r.err, /stopped by Ctrl-C/);
});

test("a child killed by a signal: the CLI dies of the same signal (ppl has no SIGINT handler)", async () => {
  // its first progress line comes from the re-run child, once it is computing
  const p = start(["ppl", MODEL, "-f", TEXT, "--ctx", "128", "--threads", "1"], { env: { EDGEPRUNE_PROGRESS: "lines" } });
  await until("progress", () => /perplexity \d+\//.test(p.err()));
  p.child.kill("SIGINT");
  const r = await p.done;
  assert.is(r.signal, "SIGINT", `code ${r.code}, ${r.err}`);
});

test("SIGTERM reaches a re-run serve: it stops cleanly with exit 0", async () => {
  const p = start(["serve", MODEL, "--port", "0", "--warmup", "0", "--threads", "1"]);
  await until("the model to load", () => /model loaded/.test(p.err()));
  p.child.kill("SIGTERM");
  const r = await p.done;
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /SIGTERM: stopping/);
});

test("a terminal's Ctrl-C (SIGINT to the whole process group: parent and child) stops a chat answer once, not the chat", async () => {
  const p = start(["chat", LONG, "--temp", "0", "-n", "1500", "--ctx", "2048", "--ignore-eos", "--threads", "1", "--verbose"], { detached: true });
  p.child.stdin!.write("Tell me a long story.\n");
  await until("an answer", () => p.out().length > 60);
  // both processes get it, as from a terminal; delivered twice to chat, it would quit ("twice at the prompt quits")
  process.kill(-p.child.pid!, "SIGINT");
  await until("the answer to stop", () => /stopped by Ctrl-C/.test(p.err()));
  await new Promise((r) => setTimeout(r, 300));
  p.child.stdin!.end("Hi!\n");
  const r = await p.done;
  assert.is(r.code, 0, r.err);
  const turns = [...r.err.matchAll(/(\d+) tokens in \d+ ms; stopped by (\S+)\]/g)].map((x) => [Number(x[1]), x[2]] as const);
  assert.is(turns.length, 2, r.err);
  assert.is(turns[0][1], "Ctrl-C");
  assert.ok(turns[1][0] > 0, "the next message was answered");
});

/** the self-test run in a child with these node flags: its JSON */
function selfTestIn(flags: string[]): { ok: boolean; failures: string[]; i32DotAddOk: boolean; worst: number } {
  const code = `import("./dist/src/kernels/selftest.js").then((m) => console.log(JSON.stringify(m.relaxedSelfTest())))`;
  const r = spawnSync(process.execPath, [...flags, "--input-type=module", "-e", code], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("the self-test passes in both V8 tiers (baseline first calls, and --no-liftoff); its probe sees V8 11.3's Liftoff bug", () => {
  const flag = behindFlag ? ["--experimental-wasm-relaxed-simd"] : [];
  const baseline = selfTestIn(flag), optimized = selfTestIn([...flag, "--no-liftoff"]);
  assert.ok(baseline.ok, baseline.failures.join("; "));
  assert.ok(optimized.ok, optimized.failures.join("; "));
  // the i32x4 "_add" dot: wrong in Node 20's Liftoff (which the kernels avoid), right once optimized
  assert.ok(optimized.i32DotAddOk);
  if (process.versions.v8.startsWith("11.3.")) assert.not.ok(baseline.i32DotAddOk, "V8 11.3's Liftoff computes i32x4.relaxed_dot_i8x16_i7x16_add_s wrongly (wasm-facts.md)");
  assert.ok(baseline.worst > 0 && baseline.worst < 1e-5, `relaxed vs SIMD128: ${baseline.worst}`);
});

test.run();
