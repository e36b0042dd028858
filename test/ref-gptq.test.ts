// The wasm GPTQ against the independent float64 GPTQ of test/support/ref-gptq.ts on a 64×576 matrix (four and a
// half lazy-batch blocks of 128 columns) with correlated inputs: the same codes and scales, except at rounding ties
// within GPTQ_CODE_TIE, and the same output error. Also the reference against itself: lazy batches give the codes of
// the unbatched algorithm, and with H = I it is round-to-nearest.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { WasmRuntime } from "../src/wasm.js";
import { codecFor } from "../src/gptq/codec.js";
import { GPTQ_DEFAULTS, gptqMatrix, prepareHessian } from "../src/gptq/gptq.js";
import { formatByName } from "../src/quant/formats.js";
import { decodeBlocks, refGptq, refRelativeError, type RefGptqFormat } from "./support/ref-gptq.js";
import { correlatedInputs, gram } from "./support/gptq-inputs.js";
import { GPTQ_CODE_TIE, GPTQ_ERROR_RATIO, GPTQ_SCALE_TIE } from "./tolerances.js";

const rt = WasmRuntime.create();
// EDGEPRUNE_TEST_QUICK=1 (the mutation runs, docs/testing.md): 16 rows and 256 inputs, the same 576 columns, no
// free-running reference and no self-check of the reference
const QUICK = process.env.EDGEPRUNE_TEST_QUICK === "1";
const ROWS = QUICK ? 16 : 64, N = 576, T = QUICK ? 256 : 1024;
const BLOCK = GPTQ_DEFAULTS.blockSize;

/** inputs from 8 latent factors plus noise (as real activations are correlated), H = Σ xxᵀ in float64, weights */
const { w, x } = correlatedInputs(21, ROWS, N, T);
const h = gram(x, N, T);

test(`the test matrix spans at least four lazy-batch blocks of ${BLOCK} columns`, () => {
  assert.ok(N >= 4 * BLOCK, `${N} columns, blocks of ${BLOCK}`);
});

for (const [format, group, actOrder] of [["Q4_0", 32, false], ["Q4_1", 32, false], ["Q8_0", 32, false], ["Q4_0", 32, true], ["Q4_1", 64, true]] as [RefGptqFormat, number, boolean][]) {
  test(`${format} group ${group}${actOrder ? " act-order" : ""}: codes and scales equal the float64 GPTQ's (ties aside), and so does the error`, () => {
    const g = gptqMatrix(rt, w, ROWS, N, prepareHessian(h, N, { actOrder }), codecFor(formatByName(format)!), { group, actOrder });
    const theirs = decodeBlocks(format, g.bytes, ROWS, N, group);
    const opts = { format, group, blockSize: BLOCK, damp: GPTQ_DEFAULTS.damp, actOrder };
    const w64 = Float64Array.from(w);
    const followed = refGptq(w64, h, ROWS, N, { ...opts, follow: { ...theirs, codeEps: GPTQ_CODE_TIE, scaleEps: GPTQ_SCALE_TIE } });
    const m = followed.mismatches[0];
    assert.is(followed.mismatches.length, 0, m && `${followed.mismatches.length} decisions differ away from a tie; first: row ${m.row} column ${m.col} ${m.what} ${m.ours} vs ${m.theirs}, ${m.distance.toExponential(2)} from the boundary`);
    assert.ok(followed.ties + followed.scaleTies <= 1e-3 * ROWS * N, `${followed.ties} ties`);
    assert.equal(Array.from(followed.codes), Array.from(theirs.codes));
    for (let i = 0; i < g.dequantized.length; i++) {
      if (g.dequantized[i] !== Math.fround(followed.dequantized[i])) assert.unreachable(`weight ${i}: ${g.dequantized[i]} decoded, the reference ${followed.dequantized[i]}`);
    }
    if (QUICK) return; // the mutation runs: codes and scales decide
    const free = refGptq(w64, h, ROWS, N, opts);
    const eOurs = refRelativeError(w64, g.dequantized, h, ROWS, N), eRef = refRelativeError(w64, free.dequantized, h, ROWS, N);
    assert.ok(eOurs <= GPTQ_ERROR_RATIO * eRef && eRef <= GPTQ_ERROR_RATIO * eOurs, `error ${eOurs} vs the reference's ${eRef}`);
    let differ = 0;
    for (let i = 0; i < free.codes.length; i++) if (free.codes[i] !== theirs.codes[i]) differ++;
    console.log(`    ${followed.ties} code / ${followed.scaleTies} scale ties (worst ${followed.worstTie.toExponential(2)}); free-running reference: ${differ} codes differ, error ratio ${(eOurs / eRef).toFixed(5)}`);
  });
}

if (!QUICK) test("the reference: lazy batches give the unbatched algorithm's codes, and H = I gives round-to-nearest", () => {
  const opts = { format: "Q4_0" as const, group: 32, blockSize: BLOCK, damp: GPTQ_DEFAULTS.damp };
  const w64 = Float64Array.from(w);
  const lazy = refGptq(w64, h, ROWS, N, opts), plain = refGptq(w64, h, ROWS, N, { ...opts, lazy: false });
  let differ = 0;
  for (let i = 0; i < lazy.codes.length; i++) if (lazy.codes[i] !== plain.codes[i]) differ++;
  assert.ok(differ <= 1e-3 * ROWS * N, `${differ} codes differ between lazy and unbatched updates`);
  const eye = new Float64Array(N * N);
  for (let i = 0; i < N; i++) eye[i * N + i] = 1;
  const rtn = new Uint8Array((ROWS * N / 32) * formatByName("Q4_0")!.typeSize);
  formatByName("Q4_0")!.quantize!(w, rtn);
  assert.equal(Array.from(refGptq(w64, eye, ROWS, N, opts).codes), Array.from(decodeBlocks("Q4_0", rtn, ROWS, N, 32).codes));
});

test.run();
