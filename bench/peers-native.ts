// bench/peers runner for native llama.cpp through node-llama-cpp 3.21.1 (CPU, prebuilt, never built or
// downloaded): same prompt token ids, greedy, same counts. Prefill time is the time to the first generated token.
// Usage: node dist/bench/peers-native.js <model.gguf> <threads> <runs>
import { benchPrompt, GEN_TOKENS, printReport, PROMPT_TOKENS, type RunResult } from "./peers-common.js";

process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
const [path, threadsArg, runsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 1), runs = Number(runsArg ?? 3);
const { tokens } = benchPrompt(path);
// debug level only to catch the "loaded CPU backend from ..." line: which ggml CPU variant this CPU got
let backend = "unknown";
const llama = await getLlama({
  gpu: false, build: "never", logLevel: LlamaLogLevel.debug,
  logger: (level, message) => {
    const m = /loaded CPU backend from \S*libggml-cpu-([\w-]+)\.so/.exec(message);
    if (m) backend = m[1];
    else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(message);
  },
});
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
const context = await model.createContext({ contextSize: PROMPT_TOKENS + GEN_TOKENS, batchSize: PROMPT_TOKENS, threads, flashAttention: false });
const seq = context.getSequence();

async function once(prompt: number[], n: number): Promise<RunResult> {
  await seq.clearHistory();
  const t0 = performance.now();
  let first = 0, i = 0;
  for await (const _ of seq.evaluate(prompt as never, { temperature: 0 })) {
    if (i === 0) first = performance.now();
    if (++i >= n) break;
  }
  const end = performance.now();
  return { prefillTokS: (prompt.length / (first - t0)) * 1000, decodeTokS: ((i - 1) / (end - first)) * 1000, wallMs: end - t0, promptTokens: prompt.length, genTokens: i };
}
await once(tokens.slice(0, 16), 8);
const results: RunResult[] = [];
for (let i = 0; i < runs; i++) results.push(await once(tokens, GEN_TOKENS));
printReport({
  runtime: "llama.cpp native (node-llama-cpp 3.21.1)", model: path, threads: context.currentThreads, runs: results,
  peakRssBytes: process.resourceUsage().maxRSS * 1024, notes: { cpuBackend: backend, threadsRequested: threads },
});
await context.dispose();
await model.dispose();
await llama.dispose();
