// Least-squares healing (prune --heal lstsq): the Cholesky solve against Gaussian elimination, the streamed fit
// against X and Y collected here in plain float64, the fold against the product it stands for, the healed file
// in llama.cpp (teacher-forced distributions and greedy tokens), and the command's bad input.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { choleskySolve } from "../src/gptq/linalg.js";
import { generate } from "../src/generate.js";
import { Model } from "../src/model/model.js";
import { fitLstsq, foldTransform, removalRuns } from "../src/prune/heal.js";
import { splitDocuments, tokenizeDocuments, tokenWindows } from "../src/data/documents.js";
import { assertDistributionsAgree, ourTeacherForced } from "./support/compare.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./support/llamacpp.js";
import { STORIES_16L, STORIES_260K, teacherSequence } from "./support/fixtures.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";
import { familyFile } from "./support/families.js";
import { normal, rng } from "./support/util.js";
import { HEAL_FIT, VS_LLAMACPP } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-heal-"));

/** A x = b by Gaussian elimination with partial pivoting, column by column (the textbook method, not Cholesky). */
function gaussSolve(a: Float64Array, n: number, b: Float64Array, m: number): Float64Array {
  const A = a.slice(), B = b.slice();
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r * n + c]) > Math.abs(A[p * n + c])) p = r;
    for (let k = 0; k < n; k++) [A[c * n + k], A[p * n + k]] = [A[p * n + k], A[c * n + k]];
    for (let k = 0; k < m; k++) [B[c * m + k], B[p * m + k]] = [B[p * m + k], B[c * m + k]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = A[r * n + c] / A[c * n + c];
      for (let k = c; k < n; k++) A[r * n + k] -= f * A[c * n + k];
      for (let k = 0; k < m; k++) B[r * m + k] -= f * B[c * m + k];
    }
  }
  for (let r = 0; r < n; r++) for (let k = 0; k < m; k++) B[r * m + k] /= A[r * n + r];
  return B;
}

test("removal runs: contiguous layers share one run and the layer before it", () => {
  assert.equal(removalRuns([9, 12, 8, 14]), [{ start: 8, end: 10, anchor: 7 }, { start: 12, end: 13, anchor: 11 }, { start: 14, end: 15, anchor: 13 }]);
  assert.equal(removalRuns([0, 1]), [{ start: 0, end: 2, anchor: -1 }]);
});

test("choleskySolve equals Gaussian elimination on a small least-squares problem, and recovers a known T", () => {
  const rand = rng(5);
  const d = 7, rows = 40;
  const x = normal(rand, rows * d), tTrue = normal(rand, d * d);
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) y[r * d + j] += x[r * d + k] * tTrue[k * d + j];
  const xtx = new Float64Array(d * d), xty = new Float64Array(d * d);
  for (let r = 0; r < rows; r++) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) { xtx[i * d + j] += x[r * d + i] * x[r * d + j]; xty[i * d + j] += x[r * d + i] * y[r * d + j]; }
  const want = gaussSolve(xtx, d, xty, d);
  const got = xty.slice();
  assert.ok(choleskySolve(xtx.slice(), d, got, d));
  for (let i = 0; i < d * d; i++) {
    assert.ok(Math.abs(got[i] - want[i]) < 1e-10, `T[${i}] ${got[i]} against ${want[i]}`);
    assert.ok(Math.abs(got[i] - tTrue[i]) < 1e-5, "noise-free data gives back the T that made it");
  }
  const singular = new Float64Array(d * d); // rank 0
  assert.not.ok(choleskySolve(singular, d, xty.slice(), d));
});

test("the fold Tᵀ·W gives (x·Wᵀ)·T", () => {
  const rand = rng(9);
  const dim = 5, hidden = 11;
  const w = normal(rand, dim * hidden), t = Float64Array.from(normal(rand, dim * dim)), x = normal(rand, hidden);
  const healed = foldTransform(w, t, dim, hidden);
  const out = new Float64Array(dim);
  for (let i = 0; i < dim; i++) for (let j = 0; j < hidden; j++) out[i] += w[i * hidden + j] * x[j];
  for (let i = 0; i < dim; i++) {
    let want = 0, got = 0;
    for (let k = 0; k < dim; k++) want += out[k] * t[k * dim + i];
    for (let j = 0; j < hidden; j++) got += healed[i * hidden + j] * x[j];
    assert.ok(Math.abs(got - want) < 1e-5 * (1 + Math.abs(want)), `${got} against ${want}`);
  }
});

test("the streamed fit equals least squares on X and Y collected in float64 from the forward pass", () => {
  const model = Model.load(new Uint8Array(readFileSync(STORIES_260K())), STUDY_CACHE);
  const docs = splitDocuments(readFileSync(TEXT, "utf8")).slice(0, 60);
  const windows = tokenWindows(tokenizeDocuments(model.tokenizer, docs), 96, 96 * 20, model.tokenizer.bosId);
  const fit = fitLstsq(model, windows, [2, 3]); // one run, layers 2–3, folded into layer 1
  const d = model.config.dim;
  // the definition, directly: X = FFN output of layer 1, Y = stream after layer 3 − stream before layer 1's FFN
  const xtx = new Float64Array(d * d), xty = new Float64Array(d * d);
  let tokens = 0;
  const ctx = model.createContext({ contextSize: 96, batchSize: 96 });
  for (const w of windows) {
    let mid: Float32Array | undefined, x: Float32Array | undefined;
    ctx.reset();
    ctx.eval(w, {
      logits: "none",
      onLayer: (l, _in, xMid, xOut, t) => {
        if (l === 1) {
          mid = model.rt.f32At(xMid, t * d).slice();
          const out = model.rt.f32At(xOut, t * d);
          x = Float32Array.from(out, (v, i) => v - mid![i]);
        }
        if (l !== 3) return;
        const out = model.rt.f32At(xOut, t * d);
        for (let r = 1; r < t; r++) { // BOS not counted
          tokens++;
          for (let i = 0; i < d; i++) {
            const xi = x![r * d + i];
            for (let j = 0; j < d; j++) {
              xtx[i * d + j] += xi * x![r * d + j];
              xty[i * d + j] += xi * (out[r * d + j] - mid![r * d + j]);
            }
          }
        }
      },
    });
  }
  const want = gaussSolve(xtx, d, xty, d);
  const got = fit.transforms.get(1)!;
  assert.is(fit.runs[0].tokens, tokens);
  let maxDiff = 0, maxT = 0;
  for (let i = 0; i < d * d; i++) { maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i])); maxT = Math.max(maxT, Math.abs(want[i])); }
  assert.ok(maxDiff <= HEAL_FIT * maxT, `max |T − T_direct| = ${maxDiff} (max |T| ${maxT})`);
  assert.ok(fit.runs[0].residualAfter < fit.runs[0].residualBefore, "least squares beats T = I");
  assert.ok(fit.runs[0].residualAfter > 0 && fit.runs[0].residualBefore < 10);
  console.log(`    max |T − T_direct| / max |T| = ${(maxDiff / maxT).toExponential(2)} over ${tokens} tokens; fit ${fit.runs[0].residualBefore.toFixed(3)} → ${fit.runs[0].residualAfter.toFixed(3)} of ‖Y‖²`);
  // a run from layer 0 has no layer before it
  const none = fitLstsq(model, windows.slice(0, 2), [0]);
  assert.match(none.runs[0].skipped ?? "", /start at layer 0/);
  assert.is(none.transforms.size, 0);
});

test("prune --remove 4 --heal lstsq on stories-deep-16L: same tensors, lower held-out KLD, and llama.cpp runs it with our tokens", async () => {
  const plain = join(tmp, "16L-r4.gguf"), healed = join(tmp, "16L-r4-lstsq.gguf");
  const a = runCli("prune", STORIES_16L(), "--remove", "4", "--calib", TEXT, "--tokens", "4096", "-o", plain);
  const b = runCli("prune", STORIES_16L(), "--remove", "4", "--calib", TEXT, "--tokens", "4096", "--heal", "lstsq", "-o", healed);
  assert.is(a.status, 0, a.stderr);
  assert.is(b.status, 0, b.stderr);
  assert.match(b.stderr, /heal: layers 8–9 folded into blk\.7\.ffn_down/);
  assert.is(readFileSync(plain).length, readFileSync(healed).length, "healing adds no tensor");
  const kld = (f: string) => Number(runCli("kld", STORIES_16L(), f, "-f", TEXT, "--held-out", "--ctx", "128", "--chunks", "24").stdout.trim().split("\n").pop()!.split(": ")[1]);
  const k0 = kld(plain), k1 = kld(healed);
  assert.ok(k1 < k0, `healed KLD ${k1} is not below ${k0}`);
  console.log(`    held-out KLD from the dense model: ${k0.toFixed(4)} removed, ${k1.toFixed(4)} removed and healed`);

  const model = Model.load(new Uint8Array(readFileSync(healed)), STUDY_CACHE);
  const seq = teacherSequence(model.tokenizer, 64);
  // the healed file is an F32 12-layer 16L like the pruned one, so it shares that file's bound
  const { bound } = VS_LLAMACPP["stories16L-pruned-12L"];
  const c = assertDistributionsAgree(ourTeacherForced(model, seq), await llamaCppTeacherForced(healed, seq), bound, "healed 16L");
  const prompt = seq.slice(0, 8);
  const ours = generate(model.createContext({ contextSize: 128 }), model.tokenizer, prompt, { maxTokens: 48, temperature: 0, stopAtEos: false }).tokens;
  const ref = await llamaCppGreedy(healed, prompt, 48);
  assert.equal(ours, ref.tokens);
  console.log(`    healed 12L: max |p − p_llama.cpp| ${c.maxAbs.toExponential(2)} (bound ${bound}); 48 greedy tokens identical`);
});

test("prune --heal: bad input is one line, a non-zero exit and no file", () => {
  const out = join(tmp, "bad.gguf");
  const bad = (args: string[], pattern: RegExp) => {
    const r = runCli("prune", STORIES_260K(), ...args, "-o", out);
    assert.is.not(r.status, 0, args.join(" "));
    assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.not.ok(existsSync(out));
  };
  bad(["--layers", "2", "--heal", "lstsq"], /--heal lstsq needs --calib FILE/);
  bad(["--attention", "2", "--heal", "lstsq", "--calib", TEXT], /heals removed whole layers/);
  bad(["--layers", "2", "--heal", "lstsq", "--calib", TEXT, "--heal-ridge", "-1"], /--heal-ridge must be ≥ 0/);
  bad(["--layers", "2", "--heal", "magic"], /magic.*(invalid|Allowed choices)/i);
});

test("prune --heal refuses a family whose FFN output is normalized after ffn_down (Gemma 3), with no file", () => {
  const gemma = familyFile(tmp, "gemma3", "f32");
  const out = join(tmp, "gemma-healed.gguf");
  const r = runCli("prune", gemma, "--layers", "2", "--heal", "lstsq", "--calib", TEXT, "--tokens", "256", "-o", out);
  assert.is.not(r.status, 0);
  assert.match(r.stderr, /cannot heal gemma3: its FFN output passes through a post-FFN norm/);
  assert.not.ok(existsSync(out));
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});
test.run();
