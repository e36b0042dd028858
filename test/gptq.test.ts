// GPTQ: the wasm kernels against src/gptq/reference.ts on odd sizes; the codecs against ggml's _ref bytes; one
// synthetic layer with correlated inputs (GPTQ beats round-to-nearest, bytes are deterministic); a GPTQ Q4_0 model
// run by llama.cpp with our greedy tokens; and the CLI's one-line errors on bad input.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmRuntime } from "../src/wasm.js";
import * as R from "../src/gptq/reference.js";
import { inverseCholeskyUpper } from "../src/gptq/linalg.js";
import { codecFor } from "../src/gptq/codec.js";
import { gptqMatrix, prepareHessian, quadraticForm } from "../src/gptq/gptq.js";
import { quantizeGptq, relativeError } from "../src/gptq/model.js";
import { formatByName } from "../src/quant/formats.js";
import { quantizeModel } from "../src/quant/quantize.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { Model } from "../src/model/model.js";
import { generate } from "../src/generate.js";
import { configFromGguf } from "../src/model/config.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./support/llamacpp.js";
import { assertDistributionsAgree, assertGreedyAgrees, ourTeacherForced } from "./support/compare.js";
import { gptqFile, STORIES_TEXT, storiesWindows, teacherSequence } from "./support/fixtures.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";
import { assertClose, normal, rng } from "./support/util.js";
import { correlatedInputs, outputError } from "./support/gptq-inputs.js";
import * as TOL from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const rt = WasmRuntime.create();
const k = rt.k;
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-gptq-"));
const STORIES = STORIES_TEXT();
const DEEP = sharedPath("models/stories-deep-16L.gguf");
const Q4_0 = formatByName("Q4_0")!, Q4_1 = formatByName("Q4_1")!, Q8_0 = formatByName("Q8_0")!;

function put(a: Float32Array | Float64Array): number {
  const p = rt.alloc(Math.max(a.byteLength, 16));
  rt.u8.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), p);
  return p;
}

function scoped<T>(body: () => T): T {
  const m = rt.mark();
  try { return body(); } finally { rt.release(m); }
}

/** H = Σ xxᵀ of x (t, n) through the wasm kernel, in batches of 64 rows as the forward pass hands them over. */
function hessian(x: Float32Array, n: number, t: number): Float64Array {
  return scoped(() => {
    const hPtr = rt.alloc(n * n * 8);
    rt.u8.fill(0, hPtr, hPtr + n * n * 8);
    for (let j = 0; j < t; j += 64) {
      const rows = Math.min(64, t - j);
      scoped(() => k.gptq_accumulate_h(hPtr, put(x.subarray(j * n, (j + rows) * n)), n, rows));
    }
    const h = new Float64Array(rt.memory.buffer, hPtr, n * n).slice();
    for (let i = 0; i < n; i++) for (let c = 0; c < i; c++) h[i * n + c] = h[c * n + i];
    return h;
  });
}

test("gptq_accumulate_h matches the reference on odd sizes (upper triangle; below it untouched)", () => {
  const rand = rng(11);
  for (const n of [1, 3, 31, 33, 69]) for (const t of [1, 3, 7, 64]) scoped(() => {
    const x = normal(rand, n * t);
    const h0 = Float64Array.from(normal(rand, n * n));
    const hPtr = put(h0);
    k.gptq_accumulate_h(hPtr, put(x), n, t);
    const got = new Float64Array(rt.memory.buffer, hPtr, n * n).slice();
    const want = Float64Array.from(h0);
    R.accumulateH(want, x, n, t);
    const upper = (a: Float64Array) => { const u: number[] = []; for (let i = 0; i < n; i++) for (let c = i; c < n; c++) u.push(a[i * n + c]); return u; };
    const lower = (a: Float64Array) => { const u: number[] = []; for (let i = 0; i < n; i++) for (let c = 0; c < i; c++) u.push(a[i * n + c]); return u; };
    assertClose(upper(got), upper(want), TOL.kernelTol("gptq_accumulate_h", t), `gptq_accumulate_h n=${n} t=${t}`);
    assert.equal(lower(got), lower(h0), `below the diagonal untouched n=${n} t=${t}`);
  });
});

test("gptq_rank1_update and gptq_block_update match the reference on odd sizes", () => {
  const rand = rng(12);
  for (const rows of [1, 3, 33]) for (const n of [1, 3, 31, 33, 69, 160]) scoped(() => {
    const w = normal(rand, rows * n), hinv = normal(rand, n * n);
    // rank-1 on a sub-range of columns
    const c0 = Math.floor(rand() * n), c1 = c0 + Math.floor(rand() * (n - c0 + 1));
    const i = Math.floor(rand() * n);
    const e = normal(rand, rows);
    const wPtr = put(w);
    k.gptq_rank1_update(wPtr, put(e), put(hinv) + i * n * 4, rows, n, c0, c1);
    const want = Float32Array.from(w);
    R.rank1Update(want, e, hinv.subarray(i * n), rows, n, c0, c1);
    assertClose(rt.f32At(wPtr, rows * n).slice(), want, TOL.kernelTol("gptq_rank1_update"), `gptq_rank1_update rows=${rows} n=${n} [${c0},${c1})`);
    // block update after columns i1..i2
    for (const [i1, i2] of [[0, Math.min(n, 32)], [Math.floor(n / 3), n - Math.floor(n / 5)], [0, n]]) {
      const err = normal(rand, rows * (i2 - i1));
      const wb = put(w);
      k.gptq_block_update(wb, put(err), put(hinv), rows, n, i1, i2);
      const wantB = Float32Array.from(w);
      R.blockUpdate(wantB, err, hinv, rows, n, i1, i2);
      assertClose(rt.f32At(wb, rows * n).slice(), wantB, TOL.kernelTol("gptq_block_update", Math.sqrt(i2 - i1 + 1)),
        `gptq_block_update rows=${rows} n=${n} [${i1},${i2})`);
    }
  });
});

test("inverseCholeskyUpper: UᵀU is H⁻¹", () => {
  const rand = rng(13);
  for (const n of [1, 5, 40]) {
    const a = normal(rand, n * 2 * n);
    const h = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let c = 0; c < n; c++) { let s = i === c ? 0.1 : 0; for (let j = 0; j < 2 * n; j++) s += a[j * n + i] * a[j * n + c]; h[i * n + c] = s; }
    const u = inverseCholeskyUpper(h, n)!;
    for (let i = 0; i < n; i++) for (let c = 0; c < i; c++) assert.is(u[i * n + c], 0, "upper triangular");
    // (UᵀU) H = I
    let worst = 0;
    for (let i = 0; i < n; i++) for (let c = 0; c < n; c++) {
      let s = 0;
      for (let m = 0; m < n; m++) { let inv = 0; for (let r = 0; r <= Math.min(i, m); r++) inv += u[r * n + i] * u[r * n + m]; s += inv * h[m * n + c]; }
      worst = Math.max(worst, Math.abs(s - (i === c ? 1 : 0)));
    }
    assert.ok(worst < 1e-8, `n=${n}: |UᵀU H − I| = ${worst}`);
  }
  assert.is(inverseCholeskyUpper(Float64Array.from([1, 2, 2, 1]), 2), null, "not positive definite");
});

test("GPTQ with H = I is round-to-nearest: the same bytes as ggml's reference quantizers", () => {
  const rand = rng(14);
  const rows = 7, n = 96;
  const w = normal(rand, rows * n, 0.1);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) h[i * n + i] = 1;
  for (const f of [Q4_0, Q4_1, Q8_0]) {
    const r = gptqMatrix(rt, w, rows, n, prepareHessian(h, n), codecFor(f));
    const ref = new Uint8Array(r.bytes.length);
    f.quantize!(w, ref);
    assert.equal(Array.from(r.bytes), Array.from(ref), `${f.name} bytes`);
  }
});

/** A layer whose inputs are strongly correlated (gptq-inputs.ts), H through the wasm kernel. */
function correlatedLayer(seed: number, rows: number, n: number, t: number) {
  const { w, x } = correlatedInputs(seed, rows, n, t);
  return { w, x, h: hessian(x, n, t) };
}

test("synthetic correlated layer: GPTQ's output error is below RTN's, and the bytes decode to what GPTQ used", () => {
  const rows = 48, n = 256, t = 512;
  const { w, x, h } = correlatedLayer(15, rows, n, t);
  const lines: string[] = [];
  for (const [f, group, actOrder] of [[Q4_0, 32, false], [Q4_1, 32, false], [Q8_0, 32, false], [Q4_0, 32, true], [Q4_1, 128, false], [Q4_1, 64, true]] as const) {
    const codec = codecFor(f);
    const g = gptqMatrix(rt, w, rows, n, prepareHessian(h, n, { actOrder }), codec, { group, actOrder });
    const rtn = new Uint8Array(g.bytes.length);
    f.quantize!(w, rtn);
    const rtnW = new Float32Array(rows * n);
    f.dequantize!(rtn, rtnW);
    const decoded = new Float32Array(rows * n);
    f.dequantize!(g.bytes, decoded);
    assert.equal(Array.from(decoded), Array.from(g.dequantized), `${f.name} g${group}: the file holds exactly the weights GPTQ's error feedback used`);
    const eG = outputError(w, g.dequantized, x, rows, n, t), eR = outputError(w, rtnW, x, rows, n, t);
    lines.push(`${f.name} group ${group}${actOrder ? " act-order" : ""}: gptq ${eG.toFixed(4)} rtn ${eR.toFixed(4)}`);
    assert.ok(eG < eR, `${f.name} group ${group} act-order=${actOrder}: gptq ${eG} ≥ rtn ${eR}`);
    // the H-based error the CLI reports agrees with the direct one
    const viaH = scoped(() => {
      const hPtr = put(Float32Array.from(h));
      const d = new Float32Array(rows * n);
      for (let i = 0; i < d.length; i++) d[i] = w[i] - g.dequantized[i];
      return Math.sqrt(quadraticForm(rt, hPtr, d, rows, n) / quadraticForm(rt, hPtr, w, rows, n));
    });
    assert.ok(Math.abs(viaH - eG) < 1e-3 * eG, `error via H ${viaH} vs direct ${eG}`);
  }
  console.log(`    ${lines.join("\n    ")}`);
});

test("GPTQ is deterministic: two runs with the same calibration give identical bytes", () => {
  const rows = 32, n = 128, t = 256;
  const run = () => {
    const { w, h } = correlatedLayer(16, rows, n, t);
    return gptqMatrix(rt, w, rows, n, prepareHessian(h, n, { actOrder: true }), codecFor(Q4_0), { actOrder: true }).bytes;
  };
  assert.equal(Array.from(run()), Array.from(run()));
});

test("a dead input column (always zero) gets zero weight and does not break the factorization", () => {
  const rows = 4, n = 64, t = 128;
  const { w, x } = correlatedLayer(17, rows, n, t);
  for (let j = 0; j < t; j++) x[j * n + 5] = 0;
  const hess = prepareHessian(hessian(x, n, t), n);
  assert.is(hess.dead[5], 1);
  const g = gptqMatrix(rt, w, rows, n, hess, codecFor(Q4_0));
  for (let r = 0; r < rows; r++) assert.is(g.dequantized[r * n + 5], 0);
});

/**
 * A GPTQ file (test/support/fixtures.ts gptqFile: 512 calibration tokens of the first 800 stories) against
 * llama.cpp: teacher-forced probabilities within the file's measured bound, and 64 greedy tokens equal up to a tie.
 */
async function agreesWithLlamaCpp(path: string, key: keyof typeof TOL.VS_LLAMACPP): Promise<string> {
  const model = Model.load(new Uint8Array(readFileSync(path)), STUDY_CACHE);
  const seq = teacherSequence(model.tokenizer);
  const { bound } = TOL.VS_LLAMACPP[key];
  const c = assertDistributionsAgree(ourTeacherForced(model, seq), await llamaCppTeacherForced(path, seq), bound, key);
  const PROMPT = [1, 403, 407, 261, 378];
  const ours = generate(model.createContext({ contextSize: 256 }), model.tokenizer, PROMPT, { maxTokens: 64, temperature: 0, stopAtEos: false }).tokens;
  const ref = await llamaCppGreedy(path, PROMPT, 64);
  return `max |p - p_llama.cpp| ${c.maxAbs.toExponential(2)} (bound ${bound}), argmax equal at ${c.decisive}/${c.positions} decisive positions; greedy ${assertGreedyAgrees(ours, ref.tokens, ref.probs, bound, key)}`;
}

test("stories-deep-16L GPTQ Q4_0: lower calibration error than RTN in every layer, and llama.cpp agrees with us on the file", async () => {
  const config = configFromGguf(readGgufHeader(new Uint8Array(readFileSync(DEEP))), DEEP);
  const t0 = performance.now();
  const { path, result: r } = gptqFile(tmp, DEEP, "Q4_0");
  const secs = (performance.now() - t0) / 1000;
  const g = relativeError(r.errors, "gptq"), e = relativeError(r.errors, "rtn");
  for (let l = 0; l < config.nLayers; l++) {
    const errs = r.errors.filter((x) => x.layer === l);
    assert.ok(relativeError(errs, "gptq") < relativeError(errs, "rtn"), `layer ${l}`);
  }
  const how = await agreesWithLlamaCpp(path, "stories16L-gptq-q4_0");
  console.log(`    ${r.calibrated} matrices in ${secs.toFixed(1)} s; error gptq ${g.toFixed(4)} vs rtn ${e.toFixed(4)}; vs llama.cpp: ${how}`);
});

test("stories260K GPTQ Q8_0 and Q4_1 (group 64 shared by two blocks, act-order): llama.cpp agrees with us on the files", async () => {
  const path = sharedPath("models/stories260K.gguf");
  const q8 = gptqFile(tmp, path, "Q8_0").path;
  console.log(`    Q8_0: ${await agreesWithLlamaCpp(q8, "stories260K-gptq-q8_0")}`);
  const q41 = gptqFile(tmp, path, "Q4_1", { group: 64, actOrder: true }).path;
  console.log(`    Q4_1 {group 64, act-order}: ${await agreesWithLlamaCpp(q41, "stories260K-gptq-q4_1-g64-act")}`);
});

test("sequential RTN (method rtn) writes exactly the bytes of the plain RTN quantizer", () => {
  const path = sharedPath("models/stories260K.gguf");
  const bytes = new Uint8Array(readFileSync(path));
  const file = readGgufHeader(bytes);
  const r = quantizeGptq(file, bytesSource(bytes), storiesWindows(file, 256, 512, 128), Q4_0, { method: "rtn" });
  const plain = quantizeModel(file, bytesSource(bytes), Q4_0);
  for (let i = 0; i < plain.plan.length; i++) assert.equal(Array.from(r.tensorData(i)), Array.from(plain.tensorData(i)), plain.plan[i].info.name);
  assert.ok(r.plan.some((p) => p.note?.includes("ffn_down")), "stories260K's 172-long ffn_down rows stay F32");
});

const cli = (args: string[]) => runCli("quantize", ...args);

test("CLI bad input: one-line error, non-zero exit, nothing written", () => {
  const short = join(tmp, "short.txt");
  writeFileSync(short, "Once upon a time there was a cat.\n<|endoftext|>\nThe end.\n<|endoftext|>\n");
  const cases: [string, string[], RegExp][] = [
    ["unknown method", ["--method", "awq"], /method/],
    ["gptq cannot write f16", ["--type", "f16", "--method", "gptq", "--calib", STORIES], /GPTQ writes/],
    ["group larger than the rows", ["--group", "128", "--method", "gptq", "--calib", STORIES, "--tokens", "256"], /does not divide the row length 64/],
    ["calibration text too short", ["--method", "gptq", "--calib", short], /too short/],
    ["gptq without calibration", ["--method", "gptq"], /--calib/],
  ];
  for (const [what, extra, msg] of cases) {
    const out = join(tmp, `bad-${what.replace(/ /g, "-")}.gguf`);
    const args = [DEEP, "-o", out, ...extra];
    if (!extra.includes("--type")) args.push("--type", "q4_0");
    const before = readdirSync(tmp).length;
    const r = cli(args);
    assert.ok(r.status !== 0, `${what}: exit ${r.status}`);
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
    assert.is(lines.length, 1, `${what}: stderr has ${lines.length} lines: ${r.stderr}`);
    assert.match(lines[0], msg, `${what}: ${lines[0]}`);
    assert.not.ok(existsSync(out), `${what}: ${out} was written`);
    assert.is(readdirSync(tmp).length, before, `${what}: a temp file was left behind`);
  }
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
