// bench/peers runner for wllama 3.8.1 (llama.cpp compiled to WebAssembly, memory64 + JSPI) in headless Debian
// Chromium driven by playwright-core. A page served from 127.0.0.1 with COOP/COEP (so SharedArrayBuffer and its
// threads exist) loads the model by URL and times text completions of the bench prompt: wllama's own timings and
// the page's wall clock. Byte tokens and EOS are biased away (random weights otherwise emit invalid UTF-8, which
// crashes wllama's worker). Usage: node dist/bench/peers-wllama.js <model.gguf> <threads> <runs>
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { benchPrompt, GEN_TOKENS, printReport, type RunResult } from "./peers-common.js";

const CHROMIUM = "/usr/bin/chromium";
const [modelPath, threadsArg, runsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 1), runs = Number(runsArg ?? 1);
const { text } = benchPrompt(modelPath);
const wllamaDir = path.resolve("node_modules/@wllama/wllama");

const PAGE = `<!doctype html><meta charset="utf-8"><title>wllama bench</title>
<script type="module">
import { Wllama } from "/wllama/esm/index.js";
window.runBench = async (o) => {
  const w = new Wllama({ default: "/wllama/esm/wasm/wllama.wasm" }, { suppressNativeLog: true, allowOffline: false });
  await w.loadModelFromUrl(o.url, { n_threads: o.threads, n_ctx: 512, n_batch: 512, n_ubatch: 512 });
  const bias = {};
  for (let id = 2; id < 259; id++) bias[String(id)] = -100; // EOS and the 256 byte tokens
  const out = [];
  for (let r = 0; r < o.runs + 1; r++) {
    const t0 = performance.now();
    // run 0 warms up (compiles, touches the weights) on a short prompt; it is not reported
    const prompt = r === 0 ? o.prompt.split(" ").slice(0, 8).join(" ") : o.prompt;
    const res = await w.createCompletion({ prompt, max_tokens: r === 0 ? 4 : o.gen, temperature: 0, logit_bias: bias,
      ignore_eos: true, cache_prompt: false });
    const wall = performance.now() - t0;
    if (r > 0) out.push({ wall, timings: res.timings, n: res.usage?.completion_tokens });
  }
  const multithread = w.isMultithread(), threadsUsed = w.getNumThreads();
  await w.exit();
  return { runs: out, crossOriginIsolated: self.crossOriginIsolated, multithread, threadsUsed };
};
window.benchReady = true;
</script>`;

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  const headers: Record<string, string> = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
  };
  let file: string | undefined;
  if (url.pathname === "/") {
    res.writeHead(200, { ...headers, "Content-Type": "text/html" });
    res.end(PAGE);
    return;
  }
  if (url.pathname.startsWith("/wllama/")) file = path.join(wllamaDir, url.pathname.slice("/wllama/".length));
  if (url.pathname === "/model.gguf") file = modelPath;
  if (!file || !file.startsWith(file === modelPath ? modelPath : wllamaDir) || !fs.existsSync(file)) {
    res.writeHead(404, headers);
    res.end();
    return;
  }
  const size = fs.statSync(file).size;
  const type = file.endsWith(".js") ? "text/javascript" : file.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
  const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
  if (range) {
    const start = Number(range[1]), end = range[2] ? Number(range[2]) : size - 1;
    res.writeHead(206, { ...headers, "Content-Type": type, "Content-Length": String(end - start + 1), "Content-Range": `bytes ${start}-${end}/${size}`, "Accept-Ranges": "bytes" });
    if (req.method === "HEAD") res.end(); else fs.createReadStream(file, { start, end }).pipe(res);
    return;
  }
  res.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": String(size), "Accept-Ranges": "bytes" });
  if (req.method === "HEAD") res.end(); else fs.createReadStream(file).pipe(res);
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const port = (server.address() as AddressInfo).port;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "edgeprune-wllama-"));
const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => (window as unknown as { benchReady?: boolean }).benchReady === true, undefined, { timeout: 30_000 });
  const r = await page.evaluate((o) => (window as unknown as { runBench: (o: unknown) => Promise<unknown> }).runBench(o),
    { url: `http://127.0.0.1:${port}/model.gguf`, threads, runs, prompt: text, gen: GEN_TOKENS }) as {
      runs: { wall: number; timings?: { prompt_n: number; prompt_per_second: number; predicted_n: number; predicted_per_second: number; prompt_ms: number; predicted_ms: number }; n?: number }[];
      crossOriginIsolated: boolean; multithread?: boolean; threadsUsed: number;
    };
  const results: RunResult[] = r.runs.map((x) => ({
    prefillTokS: x.timings?.prompt_per_second ?? NaN,
    decodeTokS: x.timings?.predicted_per_second ?? NaN,
    wallMs: x.wall,
    // wllama takes text: its own counts say whether it saw the protocol's 128 prompt tokens and made 128
    promptTokens: x.timings?.prompt_n ?? NaN,
    genTokens: x.timings?.predicted_n ?? x.n ?? NaN,
  }));
  printReport({
    runtime: "wllama 3.8.1 (Chromium)", model: modelPath, threads: r.multithread ? r.threadsUsed : 1, runs: results,
    notes: { crossOriginIsolated: r.crossOriginIsolated, multithread: r.multithread, timings: r.runs.map((x) => x.timings), completionTokens: r.runs.map((x) => x.n), pageErrors: errors },
  });
} catch (e) {
  printReport({ runtime: "wllama 3.8.1 (Chromium)", model: modelPath, threads, runs: [], error: String(e) });
} finally {
  await browser.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
