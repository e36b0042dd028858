// Threads: a model run with worker threads over one shared memory gives the one-thread results (matmuls split by
// rows or tokens, attention by kv heads), the chunking covers every row/token once, and a runtime without
// shared memory falls back to one thread and says so once. No timings are asserted here (see bench/).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Model } from "../src/model/model.js";
import { WasmRuntime, convertActivations, hasSharedMemory } from "../src/wasm.js";
import { activationRows, FORMATS, formatByName, PREFILL_TOKEN_GROUP, prefillActivationFormat, rowBytes } from "../src/quant/formats.js";
import { ThreadPool } from "../src/threads/pool.js";
import { matmulChunks } from "../src/threads/share.js";
import { synthModel, resolveShape } from "../src/commands/synth.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { sharedPath } from "./support/paths.js";

async function compareAsync(bytes: Uint8Array, threads: number, prompt: number[], label: string): Promise<void> {
  const one = Model.load(bytes, { contextSize: 256 });
  const many = Model.load(bytes, { contextSize: 256, threads });
  assert.is(await many.startThreads({ spinMs: 0.2 }), threads, `${label}: ${threads} threads started`);
  try {
    const c1 = one.createContext(), cn = many.createContext();
    // prefill split by tokens (and by rows for the short tail), then decode steps split by rows
    const a = c1.eval(prompt, { logits: "all" }), b = cn.eval(prompt, { logits: "all" });
    // the same kernels on the same bytes; the Q4_0/Q8_0/F32 matmuls are bit-identical however they are cut
    // (kernels.test.ts), others (the K-quants) may differ in f32 summation order (4-token vs 1-token dots)
    let maxDiff = 0, scale = 0;
    for (let i = 0; i < a.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(a[i])); }
    assert.ok(maxDiff <= 1e-5 * scale, `${label}: prefill logits differ by ${maxDiff} (largest |logit| ${scale})`);
    let t1 = 1, tn = 1;
    for (let s = 0; s < 12; s++) {
      const l1 = c1.eval([t1]), ln = cn.eval([tn]);
      t1 = l1.indexOf(Math.max(...l1));
      tn = ln.indexOf(Math.max(...ln));
      assert.is(tn, t1, `${label}: greedy token ${s}`);
    }
  } finally {
    many.stopThreads();
  }
}
test("shared memory is available in Node (the rest of this file needs it)", () => {
  assert.ok(hasSharedMemory());
  assert.ok(WasmRuntime.create({ shared: true }).shared);
  assert.not.ok(WasmRuntime.create().shared);
});

test("stories-deep-16L (F32, GQA 8/4): 2 and 3 threads give the one-thread logits and greedy tokens", async () => {
  const bytes = new Uint8Array(readFileSync(sharedPath("models/stories-deep-16L.gguf")));
  const prompt = Array.from({ length: 70 }, (_, i) => 1 + ((i * 37) % 500));
  await compareAsync(bytes, 2, prompt, "deep-16L");
  await compareAsync(bytes, 3, prompt, "deep-16L");
});

test("synthetic Q4_0 and Q4_K_M models: 2 threads give the one-thread results", async () => {
  const shape = resolveShape({ dim: 512, layers: 2, heads: 8, kvHeads: 2, hidden: 1536, vocab: 2048, ctx: 256 });
  for (const type of ["q4_0", "q4_k_m"] as const) {
    const { spec, tensorData } = synthModel({ shape, type, seed: 3 });
    await compareAsync(writeGgufBytes(spec, tensorData), 2, Array.from({ length: 9 }, (_, i) => 5 + i * 11), type);
  }
});

test("matmul chunks cover every row (or token) exactly once", () => {
  for (const threads of [2, 3, 8]) for (const d of [1, 4, 5, 64, 1000, 5632]) for (const t of [1, 3, 5, 16, 64, 65]) {
    const cut = matmulChunks(d, t, threads);
    const total = cut.byRows ? d : t;
    assert.ok(cut.size * (cut.count - 1) < total && cut.size * cut.count >= total, `d=${d} t=${t} threads=${threads}: ${JSON.stringify(cut)}`);
    if (cut.byRows) assert.is(cut.size % 4, 0);
    assert.ok(cut.count < 0x10000);
  }
});

test("prefill kernels cut by rows across 2 and 3 threads (every token per run of rows): one call's bits, t = 2..9, odd d", async () => {
  const rt = WasmRuntime.create({ shared: true });
  for (const threads of [2, 3]) {
    const pool = (await ThreadPool.start(rt, threads, { spinMs: 0.2 }))!;
    assert.ok(pool);
    try {
      for (const f of FORMATS.filter((x) => x.prefill)) for (const [n, d] of [[f.blockSize === 256 ? 1280 : 1056, 37], [2048, 101]]) for (let t = 2; t <= 9; t++) {
        // past MIN_PARALLEL_MACS and below two token groups per thread: matmulChunks cuts these by rows
        assert.ok(matmulChunks(d, t, threads, PREFILL_TOKEN_GROUP).byRows, `${f.name} d=${d} t=${t}: cut by rows`);
        const mark = rt.mark();
        let seed = n * 31 + d * 7 + t;
        const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
        const wRow = rowBytes(f, n);
        const w = rt.alloc(wRow * d);
        const src = Float32Array.from({ length: n }, rand);
        for (let i = 0; i < d; i++) { for (let c = 0; c < n; c++) src[c] = rand(); f.quantize!(src, rt.u8At(w + i * wRow, wRow)); }
        const af = formatByName(prefillActivationFormat(f, rt.simd)!)!;
        const x = rt.alloc(n * t * 4), xq = rt.alloc(activationRows(af, t) * rowBytes(af, n));
        rt.f32At(x, n * t).set(Float32Array.from({ length: n * t }, rand));
        convertActivations(rt.k, af.name, xq, x, n, t);
        const one = rt.alloc(d * t * 4), many = rt.alloc(d * t * 4);
        rt.k[f.prefill!](one, xq, w, n, d, t, d);
        rt.f32At(many, d * t).fill(NaN);
        pool.matmul(f.prefill!, many, xq, w, n, d, t, wRow, rowBytes(af, n), af.tokenGroup ?? 1);
        const a = rt.f32At(one, d * t), b = rt.f32At(many, d * t);
        for (let i = 0; i < d * t; i++) {
          if (!Object.is(a[i], b[i])) assert.unreachable(`${f.prefill} ${threads} threads n=${n} d=${d} t=${t}: element ${i} = ${b[i]}, one call gives ${a[i]}`);
        }
        rt.release(mark);
      }
    } finally {
      pool.close();
    }
  }
});

test("GPTQ's rank-1 and block updates split by rows across 3 threads: the one-thread bits, tails included", async () => {
  const rt = WasmRuntime.create({ shared: true });
  const pool = (await ThreadPool.start(rt, 3, { spinMs: 0.2 }))!;
  assert.ok(pool);
  try {
    // odd sizes: rows not a multiple of the runs, columns with a 16-, 4- and 1-wide tail
    for (const [rows, n, i1, i2] of [[301, 389, 0, 128], [97, 1031, 128, 256], [1000, 263, 7, 100]]) {
      let seed = rows * 7919 + n;
      const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
      const w0 = Float32Array.from({ length: rows * n }, rand);
      const err = Float32Array.from({ length: rows * (i2 - i1) }, rand);
      const h = Float32Array.from({ length: n * n }, rand);
      const mark = rt.mark();
      const wA = rt.alloc(w0.length * 4), wB = rt.alloc(w0.length * 4), e = rt.alloc(err.length * 4), hp = rt.alloc(h.length * 4);
      rt.f32.set(w0, wA >> 2); rt.f32.set(w0, wB >> 2); rt.f32.set(err, e >> 2); rt.f32.set(h, hp >> 2);
      rt.k.gptq_block_update(wA, e, hp, rows, n, i1, i2);
      pool.gptqBlock(wB, e, hp, rows, n, i1, i2);
      assert.ok(Buffer.from(rt.u8At(wA, w0.length * 4)).equals(Buffer.from(rt.u8At(wB, w0.length * 4))), `block update ${rows}×${n} [${i1}, ${i2})`);
      assert.not.ok(Buffer.from(rt.u8At(wA, w0.length * 4)).equals(Buffer.from(new Uint8Array(w0.buffer))), "the update changed w");
      // the rank-1 update of column i1 over columns i1 + 1 .. i2 (error per row: the first column of err)
      rt.k.gptq_rank1_update(wA, e, hp + i1 * n * 4, rows, n, i1 + 1, n);
      pool.gptqRank1(wB, e, hp + i1 * n * 4, rows, n, i1 + 1, n);
      assert.ok(Buffer.from(rt.u8At(wA, w0.length * 4)).equals(Buffer.from(rt.u8At(wB, w0.length * 4))), `rank-1 update ${rows}×${n}`);
      rt.release(mark);
    }
  } finally {
    pool.close();
  }
});

test("no shared memory: ThreadPool.start says why once and returns undefined (one thread)", () => {
  // in a fresh process, so that no earlier warning in this one can have used up the "once"
  const script = `
    import { WasmRuntime } from "./dist/src/wasm.js";
    import { ThreadPool } from "./dist/src/threads/pool.js";
    const rt = WasmRuntime.create(); // not shared, as in a page without cross-origin isolation
    const got = [];
    for (const n of [4, 2, 1]) got.push(String(await ThreadPool.start(rt, n)));
    console.log(got.join(" "));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout.trim(), "undefined undefined undefined");
  const warnings = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.is(warnings.length, 1, `said once: ${r.stderr}`);
  assert.match(warnings[0], /^edgeprune: SharedArrayBuffer is unavailable .*cross-origin isolation.*one thread$/);
});

test.run();
