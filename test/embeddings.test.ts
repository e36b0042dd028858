// Embeddings: the library's embedTokens (mean and last pooling, llama-server's normalizations) against llama.cpp's
// embedding context through node-llama-cpp on stories260K and stories-deep-16L, and POST /v1/embeddings of a real
// `edgeprune serve --embeddings` through the official openai client (base64, its default, and float), with token
// inputs, batches of inputs and the refusals.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { embedTokens, normalizeEmbedding } from "../src/embedding.js";
import { Model } from "../src/model/model.js";
import { defaultSimdBuild } from "../src/wasm.js";
import { STUDY_CACHE } from "../src/model/forward.js";
import { disposeOracle, llamaCppEmbedding } from "./support/llamacpp.js";
import { sharedPath } from "./support/paths.js";
import { localModel, MODEL, serve, type ServerProcess } from "./server-support.js";
import { EMBEDDING_VS_LLAMACPP } from "./tolerances.js";

const FILES = { stories260K: sharedPath("models", "stories260K.gguf"), "stories-deep-16L": sharedPath("models", "stories-deep-16L.gguf") } as const;
const TEXTS = ["Once upon a time", "The little dog ran to the park and saw a big red ball.", "Lily"];
const servers: ServerProcess[] = [];
test.after(async () => { await Promise.all(servers.map((s) => s.kill())); await disposeOracle(); });

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.is(a.length, b.length, "same width");
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const l2 = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
/** float64 Euclidean normalization of llama.cpp's raw vector (the rule the test checks ours against) */
const unit = (v: ArrayLike<number>) => { const n = l2(v); return Array.from(v, (x) => x / n); };

for (const [name, file] of Object.entries(FILES)) {
  for (const kv of ["F32", "default"] as const) {
    const label = kv === "F32" ? "llama.cpp's embeddings with an F32 KV cache" : "node-llama-cpp's embedding context (its F16 KV cache)";
    test(`${name}: last and mean pooling equal ${label}, normalized as llama-server`, async () => {
      const model = Model.load(new Uint8Array(readFileSync(file)), { contextSize: 256 });
      // batches of 8: the mean spans several; the cache type llama.cpp's side has (its embedding context: F16)
      const ctx = model.createContext({ contextSize: 256, batchSize: 8, ...(kv === "F32" ? STUDY_CACHE : {}) });
      const bound = EMBEDDING_VS_LLAMACPP[`${name}-${kv}` as keyof typeof EMBEDDING_VS_LLAMACPP].bound;
      let worstLast = 0, worstMean = 0, worstRaw = 0, kvTypes = "";
      for (const text of TEXTS) {
        const ids = model.tokenizer.encode(text, { addBos: true });
        // llama.cpp on a llama GGUF without pooling_type: the last token's final-normed state, unnormalized
        const theirs = await llamaCppEmbedding(file, ids, { kv });
        kvTypes = theirs.kv;
        const rawOurs = embedTokens(ctx, ids, { pooling: "last", normalize: -1 });
        worstRaw = Math.max(worstRaw, maxAbsDiff(rawOurs, theirs.vector) / Math.max(...Array.from(theirs.vector, Math.abs)));
        const last = embedTokens(ctx, ids, { pooling: "last" });
        assert.ok(Math.abs(l2(last) - 1) < 1e-6, "unit length");
        worstLast = Math.max(worstLast, maxAbsDiff(last, unit(theirs.vector)));
        // the model is causal: the state of token i is the last state of the prefix ending at i, so llama.cpp's mean
        // pooling over the sequence is the mean of the prefixes' last states
        const sum = new Float64Array(theirs.vector.length);
        for (let i = 1; i <= ids.length; i++) (await llamaCppEmbedding(file, ids.slice(0, i), { kv })).vector.forEach((x, j) => (sum[j] += x / ids.length));
        const mean = embedTokens(ctx, ids, { pooling: "mean" });
        worstMean = Math.max(worstMean, maxAbsDiff(mean, unit(sum)));
        assert.ok(maxAbsDiff(mean, last) > 10 * bound, "mean and last pooling differ");
      }
      console.log(`  ${name} vs llama.cpp (${kvTypes}): max |Δ| last ${worstLast.toExponential(2)}, mean ${worstMean.toExponential(2)}; raw last state ${worstRaw.toExponential(2)} of its largest |x| (bound ${bound})`);
      assert.ok(worstLast <= bound, `last pooling ${worstLast} > ${bound}`);
      assert.ok(worstMean <= bound, `mean pooling ${worstMean} > ${bound}`);
      assert.ok(worstRaw <= bound, `raw last state ${worstRaw} > ${bound}`);
    });
  }
}

test("normalizeEmbedding follows llama.cpp's embd_normalize: none, max-abs int16, taxicab, Euclidean, p-norm", () => {
  const v = () => Float32Array.from([3, -4, 0, 1]);
  assert.equal(Array.from(normalizeEmbedding(v(), -1)), [3, -4, 0, 1]);
  assert.equal(Array.from(normalizeEmbedding(v(), 0)), [3, -4, 0, 1].map((x) => Math.fround(x * Math.fround(32760 / 4))));
  assert.equal(Array.from(normalizeEmbedding(v(), 1)), [3, -4, 0, 1].map((x) => Math.fround(x * Math.fround(1 / 8))));
  const e = normalizeEmbedding(v(), 2);
  assert.ok(Math.abs(e[1] + 4 / Math.sqrt(26)) < 1e-7);
  const p3 = normalizeEmbedding(v(), 3), n3 = (27 + 64 + 1) ** (1 / 3);
  assert.ok(Math.abs(p3[0] - 3 / n3) < 1e-7);
  assert.equal(Array.from(normalizeEmbedding(new Float32Array(3), 2)), [0, 0, 0], "a zero vector stays zero");
  assert.throws(() => normalizeEmbedding(v(), -2), /integer ≥ -1/);
});

async function server(args: string[]): Promise<{ s: ServerProcess; client: OpenAI }> {
  // the kernels this process runs (the CLI would re-run itself with relaxed SIMD, whose fused multiply-adds round
  // differently), so that the server's vectors can equal the library's bit for bit
  const s = await serve(["--quiet", "--warmup", "0", "--ctx", "256", ...args], { EDGEPRUNE_SIMD: defaultSimdBuild() });
  servers.push(s);
  return { s, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 }) };
}

const post = (s: ServerProcess, body: unknown) =>
  fetch(`${s.url}/v1/embeddings`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

test("POST /v1/embeddings through the openai client: base64 and float, strings, token ids, batches; equal to the library's", async () => {
  const { s, client } = await server(["--embeddings", "--pooling", "mean", "--parallel", "2"]);
  const m = localModel();
  const ctx = m.createContext({ contextSize: 256 });
  const want = TEXTS.map((t) => embedTokens(ctx, m.tokenizer.encode(t, { addBos: true }), { pooling: "mean" }));
  // the client asks for base64 unless told otherwise, and decodes it into numbers
  const r = await client.embeddings.create({ model: "stories260K", input: TEXTS });
  assert.is(r.object, "list");
  assert.is(r.data.length, TEXTS.length);
  const tokens = TEXTS.reduce((n, t) => n + m.tokenizer.encode(t, { addBos: true }).length, 0);
  assert.equal(r.usage, { prompt_tokens: tokens, total_tokens: tokens });
  r.data.forEach((d, i) => {
    assert.is(d.index, i);
    assert.is(d.object, "embedding");
    assert.equal(d.embedding, Array.from(want[i]), `input ${i}: the same float32 values as embedTokens`);
  });
  const f = await client.embeddings.create({ model: "m", input: TEXTS[1], encoding_format: "float" });
  assert.equal(f.data[0].embedding, Array.from(want[1]));
  // token ids as given, one array or several
  const ids = m.tokenizer.encode(TEXTS[0], { addBos: true });
  const t1 = await client.embeddings.create({ model: "m", input: ids, encoding_format: "float" });
  assert.equal(t1.data[0].embedding, Array.from(want[0]));
  const t2 = await client.embeddings.create({ model: "m", input: [ids, m.tokenizer.encode(TEXTS[2], { addBos: true })], encoding_format: "float" });
  assert.equal(t2.data.map((d) => d.embedding), [Array.from(want[0]), Array.from(want[2])]);
  // the raw base64 is the little-endian float32 bytes
  const raw = await (await post(s, { input: TEXTS[2], encoding_format: "base64" })).json() as { data: { embedding: string }[] };
  const bytes = Buffer.from(raw.data[0].embedding, "base64");
  assert.equal(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)), Array.from(want[2]));
  // llama-server's embd_normalize: -1 gives the raw pooled state
  const rawMean = await (await post(s, { input: TEXTS[0], embd_normalize: -1, encoding_format: "float" })).json() as { data: { embedding: number[] }[] };
  assert.equal(rawMean.data[0].embedding, Array.from(embedTokens(ctx, ids, { pooling: "mean", normalize: -1 })));
});

test("POST /v1/embeddings: --pooling last; refusals name the field; off without --embeddings (501)", async () => {
  const { s, client } = await server(["--embeddings"]);
  const m = localModel();
  const ids = m.tokenizer.encode(TEXTS[1], { addBos: true });
  const r = await client.embeddings.create({ model: "m", input: TEXTS[1] });
  assert.equal(r.data[0].embedding, Array.from(embedTokens(m.createContext({ contextSize: 256 }), ids, { pooling: "last" })), "the default pooling is last");
  const refused = async (body: unknown, status: number, param: string | null) => {
    const res = await post(s, body);
    const j = await res.json() as { error: { param: string | null; message: string } };
    assert.is(res.status, status, JSON.stringify(j));
    assert.is(j.error.param, param, j.error.message);
  };
  await refused({}, 400, "input");
  await refused({ input: [] }, 400, "input");
  await refused({ input: [1, "a"] }, 400, "input");
  await refused({ input: "x", encoding_format: "int8" }, 400, "encoding_format");
  await refused({ input: "x", dimensions: 16 }, 400, "dimensions");
  await refused({ input: "x", pooling: "cls" }, 400, "pooling");
  await refused({ input: [ids, [999999]] }, 400, "input[1]");
  await refused({ input: Array(300).fill(5) }, 400, "input");
  await refused({ input: "once ".repeat(20_000) }, 400, "input");
  const off = (await server([])).s;
  const res = await post(off, { input: "x" });
  assert.is(res.status, 501);
  assert.match(((await res.json()) as { error: { message: string } }).error.message, /--embeddings/);
});

test("serve refuses --pooling without --embeddings, and unknown poolings, before loading", async () => {
  const { runCli } = await import("./server-support.js");
  const a = await runCli(["serve", MODEL, "--pooling", "mean"]);
  assert.is(a.code, 1);
  assert.match(a.stderr, /--pooling applies to \/v1\/embeddings: add --embeddings/);
  const b = await runCli(["serve", MODEL, "--embeddings", "--pooling", "cls"]);
  assert.is(b.code, 1);
  assert.match(b.stderr, /invalid --pooling "cls": expected mean or last/);
});

test.run();
