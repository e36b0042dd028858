// Round-to-nearest K-quants byte for byte: src/quant/ref.ts (and the wasm quantizers, quant/fast.ts) against an
// independent re-implementation of ggml's reference quantizers (test/support/ggml-kquants.ts), and both against
// llama.cpp's own C (ggml_quantize_chunk and dequantize_row_* in the libggml-base node-llama-cpp ships, through
// Deno's FFI); then whole files: `quantize --type q4_k_m|q4_k|q6_k` against llama_model_quantize on the same input
// (tensor types and bytes).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatByName } from "../src/quant/formats.js";
import { quantizeRows } from "../src/quant/fast.js";
import { readGgufHeader, bytesSource } from "../src/gguf/reader.js";
import { ggufChunks } from "../src/gguf/writer.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { parseQuantRecipe, quantizeModel } from "../src/quant/quantize.js";
import { resolveShape, synthModel } from "../src/commands/synth.js";
import { F32, F64, refQ4K, refQ5_0, refQ6K } from "./support/ggml-kquants.js";
import { GGML_TYPE, LLAMA_FTYPE, runGgml } from "./support/ggml-ffi.js";
import { sharedPath } from "./support/paths.js";
import { normal, rng } from "./support/util.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-kref-"));
const N = 512; // two super-blocks per row

/** Rows that exercise the searches: normal with outliers, zeros, constants, one sign, tiny (subnormal f16 d), huge, grids. */
function testMatrix(): Float32Array {
  const rand = rng(21);
  const rows: Float32Array[] = [];
  for (let r = 0; r < 24; r++) {
    const x = normal(rand, N, 0.02 * (1 + r));
    for (let i = r; i < N; i += 97) x[i] *= 8;
    rows.push(x);
  }
  const row = (f: (i: number) => number) => Float32Array.from({ length: N }, (_, i) => f(i));
  const base = normal(rand, N);
  rows.push(row(() => 0));
  rows.push(row(() => 0.3));
  rows.push(row((i) => (i < 256 ? 0 : base[i] * 0.1)));
  rows.push(row((i) => base[i] * 1e-6));
  rows.push(row((i) => -Math.abs(base[i]) * 0.05));
  rows.push(row((i) => Math.abs(base[i]) * 0.05));
  rows.push(row((i) => (i % 37 === 5 ? 0.7 : 0)));
  rows.push(row((i) => ((i % 16) - 8) * 0.25));
  rows.push(row((i) => base[i] * 1000));
  rows.push(row((i) => base[i] * 2 ** -20));
  rows.push(row((i) => base[i] * 10 ** ((i >> 5) % 4 - 2))); // sub-blocks of very different scales
  rows.push(row((i) => (i % 32 < 16 ? 1 : -1) * (1 + (i % 7)) * 0.01));
  const out = new Float32Array(rows.length * N);
  rows.forEach((r, i) => out.set(r, i * N));
  return out;
}

const X = testMatrix();
const ROWS = X.length / N;

function quantizeOurs(name: string, x: Float32Array): Uint8Array {
  const f = formatByName(name)!;
  const out = new Uint8Array((x.length / f.blockSize) * f.typeSize);
  f.quantize!(x, out);
  return out;
}

function differingBlocks(a: Uint8Array, b: Uint8Array, size: number): number[] {
  const bad: number[] = [];
  for (let i = 0; i < a.length / size; i++) {
    for (let j = 0; j < size; j++) if (a[i * size + j] !== b[i * size + j]) { bad.push(i); break; }
  }
  return bad;
}

const CASES = [
  { name: "Q4_K", ref: refQ4K, type: GGML_TYPE.Q4_K, deq: "q4_K", size: 144 },
  { name: "Q6_K", ref: refQ6K, type: GGML_TYPE.Q6_K, deq: "q6_K", size: 210 },
  { name: "Q5_0", ref: refQ5_0, type: GGML_TYPE.Q5_0, deq: "q5_0", size: 22 },
] as const;

test("RTN Q4_K, Q6_K, Q5_0: our bytes equal the independent re-implementation's, and both equal llama.cpp's quantizer's; llama.cpp decodes them to our values", () => {
  const ours = CASES.map((c) => quantizeOurs(c.name, X));
  const theirs = runGgml([
    ...CASES.map((c, i) => ({ op: "quantize" as const, type: c.type, rowLength: N, input: X, bytes: ours[i].length })),
    ...CASES.map((c, i) => ({ op: "dequantize" as const, format: c.deq, input: ours[i], values: X.length })),
  ]) as Uint8Array[];
  const lines: string[] = [];
  CASES.forEach((c, i) => {
    const support = c.ref(X, F32);
    const blocks = ours[i].length / c.size;
    assert.equal(differingBlocks(ours[i], support, c.size), [], `${c.name}: src/quant/ref.ts vs test/support/ggml-kquants.ts`);
    const fast = new Uint8Array(ours[i].length);
    quantizeRows(formatByName(c.name)!, X, fast);
    assert.equal(differingBlocks(fast, ours[i], c.size), [], `${c.name}: quant/fast.ts (the wasm quantizer where there is one) vs src/quant/ref.ts`);
    assert.equal(differingBlocks(support, theirs[i], c.size), [], `${c.name}: test/support/ggml-kquants.ts vs llama.cpp's ggml_quantize_chunk`);
    const decoded = new Float32Array(X.length);
    formatByName(c.name)!.dequantize!(ours[i], decoded);
    const ggmlDecoded = new Float32Array(theirs[CASES.length + i].buffer, theirs[CASES.length + i].byteOffset, X.length);
    for (let k = 0; k < X.length; k++) {
      if (!Object.is(decoded[k], ggmlDecoded[k])) assert.unreachable(`${c.name}: value ${k} decodes to ${decoded[k]} here, ${ggmlDecoded[k]} in llama.cpp`);
    }
    // the same algorithm in float64 (no f32 rounding) picks other codes or scales in some blocks: why ref.ts rounds
    const f64 = differingBlocks(c.ref(X, F64), theirs[i], c.size).length;
    lines.push(`${c.name}: ${blocks} blocks of ${ROWS} rows identical to llama.cpp; plain float64 differs in ${f64}`);
  });
  console.log(`    ${lines.join("\n    ")}`);
});

test("the comparison can fail: a search that keeps its first max − min (a misreading it caught) gives other bytes", () => {
  const ours = quantizeOurs("Q4_K", X);
  const planted = refQ4K(X, F32, true);
  const bad = differingBlocks(ours, planted, 144).length;
  assert.ok(bad > 0, "the planted misreading changed no block");
  console.log(`    the planted misreading changes ${bad} of ${ours.length / 144} Q4_K blocks`);
});

/** Our `quantize --type <recipe>` of a file, and the llama_model_quantize job that makes llama.cpp's. */
function ourFile(path: string, recipe: string, ftype: number, pure = false) {
  const bytes = new Uint8Array(readFileSync(path));
  const r = quantizeModel(readGgufHeader(bytes), bytesSource(bytes), parseQuantRecipe(recipe));
  const ours = join(tmp, `ours-${recipe}-${path.split("/").pop()}`);
  writeFileAtomicSync(ours, ggufChunks(r.spec, r.tensorData));
  return { ours, job: { op: "model" as const, ftype, input: path, output: join(tmp, `llama-${recipe}-${path.split("/").pop()}`), pure } };
}

/** Every tensor's type and bytes of two files, equal; returns the type counts. */
function sameTensors(ours: string, theirsPath: string): string {
  const theirs = new Uint8Array(readFileSync(theirsPath)), mine = new Uint8Array(readFileSync(ours));
  const tf = readGgufHeader(theirs), of = readGgufHeader(mine);
  assert.is(of.tensors.length, tf.tensors.length, "tensor count");
  const counts = new Map<string, number>();
  for (const t of tf.tensors) {
    const o = of.tensors.find((x) => x.name === t.name);
    assert.ok(o, `${t.name} missing from ours`);
    assert.is(o!.format.name, t.format.name, `${t.name}: our type ${o!.format.name}, llama.cpp's ${t.format.name}`);
    const a = theirs.subarray(tf.dataOffset + t.offset, tf.dataOffset + t.offset + t.byteSize);
    const b = mine.subarray(of.dataOffset + o!.offset, of.dataOffset + o!.offset + o!.byteSize);
    if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) assert.unreachable(`${t.name} (${t.format.name}): bytes differ from llama.cpp's`);
    counts.set(t.format.name, (counts.get(t.format.name) ?? 0) + 1);
  }
  return [...counts].map(([k, v]) => `${k} ${v}`).join(", ");
}

/** a random-weight F32 llama whose rows are all multiples of 256 (every matrix can be a K-quant), 8 layers */
function synthF32(tied: boolean): string {
  const shape = { ...resolveShape({ dim: 256, layers: 8, heads: 4, kvHeads: 2, hidden: 768, vocab: 512, ctx: 256 }), tiedOutput: tied };
  const { spec, tensorData } = synthModel({ shape, type: "f32", seed: 3 });
  const path = join(tmp, `synth-f32-${tied ? "tied" : "untied"}.gguf`);
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  return path;
}

test("quantize --type q4_k_m / q6_k / q4_k equal llama_model_quantize's Q4_K_M / Q6_K / pure Q4_K_S files (types and bytes)", () => {
  const s260k = sharedPath("models/stories260K.gguf"), deep = sharedPath("models/stories-deep-16L.gguf");
  const untied = synthF32(false), tied = synthF32(true);
  const cases = [
    ["q4_k_m stories260K", ourFile(s260k, "q4_k_m", LLAMA_FTYPE.Q4_K_M)],
    ["q4_k_m stories-deep-16L", ourFile(deep, "q4_k_m", LLAMA_FTYPE.Q4_K_M)],
    ["q4_k_m synthetic 256-wide, 8 layers", ourFile(untied, "q4_k_m", LLAMA_FTYPE.Q4_K_M)],
    ["q4_k_m synthetic, tied embeddings", ourFile(tied, "q4_k_m", LLAMA_FTYPE.Q4_K_M)],
    ["q6_k stories-deep-16L", ourFile(deep, "q6_k", LLAMA_FTYPE.Q6_K)],
    ["q6_k synthetic", ourFile(untied, "q6_k", LLAMA_FTYPE.Q6_K)],
    ["q4_k synthetic (llama.cpp --pure)", ourFile(untied, "q4_k", LLAMA_FTYPE.Q4_K_S, true)],
    ["q4_k stories260K (llama.cpp --pure)", ourFile(s260k, "q4_k", LLAMA_FTYPE.Q4_K_S, true)],
  ] as const;
  const theirs = runGgml(cases.map(([, c]) => c.job)) as string[];
  cases.forEach(([what, c], i) => console.log(`    ${what}: ${sameTensors(c.ours, theirs[i])}`));
});

test.after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
