// Prefill at 1 thread against native llama.cpp (node-llama-cpp 3.21.1) in the same run: for each model, rounds
// interleave (in a rotated order, each in a fresh process) native, and edgeprune in both kernel builds with the
// prefill kernels (formats.ts `prefill`) and without them (the batched path of `matmul`, as before). Reports
// medians of tok/s over 128-token prompts, ratios to native, and `uptime` around every run (the machine is shared).
// Not a correctness test.
//   node dist/bench/prefill-peers.js /work/big/tinyllama-q4_0.gguf [more.gguf] [--rounds 3]
//   (runner) node dist/bench/prefill-peers.js --run edgeprune|native MODEL [old]
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { benchPrompt, benchTokens, median, PROMPT_TOKENS } from "./peers-common.js";

const RUNS = Number(process.env.PREFILL_RUNS ?? 2); // timed prompts per process, after a 16-token warm-up

async function runEdgeprune(path: string, old: boolean): Promise<number[]> {
  const { FORMATS } = await import("../src/quant/formats.js");
  if (old) for (const f of FORMATS) delete f.prefill; // the batched path of `matmul`, as before the prefill kernels
  const { loadModelFile } = await import("../src/node/load.js");
  const model = loadModelFile(path, { contextSize: PROMPT_TOKENS + 8, batchSize: PROMPT_TOKENS, threads: 1 });
  const tokens = benchTokens(model.tokenizer, path);
  const ctx = model.createContext();
  const out: number[] = [];
  ctx.eval(tokens.slice(0, 16)); // tiers the kernels up (the same functions as a long prompt)
  for (let i = 0; i < RUNS; i++) {
    ctx.reset();
    const t0 = performance.now();
    ctx.eval(tokens);
    out.push((tokens.length / (performance.now() - t0)) * 1000);
  }
  return out;
}

async function runNative(path: string): Promise<number[]> {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: PROMPT_TOKENS + 8, batchSize: PROMPT_TOKENS, threads: 1, flashAttention: false });
  const seq = context.getSequence();
  const { tokens } = benchPrompt(path);
  const out: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    await seq.clearHistory();
    const prompt = i === 0 ? tokens.slice(0, 16) : tokens; // the first, short, is a warm-up
    const t0 = performance.now();
    // the time to the first generated token: the prompt's prefill (and one sampling step)
    for await (const _ of seq.evaluate(prompt as never, { temperature: 0 })) break;
    if (i > 0) out.push((prompt.length / (performance.now() - t0)) * 1000);
  }
  await context.dispose(); await model.dispose(); await llama.dispose();
  return out;
}

const argv = process.argv.slice(2);
if (argv[0] === "--run") {
  const tokS = argv[1] === "native" ? await runNative(argv[2]) : await runEdgeprune(argv[2], argv[3] === "old");
  console.log(JSON.stringify({ tokS }));
} else {
  const ri = argv.indexOf("--rounds");
  const rounds = ri >= 0 ? Number(argv[ri + 1]) : 3;
  const models = argv.filter((a, i) => a.endsWith(".gguf") && argv[i - 1] !== "--rounds");
  const self = fileURLToPath(import.meta.url);
  const uptime = () => execFileSync("uptime", { encoding: "utf8" }).trim().replace(/.*load average: /, "load ");
  const RUNNERS = [
    { label: "native llama.cpp", args: ["native"], node: [] as string[], env: {} },
    { label: "simd128 old", args: ["edgeprune", "old"], node: [], env: { EDGEPRUNE_SIMD: "simd128" } },
    { label: "simd128 new", args: ["edgeprune", "new"], node: [], env: { EDGEPRUNE_SIMD: "simd128" } },
    { label: "relaxed old", args: ["edgeprune", "old"], node: ["--experimental-wasm-relaxed-simd"], env: { EDGEPRUNE_SIMD: "relaxed" } },
    { label: "relaxed new", args: ["edgeprune", "new"], node: ["--experimental-wasm-relaxed-simd"], env: { EDGEPRUNE_SIMD: "relaxed" } },
  ];
  for (const m of models) {
    const got = new Map<string, number[]>(RUNNERS.map((r) => [r.label, []]));
    console.log(`\n${m.split("/").pop()}: ${PROMPT_TOKENS}-token prompt, 1 thread, ${rounds} rounds x ${RUNS} prompts per process`);
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < RUNNERS.length; k++) {
        const r = RUNNERS[(k + round) % RUNNERS.length];
        const before = uptime();
        const p = spawnSync(process.execPath, [...r.node, self, "--run", r.args[0], m, r.args[1] ?? ""],
          { env: { ...process.env, ...r.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" }, encoding: "utf8", maxBuffer: 16 << 20 });
        const line = p.stdout.trim().split("\n").pop() ?? "";
        if (p.status !== 0 || !line.startsWith("{")) throw new Error(`${r.label} failed:\n${p.stdout}\n${p.stderr}`);
        const { tokS } = JSON.parse(line) as { tokS: number[] };
        got.get(r.label)!.push(...tokS);
        console.log(`  round ${round + 1} ${r.label.padEnd(17)} ${tokS.map((v) => v.toFixed(1)).join(" ")} tok/s   (${before} -> ${uptime()})`);
      }
    }
    const nat = median(got.get("native llama.cpp")!);
    console.log(`  medians:`);
    for (const r of RUNNERS) {
      const v = median(got.get(r.label)!);
      console.log(`  ${r.label.padEnd(17)} ${v.toFixed(1).padStart(7)} tok/s   ${(v / nat).toFixed(2)}x native`);
    }
  }
}
