// Held-out evaluation for the GPTQ study (docs/gptq.md): per-story perplexity of GGUF files on the last 20% of
// the TinyStories validation stories (the first 80% are what `quantize --calib` calibrates on), and with --base the
// mean KL divergence KL(base ‖ file) of the next-token distributions at the same positions (as llama-perplexity
// --kl-divergence averages it) with the top-1 agreement. Each story is scored on its own: BOS + story, every
// next-token prediction counted. `--kernels` times the GPTQ kernels instead.
// usage: node dist/bench/gptq.bench.js [--stories FILE] [--base BASE.gguf] MODEL.gguf [MODEL.gguf ...]
//        node dist/bench/gptq.bench.js --kernels
import { readFileSync } from "node:fs";
import { WasmRuntime } from "../src/wasm.js";
import { calibrationSplit, splitDocuments } from "../src/data/documents.js";
import { loadModelFile } from "../src/node/load.js";
import { logSoftmaxAt } from "../src/perplexity.js";

const DEFAULT_STORIES = "../shared/data/tinystories/tinystories-validation-first1000.txt";

/** log-softmax of one row of logits, in float64 */
function logProbs(logits: Float32Array, off: number, vocab: number): Float64Array {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[off + v]);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[off + v] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(vocab);
  for (let v = 0; v < vocab; v++) out[v] = logits[off + v] - lse;
  return out;
}

function storyEval(path: string, stories: string[], basePath?: string): { ppl: number; tokens: number; kld?: number; kldSe?: number; top1?: number } {
  const model = loadModelFile(path, { contextSize: Math.min(512, 2048) });
  const ctx = model.createContext();
  const base = basePath ? loadModelFile(basePath, { contextSize: ctx.contextSize }).createContext() : undefined;
  const vocab = model.config.vocabSize;
  let nll = 0, count = 0, kld = 0, kld2 = 0, same = 0;
  for (const s of stories) {
    const ids = model.tokenizer.encode(s, { addBos: true }).slice(0, ctx.contextSize);
    if (ids.length < 2) continue;
    ctx.reset();
    const logits = ctx.eval(ids, { logits: "all" });
    base?.reset();
    const baseLogits = base?.eval(ids, { logits: "all" });
    for (let j = 0; j + 1 < ids.length; j++) {
      nll -= logSoftmaxAt(logits, j * vocab, vocab, ids[j + 1]);
      if (!baseLogits) continue;
      const q = logProbs(logits, j * vocab, vocab), p = logProbs(baseLogits, j * vocab, vocab);
      let d = 0, bq = 0, bp = 0;
      for (let v = 0; v < vocab; v++) {
        d += Math.exp(p[v]) * (p[v] - q[v]);
        if (q[v] > q[bq]) bq = v;
        if (p[v] > p[bp]) bp = v;
      }
      kld += d; kld2 += d * d;
      if (bq === bp) same++;
    }
    count += ids.length - 1;
  }
  if (!base) return { ppl: Math.exp(nll / count), tokens: count };
  const mean = kld / count;
  return { ppl: Math.exp(nll / count), tokens: count, kld: mean, kldSe: Math.sqrt(Math.max(0, kld2 / count - mean * mean) / (count - 1)), top1: same / count };
}

/** GFLOP/s of each GPTQ kernel at small and large sizes (inputs filled first: untouched pages read as zeros). */
function kernelTimes(): void {
  const rt = WasmRuntime.create();
  const k = rt.k;
  const fill = (p: number, n: number) => { const f = rt.f32At(p, n); for (let i = 0; i < n; i++) f[i] = Math.sin(i * 0.37); };
  const time = (work: number, call: () => void): number => {
    call(); // warm-up (tier-up)
    const reps = Math.max(1, Math.floor(2e9 / work));
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) call();
    return (performance.now() - t0) / reps;
  };
  for (const [n, t] of [[192, 64], [1024, 64], [4096, 64]]) {
    const m = rt.mark();
    const h = rt.alloc(n * n * 8), x = rt.alloc(n * t * 4);
    rt.u8.fill(0, h, h + n * n * 8);
    fill(x, n * t);
    const ms = time(n * n * t, () => k.gptq_accumulate_h(h, x, n, t));
    console.log(`gptq_accumulate_h n=${n} t=${t}: ${ms.toFixed(3)} ms, ${((n * (n + 1) * t) / ms / 1e6).toFixed(1)} GFLOP/s`);
    rt.release(m);
  }
  for (const n of [192, 1024, 4096]) {
    const m = rt.mark();
    const w = rt.alloc(n * n * 4), e = rt.alloc(n * 128 * 4), hv = rt.alloc(n * n * 4);
    fill(w, n * n); fill(e, n * 128); fill(hv, n * n);
    let ms = time(n * n * 128, () => k.gptq_block_update(w, e, hv, n, n, 0, 128));
    console.log(`gptq_block_update ${n}×${n}, block 128: ${ms.toFixed(3)} ms, ${((n * (n - 128) * 256) / ms / 1e6).toFixed(1)} GFLOP/s`);
    ms = time(n * 128, () => k.gptq_rank1_update(w, e, hv, n, n, 0, 128));
    console.log(`gptq_rank1_update ${n} rows × 128 columns: ${ms.toFixed(4)} ms, ${((n * 256) / ms / 1e6).toFixed(1)} GFLOP/s`);
    rt.release(m);
  }
}

const args = process.argv.slice(2);
if (args[0] === "--kernels") {
  kernelTimes();
  process.exit(0);
}
let storiesPath = DEFAULT_STORIES;
const si = args.indexOf("--stories");
if (si >= 0) { storiesPath = args[si + 1]; args.splice(si, 2); }
let basePath: string | undefined;
const bi = args.indexOf("--base");
if (bi >= 0) { basePath = args[bi + 1]; args.splice(bi, 2); }
if (args.length === 0) {
  console.error("usage: node dist/bench/gptq.bench.js [--stories FILE] [--base BASE.gguf] MODEL.gguf [MODEL.gguf ...]");
  process.exit(1);
}
const held = calibrationSplit(splitDocuments(readFileSync(storiesPath, "utf8"))).eval;
console.log(`held-out stories: ${held.length} (the last 20% of ${storiesPath})`);
for (const path of args) {
  const t0 = performance.now();
  const r = storyEval(path, held, basePath);
  const kld = r.kld !== undefined ? `  KLD ${r.kld.toFixed(5)} ± ${r.kldSe!.toFixed(5)}  same top-1 ${(100 * r.top1!).toFixed(2)}%` : "";
  console.log(`${r.ppl.toFixed(4)}${kld}  ${path}  (${r.tokens} tokens, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
