// `convert` against llama.cpp: the real HF llama tinystories-656k converted to GGUF gives the same greedy tokens in
// llama.cpp and in edgeprune, and both equal a float64 forward pass over the safetensors themselves. Random-weight
// folders of qwen2, qwen3, gemma3, phi3 (and a Llama 3.2-layout llama) convert to files llama.cpp loads and runs,
// with the tensor names, shapes and metadata llama.cpp's converter writes. Plus the safetensors reader's refusals.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { convertChunks, planConvert } from "../src/convert/convert.js";
import { generate } from "../src/generate.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import type { GgufFile } from "../src/gguf/types.js";
import { Model } from "../src/model/model.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { openHfModel } from "../src/node/hf.js";
import { readRowsF32, readSafetensorsHeader } from "../src/safetensors/reader.js";
import { CONFIGS, hfTensorShapes, makeRandomModelFolder, safetensorsBytes, type Family } from "./support/hf-folders.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced, llamaCppTokenize } from "./support/llamacpp.js";
import { ourTeacherForced } from "./support/compare.js";
import { CONVERT_VS_LLAMACPP } from "./tolerances.js";
import { sharedPath } from "./support/paths.js";
import { refGreedy } from "./support/ref-hf-llama.js";
import { runCli } from "./support/cli.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-convert-"));

async function convert(dir: string, out: string, type?: string): Promise<GgufFile> {
  const model = openHfModel(dir);
  try {
    const plan = await planConvert(model, { type });
    writeFileAtomicSync(out, convertChunks(plan));
  } finally {
    model.close();
  }
  return readGgufHeader(new Uint8Array(readFileSync(out)), out);
}

test("tinystories-656k (HF llama): llama.cpp's greedy tokens on our GGUF = edgeprune's = a float64 pass over the safetensors", async () => {
  const dir = sharedPath("models", "tinystories-656k");
  const out = join(tmp, "tinystories-656k.f32.gguf");
  const file = await convert(dir, out, "f32");
  const names = file.tensors.map((t) => t.name);
  assert.ok(names.includes("token_embd.weight"), "the tied embedding (stored only as lm_head) becomes token_embd");
  assert.not.ok(names.includes("output.weight"));
  const kv = (k: string) => file.kv.get(k)?.value;
  assert.is(kv("tokenizer.ggml.model"), "llama");
  assert.is(kv("llama.rope.dimension_count"), 16);
  assert.is(kv("llama.attention.key_length"), 16);
  assert.is(kv("tokenizer.ggml.bos_token_id"), 1);
  assert.is(kv("tokenizer.ggml.add_bos_token"), true);

  const model = Model.load(new Uint8Array(readFileSync(out)), STUDY_CACHE);
  const text = "Once upon a time, there was a little girl named";
  const prompt = model.tokenizer.encode(text);
  assert.equal(prompt, await llamaCppTokenize(out, text, true), "prompt tokens: ours vs llama.cpp");
  const N = 32;
  const ours = generate(model.createContext({ contextSize: 128 }), model.tokenizer, prompt, { maxTokens: N, temperature: 0, stopAtEos: false }).tokens;
  const theirs = (await llamaCppGreedy(out, prompt, N)).tokens;

  const st = bytesSource(new Uint8Array(readFileSync(join(dir, "model.safetensors"))));
  const header = readSafetensorsHeader(st, "model.safetensors");
  const get = (name: string) => {
    const t = header.byName.get(name === "model.embed_tokens.weight" ? "lm_head.weight" : name);
    if (!t) throw new Error(`no tensor ${name}`);
    return Float64Array.from(readRowsF32(st, t, 0, t.shape.length === 1 ? 1 : t.shape[0], new Float32Array(t.nElements)));
  };
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  const ref = refGreedy({ config, get }, prompt, N);
  assert.equal(ours, ref, "edgeprune vs float64 reference");
  assert.equal(theirs, ref, "llama.cpp vs float64 reference");
  console.log(`    ${N} greedy tokens identical (edgeprune, llama.cpp, float64 reference): ${JSON.stringify(model.tokenizer.decode(ref))}`);
  model.stopThreads?.();
});

test("tinystories-656k through the CLI as Q8_0: llama.cpp and edgeprune agree on the first greedy tokens", async () => {
  const out = join(tmp, "tinystories-656k.q8_0.gguf");
  const r = runCli("convert", sharedPath("models", "tinystories-656k"), "-o", out, "--type", "q8_0");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /wrote .*llama, 20 tensors \((5 F32, 15 Q8_0|15 Q8_0, 5 F32)\)/);
  const model = Model.load(new Uint8Array(readFileSync(out)), STUDY_CACHE);
  const prompt = model.tokenizer.encode("Once upon a time");
  const ours = generate(model.createContext({ contextSize: 64 }), model.tokenizer, prompt, { maxTokens: 8, temperature: 0, stopAtEos: false }).tokens;
  const theirs = (await llamaCppGreedy(out, prompt, 8)).tokens;
  assert.equal(ours, theirs);
});

/** The GGUF tensors llama.cpp's converter writes for CONFIGS[family] (name → GGUF dims, innermost first). */
function expectedTensors(family: Family): Map<string, number[]> {
  const c = CONFIGS[family] as Record<string, number>;
  const d = c.hidden_size, ff = c.intermediate_size, h = c.num_attention_heads, kv = c.num_key_value_heads, hd = c.head_dim ?? d / h;
  const e = new Map<string, number[]>([["token_embd.weight", [d, c.vocab_size]], ["output_norm.weight", [d]]]);
  if (family === "llama") e.set("rope_freqs.weight", [hd / 2]);
  if (family === "phi3") {
    e.set("rope_factors_long.weight", [6]);
    e.set("rope_factors_short.weight", [6]);
  }
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const b = `blk.${i}.`;
    e.set(b + "attn_norm.weight", [d]);
    e.set(b + "ffn_norm.weight", [d]);
    e.set(b + "attn_output.weight", [h * hd, d]);
    e.set(b + "ffn_down.weight", [ff, d]);
    if (family === "phi3") {
      e.set(b + "attn_qkv.weight", [d, (h + 2 * kv) * hd]);
      e.set(b + "ffn_up.weight", [d, 2 * ff]);
      continue;
    }
    e.set(b + "attn_q.weight", [d, h * hd]);
    e.set(b + "attn_k.weight", [d, kv * hd]);
    e.set(b + "attn_v.weight", [d, kv * hd]);
    e.set(b + "ffn_gate.weight", [d, ff]);
    e.set(b + "ffn_up.weight", [d, ff]);
    if (family === "qwen2") for (const [n, w] of [["attn_q.bias", h * hd], ["attn_k.bias", kv * hd], ["attn_v.bias", kv * hd]] as const) e.set(b + n, [w]);
    if (family === "qwen3" || family === "gemma3") {
      e.set(b + "attn_q_norm.weight", [hd]);
      e.set(b + "attn_k_norm.weight", [hd]);
    }
    if (family === "gemma3") {
      e.set(b + "post_attention_norm.weight", [d]);
      e.set(b + "post_ffw_norm.weight", [d]);
    }
  }
  return e;
}

/** The {arch}.* keys llama.cpp's converter writes for CONFIGS[family] (values where they follow from config.json). */
const EXPECTED_KV: Record<Family, Record<string, unknown>> = {
  llama: { "llama.block_count": 2, "llama.context_length": 131072, "llama.embedding_length": 64, "llama.feed_forward_length": 128, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2, "llama.rope.freq_base": 500000, "llama.attention.key_length": 16, "llama.attention.value_length": 16, "llama.vocab_size": 128256, "llama.rope.dimension_count": 16, "tokenizer.ggml.pre": "llama-bpe" },
  qwen2: { "qwen2.block_count": 2, "qwen2.context_length": 32768, "qwen2.embedding_length": 64, "qwen2.feed_forward_length": 128, "qwen2.attention.head_count": 4, "qwen2.attention.head_count_kv": 2, "qwen2.rope.freq_base": 1000000, "tokenizer.ggml.pre": "qwen2" },
  qwen3: { "qwen3.block_count": 2, "qwen3.context_length": 40960, "qwen3.attention.key_length": 32, "qwen3.attention.value_length": 32, "qwen3.attention.head_count_kv": 2, "qwen3.rope.freq_base": 1000000, "tokenizer.ggml.pre": "qwen2" },
  gemma3: { "gemma3.block_count": 2, "gemma3.context_length": 32768, "gemma3.attention.key_length": 32, "gemma3.attention.value_length": 32, "gemma3.rope.freq_base": 1000000, "gemma3.rope.freq_base_swa": 10000, "gemma3.attention.sliding_window": 512, "gemma3.attention.head_count_kv": 1, "tokenizer.ggml.model": "llama", "tokenizer.ggml.add_space_prefix": false },
  phi3: { "phi3.block_count": 2, "phi3.context_length": 131072, "phi3.rope.scaling.original_context_length": 4096, "phi3.rope.dimension_count": 12, "phi3.attention.sliding_window": 262144, "tokenizer.ggml.pre": "llama-bpe" },
};

const FAMILY_TYPES: Record<Family, string> = { llama: "q8_0", qwen2: "f16", qwen3: "auto", gemma3: "f16", phi3: "q4_0" };

for (const family of ["llama", "qwen2", "qwen3", "gemma3", "phi3"] as Family[]) {
  test(`${family}: a random-weight HF folder converts (${FAMILY_TYPES[family]}) with llama.cpp's names, shapes and keys, and llama.cpp runs it`, async () => {
    // folder names: llama.cpp sets token attributes for general.name containing "phi3", which needs a Phi-3 vocabulary
    const dir = makeRandomModelFolder(join(tmp, `tiny-${family === "phi3" ? "phi4-mini" : family}`), family, 7);
    const out = join(tmp, `${family}.gguf`);
    const file = await convert(dir, out, FAMILY_TYPES[family]);
    const got = new Map(file.tensors.map((t) => [t.name, t.dims]));
    const want = expectedTensors(family);
    assert.equal([...got.keys()].sort(), [...want.keys()].sort(), "tensor names");
    for (const [n, dims] of want) assert.equal(got.get(n), dims, `${n} dims`);
    assert.is(file.kv.get("general.architecture")?.value, family);
    for (const [k, v] of Object.entries(EXPECTED_KV[family])) {
      const e = file.kv.get(k);
      assert.ok(e, `key ${k} missing`);
      if (typeof v === "number" && typeof e!.value === "number") assert.ok(Math.abs(e!.value - v) <= 1e-6 * Math.abs(v), `${k} = ${e!.value}, expected ${v}`);
      else assert.is(e!.value, v, k);
    }
    assert.ok(typeof file.kv.get("tokenizer.chat_template")?.value === "string", "chat template");
    const bos = Number(file.kv.get("tokenizer.ggml.bos_token_id")?.value ?? 0);
    const { tokens, probs } = await llamaCppGreedy(out, [bos, 1000, 2000, 3000], 4);
    assert.is(tokens.length, 4);
    for (const p of probs) {
      let s = 0;
      for (const x of p) s += x;
      assert.ok(Number.isFinite(s) && Math.abs(s - 1) < 1e-3, `llama.cpp's probabilities sum to ${s}`);
    }
    // and edgeprune reads the converted file as llama.cpp does: teacher-forced probabilities at 32 positions
    const seq = [bos];
    for (let i = 1; i < 32; i++) seq.push((bos + 7919 * i) % 4096);
    const model = Model.load(new Uint8Array(readFileSync(out)), STUDY_CACHE);
    const ours = ourTeacherForced(model, seq);
    const theirs = await llamaCppTeacherForced(out, seq);
    // random folders give nearly one-hot distributions, so compare log-probabilities (the logits' own differences)
    // wherever llama.cpp's probability is representable, not probabilities that are all ≈ 0 or 1
    const bound = CONVERT_VS_LLAMACPP[family].bound;
    let maxDiff = 0, spread = 0;
    for (let i = 0; i < seq.length; i++) {
      let lo = Infinity, hi = -Infinity;
      for (let v = 0; v < theirs[i].length; v++) {
        if (!(theirs[i][v] > 1e-30)) continue;
        const a = Math.log(ours[i][v]), b = Math.log(theirs[i][v]);
        maxDiff = Math.max(maxDiff, Math.abs(a - b));
        lo = Math.min(lo, b); hi = Math.max(hi, b);
      }
      spread = Math.max(spread, hi - lo);
    }
    console.log(`    ${family} (${FAMILY_TYPES[family]}): max |ln p − ln p_llama.cpp| ${maxDiff.toExponential(2)} (bound ${bound}) over 32 positions; llama.cpp's ln p spans ${spread.toFixed(1)} there`);
    assert.ok(maxDiff <= bound, `${family}: max |ln p − ln p_llama.cpp| ${maxDiff} over the bound ${bound}`);
  });
}

test("gemma3: norms are written as weight + 1 and the embedding is cut to the vocabulary", async () => {
  const dir = join(tmp, "tiny-gemma3");
  const model = openHfModel(dir);
  try {
    const plan = await planConvert(model, { type: "f32" });
    const norm = plan.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!;
    const v = new Float32Array(norm.rowLength);
    norm.rows(0, 1, v);
    const src = model.tensors.get("model.layers.0.input_layernorm.weight")!;
    const raw = readRowsF32(src.src, src.tensor, 0, 1, new Float32Array(src.tensor.nElements));
    for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i] - (raw[i] + 1)) < 1e-6);
    assert.equal(plan.tensors.find((t) => t.name === "token_embd.weight")!.shape, [262144, 64]);
  } finally {
    model.close();
  }
});

test("llama: q/k rows are permuted for llama.cpp's RoPE, v is not", async () => {
  const dir = join(tmp, "tiny-llama");
  const model = openHfModel(dir);
  try {
    const plan = await planConvert(model, { type: "f32" });
    const row = (name: string, r: number) => { const t = plan.tensors.find((x) => x.name === name)!; const v = new Float32Array(t.rowLength); t.rows(r, r + 1, v); return v; };
    const hf = (name: string, r: number) => { const s = model.tensors.get(name)!; return readRowsF32(s.src, s.tensor, r, r + 1, new Float32Array(s.tensor.shape[1])); };
    // head_dim 16: GGUF row 1 of head 0 is HF row 8 (the first row of the second rotary half)
    assert.equal(row("blk.0.attn_q.weight", 1), hf("model.layers.0.self_attn.q_proj.weight", 8));
    assert.equal(row("blk.0.attn_k.weight", 16 + 2), hf("model.layers.0.self_attn.k_proj.weight", 16 + 1));
    assert.equal(row("blk.0.attn_v.weight", 1), hf("model.layers.0.self_attn.v_proj.weight", 1));
  } finally {
    model.close();
  }
});

test("sharded folder: model.safetensors.index.json is followed and checked against the shards", async () => {
  const dir = join(tmp, "sharded");
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(sharedPath("models", "tinystories-656k", f), join(dir, f));
  const st = bytesSource(new Uint8Array(readFileSync(sharedPath("models", "tinystories-656k", "model.safetensors"))));
  const h = readSafetensorsHeader(st);
  const parts: [string, typeof h.tensors][] = [["model-00001-of-00002.safetensors", h.tensors.slice(0, 10)], ["model-00002-of-00002.safetensors", h.tensors.slice(10)]];
  const weightMap: Record<string, string> = {};
  for (const [f, ts] of parts) {
    writeFileSync(join(dir, f), safetensorsBytes(ts.map((t) => ({ name: t.name, shape: t.shape, values: readRowsF32(st, t, 0, t.shape.length === 1 ? 1 : t.shape[0], new Float32Array(t.nElements)) })), "F32"));
    for (const t of ts) weightMap[t.name] = f;
  }
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const a = await convert(dir, join(tmp, "sharded.gguf"), "f32");
  const b = readGgufHeader(new Uint8Array(readFileSync(join(tmp, "tinystories-656k.f32.gguf"))));
  assert.equal(a.tensors.map((t) => [t.name, t.dims]).sort(), b.tensors.map((t) => [t.name, t.dims]).sort());
  weightMap["model.norm.weight"] = "model-00001-of-00002.safetensors";
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
  assert.throws(() => openHfModel(dir), /holds tensor "model.norm.weight", which model.safetensors.index.json places in model-00001/);
  weightMap["extra.weight"] = "model-00002-of-00002.safetensors";
  delete weightMap["model.norm.weight"];
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
  assert.throws(() => openHfModel(dir), /does not list|no shard holds/);
});

/** A header-only safetensors file: u64 length, the JSON, then `data` bytes. */
function stFile(header: unknown, data = 0, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

test("safetensors reader refuses hostile headers with the file and field named, before allocating", () => {
  const bad: [Uint8Array, RegExp][] = [
    [new Uint8Array(4), /header length.*at least 8/],
    [stFile({}, 0, 1n << 60n), /header length.*more than the 100000000 allowed/],
    [stFile({}, 0, 1000n), /header length.*only 2 follow/],
    [stFile("[1,2]"), /must start with "\{"/],
    [stFile("{\"a\":"), /not valid JSON/],
    [stFile({ w: { dtype: "F33", shape: [1], data_offsets: [0, 4] } }, 4), /tensor "w" dtype.*not a safetensors dtype/],
    [stFile({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, 4), /tensor "w" shape/],
    [stFile({ w: { dtype: "F32", shape: [1 << 30, 1 << 30, 1 << 30], data_offsets: [0, 4] } }, 4), /more elements than the file has bytes/],
    [stFile({ w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, 4), /holds 4 bytes, but F32 \[2\] needs 8/],
    [stFile({ w: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 2), /past the end of the data section/],
    [stFile({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8), /overlaps the previous tensor/],
    [stFile({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8), /leaves bytes \[0, 4\) that belong to no tensor/],
    [stFile({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 8), /tensors end at byte .*but the file has/],
    [stFile({ __metadata__: { format: 3 } }), /__metadata__.format.*must be a string/],
  ];
  for (const [bytes, re] of bad) {
    assert.throws(() => readSafetensorsHeader(bytesSource(bytes), "hostile.safetensors"), (e: Error) => e.message.startsWith("hostile.safetensors: invalid safetensors (") && re.test(e.message));
  }
  const ok = readSafetensorsHeader(bytesSource(stFile({ __metadata__: { format: "pt" }, b: { dtype: "BF16", shape: [2], data_offsets: [0, 4] } }, 4)));
  assert.equal(ok.tensors.map((t) => [t.name, t.dtype, t.shape, t.byteSize]), [["b", "BF16", [2], 4]]);
});

test("convert refuses what it cannot write, naming the file: unknown architecture, unmappable tensor, no output written", async () => {
  const dir = join(tmp, "bad");
  mkdirSync(dir, { recursive: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(sharedPath("models", "tinystories-656k", f), join(dir, f));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ architectures: ["MambaForCausalLM"] }));
  writeFileSync(join(dir, "model.safetensors"), safetensorsBytes([{ name: "x.weight", shape: [2, 2], values: new Float32Array(4) }], "F32"));
  const out = join(tmp, "bad.gguf");
  let r = runCli("convert", dir, "-o", out);
  assert.is(r.status, 1);
  assert.match(r.stderr, /config\.json: architectures \["MambaForCausalLM"\] is not one edgeprune converts/);
  writeFileSync(join(dir, "config.json"), readFileSync(sharedPath("models", "tinystories-656k", "config.json")));
  r = runCli("convert", dir, "-o", out);
  assert.is(r.status, 1);
  assert.match(r.stderr, /model\.safetensors: cannot map tensor "x\.weight"/);
  assert.throws(() => readFileSync(out));
});

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
