// GPTQ at model scale: the wasm factorization against linalg.ts bit for bit; GPTQ into Q5_0 and the K-quants (H = I
// gives llama.cpp's round-to-nearest bytes, correlated inputs give a lower output error than RTN); the layer-streaming
// driver against the re-running one it replaced (the same bytes on stories-deep-16L and stories260K); GPTQ Q4_K_M on
// a 256-wide model, whose K-quant blocks llama.cpp then runs with our distributions.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmRuntime } from "../src/wasm.js";
import { codecFor } from "../src/gptq/codec.js";
import { gptqMatrix, prepareHessian, prepareHessianWasm } from "../src/gptq/gptq.js";
import { quantizeGptq, relativeError, type GptqModelResult } from "../src/gptq/model.js";
import { formatByName } from "../src/quant/formats.js";
import { parseQuantRecipe, quantizeModel } from "../src/quant/quantize.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { ggufChunks } from "../src/gguf/writer.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { Model } from "../src/model/model.js";
import { resolveShape, synthModel } from "../src/commands/synth.js";
import { quantizeGptqRerun } from "./support/gptq-rerun.js";
import { disposeOracle, llamaCppTeacherForced } from "./support/llamacpp.js";
import { compareDistributions, ourTeacherForced } from "./support/compare.js";
import { storiesWindows, teacherSequence } from "./support/fixtures.js";
import { sharedPath } from "./support/paths.js";
import { normal, rng } from "./support/util.js";
import { correlatedInputs, gram, outputError } from "./support/gptq-inputs.js";

const rt = WasmRuntime.create();
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-gptqs-"));
const fmt = (n: string) => formatByName(n)!;

/** H = XᵀX + a little of everything, for x (t, n) with some columns always zero */
function spd(seed: number, n: number, t: number, deadEvery = 0): Float64Array {
  const rand = rng(seed);
  const x = normal(rand, t * n);
  if (deadEvery) for (let j = 0; j < t; j++) for (let i = 0; i < n; i += deadEvery) x[j * n + i] = 0;
  return gram(x, n, t);
}

test("prepareHessianWasm (gptq_cholesky, gptq_trinv_lower) gives prepareHessian's bits on odd sizes, with act-order and dead columns", () => {
  for (const n of [1, 3, 17, 31, 33, 69, 130]) for (const actOrder of [false, true]) {
    const h = spd(n, n, n + 5, n > 10 ? 7 : 0);
    const want = prepareHessian(h, n, { actOrder });
    const m = rt.mark();
    try {
      const p = rt.alloc(n * n * 8);
      new Float64Array(rt.memory.buffer, p, n * n).set(h);
      const got = prepareHessianWasm(rt, p, n, { actOrder });
      assert.equal(Array.from(got.perm), Array.from(want.perm), `n=${n} perm`);
      assert.is(got.lambda, want.lambda, `n=${n} λ`);
      for (let i = 0; i < n * n; i++) if (!Object.is(got.hinv[i], want.hinv[i])) assert.unreachable(`n=${n} actOrder=${actOrder}: hinv[${i}] ${got.hinv[i]} vs ${want.hinv[i]}`);
    } finally {
      rt.release(m);
    }
  }
  // rank-deficient H needs the λ retries, and both paths take the same ones
  const n = 40, h = spd(3, n, 10);
  const m = rt.mark();
  const p = rt.alloc(n * n * 8);
  new Float64Array(rt.memory.buffer, p, n * n).set(h);
  assert.is(prepareHessianWasm(rt, p, n, { damp: 0 }).lambda, prepareHessian(h, n, { damp: 0 }).lambda);
  rt.release(m);
});

test("GPTQ with H = I into Q5_0, Q4_K and Q6_K is round-to-nearest: llama.cpp's reference bytes", () => {
  const rand = rng(14);
  const rows = 7, n = 512;
  const w = normal(rand, rows * n, 0.1);
  for (let i = 0; i < w.length; i += 37) w[i] *= 6;
  for (let i = 256; i < 288; i++) w[i] = 0; // a zero sub-block
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) h[i * n + i] = 1;
  for (const name of ["Q5_0", "Q4_K", "Q6_K"]) {
    const f = fmt(name);
    const r = gptqMatrix(rt, w, rows, n, prepareHessian(h, n), codecFor(f));
    const ref = new Uint8Array(r.bytes.length);
    f.quantize!(w, ref);
    assert.equal(Array.from(r.bytes), Array.from(ref), `${name} bytes`);
  }
});

test("correlated layer: GPTQ into Q5_0, Q4_K, Q6_K beats RTN (in order and with act-order), and the blocks decode to what GPTQ used", () => {
  const rows = 32, n = 512, t = 384;
  const { w, x } = correlatedInputs(15, rows, n, t);
  const h = gram(x, n, t);
  const lines: string[] = [];
  for (const name of ["Q5_0", "Q4_K", "Q6_K"]) for (const actOrder of [false, true]) {
    const f = fmt(name);
    const g = gptqMatrix(rt, w, rows, n, prepareHessian(h, n, { actOrder }), codecFor(f), { actOrder });
    const decoded = new Float32Array(rows * n);
    f.dequantize!(g.bytes, decoded);
    assert.equal(Array.from(decoded), Array.from(g.dequantized), `${name}: the file holds exactly the weights GPTQ's error feedback used`);
    const rtnBytes = new Uint8Array(g.bytes.length);
    f.quantize!(w, rtnBytes);
    const rtnW = new Float32Array(rows * n);
    f.dequantize!(rtnBytes, rtnW);
    const eG = outputError(w, g.dequantized, x, rows, n, t), eR = outputError(w, rtnW, x, rows, n, t);
    assert.ok(eG < eR, `${name} act-order=${actOrder}: gptq ${eG} ≥ rtn ${eR}`);
    lines.push(`${name}${actOrder ? " act-order" : ""}: gptq ${eG.toFixed(4)} rtn ${eR.toFixed(4)}`);
  }
  console.log(`    ${lines.join("\n    ")}`);
});

test("layer-streaming GPTQ writes the re-running driver's bytes (stories-deep-16L Q4_0; stories260K Q4_1 group 64 act-order), in 16 + 64 layer passes", () => {
  for (const [model, type, opts] of [["stories-deep-16L", "Q4_0", {}], ["stories260K", "Q4_1", { group: 64, actOrder: true }]] as const) {
    const bytes = new Uint8Array(readFileSync(sharedPath(`models/${model}.gguf`)));
    const file = readGgufHeader(bytes), windows = storiesWindows(file, 512, 512);
    let t0 = performance.now();
    const stream = quantizeGptq(file, bytesSource(bytes), windows, fmt(type), opts);
    const ts = performance.now() - t0;
    t0 = performance.now();
    const rerun = quantizeGptqRerun(file, bytesSource(bytes), windows, fmt(type), opts);
    const tr = performance.now() - t0;
    for (let i = 0; i < stream.plan.length; i++) {
      assert.equal(Array.from(stream.tensorData(i)), Array.from(rerun.tensorData(i)), `${model} ${stream.plan[i].info.name}`);
    }
    const L = file.tensors.filter((t) => t.name.endsWith("attn_q.weight")).length;
    assert.is(stream.passes.full, L);
    console.log(`    ${model} ${type}: identical bytes; streaming ${(ts / 1000).toFixed(1)} s (${stream.passes.full} full + ${stream.passes.partial} partial layer passes) vs re-running ${(tr / 1000).toFixed(1)} s`);
  }
});

/** a random-weight F32 llama with every row a multiple of 256 (K-quants everywhere but Q4_K_M's Q6_K picks) */
function synth256(): Uint8Array {
  const shape = resolveShape({ dim: 256, layers: 4, heads: 4, kvHeads: 2, hidden: 768, vocab: 512, ctx: 256 });
  const { spec, tensorData } = synthModel({ shape, type: "f32", seed: 5 });
  const path = join(tmp, "synth256-f32.gguf");
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return new Uint8Array(readFileSync(path));
}

function write(r: GptqModelResult | ReturnType<typeof quantizeModel>, name: string): string {
  const path = join(tmp, name);
  writeFileAtomicSync(path, ggufChunks(r.spec, r.tensorData));
  return path;
}

test("GPTQ Q4_K_M of a 256-wide model: Q4_K/Q6_K blocks with lower calibration error than RTN in every layer; llama.cpp runs it with our distributions", async () => {
  const bytes = synth256();
  const file = readGgufHeader(bytes);
  const windows = storiesWindows(file, 512, 512);
  const r = quantizeGptq(file, bytesSource(bytes), windows, parseQuantRecipe("q4_k_m"));
  const types = new Set(r.plan.map((p) => p.target.name));
  assert.ok(types.has("Q4_K") && types.has("Q6_K"), `types ${[...types]}`);
  for (let l = 0; l < 4; l++) {
    const errs = r.errors.filter((e) => e.layer === l);
    assert.ok(relativeError(errs, "gptq") < relativeError(errs, "rtn"), `layer ${l}`);
  }
  // the same mix as round-to-nearest: every tensor's type as llama.cpp's Q4_K_M picks it
  const rtn = quantizeModel(file, bytesSource(bytes), parseQuantRecipe("q4_k_m"));
  assert.equal(r.plan.map((p) => p.target.name), rtn.plan.map((p) => p.target.name));
  const path = write(r, "synth256-gptq-q4_k_m.gguf"), rtnPath = write(rtn, "synth256-rtn-q4_k_m.gguf");
  const model = Model.load(new Uint8Array(readFileSync(path)));
  const seq = teacherSequence(model.tokenizer);
  const c = compareDistributions(ourTeacherForced(model, seq), await llamaCppTeacherForced(path, seq), 1);
  const cr = compareDistributions(ourTeacherForced(Model.load(new Uint8Array(readFileSync(rtnPath))), seq), await llamaCppTeacherForced(rtnPath, seq), 1);
  // GPTQ's blocks are no harder for llama.cpp to agree with than its own quantizer's: within 3× of the RTN file's difference
  assert.ok(c.maxAbs < Math.max(3 * cr.maxAbs, 1e-3), `GPTQ file: max |p − p_llama.cpp| ${c.maxAbs} vs RTN file ${cr.maxAbs}`);
  console.log(`    error gptq ${relativeError(r.errors, "gptq").toFixed(4)} vs rtn ${relativeError(r.errors, "rtn").toFixed(4)}; max |p − p_llama.cpp| ${c.maxAbs.toExponential(2)} (the RTN file: ${cr.maxAbs.toExponential(2)})`);
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
