// Calibration throughput against native llama.cpp (node-llama-cpp 3.21.1) in the same run: the whole `edgeprune bi`
// command (load, tokenize, score every layer on --tokens calibration tokens) against llama.cpp prefilling the same
// token windows (the ids edgeprune's calibration reader gives, one window per cleared sequence, no generation),
// rounds interleaved in a rotated order, each run in a fresh process, `uptime` around every run. Not a test.
//   npm run build && node dist/bench/bi-peers.js MODEL.gguf --calib ../shared/data/tinystories/FILE [--tokens 8192] [--threads 2] [--rounds 2]
//   (runner) node dist/bench/bi-peers.js --run native MODEL CALIB TOKENS THREADS
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { readGgufHeader } from "../src/gguf/reader.js";
import { FileSource } from "../src/node/files.js";
import { tokenizerFromGguf } from "../src/tokenizer/index.js";
import { configFromGguf } from "../src/model/config.js";
import { calibrationWindows } from "../src/data/documents.js";
import { PRUNE_DEFAULTS } from "../src/commands/prune.js";
import { median } from "./peers-common.js";

/** the windows `edgeprune bi MODEL --calib CALIB --tokens N` scores (its default window length) */
function biWindows(path: string, calib: string, tokens: number): number[][] {
  const src = new FileSource(path);
  let file;
  try { file = readGgufHeader(src, path); } finally { src.close(); }
  const config = configFromGguf(file, path);
  return calibrationWindows(tokenizerFromGguf(file.kv), fs.readFileSync(calib, "utf8"), tokens, config.trainContext, PRUNE_DEFAULTS.window).windows;
}

/** seconds llama.cpp takes to prefill every window (load and a warm-up window not counted) */
async function runNative(path: string, calib: string, tokens: number, threads: number): Promise<number> {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
  const windows = biWindows(path, calib, tokens);
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const longest = Math.max(...windows.map((w) => w.length));
  const context = await model.createContext({ contextSize: longest + 8, batchSize: longest, threads, flashAttention: false });
  const seq = context.getSequence();
  await seq.evaluateWithoutGeneratingNewTokens(windows[0].slice(0, 16) as never);
  const t0 = performance.now();
  for (const w of windows) {
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens(w as never);
  }
  const s = (performance.now() - t0) / 1000;
  await context.dispose(); await model.dispose(); await llama.dispose();
  return s;
}

const argv = process.argv.slice(2);
if (argv[0] === "--run") {
  const [, , path, calib, tokens, threads] = argv;
  console.log(JSON.stringify({ seconds: await runNative(path, calib, Number(tokens), Number(threads)) }));
} else {
  const opt = (name: string, dflt: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
  const model = argv.find((a) => a.endsWith(".gguf"));
  const calib = opt("--calib", "");
  if (!model || !calib) throw new Error("usage: node dist/bench/bi-peers.js MODEL.gguf --calib FILE [--tokens 8192] [--threads 2] [--rounds 2]");
  const tokens = opt("--tokens", String(PRUNE_DEFAULTS.tokens)), threads = opt("--threads", "2"), rounds = Number(opt("--rounds", "2"));
  const self = fileURLToPath(import.meta.url);
  const cli = fileURLToPath(new URL("../../bin/edgeprune.js", import.meta.url));
  const uptime = () => execFileSync("uptime", { encoding: "utf8" }).trim().replace(/.*load average: /, "load ");
  const windows = biWindows(model, calib, Number(tokens));
  const inAll = windows.reduce((a, w) => a + w.length, 0);
  console.log(`${model.split("/").pop()}: ${windows.length} windows, ${inAll} tokens of ${calib.split("/").pop()}, ${threads} threads, ${rounds} rounds`);
  const RUNNERS = [
    { label: "native prefill", args: [self, "--run", "native", model, calib, tokens, threads], cli: false },
    { label: "edgeprune bi", args: [cli, "bi", model, "--calib", calib, "--tokens", tokens, "--threads", threads, "--json"], cli: true },
  ];
  const got = new Map<string, number[]>(RUNNERS.map((r) => [r.label, []]));
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < RUNNERS.length; k++) {
      const r = RUNNERS[(k + round) % RUNNERS.length];
      const before = uptime();
      const t0 = performance.now();
      const p = spawnSync(process.execPath, r.args, { env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" }, encoding: "utf8", maxBuffer: 64 << 20 });
      const wall = (performance.now() - t0) / 1000;
      if (p.status !== 0) throw new Error(`${r.label} failed:\n${p.stdout}\n${p.stderr}`);
      // the bi command is timed whole, from the process's start; native only over its prefills
      const seconds = r.cli ? wall : (JSON.parse(p.stdout.trim().split("\n").pop()!) as { seconds: number }).seconds;
      got.get(r.label)!.push(seconds);
      console.log(`  round ${round + 1} ${r.label.padEnd(15)} ${seconds.toFixed(1).padStart(7)} s   (${before} -> ${uptime()})`);
    }
  }
  const nat = median(got.get("native prefill")!), ours = median(got.get("edgeprune bi")!);
  console.log(`  medians: native prefill ${nat.toFixed(1)} s (${(inAll / nat).toFixed(1)} tok/s), edgeprune bi ${ours.toFixed(1)} s (${(inAll / ours).toFixed(1)} tok/s): bi takes ${(ours / nat).toFixed(2)}x native's prefill`);
}
