// Kernel throughput with tinybench on the release builds: every matmul kernel as matrix-vector on weights bigger
// than the last-level cache (GB/s of weights streamed, GFLOP/s), as matrix-matrix with t = 64 (prefill), and the
// streaming-read bandwidth of a plain SIMD sum measured in the same run for scale. The SIMD128 build runs first;
// then the same file re-runs itself on the relaxed-SIMD build (node --experimental-wasm-relaxed-simd). Not a model
// benchmark. Run: npm run build && node dist/bench/kernels.bench.js [--only q4_0,q8_0]
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Bench } from "tinybench";
import { convertActivations, WasmRuntime, type Kernels, type SimdBuild } from "../src/wasm.js";
import { activationFormat, formatByName, FORMATS, rowBytes, type MatmulKernel, type QuantFormat } from "../src/quant/formats.js";

const MiB = 1 << 20;
const N = 4096, D = 11008;       // LLaMA-7B FFN shape (rows = D, row length = N)
const COLD_BYTES = 160 * MiB;    // weights per kernel rotated through: well past the 32 MiB L3
const T_MM = 64, D_MM = 4096;    // matrix-matrix: 4096 x 4096 weights, 64 tokens

const BUILD: SimdBuild = process.env.EDGEPRUNE_SIMD === "relaxed" ? "relaxed" : "simd128";
const onlyArg = process.argv.indexOf("--only");
const ONLY = onlyArg > 0 ? process.argv[onlyArg + 1].toUpperCase().split(",") : undefined;
const rt = WasmRuntime.create({ simd: BUILD });
const k = rt.k;
const lines: string[] = [];

function say(s: string): void {
  lines.push(s);
  console.log(s);
}

/** Fills weights for d rows of format f: one real quantized row, copied to every row (every byte written). */
function fillWeights(f: QuantFormat, ptr: number, n: number, d: number): void {
  const src = new Float32Array(n);
  for (let i = 0; i < n; i++) src[i] = Math.sin(i * 0.37) * 0.05;
  const rb = rowBytes(f, n);
  f.quantize!(src, rt.u8At(ptr, rb));
  const u8 = rt.u8;
  for (let r = 1; r < d; r++) u8.copyWithin(ptr + r * rb, ptr, ptr + rb);
}

/** Activations of t rows in the kernel's activation format, made by the wasm converters. */
function makeActivations(f: QuantFormat, n: number, t: number): number {
  const x = rt.alloc(4 * n * t);
  const xf = rt.f32At(x, n * t);
  for (let i = 0; i < xf.length; i++) xf[i] = Math.cos(i * 0.11);
  const act = formatByName(activationFormat(f, rt.simd)!)!;
  if (act.name === "F32") return x;
  const out = rt.alloc(rowBytes(act, n) * t);
  convertActivations(k, act.name, out, x, n, t);
  return out;
}

/** the median latency of a task, in ms (a mean would let one preempted sample move the figure) */
function medianMs(b: Bench, name: string): number {
  const task = b.getTask(name)!;
  const r = task.result;
  if (r.state !== "completed") throw new Error(`${name}: ${r.state}${"error" in r ? ` ${r.error}` : ""}`);
  return r.latency.p50;
}

async function main(): Promise<void> {
  // streaming-read bandwidth: a SIMD sum over 512 MiB of written memory
  const bwBytes = 512 * MiB;
  const bw = rt.alloc(bwBytes);
  rt.f32At(bw, bwBytes / 4).fill(1.5);
  const b0 = new Bench({ time: 2000, warmupIterations: 2 });
  b0.add("sum_f32 512 MiB", () => { k.sum_f32(bw, bwBytes / 4); });
  await b0.run();
  const bwGBs = bwBytes / (medianMs(b0, "sum_f32 512 MiB") * 1e6);
  say(`kernel build: ${BUILD}`);
  say(`streaming read (sum_f32 over 512 MiB): ${bwGBs.toFixed(1)} GB/s`);
  rt.release(bw);

  const kernels = FORMATS.filter((f) => f.matmul && (!ONLY || ONLY.includes(f.name)));
  say("");
  say(`matrix-vector, ${D} x ${N}, t = 1, weights cold (rotating through >= ${COLD_BYTES / MiB} MiB)`);
  say("kernel        ms/call   GB/s weights   % of stream   GFLOP/s");
  for (const f of kernels) {
    const m = rt.mark();
    const wb = rowBytes(f, N) * D;
    const copies = Math.max(1, Math.ceil(COLD_BYTES / wb));
    const ws: number[] = [];
    for (let c = 0; c < copies; c++) { const p = rt.alloc(wb); fillWeights(f, p, N, D); ws.push(p); }
    const x = makeActivations(f, N, 1);
    const out = rt.alloc(4 * D);
    const fn = k[f.matmul as MatmulKernel] as Kernels["matmul_f32"];
    let c = 0;
    const b = new Bench({ time: 1500, warmupIterations: 3 });
    // one call per iteration: a call streams tens of MiB, far above tinybench's per-iteration overhead
    b.add(f.matmul!, () => { fn(out, x, ws[c], N, D, 1); c = (c + 1) % copies; });
    await b.run();
    const ms = medianMs(b, f.matmul!);
    const gbs = wb / (ms * 1e6);
    say(`${f.matmul!.padEnd(13)} ${ms.toFixed(3).padStart(7)}   ${gbs.toFixed(1).padStart(12)}   ${(100 * gbs / bwGBs).toFixed(0).padStart(10)}%   ${((2 * N * D) / (ms * 1e6)).toFixed(1).padStart(7)}`);
    rt.release(m);
  }

  say("");
  say(`matrix-matrix, ${D_MM} x ${N} weights, t = ${T_MM} tokens`);
  say("kernel        ms/call   GB/s weights   GFLOP/s");
  for (const f of kernels) {
    const m = rt.mark();
    const wb = rowBytes(f, N) * D_MM;
    const w = rt.alloc(wb);
    fillWeights(f, w, N, D_MM);
    const x = makeActivations(f, N, T_MM);
    const out = rt.alloc(4 * D_MM * T_MM);
    const fn = k[f.matmul as MatmulKernel] as Kernels["matmul_f32"];
    const b = new Bench({ time: 2000, warmupIterations: 2 });
    b.add(f.matmul!, () => { fn(out, x, w, N, D_MM, T_MM); });
    await b.run();
    const ms = medianMs(b, f.matmul!);
    say(`${f.matmul!.padEnd(13)} ${ms.toFixed(2).padStart(7)}   ${(wb / (ms * 1e6)).toFixed(1).padStart(12)}   ${((2 * N * D_MM * T_MM) / (ms * 1e6)).toFixed(1).padStart(7)}`);
    rt.release(m);
  }
}

await main();
if (BUILD === "simd128") {
  console.log("\n---- relaxed SIMD build (child: node --experimental-wasm-relaxed-simd) ----\n");
  const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { env: { ...process.env, EDGEPRUNE_SIMD: "relaxed" }, stdio: "inherit" });
  process.exitCode = r.status ?? 1;
}
