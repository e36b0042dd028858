// bench/peers runner for edgeprune in Node: loads a GGUF (threads over one shared memory when asked), warms up,
// then times PROMPT_TOKENS of prefill + GEN_TOKENS greedy tokens per run. Prints a RunnerReport as JSON.
// Usage: node dist/bench/peers-edgeprune.js <model.gguf> <threads> <runs>
import { statSync } from "node:fs";
import { loadModelFile } from "../src/node/load.js";
import { kvCacheBytes } from "../src/model/model.js";
import { keepYoungGenerationSize } from "../src/node/heap.js";
import { generate } from "../src/generate.js";
import { benchTokens, GEN_TOKENS, printReport, PROMPT_TOKENS, type RunResult } from "./peers-common.js";

// as `edgeprune generate` and `serve` run: V8's young generation keeps its start-up size (src/node/heap.ts)
keepYoungGenerationSize();
const [path, threadsArg, runsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 1), runs = Number(runsArg ?? 3);
const contextSize = PROMPT_TOKENS + GEN_TOKENS;
const model = loadModelFile(path, { contextSize, batchSize: PROMPT_TOKENS, threads });
const tokens = benchTokens(model.tokenizer, path);
const used = await model.startThreads();
const ctx = model.createContext();
const once = (prompt: number[], n: number) => {
  ctx.reset();
  const t0 = performance.now();
  const r = generate(ctx, model.tokenizer, prompt, { maxTokens: n, temperature: 0, stopAtEos: false });
  return { r, wallMs: performance.now() - t0 };
};
once(tokens.slice(0, 16), 8); // tier-up of every kernel on this shape
const results: RunResult[] = [];
for (let i = 0; i < runs; i++) {
  const { r, wallMs } = once(tokens, GEN_TOKENS);
  results.push({ prefillTokS: (tokens.length / r.prefillMs) * 1000, decodeTokS: ((r.tokens.length - 1) / r.decodeMs) * 1000, wallMs, promptTokens: tokens.length, genTokens: r.tokens.length });
}
const c = model.config;
const kvBytes = kvCacheBytes(c, ctx.contextSize); // the KV cache this run allocated
printReport({
  runtime: `edgeprune (${model.rt.simd})`, model: path, threads: used, runs: results,
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  notes: { simd: model.rt.simd, fileBytes: statSync(path).size, kvBytes, wasmBytes: model.memoryBytes },
});
model.stopThreads();
