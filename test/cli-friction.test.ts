// The command-line friction points of issue 17, each as a user meets it: numeric options refused with their name
// before anything is printed, prompts from stdin and files, --version, the timing lines on a line of their own
// (also after Ctrl-C), ppl --json as the last line, requantization refused without --allow-requantize, and pull's
// message when the network cannot be reached; and the server and library points not covered elsewhere: n_predict
// honoured (not 16 tokens), serve --threads, skipLayers given as an array.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sharedPath } from "./support/paths.js";
import { runCli as cli } from "./support/cli.js";
import { Model } from "../src/model/model.js";
import { greedyText, serve } from "./server-support.js";

const MODEL = sharedPath("models/stories260K.gguf");
const DEEP = sharedPath("models/stories-deep-16L.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-friction-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** A refusal: non-zero exit, nothing on stdout, one line on stderr that matches. */
function refused(r: ReturnType<typeof cli>, pattern: RegExp): void {
  assert.is.not(r.status, 0, `exit ${r.status}; stdout ${JSON.stringify(r.stdout.slice(0, 200))}`);
  assert.is(r.stdout, "", "nothing is printed before the refusal");
  const lines = r.stderr.trim().split("\n");
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], /^edgeprune: error: /);
  assert.match(lines[0], pattern);
}

test("-n -5 names -n, not the context size", () => {
  const r = cli("generate", MODEL, "-p", "Once", "-n", "-5");
  refused(r, /-n must be at least 0, got -5/);
  assert.not.match(r.stderr, /context size/);
});

test("info --ctx -3 is refused", () => {
  refused(cli("info", MODEL, "--ctx", "-3"), /--ctx must be at least 1, got -3/);
});

test("--temp -1 is refused before the prompt is echoed", () => {
  refused(cli("generate", MODEL, "-p", "Once", "--temp", "-1"), /--temp must be at least 0, got -1/);
});

test("--threads 0 is refused instead of meaning 1", () => {
  refused(cli("generate", MODEL, "-p", "Once", "-n", "2", "--threads", "0"), /--threads must be from 1 to 256, got 0/);
});

test("--ctx past the model's context length is refused (generate, info, ppl)", () => {
  const why = /--ctx 100000 is more than the model's context length 2048/;
  refused(cli("generate", MODEL, "-p", "Once", "-n", "2", "--ctx", "100000"), why);
  refused(cli("info", MODEL, "--ctx", "100000"), why);
  refused(cli("ppl", MODEL, "-f", TEXT, "--ctx", "100000"), why);
  assert.is(cli("generate", MODEL, "-p", "Once", "-n", "2", "--ctx", "2048").status, 0, "the model's own length is fine");
});

test("every numeric option of every command is checked, with its name, before any output", () => {
  const cases: [string[], string, RegExp][] = [
    [["generate", MODEL, "-p", "x"], "--top-k", /-1/], [["generate", MODEL, "-p", "x"], "--top-p", /0/], [["generate", MODEL, "-p", "x"], "--min-p", /1\.5/],
    [["generate", MODEL, "-p", "x"], "--repeat-penalty", /0/], [["generate", MODEL, "-p", "x"], "--repeat-last-n", /-1/], [["generate", MODEL, "-p", "x"], "--seed", /1\.5/],
    [["ppl", MODEL, "-f", TEXT], "--chunks", /0/], [["ppl", MODEL, "-f", TEXT], "--ctx", /1/],
    [["quantize", MODEL, "--type", "q8_0", "-o", join(tmp, "x.gguf")], "--tokens", /0/],
    [["serve", MODEL], "--port", /70000/], [["serve", MODEL], "--parallel", /0/], [["serve", MODEL], "--queue", /-1/], [["serve", MODEL], "--warmup", /-1/], [["serve", MODEL], "--grace", /-1/],
    [["bi", MODEL, "--calib", TEXT], "--window", /1/], [["prune", MODEL, "-o", join(tmp, "p.gguf")], "--remove", /0/],
    [["synth", "-o", join(tmp, "s.gguf")], "--layers", /0/],
  ];
  const bad: Record<string, string> = { "--top-k": "-1", "--top-p": "0", "--min-p": "1.5", "--repeat-penalty": "0", "--repeat-last-n": "-1", "--seed": "1.5", "--chunks": "0", "--ctx": "1",
    "--tokens": "0", "--port": "70000", "--parallel": "0", "--queue": "-1", "--warmup": "-1", "--grace": "-1", "--window": "1", "--remove": "0", "--layers": "0" };
  for (const [args, option, value] of cases) {
    const r = cli(...args, option, bad[option]);
    const name = option.replace(/-/g, "\\-");
    refused(r, new RegExp(`${name} must be|invalid ${name} `));
    assert.match(r.stderr, value, `${option}: ${r.stderr}`);
  }
});

test("--version prints the package's version", () => {
  const r = cli("--version");
  assert.is(r.status, 0, r.stderr);
  const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
  assert.is(r.stdout.trim(), `edgeprune ${pkg.version}`);
});

test("-p - reads the prompt from stdin and -f FILE from a file (one trailing newline dropped), as -p TEXT does", () => {
  const direct = cli("generate", MODEL, "-p", "Lily and Tom", "-n", "24", "--temp", "0");
  assert.is(direct.status, 0, direct.stderr);
  const piped = spawnSync(process.execPath, ["bin/edgeprune.js", "generate", MODEL, "-p", "-", "-n", "24", "--temp", "0"], { input: "Lily and Tom\n", encoding: "utf8" });
  assert.is(piped.status, 0, piped.stderr);
  assert.is(piped.stdout, direct.stdout);
  const file = join(tmp, "prompt.txt");
  writeFileSync(file, "Lily and Tom\n");
  const fromFile = cli("generate", MODEL, "-f", file, "-n", "24", "--temp", "0");
  assert.is(fromFile.status, 0, fromFile.stderr);
  assert.is(fromFile.stdout, direct.stdout);
  refused(cli("generate", MODEL, "-n", "2"), /no prompt: give -p TEXT, -p - .* or -f FILE/);
});

test("the timing lines start on a line of their own, also when Ctrl-C stops the generation", async () => {
  // stdout and stderr into one pipe, as a terminal shows them
  const both = spawnSync("sh", ["-c", `"${process.execPath}" bin/edgeprune.js generate "${MODEL}" -p "Once upon a time" -n 40 --temp 0 2>&1`], { encoding: "utf8" });
  assert.is(both.status, 0, both.stdout);
  assert.match(both.stdout, /\nprefill: 5 tokens in /);
  // Ctrl-C (SIGINT) mid-generation: the text so far, a newline, then the timings, exit 130
  const child = spawn(process.execPath, ["bin/edgeprune.js", "generate", MODEL, "-p", "Once upon a time", "-n", "2000", "--ctx", "2048", "--ignore-eos", "--temp", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
    if (out.length > 40 && !child.killed) child.kill("SIGINT");
  });
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.on("close", r));
  assert.is(code, 130, `exit ${code}; stderr ${err}`);
  assert.ok(out.endsWith("\n"), `stdout ends ${JSON.stringify(out.slice(-20))}`);
  assert.match(err, /^prefill: 5 tokens in .*\ndecode: \d+ tokens in .* stopped by Ctrl-C\n/);
  const decoded = Number(/decode: (\d+) tokens/.exec(err)![1]);
  assert.ok(decoded > 0 && decoded < 2000, `${decoded} tokens before Ctrl-C`);
});

test("ppl --json prints its JSON as the last line", () => {
  const r = cli("ppl", MODEL, "--file", TEXT, "--ctx", "128", "--chunks", "2", "--json");
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  const j = JSON.parse(lines[lines.length - 1]) as { chunks: number; perplexity: number };
  assert.is(j.chunks, 2);
  assert.match(r.stderr, new RegExp(`perplexity: ${j.perplexity.toFixed(4)}`));
});

test("quantized files: GPTQ says they are already quantized; requantizing needs --allow-requantize", () => {
  const q4 = join(tmp, "q4.gguf"), q8 = join(tmp, "q8.gguf");
  assert.is(cli("quantize", DEEP, "--type", "q4_0", "-o", q4).status, 0);
  assert.is(cli("quantize", DEEP, "--type", "q8_0", "-o", q8).status, 0);
  const gptq = cli("quantize", q4, "--type", "q4_0", "--method", "gptq", "--calib", TEXT, "-o", join(tmp, "g.gguf"));
  refused(gptq, /already Q4_0; there is nothing to quantize/);
  assert.not.match(gptq.stderr, /row lengths/);
  refused(cli("quantize", q8, "--type", "q4_0", "--method", "gptq", "--calib", TEXT, "-o", join(tmp, "g.gguf")), /already quantized \(Q8_0\).*--allow-requantize/);
  refused(cli("quantize", q4, "--type", "q8_0", "-o", join(tmp, "r.gguf")), /114 of its 114 weight matrices are already quantized \(Q4_0\).*--allow-requantize/);
  refused(cli("quantize", q8, "--type", "q4_0", "-o", join(tmp, "r.gguf")), /already quantized \(Q8_0\).*--allow-requantize/);
  const allowed = cli("quantize", q8, "--type", "q4_0", "-o", join(tmp, "r.gguf"), "--allow-requantize");
  assert.is(allowed.status, 0, allowed.stderr);
  assert.match(allowed.stderr, /note: requantizing 114 Q8_0 matrices to Q4_0/);
});

test("pull without a network says why and how to pull offline", async () => {
  // a loopback port nothing listens on (bound, then closed)
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
  const r = spawnSync(process.execPath, ["bin/edgeprune.js", "pull", "stories260K", "--cache", join(tmp, "cache")], {
    encoding: "utf8", env: { ...process.env, EDGEPRUNE_MIRROR: `http://127.0.0.1:${port}/models/` },
  });
  refused(r, /cannot download http:\/\/127\.0\.0\.1:\d+\/models\/stories260K\.gguf: nothing accepts connections at 127\.0\.0\.1:\d+ \[ECONNREFUSED\]\. Offline, set EDGEPRUNE_MIRROR/);
});

test("serve: n_predict is honoured (not the 16-token default) and wins over max_tokens, as in llama-server", async () => {
  const s = await serve(["--quiet", "--warmup", "0", "--ctx", "256"]);
  try {
    const post = async (body: object) => (await fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json() as
      Promise<{ choices: { text: string }[]; usage: { completion_tokens: number } }>;
    const a = await post({ prompt: "Once upon a time", n_predict: 40, temperature: 0, ignore_eos: true });
    assert.is(a.usage.completion_tokens, 40);
    assert.is(a.choices[0].text, greedyText("Once upon a time", 40).text);
    const b = await post({ prompt: "Once upon a time", n_predict: 5, max_tokens: 30, temperature: 0 });
    assert.is(b.usage.completion_tokens, 5);
  } finally {
    await s.kill();
  }
});

test("serve --threads 2 runs its kernels on 2 threads (said at start-up), with the one-thread greedy text", async () => {
  const s = await serve(["--warmup", "0", "--ctx", "256", "--threads", "2"]);
  try {
    assert.match(s.log(), /model loaded in [\d.]+ s: 1 slot\(s\) of 256 tokens, 2 thread\(s\)/);
    // long enough that the prefill's matmuls are split too (the pool runs ones under 2^16 multiply-adds itself)
    const prompt = "The dog ran to the park. He saw a big red ball and a little girl named Lily. They played all day";
    const r = await (await fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt, max_tokens: 24, temperature: 0 }) })).json() as { choices: { text: string }[] };
    assert.is(r.choices[0].text, greedyText(prompt, 24).text);
  } finally {
    await s.kill();
  }
});

test("library: skipLayers (and skipAttention, skipFfn) may be arrays; a bad index is an error naming the option", () => {
  const m = Model.load(new Uint8Array(readFileSync(DEEP)), { contextSize: 32 });
  const ids = m.tokenizer.encode("Once upon a time", { addBos: true });
  const eval_ = (o: object) => Array.from(m.createContext({ contextSize: 32 }).eval(ids, o));
  assert.equal(eval_({ skipLayers: [3, 7], skipFfn: [1] }), eval_({ skipLayers: new Set([3, 7]), skipFfn: new Set([1]) }));
  assert.not.equal(eval_({ skipLayers: [3, 7] }), eval_({}));
  assert.throws(() => eval_({ skipLayers: [16] }), /skipLayers: 16 is not a layer index \(0\.\.15\)/);
  assert.throws(() => eval_({ skipAttention: 3 }), /skipAttention must be a Set or an array of layer indices/);
});

test.run();
