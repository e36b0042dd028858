// Sharded weights (issue 14 item 1): stories260K and stories-deep-16L forced into 2–5 wasm memories by a small
// shard budget give the one-memory logits bit for bit (the same kernels on the same bytes, the residual stream
// copied at each boundary), for prefill and decode, greedy generation, 2 threads, Block Influence statistics,
// perplexity, a GPTQ-quantized file, the streaming load, the CLI (info's plan, generate) and the server. A model
// that fits has exactly one memory. The 7B/13B shapes are scripts/check-shards.sh (too large for the suite).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { Model, shardPlan } from "../src/model/model.js";
import { DEFAULT_SHARD_BYTES, WASM32_LIMIT, type Shard } from "../src/model/shards.js";
import { Context } from "../src/model/forward.js";
import { readGgufHeader, bytesSource } from "../src/gguf/reader.js";
import { checkModelFile } from "../src/model/check.js";
import { generate } from "../src/generate.js";
import { perplexity } from "../src/perplexity.js";
import { blockInfluence, collectLayerStats } from "../src/prune/stats.js";
import { quantizeGptq } from "../src/gptq/model.js";
import { calibrationWindows } from "../src/data/documents.js";
import { formatByName } from "../src/quant/formats.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { tokenizerFromGguf } from "../src/tokenizer/index.js";
import { resolveShape, synthModel } from "../src/commands/synth.js";
import { sharedPath } from "./support/paths.js";
import { runCli, serve } from "./server-support.js";

const MODELS = ["stories260K", "stories-deep-16L"] as const;
const bytesOf = new Map<string, Uint8Array>();
function bytes(name: string): Uint8Array {
  let b = bytesOf.get(name);
  if (!b) bytesOf.set(name, (b = new Uint8Array(readFileSync(sharedPath(`models/${name}.gguf`)))));
  return b;
}

const CTX = 160;

/** The smallest shard budget that packs the model (at CTX tokens) into at most n shards (next-fit is monotone in it). */
function budgetFor(model: Uint8Array, n: number, contextSize = CTX, contexts = 1): number {
  const file = readGgufHeader(model), c = checkModelFile(file, "m");
  const count = (b: number) => { try { return shardPlan("m", file, c, { contextSize, contexts, maxShardBytes: b }).length; } catch { return Infinity; } };
  let lo = 1 << 16, hi = WASM32_LIMIT;
  while (hi - lo > 4096) {
    const mid = Math.floor((lo + hi) / 2);
    if (count(mid) <= n) hi = mid; else lo = mid;
  }
  assert.is(count(hi), n, `a budget packs the model into exactly ${n} shards`);
  return hi;
}

/** every shard's layers follow the previous one's, all layers covered, each shard within the budget */
function checkPlan(shards: readonly Shard[], nLayers: number, budget: number, label: string): void {
  let next = 0;
  shards.forEach((s, i) => {
    assert.is(s.start, next, `${label}: shard ${i} starts at layer ${next}`);
    assert.ok(s.end >= s.start, `${label}: shard ${i} range`);
    assert.ok(s.bytes <= budget, `${label}: shard ${i} holds ${s.bytes} of ${budget}`);
    next = s.end;
  });
  assert.is(next, nLayers, `${label}: every layer in a shard`);
  assert.is(shards.filter((s) => s.head).length, 1);
  assert.is(shards.filter((s) => s.embed).length, 1);
  assert.ok(shards[shards.length - 1].head, `${label}: the classifier in the last shard`);
}

function same(a: Float32Array, b: Float32Array, label: string): void {
  assert.is(a.length, b.length, `${label}: lengths`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.unreachable(`${label}: float ${i} differs: ${a[i]} vs ${b[i]}`);
}

/** prefill of 70 tokens (two batches of 64 and 6) with every row's logits, then 12 greedy decode steps */
function trace(m: Model): Float32Array[] {
  const ctx = m.createContext({ contextSize: CTX, batchSize: 64 });
  const prompt = Array.from({ length: 70 }, (_, i) => 1 + ((i * 37) % (m.config.vocabSize - 1)));
  const out = [ctx.eval(prompt, { logits: "all" })];
  let tok = 1;
  for (let s = 0; s < 12; s++) {
    const l = ctx.eval([tok]);
    out.push(l);
    tok = l.indexOf(Math.max(...l));
  }
  return out;
}

const one = new Map<string, Model>();
function single(name: string): Model {
  let m = one.get(name);
  if (!m) one.set(name, (m = Model.load(bytes(name), { contextSize: CTX })));
  return m;
}

test("a model that fits has exactly one memory; the default budget stays under V8's 4 GiB", () => {
  for (const name of MODELS) {
    const m = single(name);
    assert.is(m.runtimes.length, 1, name);
    assert.is(m.shards.length, 1);
    assert.is(m.createContext().shardCount, 1);
    assert.is(m.memoryBytes, m.rt.memory.buffer.byteLength);
  }
  assert.ok(DEFAULT_SHARD_BYTES < WASM32_LIMIT);
});

test("2–7 shards (stories260K) and 2–18 (deep-16L: one per layer, the embeddings and the classifier alone): contiguous layer ranges within the budget; prefill and decode logits equal one memory's bit for bit", () => {
  const counts = { "stories260K": [2, 3, 4, 7], "stories-deep-16L": [2, 3, 5, 18] };
  for (const name of MODELS) {
    const ref = trace(single(name));
    for (const n of counts[name]) {
      const budget = budgetFor(bytes(name), n);
      const m = Model.load(bytes(name), { contextSize: CTX, maxShardBytes: budget });
      assert.is(m.runtimes.length, n, `${name}: ${n} memories`);
      checkPlan(m.shards, m.config.nLayers, budget, `${name} ${n}`);
      // each shard's memory is its own and stays within what was planned for it
      m.runtimes.forEach((r, i) => assert.ok(r.memory.buffer.byteLength <= m.shards[i].bytes + (1 << 20), `${name}: shard ${i} memory ${r.memory.buffer.byteLength} vs planned ${m.shards[i].bytes}`));
      assert.is(new Set(m.runtimes.map((r) => r.memory)).size, n);
      const got = trace(m);
      got.forEach((g, i) => same(g, ref[i], `${name} in ${n} shards, ${i === 0 ? "prefill" : `decode step ${i}`}`));
    }
  }
});

test("a tied classifier (a Llama-3-style Q4_0 synth with rope_freqs) sits with token_embd in the last shard, the rope factors are copied into every shard; logits equal", () => {
  const shape = { ...resolveShape({ arch: "llama3", dim: 256, layers: 6, heads: 4, kvHeads: 2, hidden: 512, vocab: 1024, ctx: 256 }), tiedOutput: true };
  const { spec, tensorData } = synthModel({ shape, type: "q4_0", seed: 9 });
  const q = writeGgufBytes(spec, tensorData);
  const a = Model.load(q, { contextSize: CTX }), m = Model.load(q, { contextSize: CTX, maxShardBytes: budgetFor(q, 3) });
  assert.ok(m.config.tiedOutput);
  assert.is(m.runtimes.length, 3);
  assert.is(m.weights.tokenEmbd.shard, 2);
  assert.is(m.weights.output, m.weights.tokenEmbd);
  assert.is(m.weights.layers[0].attnQ!.shard ?? 0, 0);
  const freqs = m.weights.ropeFreqs!;
  assert.ok(freqs, "the synth wrote rope_freqs");
  assert.is(freqs.copies!.filter((p) => p > 0).length, m.shards.filter((s) => s.end > s.start).length);
  for (const [s, p] of freqs.copies!.entries()) if (p) same(m.runtimes[s].f32At(p, freqs.byteSize / 4), a.rt.f32At(a.weights.ropeFreqs!.ptr, freqs.byteSize / 4), `rope_freqs in shard ${s}`);
  const ta = trace(a);
  trace(m).forEach((g, i) => same(g, ta[i], `tied Q4_0 in 3 shards, step ${i}`));
  const untied = Model.load(bytes("stories-deep-16L"), { contextSize: CTX, maxShardBytes: budgetFor(bytes("stories-deep-16L"), 3) });
  assert.not.ok(untied.config.tiedOutput);
  assert.is(untied.weights.tokenEmbd.shard ?? 0, 0);
  assert.is(untied.weights.output.shard, untied.runtimes.length - 1);
});

test("greedy generate, perplexity and Block Influence statistics across 4 shards equal one memory's", () => {
  for (const name of MODELS) {
    const a = single(name), b = Model.load(bytes(name), { contextSize: CTX, maxShardBytes: budgetFor(bytes(name), 4) });
    assert.is(b.runtimes.length, 4);
    const prompt = a.tokenizer.encode("Once upon a time", { addBos: true });
    const g = (m: Model) => generate(m.createContext({ contextSize: CTX }), m.tokenizer, prompt, { maxTokens: 40, temperature: 0, stopAtEos: false }).tokens;
    assert.equal(g(b), g(a), `${name}: greedy tokens`);
    const text = readFileSync(sharedPath("data/tinystories/tinystories-validation-first1000.txt"), "utf8").slice(0, 6000);
    const tokens = a.tokenizer.encode(text, { addBos: false });
    const pa = perplexity(a, tokens, { contextSize: 128, maxChunks: 3 }), pb = perplexity(b, tokens, { contextSize: 128, maxChunks: 3 });
    assert.is(pb.perplexity, pa.perplexity, `${name}: ppl`);
    const windows = [tokens.slice(0, 96), tokens.slice(96, 160)];
    const sa = collectLayerStats(a, windows), sb = collectLayerStats(b, windows);
    assert.equal(Array.from(blockInfluence(sb)), Array.from(blockInfluence(sa)), `${name}: BI scores`);
    assert.equal(Array.from(sb.ffnCos), Array.from(sa.ffnCos), `${name}: per-layer residual streams (FFN cosines)`);
    assert.equal(Array.from(sb.relMagnitude), Array.from(sa.relMagnitude), `${name}: relative magnitudes`);
    // statistics release what they allocated in every shard
    const used = b.runtimes.map((r) => r.bytesUsed);
    collectLayerStats(b, windows);
    assert.equal(b.runtimes.map((r) => r.bytesUsed), used, `${name}: every shard's scratch released`);
  }
});

test("2 threads over 3 shards (one pool per shard) give the one-memory, one-thread logits", async () => {
  for (const name of MODELS) {
    const ref = trace(single(name));
    const m = Model.load(bytes(name), { contextSize: CTX, threads: 2, maxShardBytes: budgetFor(bytes(name), 3) });
    assert.is(await m.startThreads({ spinMs: 0.2 }), 2);
    try {
      assert.is(m.pools.length, 3);
      assert.ok(m.runtimes.every((r) => r.shared));
      // F32 matmuls and attention are bit-identical however they are split (threads.test.ts)
      trace(m).forEach((g, i) => same(g, ref[i], `${name}, 3 shards × 2 threads, step ${i}`));
    } finally {
      m.stopThreads();
    }
  }
});

test("a GPTQ Q4_0 file of stories-deep-16L (layer-streamed, one memory) runs in 3 shards with the one-memory logits", () => {
  const src = bytes("stories-deep-16L"), file = readGgufHeader(src);
  const text = readFileSync(sharedPath("data/tinystories/tinystories-validation-first1000.txt"), "utf8");
  const windows = calibrationWindows(tokenizerFromGguf(file.kv), text, 256, 128).windows;
  const r = quantizeGptq(file, bytesSource(src), windows, formatByName("Q4_0")!);
  const q = writeGgufBytes(r.spec, r.tensorData);
  const a = Model.load(q, { contextSize: CTX }), b = Model.load(q, { contextSize: CTX, maxShardBytes: budgetFor(q, 3) });
  assert.is(b.runtimes.length, 3);
  assert.is(b.weights.layers[15].ffnDown!.format.name, "Q4_0");
  const ta = trace(a), tb = trace(b);
  tb.forEach((g, i) => same(g, ta[i], `GPTQ Q4_0 in 3 shards, step ${i}`));
});

test("the streaming load (Model.loadStream, small chunks) fills each tensor into its shard", async () => {
  const src = bytes("stories-deep-16L");
  const chunked = new ReadableStream<Uint8Array>({
    start(ctl) { for (let o = 0; o < src.length; o += 65521) ctl.enqueue(src.slice(o, o + 65521)); ctl.close(); },
  });
  const m = await Model.loadStream(chunked, src.length, { contextSize: CTX, maxShardBytes: budgetFor(src, 5) });
  assert.is(m.runtimes.length, 5);
  trace(m).forEach((g, i) => same(g, trace(single("stories-deep-16L"))[i], `streamed into 5 shards, step ${i}`));
});

test("Context over shards: ranges that skip or repeat a layer are refused", () => {
  const m = Model.load(bytes("stories-deep-16L"), { contextSize: CTX, maxShardBytes: budgetFor(bytes("stories-deep-16L"), 2) });
  const [s0, s1] = m.shards;
  const rt = m.runtimes;
  assert.throws(() => new Context([{ rt: rt[0], start: 0, end: s0.end - 1 }, { rt: rt[1], start: s0.end, end: s1.end }], m.config, m.weights), /not the next range/);
  assert.throws(() => new Context([{ rt: rt[0], start: 0, end: s0.end }, { rt: rt[1], start: s0.end, end: s1.end - 1 }], m.config, m.weights), /the model has 16/);
});

test("a layer larger than the shard budget is refused in one line naming it and the need", () => {
  assert.throws(() => Model.load(bytes("stories-deep-16L"), { name: "stories-deep-16L", contextSize: CTX, maxShardBytes: 1 << 20 }), /stories-deep-16L: layer 0 would need [\d.]+ MiB of wasm memory by itself \(with its KV cache and scratch\), over the 1\.0 MiB one memory is given/);
  assert.throws(() => Model.load(bytes("stories-deep-16L"), { maxShardBytes: 5 * 1024 ** 3 }), /over wasm32's 4\.00 GiB per memory/);
});

test("CLI: info prints the plan (EDGEPRUNE_MAX_SHARD_MIB), generate across shards gives the one-memory tokens", async () => {
  const path = sharedPath("models/stories-deep-16L.gguf");
  const mib = Math.ceil(budgetFor(bytes("stories-deep-16L"), 3, 256) / 1024 ** 2);
  const env = { EDGEPRUNE_MAX_SHARD_MIB: String(mib) };
  const info = await runCli(["info", path, "--ctx", "256"], env);
  assert.is(info.code, 0, info.stderr);
  assert.match(info.stdout, /shards +\d+ wasm memories/);
  assert.match(info.stdout, /shard 0: embeddings, layers 0–\d+; /);
  assert.match(info.stdout, /classifier; /);
  const json = JSON.parse((await runCli(["info", path, "--ctx", "256", "--json"], env)).stdout);
  checkPlan(json.shards.map((s: { layers: number[]; embed: boolean; head: boolean; bytes: number }) => ({ ...s, start: s.layers[0], end: s.layers[1] })), 16, mib * 1024 ** 2, "info --json");
  const plain = JSON.parse((await runCli(["info", path, "--json"])).stdout);
  assert.is(plain.shards.length, 1);
  const gen = (e: NodeJS.ProcessEnv) => runCli(["generate", path, "-p", "Once upon a time", "--temp", "0", "-n", "24", "--ctx", "256", "--threads", "1", "--json"], e);
  const [a, b] = await Promise.all([gen({}), gen(env)]);
  assert.is(b.code, 0, b.stderr);
  const ja = JSON.parse(a.stdout), jb = JSON.parse(b.stdout);
  assert.is(ja.shards, 1);
  assert.ok(jb.shards >= 2, `generate ran in ${jb.shards} memories`);
  assert.equal(jb.tokens, ja.tokens);
});

test("serve across shards (2 slots planned with the weights): a greedy completion equals the library's", async () => {
  const path = sharedPath("models/stories-deep-16L.gguf");
  const mib = Math.ceil(budgetFor(bytes("stories-deep-16L"), 3, 256, 2) / 1024 ** 2);
  const srv = await serve(["--ctx", "256", "--parallel", "2", "--threads", "1"], { EDGEPRUNE_MAX_SHARD_MIB: String(mib) }, path);
  try {
    const r = await (await fetch(`${srv.url}/v1/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 20, temperature: 0 }),
    })).json() as { choices: { text: string }[] };
    const m = single("stories-deep-16L");
    const ids = m.tokenizer.encode("Once upon a time", { addBos: m.tokenizer.addBos });
    const want = generate(m.createContext({ contextSize: 256 }), m.tokenizer, ids, { maxTokens: 20, temperature: 0 }).text;
    assert.is(r.choices[0].text, want);
    assert.match(srv.log(), /in [2-9] wasm memories/);
  } finally {
    await srv.kill();
  }
});

test.run();
