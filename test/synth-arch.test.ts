// `synth --arch` and its presets: each preset has its model's published parameter count (the tensors come from the
// architecture descriptor, so a missing bias or norm would show), every family's file reads back with the config
// its shape asked for, and `synth` + `info` run through the CLI. No llama.cpp here (the family tests compare).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveShape, SYNTH_FAMILIES, SYNTH_SHAPES, synthModel } from "../src/commands/synth.js";
import { readGgufHeader } from "../src/gguf/reader.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { configFromGguf } from "../src/model/config.js";
import { Model } from "../src/model/model.js";
import { runCli } from "./support/cli.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-synth-arch-"));

/** Parameters of the models' Hugging Face checkpoints (model cards / safetensors metadata), tied embeddings counted once. */
const PUBLISHED: Record<string, number> = {
  "qwen2.5-0.5b": 494_032_768,
  "qwen3-0.6b": 596_049_920,
  "llama-3.2-1b": 1_235_814_400,
  "llama-3.2-3b": 3_212_749_824,
  "gemma-3-270m": 268_098_176,
  "gemma-3-1b": 999_885_952,
  "phi-4-mini": 3_836_021_760,
  "smollm2-135m": 134_515_008,
  "tinyllama-1.1b": 1_100_048_384,
};

test("presets have their models' published parameter counts (rope factor tensors aside, which checkpoints do not hold)", () => {
  for (const [name, want] of Object.entries(PUBLISHED)) {
    const { spec } = synthModel({ shape: SYNTH_SHAPES[name], type: "q4_0" });
    let n = 0;
    for (const t of spec.tensors) if (!t.name.startsWith("rope_")) n += t.dims.reduce((a, b) => a * b, 1);
    assert.is(n, want, name);
  }
});

test("every preset's family is the one its name says, and explicit dims build on the family's defaults", () => {
  for (const [family, f] of Object.entries(SYNTH_FAMILIES)) {
    for (const name of Object.keys(f.presets)) assert.is(resolveShape({ shape: name }).arch, f.arch, name);
  }
  const q = resolveShape({ arch: "qwen2", dim: 64, layers: 2, heads: 2 });
  assert.is(q.ropeFreqBase, 1000000);
  assert.is(q.tiedOutput, true);
  assert.throws(() => resolveShape({ arch: "qwen3", shape: "gemma-3-1b" }), /is a gemma3 shape, not qwen3/);
  assert.throws(() => resolveShape({ arch: "mamba", dim: 64, layers: 1, heads: 1 }), /unknown --arch "mamba"/);
  assert.throws(() => synthModel({ shape: { ...resolveShape({ arch: "llama", dim: 64, layers: 1, heads: 2 }), ropeDim: 16 }, type: "f32" }), /rotates whole heads/);
});

test("each family's synthetic file reads back with the configuration its shape asked for", () => {
  const small = { dim: 64, layers: 3, heads: 2, kvHeads: 1, hidden: 96, vocab: 320, ctx: 1024 };
  const read = (shape: ReturnType<typeof resolveShape>) => {
    const { spec, tensorData } = synthModel({ shape, type: "f32" });
    const bytes = writeGgufBytes(spec, tensorData);
    const m = Model.load(bytes);
    assert.ok(m.createContext({ contextSize: 16 }).eval([1, 5, 9]).every(Number.isFinite));
    return configFromGguf(readGgufHeader(bytes));
  };
  const g3 = read({ ...resolveShape({ arch: "gemma3", ...small, headDim: 48, window: 8 }), slidingWindowPattern: 3, ropeScaling: { type: "linear", factor: 8 } });
  assert.is(g3.headSize, 48);
  assert.is(g3.qDim, 96);
  assert.equal(g3.swaLayers, [true, true, false]);
  assert.is(g3.slidingWindow, 8);
  assert.is(g3.rope.freqScale, 0.125);
  assert.is(g3.embedScale, Math.fround(8));
  const p3 = read({ ...resolveShape({ arch: "phi3", ...small }), ropeDim: 16, longRope: { origContext: 256 } });
  assert.is(p3.ropeDim, 16);
  assert.is(p3.ropeFactors, "longrope");
  assert.ok(Math.abs(p3.rope.attnFactor - Math.sqrt(1 + Math.log(4) / Math.log(256))) < 1e-6);
  const l3 = read({ ...resolveShape({ arch: "llama3", ...small }), llama3Rope: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, origContext: 64 } });
  assert.is(l3.ropeFactors, "freqs");
  const q2 = read({ ...resolveShape({ arch: "qwen2", ...small }), ropeScaling: { type: "yarn", factor: 4, origContext: 256 } });
  assert.is(q2.rope.extFactor, 1);
  assert.is(q2.rope.origContext, 256);
  const g2 = read(resolveShape({ arch: "gemma2", ...small }));
  assert.is(g2.attnSoftcap, 50);
  assert.is(g2.finalSoftcap, 30);
  assert.equal(g2.swaLayers, [true, false, true]);
});

test("CLI: synth --arch qwen3 with explicit dims, then info, print the family, its head size and q/k norms' layout", () => {
  const out = join(tmp, "qwen3.gguf");
  const r = runCli("synth", "--arch", "qwen3", "--dim", "64", "--layers", "2", "--heads", "2", "--kv-heads", "1", "--head-dim", "64", "--vocab", "400", "--type", "q8_0", "--tokenizer", "synthetic", "-o", out);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /qwen3, dim 64, 2 layers, heads 2\/1, head size 64/);
  const info = runCli("info", out, "--json");
  assert.is(info.status, 0, info.stderr);
  const j = JSON.parse(info.stdout);
  assert.is(j.architecture, "qwen3");
  assert.is(j.config.headSize, 64);
  assert.is(j.config.qDim, 128);
  assert.match(j.config.family, /Qwen3/);
  const text = runCli("info", out);
  assert.match(text.stdout, /family\s+qwen3: Qwen3/);
  assert.match(text.stdout, /rope\s+neox, 64 of 64 dims, base 1000000/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
