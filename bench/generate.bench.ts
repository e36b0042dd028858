// End-to-end generation benchmark: prefill and decode tokens/s of edgeprune (WebAssembly, 1 thread) against native
// llama.cpp (node-llama-cpp, 1 thread) measured in the same run on the same files, medians of several runs, plus
// the dense-vs-pruned decode speedup. Not a test: it prints numbers and asserts nothing.
// Run: npm run build && node dist/bench/generate.bench.js [--runs N]
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Model } from "../src/model/model.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { ggufChunks } from "../src/gguf/writer.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { parseQuantType, quantizeModel } from "../src/quant/quantize.js";
import { removeLayers } from "../src/prune/remove.js";
import { rankUnits } from "../src/prune/metrics.js";
import { splitDocuments, tokenizeDocuments, tokenWindows } from "../src/data/documents.js";
import { argmax } from "../src/sampler.js";

const SHARED = resolve(process.cwd(), "../shared");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const PREFILL = 128;
const DECODE = 128;
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-bench-"));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** A fixed 128-token prompt from the evaluation stories. */
function promptTokens(model: Model): number[] {
  const text = readFileSync(join(SHARED, "data/tinystories/tinystories-validation-first1000.txt"), "utf8");
  const docs = splitDocuments(text).slice(900);
  return tokenWindows(tokenizeDocuments(model.tokenizer, docs), PREFILL, PREFILL, model.tokenizer.bosId)[0];
}

/** One timed run: prefill and decode tokens/s. */
type Run = () => Promise<{ pp: number; tg: number }>;

function edgeprune(path: string, prompt: number[]): Run {
  const model = Model.load(new Uint8Array(readFileSync(path)));
  return async () => {
    const ctx = model.acquireContext({ contextSize: PREFILL + DECODE + 8 });
    const t0 = performance.now();
    let logits = ctx.eval(prompt);
    const t1 = performance.now();
    for (let i = 0; i < DECODE; i++) logits = ctx.eval([argmax(logits)]);
    const t2 = performance.now();
    model.releaseContext(ctx);
    return { pp: (PREFILL / (t1 - t0)) * 1000, tg: (DECODE / (t2 - t1)) * 1000 };
  };
}

async function llamaCpp(path: string, prompt: number[]): Promise<Run> {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 512, threads: 1, sequences: 1 });
  const sequence = context.getSequence();
  type Tok = Parameters<typeof sequence.evaluateWithoutGeneratingNewTokens>[0][number];
  return async () => {
    await sequence.clearHistory();
    const t0 = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1) as Tok[]);
    const t1 = performance.now();
    let n = 0;
    // one prompt token is left so that decode starts from a real evaluation, as ours does
    const t2 = performance.now();
    for await (const _token of sequence.evaluate([prompt[prompt.length - 1]] as Tok[], { temperature: 0 })) {
      if (++n >= DECODE) break;
    }
    const t3 = performance.now();
    return { pp: ((PREFILL - 1) / (t1 - t0)) * 1000, tg: (DECODE / (t3 - t2)) * 1000 };
  };
}

function writeVariant(src: string, name: string, make: (bytes: Uint8Array) => { spec: Parameters<typeof ggufChunks>[0]; tensorData: (i: number) => Uint8Array }): string {
  const out = join(tmp, name);
  const bytes = new Uint8Array(readFileSync(src));
  const { spec, tensorData } = make(bytes);
  writeFileAtomicSync(out, ggufChunks(spec, tensorData));
  return out;
}

async function main() {
  const s260 = join(SHARED, "models/stories260K.gguf");
  const deep = join(SHARED, "models/stories-deep-16L.gguf");
  const deepModel = Model.load(new Uint8Array(readFileSync(deep)));
  const calib = tokenWindows(tokenizeDocuments(deepModel.tokenizer, splitDocuments(readFileSync(join(SHARED, "data/tinystories/tinystories-validation-first1000.txt"), "utf8")).slice(0, 800)), 128, 4096, deepModel.tokenizer.bosId);
  const order = rankUnits("bi", { model: deepModel, windows: calib }).order.map((u) => u.layer);
  const files: [string, string][] = [
    ["stories260K F32", s260],
    ["stories-deep-16L F32", deep],
    ["stories-deep-16L Q8_0", writeVariant(deep, "deep-q8_0.gguf", (b) => quantizeModel(readGgufHeader(b), bytesSource(b), parseQuantType("q8_0")))],
    ["stories-deep-16L Q4_0", writeVariant(deep, "deep-q4_0.gguf", (b) => quantizeModel(readGgufHeader(b), bytesSource(b), parseQuantType("q4_0")))],
    ["stories-deep-16L −4 layers (BI) F32", writeVariant(deep, "deep-12L.gguf", (b) => removeLayers(readGgufHeader(b), bytesSource(b), { layers: order.slice(0, 4) }))],
  ];
  console.log(`generate bench: ${PREFILL}-token prompt, ${DECODE} greedy tokens, 1 thread each, median of ${RUNS} rounds after a warm-up; ` +
    `each round runs every model in both runtimes, one after the other, so the ratios compare figures taken seconds apart`);
  const runners: { name: string; ours: Run; theirs: Run; runs: { ours: { pp: number; tg: number }[]; theirs: { pp: number; tg: number }[] } }[] = [];
  for (const [name, path] of files) {
    const prompt = promptTokens(Model.load(new Uint8Array(readFileSync(path))));
    runners.push({ name, ours: edgeprune(path, prompt), theirs: await llamaCpp(path, prompt), runs: { ours: [], theirs: [] } });
  }
  for (let round = 0; round <= RUNS; round++) {
    for (const r of runners) {
      // alternate which runtime goes first; round 0 warms up (tier-up of the kernels) and is not counted
      const first = round % 2 ? "theirs" : "ours", second = first === "ours" ? "theirs" : "ours";
      const a = await r[first](), b = await r[second]();
      if (round === 0) continue;
      r.runs[first].push(a);
      r.runs[second].push(b);
    }
  }
  console.log(`| model | edgeprune prefill tok/s | llama.cpp prefill tok/s | ratio | edgeprune decode tok/s | llama.cpp decode tok/s | ratio |`);
  console.log(`|---|---|---|---|---|---|---|`);
  const results: Record<string, { pp: number; tg: number }> = {};
  for (const r of runners) {
    const ours = { pp: median(r.runs.ours.map((x) => x.pp)), tg: median(r.runs.ours.map((x) => x.tg)) };
    const theirs = { pp: median(r.runs.theirs.map((x) => x.pp)), tg: median(r.runs.theirs.map((x) => x.tg)) };
    results[r.name] = ours;
    console.log(`| ${r.name} | ${ours.pp.toFixed(0)} | ${theirs.pp.toFixed(0)} | ${(ours.pp / theirs.pp).toFixed(2)} | ${ours.tg.toFixed(0)} | ${theirs.tg.toFixed(0)} | ${(ours.tg / theirs.tg).toFixed(2)} |`);
  }
  const dense = results["stories-deep-16L F32"].tg;
  const pruned = results["stories-deep-16L −4 layers (BI) F32"].tg;
  console.log(`\npruned decode speedup (12 of 16 layers, BI removed ${order.slice(0, 4).join(", ")}): ${(pruned / dense).toFixed(2)}× (ideal 16/12 = 1.33×)`);
  rmSync(tmp, { recursive: true, force: true });
}

await main();
