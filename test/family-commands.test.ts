// The rest of the commands on every architecture family (the per-family suites cover prune, GPTQ and generate):
// perplexity against one computed from llama.cpp's own probabilities, every scoring metric at both granularities
// (and Block Influence 0 for an identity layer), round-to-nearest quantization; `bi`, `ppl`, `study prune` and
// `quantize` through the CLI; and `serve` answering a chat request with the GGUF's chat template (a synthetic file
// with the real Qwen tokenizer).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../src/model/model.js";
import { perplexity } from "../src/perplexity.js";
import { generate } from "../src/generate.js";
import { readGgufHeader, bytesSource } from "../src/gguf/reader.js";
import { ggufChunks, writeGgufBytes } from "../src/gguf/writer.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { METRICS, rankUnits } from "../src/prune/metrics.js";
import { blockInfluence, collectLayerStats } from "../src/prune/stats.js";
import { parseQuantType, quantizeModel } from "../src/quant/quantize.js";
import { realVocab, resolveShape, synthModel } from "../src/commands/synth.js";
import { splitDocuments, tokenizeDocuments, tokenWindows } from "../src/data/documents.js";
import { startServer } from "../src/server/server.js";
import { encodeChat, templateVariables } from "../src/server/chat.js";
import { Template } from "@huggingface/jinja";
import { metaString } from "../src/gguf/metadata.js";
import { KEY } from "../src/gguf/names.js";
import { FAMILY_CONTEXT, familyFile, FAMILY_FIXTURES } from "./support/families.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./support/llamacpp.js";
import { runCli } from "./support/cli.js";
import { sharedPath } from "./support/paths.js";
import { familyF32Bound } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-family-commands-"));
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const FAMILIES = Object.keys(FAMILY_FIXTURES).filter((f) => f !== "phi3-long");
const files = new Map(FAMILIES.map((f) => [f, familyFile(tmp, f, "f32")]));
const load = (path: string | Uint8Array) => Model.load(typeof path === "string" ? new Uint8Array(readFileSync(path)) : path, { ...STUDY_CACHE, contextSize: FAMILY_CONTEXT });

function calibWindows(model: Model): number[][] {
  const docs = splitDocuments(readFileSync(TEXT, "utf8")).slice(0, 20);
  return tokenWindows(tokenizeDocuments(model.tokenizer, docs), 32, 32 * 4, model.tokenizer.bosId);
}

test("every family: perplexity equals the one llama.cpp's probabilities give on the same windows", async () => {
  const lines: string[] = [];
  for (const family of FAMILIES) {
    const path = files.get(family)!;
    const model = load(path);
    const docs = splitDocuments(readFileSync(TEXT, "utf8")).slice(800, 806).join("\n");
    const tokens = model.tokenizer.encode(docs, { addBos: true });
    const n = 64;
    const ours = perplexity(model, tokens, { contextSize: n, maxChunks: 2 });
    // llama-perplexity's method with llama.cpp's distributions: BOS first, the second half of each window scored
    let nll = 0, count = 0;
    for (let c = 0; c < 2; c++) {
      const w = tokens.slice(c * n, (c + 1) * n);
      w[0] = model.tokenizer.bosId;
      const probs = await llamaCppTeacherForced(path, w);
      for (let i = n / 2; i < n - 1; i++) { nll -= Math.log(probs[i][w[i + 1]]); count++; }
    }
    const theirs = Math.exp(nll / count);
    assert.is(ours.scoredTokens, count, `${family}: scored tokens`);
    const rel = Math.abs(ours.perplexity - theirs) / theirs;
    // a relative error of 10x the family's probability bound (probabilities near 1 dominate the mean log)
    assert.ok(rel < 10 * familyF32Bound(family), `${family}: perplexity ${ours.perplexity} vs ${theirs} from llama.cpp (relative ${rel})`);
    lines.push(`${family} ${ours.perplexity.toFixed(2)} (${rel.toExponential(1)})`);
  }
  console.log(`    perplexity, ours (relative difference to llama.cpp's): ${lines.join(", ")}`);
});

test("every family: each scoring metric ranks every layer and half-layer; an identity layer has Block Influence 0 and goes first", () => {
  for (const family of FAMILIES) {
    const bytes = new Uint8Array(readFileSync(files.get(family)!));
    const model = load(bytes);
    const windows = calibWindows(model);
    for (const metric of METRICS) for (const granularity of ["layer", "sublayer"] as const) {
      if (metric === "block" && granularity === "sublayer") continue;
      const r = rankUnits(metric, { model, windows, granularity, seed: 1 });
      assert.is(r.units.length, (granularity === "layer" ? 1 : 2) * model.config.nLayers, `${family} ${metric} ${granularity}`);
      assert.ok(r.scores.every(Number.isFinite), `${family} ${metric} ${granularity}: finite scores`);
    }
    // layer 1 as an identity: its output projections zeroed
    const f = readGgufHeader(bytes);
    const ident = bytes.slice();
    for (const name of ["blk.1.attn_output.weight", "blk.1.ffn_down.weight"]) {
      const t = f.tensors.find((x) => x.name === name)!;
      ident.fill(0, f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteSize);
    }
    const m2 = load(ident);
    const bi = blockInfluence(collectLayerStats(m2, windows));
    assert.ok(Math.abs(bi[1]) < 1e-6, `${family}: BI of the identity layer is ${bi[1]}`);
    for (let l = 0; l < bi.length; l++) if (l !== 1) assert.ok(bi[l] > 1e-3, `${family}: layer ${l} has BI ${bi[l]}`);
    assert.equal(rankUnits("bi", { model: m2, windows }).order[0], { layer: 1, part: "layer" }, `${family}: the identity layer goes first`);
  }
});

test("every family: round-to-nearest Q8_0 keeps the F32 model's clear winners; Q4_1 and F16 files load and run", () => {
  for (const family of FAMILIES) {
    const bytes = new Uint8Array(readFileSync(files.get(family)!));
    const f32 = load(bytes);
    const prompt = f32.tokenizer.encode("Once upon a time there was a little", { addBos: true });
    const want = f32.createContext().eval(prompt, { logits: "all" });
    const v = f32.config.vocabSize;
    for (const type of ["q8_0", "q4_1", "f16"]) {
      const { spec, tensorData } = quantizeModel(readGgufHeader(bytes), bytesSource(bytes), parseQuantType(type));
      const q = load(writeGgufBytes(spec, tensorData));
      const got = q.createContext().eval(prompt, { logits: "all" });
      assert.ok(got.every(Number.isFinite), `${family} ${type}: finite logits`);
      if (type !== "q8_0") continue;
      for (let i = 0; i < prompt.length; i++) {
        const w = Array.from(want.subarray(i * v, (i + 1) * v)), g = Array.from(got.subarray(i * v, (i + 1) * v));
        const best = w.indexOf(Math.max(...w));
        const second = Math.max(...w.filter((_, j) => j !== best));
        if (w[best] - second > 2) assert.is(g.indexOf(Math.max(...g)), best, `${family} Q8_0 position ${i}: a winner by ${w[best] - second} logits`);
      }
    }
  }
});

test("CLI on gemma3 and phi3: bi --granularity sublayer --json, ppl --json, study prune, quantize (RTN) all run", () => {
  for (const family of ["gemma3", "phi3"]) {
    const path = files.get(family)!;
    const bi = runCli("bi", path, "--calib", TEXT, "--granularity", "sublayer", "--tokens", "256", "--window", "64", "--json");
    assert.is(bi.status, 0, bi.stderr);
    assert.is(JSON.parse(bi.stdout).units.length, 8);
    const ppl = runCli("ppl", path, "-f", TEXT, "--ctx", "64", "--chunks", "2", "--json");
    assert.is(ppl.status, 0, ppl.stderr);
    assert.ok(JSON.parse(ppl.stdout.trim().split("\n")[0]).perplexity > 1);
    const out = join(tmp, `${family}-study`);
    const st = runCli("study", "prune", path, "--calib", TEXT, "--eval", TEXT, "--eval-docs", "3", "--tokens", "256", "--window", "64", "--max-k", "2", "--random", "2", "--loss-windows", "2", "--out", out);
    assert.is(st.status, 0, st.stderr);
    assert.match(readFileSync(join(out, "prune-study.md"), "utf8"), /Pruning study/);
    const q = runCli("quantize", path, "--type", "q4_1", "-o", join(tmp, `${family}-q4_1.gguf`));
    assert.is(q.status, 0, q.stderr);
  }
});

test("serve answers a chat request with the GGUF's chat template (synthetic qwen2 with the real Qwen tokenizer); llama.cpp continues that prompt with our tokens", async () => {
  const vocab = await realVocab("qwen2", 151936);
  assert.ok(vocab.kv, vocab.why);
  const shape = { ...resolveShape({ arch: "qwen2", dim: 64, layers: 2, heads: 2, kvHeads: 1, hidden: 128, vocab: 151936, ctx: 4096 }) };
  const path = join(tmp, "qwen2-real-tokenizer.gguf");
  const { spec, tensorData } = synthModel({ shape, type: "q8_0", seed: 3, logitStd: 8, vocab: vocab.kv });
  writeFileAtomicSync(path, ggufChunks(spec, tensorData));
  const model = load(path);
  const messages = [{ role: "user", content: "Tell me a story." }];
  // the template rendered here with the library the server's sandbox runs, and the variables it passes
  const source = metaString(model.file.kv, KEY.chatTemplate, "");
  assert.match(source, /<\|im_start\|>/, "the GGUF carries Qwen's chat template");
  const prompt = encodeChat(model.tokenizer, new Template(source).render({ messages, ...templateVariables(model.tokenizer) }));
  assert.ok(prompt.some((id) => model.tokenizer.tokenText(id) === "<|im_start|>"), "the template's special tokens are single tokens");
  const server = await startServer({ model, port: 0, warmup: 0 });
  try {
    await server.ready;
    const r = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages, max_tokens: 8, temperature: 0 }),
    });
    assert.is(r.status, 200);
    const body = await r.json() as { choices: { message: { content: string } }[]; usage: { prompt_tokens: number } };
    assert.is(body.usage.prompt_tokens, prompt.length);
    const want = generate(model.createContext({ contextSize: 256 }), model.tokenizer, prompt, { maxTokens: 8, temperature: 0 });
    assert.is(body.choices[0].message.content, want.text);
    const ref = await llamaCppGreedy(path, prompt, want.tokens.length);
    assert.equal(want.tokens, ref.tokens.slice(0, want.tokens.length));
  } finally {
    await server.close();
  }
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
