// Serving benchmarks against `edgeprune serve` child processes (not tests: it prints, asserts only that outputs
// agree). (1) Prompt reuse: a request sharing a 512-token prefix with the previous one, time to its first streamed
// token with cache_prompt (the default) against cache_prompt: false, same output. (2) --parallel 4: four
// concurrent greedy requests, total tokens/s against one request alone on the same server (one slot), same tokens.
// Rounds interleave the two sides; medians. Prints the CPU and the load (uptime), since the machine may be shared.
// Run: npm run build && node dist/bench/serve.bench.js [MODEL] [--rounds N] [--threads N] [--tokens N] [--parallel-only]
//   MODEL defaults to a synthetic TinyLlama-shaped file (dim 256, 8 layers, GQA 8/4, vocab 32000, Q8_0, context
//   1024), written by `edgeprune synth` under the system temp folder when missing.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";

const CLI = path.resolve("bin/edgeprune.js");
const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(args.splice(i, 2)[1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
};
const ROUNDS = flag("--rounds", 5);
const THREADS = flag("--threads", 2);
const TOKENS = flag("--tokens", 64);
const ONLY = args.includes("--parallel-only") ? (args.splice(args.indexOf("--parallel-only"), 1), true) : false;
const SYNTH = ["--arch", "llama", "--dim", "256", "--layers", "8", "--heads", "8", "--kv-heads", "4", "--hidden", "704", "--vocab", "32000", "--ctx", "1024", "--type", "q8_0"];
let model = args[0];
if (!model) {
  model = path.join(tmpdir(), "edgeprune-bench-synth-tinyllama-256x8-q8_0.gguf");
  if (!existsSync(model)) execFileSync(process.execPath, [CLI, "synth", ...SYNTH, "-o", model], { stdio: "inherit" });
}

const children = new Set<ChildProcess>();
process.on("exit", () => { for (const c of children) c.kill("SIGKILL"); });

async function serve(extra: string[]): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [CLI, "serve", model, "--port", "0", "--quiet", "--threads", String(THREADS), ...extra], { stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`server exited (${code}):\n${err}`)));
  });
  for (let i = 0; i < 1200; i++) {
    const r = await fetch(`${url}/health`).catch(() => undefined);
    if (r?.status === 200) return { url, stop: () => { child.kill("SIGKILL"); children.delete(child); } };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server never became healthy:\n${err}`);
}

/** A streamed greedy completion of token ids: time to the first token's chunk, the whole time, the text. */
async function complete(url: string, prompt: number[], maxTokens: number, extra: object = {}): Promise<{ ttftMs: number; ms: number; text: string; tokens: number }> {
  const t0 = performance.now();
  const send = () => fetch(`${url}/v1/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true }, ...extra }),
  });
  // a kept-alive socket the server closed as idle (its keepAliveTimeout) just as it was reused: send again
  const r = await send().catch(send);
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  let ttftMs = -1, text = "", buf = "", tokens = 0;
  const dec = new TextDecoder();
  const reader = r.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (ttftMs < 0) ttftMs = performance.now() - t0;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const j = JSON.parse(line.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (j.choices[0]) text += j.choices[0].text;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return { ttftMs, ms: performance.now() - t0, text, tokens };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmt = (xs: number[], digits = 0) => `median ${median(xs).toFixed(digits)} (${xs.map((x) => x.toFixed(digits)).join(", ")})`;
/** deterministic token ids from 3 … vocab-1 (never BOS/EOS/unknown) */
function ids(n: number, seed: number, vocab = 32000): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return 3 + (s % (vocab - 3)); });
}

const uptime = () => { try { return execFileSync("uptime", { encoding: "utf8" }).trim(); } catch { return `load average ${loadavg().map((x) => x.toFixed(2)).join(", ")}`; } };
console.log(`serve bench: ${path.basename(model)}, ${THREADS} threads, ${ROUNDS} rounds; CPU ${cpus()[0]?.model ?? "?"} (${cpus().length} logical)`);
console.log(`  before: ${uptime()}`);

// ---- (1) prompt reuse ----
if (!ONLY) {
  const s = await serve(["--parallel", "1", "--ctx", "1024", "--warmup", "16"]);
  const prefix = [1, ...ids(511, 7)]; // BOS + 511: a 512-token shared prefix
  const first = [...prefix, ...ids(16, 11)], second = [...prefix, ...ids(16, 13)];
  const cached: number[] = [], fresh: number[] = [];
  const texts = { cached: new Set<string>(), fresh: new Set<string>() };
  for (let r = 0; r < ROUNDS; r++) {
    // each side starts from a slot holding the first request; the order alternates
    for (const reuse of r % 2 ? [false, true] : [true, false]) {
      await complete(s.url, first, 4);
      const b = await complete(s.url, second, 16, { cache_prompt: reuse });
      (reuse ? cached : fresh).push(b.ttftMs);
      texts[reuse ? "cached" : "fresh"].add(b.text);
    }
  }
  const same = texts.cached.size === 1 && texts.fresh.size === 1 && [...texts.cached][0] === [...texts.fresh][0];
  s.stop();
  console.log(`prompt reuse (512-token shared prefix + 16 new tokens, --parallel 1, --ctx 1024):`);
  console.log(`  first token, cache_prompt true:  ${fmt(cached)} ms`);
  console.log(`  first token, cache_prompt false: ${fmt(fresh)} ms`);
  console.log(`  ratio (false / true): ${(median(fresh) / median(cached)).toFixed(1)}×; same output: ${same}`);
  if (!same) process.exitCode = 1;
}

// ---- (2) --parallel 4 ----
{
  const N = 4;
  const s = await serve(["--parallel", String(N), "--ctx", "256", "--warmup", "16"]);
  const prompts = Array.from({ length: N }, (_, j) => [1, ...ids(24 + 8 * j, 100 + j)]);
  const alone: number[] = [], together: number[] = [];
  let same = true;
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 ? ["together", "alone"] : ["alone", "together"]) {
      if (mode === "alone") {
        // one slot: the requests one after another, each alone on the server
        let tokens = 0, ms = 0;
        const texts: string[] = [];
        for (const p of prompts) {
          const x = await complete(s.url, p, TOKENS, { cache_prompt: false });
          tokens += x.tokens; ms += x.ms; texts.push(x.text);
        }
        alone.push((tokens / ms) * 1000);
        (globalThis as { aloneTexts?: string[] }).aloneTexts = texts;
      } else {
        const t0 = performance.now();
        const xs = await Promise.all(prompts.map((p) => complete(s.url, p, TOKENS, { cache_prompt: false })));
        const ms = performance.now() - t0;
        together.push((xs.reduce((a, x) => a + x.tokens, 0) / ms) * 1000);
        const want = (globalThis as { aloneTexts?: string[] }).aloneTexts;
        if (want && xs.some((x, j) => x.text !== want[j])) same = false;
      }
    }
  }
  s.stop();
  console.log(`--parallel ${N} (${N} greedy requests of ${TOKENS} tokens, prompts of 25-49 tokens, --ctx 256):`);
  console.log(`  one at a time (one slot): ${fmt(alone, 1)} tok/s`);
  console.log(`  ${N} concurrent:            ${fmt(together, 1)} tok/s`);
  console.log(`  ratio (concurrent / one slot): ${(median(together) / median(alone)).toFixed(2)}×; same tokens as alone: ${same}`);
  if (!same) process.exitCode = 1;
}
console.log(`  after: ${uptime()}`);
