// Kernel throughput with tinybench on the release builds: every matmul kernel as matrix-vector on weights bigger
// than the last-level cache (GB/s of weights streamed, GFLOP/s), as matrix-matrix with t = 64 (prefill), and the
// streaming-read bandwidth of a plain SIMD sum measured in the same run for scale. The SIMD128 build runs first;
// then the same file re-runs itself on the relaxed-SIMD build (node --experimental-wasm-relaxed-simd). Not a model
// benchmark. Run: npm run build && node dist/bench/kernels.bench.js [--only q4_0,q8_0] [--prefill: only the prefill kernels]
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Bench } from "tinybench";
import { convertActivations, WasmRuntime, type Kernels, type SimdBuild } from "../src/wasm.js";
import { activationFormat, activationRows, formatByName, FORMATS, prefillActivationFormat, rowBytes, type MatmulKernel, type QuantFormat } from "../src/quant/formats.js";
import { DOT_OPS, dotPeakGops } from "./dot-peak.js";
import { execFileSync } from "node:child_process";

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
function makeActivations(f: QuantFormat, n: number, t: number, prefill = false): number {
  const x = rt.alloc(4 * n * t);
  const xf = rt.f32At(x, n * t);
  for (let i = 0; i < xf.length; i++) xf[i] = Math.cos(i * 0.11);
  const act = formatByName((prefill ? prefillActivationFormat(f, rt.simd) : activationFormat(f, rt.simd))!)!;
  if (act.name === "F32") return x;
  const out = rt.alloc(rowBytes(act, n) * activationRows(act, t));
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

/**
 * The prefill kernels (formats.ts `prefill`) against the batched path of `matmul` on the TinyLlama-1.1B shapes
 * (2048 x 2048 attention, 5632 x 2048 FFN down, 64 tokens): calls alternate old, new, old, ... and each gets the
 * median; their ratio is the figure (the machine is shared: `uptime` is printed). Then the peak of the build's dot
 * instruction (bench/dot-peak.ts) for scale.
 */
async function prefillKernels(): Promise<void> {
  const T = 64, REPS = 21;
  say("");
  say(`prefill kernels, old (matmul, t = ${T}) vs new (prefill kernel), calls interleaved, medians of ${REPS}; ${execFileSync("uptime", { encoding: "utf8" }).trim()}`);
  say("format  n x d         old GFLOP/s   new GFLOP/s   new/old   new % of dot peak");
  const peak = dotPeakGops(BUILD);
  for (const f of FORMATS.filter((x) => x.prefill && (!ONLY || ONLY.includes(x.name)))) {
    for (const [n, d] of [[2048, 2048], [5632, 2048]]) {
      const m = rt.mark();
      const w = rt.alloc(rowBytes(f, n) * d);
      fillWeights(f, w, n, d);
      const x = makeActivations(f, n, T), xp = makeActivations(f, n, T, true);
      const out = rt.alloc(4 * d * T);
      const old = k[f.matmul as MatmulKernel] as Kernels["matmul_f32"], neu = k[f.prefill as MatmulKernel] as Kernels["matmul_q4_K_mm"];
      const to: number[] = [], tn: number[] = [];
      for (let r = 0; r < REPS + 2; r++) {
        let t0 = performance.now(); old(out, x, w, n, d, T); const a = performance.now() - t0;
        t0 = performance.now(); neu(out, xp, w, n, d, T, d); const b = performance.now() - t0;
        if (r >= 2) { to.push(a); tn.push(b); } // two rounds of tier-up
      }
      const med = (v: number[]) => v.slice().sort((p, q) => p - q)[v.length >> 1];
      const gf = (ms: number) => (2 * n * d * T) / (ms * 1e6);
      say(`${f.name.padEnd(6)}  ${`${n} x ${d}`.padEnd(12)}  ${gf(med(to)).toFixed(1).padStart(11)}   ${gf(med(tn)).toFixed(1).padStart(11)}   ${(med(to) / med(tn)).toFixed(2).padStart(7)}   ${(100 * gf(med(tn)) / peak).toFixed(0).padStart(8)}%`);
      rt.release(m);
    }
  }
  say(`peak of ${DOT_OPS[BUILD].name} (tight loop, ${DOT_OPS[BUILD].macs} multiply-adds, best of 41): ${peak.toFixed(1)} GOPS`);
}

if (process.argv.includes("--prefill")) await prefillKernels();
else { await main(); await prefillKernels(); }
if (BUILD === "simd128") {
  console.log("\n---- relaxed SIMD build (child: node --experimental-wasm-relaxed-simd) ----\n");
  const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { env: { ...process.env, EDGEPRUNE_SIMD: "relaxed" }, stdio: "inherit" });
  process.exitCode = r.status ?? 1;
}
