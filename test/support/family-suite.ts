// The tests every architecture family gets (test/family-<name>.test.ts registers them for one family), on its
// tiny synthetic files (families.ts), against llama.cpp running the same files: teacher-forced next-token
// probabilities at all 64 positions in F32 (bound near the measured difference) and in the Q8_0 / Q4_0 / Q4_K_M
// files edgeprune writes (bound from llama.cpp's cross-backend spread), 64 greedy tokens with a real margin, and
// the files `prune --remove 2`, `quantize --method gptq --type q4_0` and `generate --json` give. Test support only.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../../src/model/model.js";
import { generate } from "../../src/generate.js";
import { assertDistributionsAgree, ourTeacherForced } from "./compare.js";
import { FAMILY_CONTEXT, familyFile, FAMILY_TYPES } from "./families.js";
import { teacherSequence } from "./fixtures.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "./llamacpp.js";
import { runCli } from "./cli.js";
import { sharedPath } from "./paths.js";
import { familyF32Bound, FAMILY_QUANT_VS_LLAMACPP } from "../tolerances.js";
import { STUDY_CACHE } from "../../src/model/forward.js";

const TEXT = () => sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const N = 64;

export function load(path: string): Model {
  return Model.load(new Uint8Array(readFileSync(path)), { ...STUDY_CACHE, contextSize: FAMILY_CONTEXT });
}

export function greedy(model: Model, prompt: number[], n = N): number[] {
  return generate(model.createContext({ contextSize: FAMILY_CONTEXT }), model.tokenizer, prompt, { maxTokens: n, temperature: 0, stopAtEos: false }).tokens;
}

/** the gap between llama.cpp's two most probable tokens at each greedy step */
function gaps(probs: Float32Array[]): number[] {
  return probs.map((p) => {
    let a = -1, b = -1;
    for (const v of p) { if (v > a) { b = a; a = v; } else if (v > b) b = v; }
    return a - b;
  });
}

/**
 * Our greedy tokens equal llama.cpp's, except that they may part where llama.cpp's top two were within 2 × bound
 * (a tie another CPU backend may break the other way); returns how many steps agree.
 */
export function assertGreedyAgree(ours: number[], ref: { tokens: number[]; probs: Float32Array[] }, bound: number, label: string): string {
  const g = gaps(ref.probs);
  for (let i = 0; i < ref.tokens.length; i++) {
    if (ours[i] === ref.tokens[i]) continue;
    assert.ok(g[i] < 2 * bound, `${label}: step ${i} we chose ${ours[i]}, llama.cpp ${ref.tokens[i]}, whose top-2 gap ${g[i].toExponential(2)} is no tie (bound ${bound})`);
    return `${i}/${ref.tokens.length} identical, then parted where llama.cpp's top two were ${g[i].toExponential(2)} apart`;
  }
  return `${ref.tokens.length}/${ref.tokens.length} identical`;
}

/** Options: `commands: false` runs only the probability comparisons (a second fixture of a family already covered). */
export function familySuite(family: string, extra?: (file: (type: (typeof FAMILY_TYPES)[number]) => string, tmp: string) => void, opts: { commands?: boolean } = {}): void {
  const tmp = mkdtempSync(join(tmpdir(), `edgeprune-family-${family}-`));
  const bound = familyF32Bound(family);
  const written = new Map<string, string>();
  const file = (type: (typeof FAMILY_TYPES)[number]) => {
    if (!written.has(type)) written.set(type, familyFile(tmp, family, type));
    return written.get(type)!;
  };

  test(`${family} F32: next-token probabilities at all ${N} positions within ${bound} of llama.cpp's; ${N} greedy tokens identical, each step's top two apart by over 2x that`, async () => {
    const path = file("f32");
    const model = load(path);
    const seq = teacherSequence(model.tokenizer);
    const c = assertDistributionsAgree(ourTeacherForced(model, seq, 0, FAMILY_CONTEXT), await llamaCppTeacherForced(path, seq), bound, `${family} F32`, 0.9);
    const prompt = seq.slice(0, 8);
    const ref = await llamaCppGreedy(path, prompt, N);
    assert.equal(greedy(model, prompt), ref.tokens, "greedy tokens");
    const margin = Math.min(...gaps(ref.probs));
    assert.ok(margin > 2 * bound, `the smallest top-2 gap along the greedy path, ${margin}, is not over 2 x ${bound}: a near-tie (pick another seed)`);
    console.log(`    ${family} F32: max |p - p_llama.cpp| ${c.maxAbs.toExponential(2)} (position ${c.maxAt}), ${c.decisive}/${c.positions} decisive; greedy margin ${margin.toExponential(2)}`);
  });

  test(`${family} Q8_0, Q4_0 (our quantizer) and Q4_K_M (synth): teacher-forced probabilities within the cross-backend bound ${FAMILY_QUANT_VS_LLAMACPP}, decisive argmaxes agree`, async () => {
    const lines: string[] = [];
    for (const type of FAMILY_TYPES.filter((t) => t !== "f32")) {
      const path = file(type);
      const model = load(path);
      const seq = teacherSequence(model.tokenizer);
      const c = assertDistributionsAgree(ourTeacherForced(model, seq, 0, FAMILY_CONTEXT), await llamaCppTeacherForced(path, seq), FAMILY_QUANT_VS_LLAMACPP, `${family} ${type}`);
      lines.push(`${type} ${c.maxAbs.toExponential(2)} (${c.decisive}/${c.positions} decisive)`);
    }
    console.log(`    ${family} max |p - p_llama.cpp|: ${lines.join(", ")}`);
  });

  if (opts.commands !== false) commandTests();

  function commandTests(): void {
  test(`${family}: prune --remove 2 (Block Influence) writes a file llama.cpp runs with our greedy tokens, equal to the dense model without those layers`, async () => {
    const out = join(tmp, "pruned.gguf");
    const r = runCli("prune", file("f32"), "--remove", "2", "--calib", TEXT(), "--tokens", "1024", "--window", "64", "-o", out);
    assert.is(r.status, 0, r.stderr);
    const removed = /removed ([\d, ]+):/.exec(r.stderr)![1].split(",").map(Number);
    const dense = load(file("f32")), pruned = load(out);
    const prompt = teacherSequence(dense.tokenizer).slice(0, 8);
    const skip = { skipLayers: new Set(removed) };
    assert.equal(Array.from(pruned.createContext().eval(prompt)), Array.from(dense.createContext().eval(prompt, skip)), "pruned file = dense model with the layers skipped");
    const ours = greedy(pruned, prompt);
    const ref = await llamaCppGreedy(out, prompt, N);
    const same = assertGreedyAgree(ours, ref, bound, `${family} pruned`);
    const layout = pruned.config.nLayers === dense.config.nLayers ? "kept as identity layers" : `${pruned.config.nLayers} layers`;
    console.log(`    ${family}: removed layers ${removed.join(", ")} (${layout}); greedy vs llama.cpp: ${same}`);
  });

  test(`${family}: half-layer removal (prune --attention 1 --ffn 2) writes identity halves llama.cpp runs with our greedy tokens, equal to the dense model skipping them`, async () => {
    const out = join(tmp, "halves.gguf");
    const r = runCli("prune", file("f32"), "--attention", "1", "--ffn", "2", "-o", out);
    assert.is(r.status, 0, r.stderr);
    const dense = load(file("f32")), pruned = load(out);
    assert.equal([...pruned.config.removedAttention], [1]);
    assert.equal([...pruned.config.removedFfn], [2]);
    const prompt = teacherSequence(dense.tokenizer).slice(0, 8);
    const skip = { skipAttention: new Set([1]), skipFfn: new Set([2]) };
    assert.equal(Array.from(pruned.createContext().eval(prompt)), Array.from(dense.createContext().eval(prompt, skip)), "identity halves = the dense model skipping them");
    const ref = await llamaCppGreedy(out, prompt, N);
    console.log(`    ${family} halves removed: greedy vs llama.cpp: ${assertGreedyAgree(greedy(pruned, prompt), ref, bound, `${family} halves`)}`);
  });

  test(`${family}: quantize --method gptq --type q4_0 writes a file llama.cpp runs with our greedy tokens (ties within the quantized bound excepted)`, async () => {
    const out = join(tmp, "gptq-q4_0.gguf");
    const r = runCli("quantize", file("f32"), "--method", "gptq", "--type", "q4_0", "--calib", TEXT(), "--tokens", "512", "-o", out);
    assert.is(r.status, 0, r.stderr);
    const model = load(out);
    assert.ok(model.weights.layers[0].attnOutput!.format.name === "Q4_0", "layer matrices are Q4_0");
    const prompt = teacherSequence(model.tokenizer).slice(0, 8);
    const ref = await llamaCppGreedy(out, prompt, N);
    const same = assertGreedyAgree(greedy(model, prompt), ref, FAMILY_QUANT_VS_LLAMACPP, `${family} GPTQ Q4_0`);
    console.log(`    ${family} GPTQ Q4_0: greedy vs llama.cpp: ${same}`);
  });

  test(`${family}: generate --json gives the prompt's ids (BOS first) and llama.cpp's greedy tokens`, async () => {
    const r = runCli("generate", file("f32"), "-p", "Once upon a time", "-n", "16", "--temp", "0", "--ignore-eos", "--json", "-ctk", "f32", "-ctv", "f32");
    assert.is(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const model = load(file("f32"));
    assert.equal(j.prompt_tokens, model.tokenizer.encode("Once upon a time", { addBos: true }));
    assert.is(j.prompt_tokens[0], model.tokenizer.bosId);
    const ref = await llamaCppGreedy(file("f32"), j.prompt_tokens, 16);
    assert.equal(j.tokens, ref.tokens);
    assert.is(typeof j.text, "string");
    assert.ok(j.timings.predicted_n === 16 && j.timings.prompt_n === j.prompt_tokens.length);
  });

  }

  extra?.(file, tmp);

  test.after(async () => {
    await disposeOracle();
    rmSync(tmp, { recursive: true, force: true });
  });

  test.run();
}
