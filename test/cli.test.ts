// The command line as a user meets it: generate, info, quantize, ppl; seeded sampling repeats; errors are one line
// with a non-zero exit and no stack trace. (The sampler's own rules: sampler.test.ts.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../src/model/model.js";
import { RefLlama, refPerplexity } from "./support/ref-forward.js";
import { PPL_VS_F64 } from "./tolerances.js";
import { sharedPath } from "./support/paths.js";
import { runCli } from "./support/cli.js";

const MODEL = sharedPath("models/stories260K.gguf");
const TEXT = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-cli-"));

const cli = runCli;

test("generate --temp 0 streams llama.cpp's greedy story, then timings and memory on stderr", () => {
  const r = cli("generate", MODEL, "-p", "Once upon a time", "-n", "64", "--temp", "0");
  assert.is(r.status, 0, r.stderr);
  // the first 48 tokens also match an independent float64 reference (../shared/models/PROVENANCE.md)
  assert.ok(r.stdout.startsWith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said"), r.stdout);
  assert.match(r.stderr, /prefill: 5 tokens in [\d.]+ ms \([\d.]+ tok\/s\)/);
  assert.match(r.stderr, /decode: 64 tokens in [\d.]+ ms \([\d.]+ tok\/s\)/);
  assert.match(r.stderr, /peak RSS [\d.]+ MiB/);
});

test("a seed makes sampling repeat; another seed changes it", () => {
  const run = (seed: string) => cli("generate", MODEL, "-p", "Once upon a time", "-n", "40", "--temp", "1", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", seed).stdout;
  const a = run("7");
  assert.is(run("7"), a);
  assert.is.not(run("8"), a);
});

test("info describes the model and the memory it needs", () => {
  const r = cli("info", MODEL);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /architecture\s+llama/);
  assert.match(r.stdout, /layers\s+5\s+dim 64\s+ffn 172\s+heads 8 \(kv 4, head size 8\)/);
  assert.match(r.stdout, /tensor types\s+F32: 48/);
  assert.match(r.stdout, /memory\s+[\d.]+ MiB/);
  const j = JSON.parse(cli("info", MODEL, "--json").stdout);
  assert.is(j.config.nLayers, 5);
  assert.is(j.tensors, 48);
});

test("ppl ends with a perplexity line; --json makes the last line the details", () => {
  // an F32 cache: the comparison with the float64 forward is at F32 tightness
  const plain = cli("ppl", MODEL, "--file", TEXT, "--ctx", "128", "--chunks", "4", "-ctk", "f32", "-ctv", "f32");
  assert.is(plain.status, 0, plain.stderr);
  const lines = plain.stdout.trim().split("\n");
  const m = /^perplexity: (\d+\.\d+)$/.exec(lines[lines.length - 1]);
  assert.ok(m, lines[lines.length - 1]);
  const r = cli("ppl", MODEL, "--file", TEXT, "--ctx", "128", "--chunks", "4", "--json", "--cache-type-k", "f32", "--cache-type-v", "f32");
  assert.is(r.status, 0, r.stderr);
  const jl = r.stdout.trim().split("\n");
  const j = JSON.parse(jl[jl.length - 1]);
  assert.is(j.chunks, 4);
  assert.is(j.scoredTokens, 4 * 63);
  assert.is(Number(m![1]), Number(j.perplexity.toFixed(4)));
  // the float64 forward on the same tokens, scored by llama-perplexity's rules (windows of 128, BOS first, second half)
  const bytes = new Uint8Array(readFileSync(MODEL));
  const tokenizer = Model.load(bytes).tokenizer;
  const want = refPerplexity(RefLlama.fromGguf(bytes), tokenizer.encode(readFileSync(TEXT, "utf8"), { addBos: true }), 128, tokenizer.bosId, 4);
  assert.is(want.scored, j.scoredTokens);
  assert.ok(Math.abs(j.perplexity - want.perplexity) <= PPL_VS_F64 * want.perplexity, `perplexity ${j.perplexity}, float64 ${want.perplexity}`);
});

test("quantize keeps rows that do not hold whole blocks and says so", () => {
  const out = join(tmp, "q4.gguf");
  const r = cli("quantize", MODEL, "--type", "q4_0", "-o", out);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /blk\.0\.ffn_down\.weight: row length 172 is not a multiple of Q4_0's block size 32; kept as F32/);
  const info = JSON.parse(cli("info", out, "--json").stdout);
  assert.is(info.tensorTypes.Q4_0.count, 32);
  assert.is(info.tensorTypes.F32.count, 16);
});

function assertOneLineError(r: ReturnType<typeof cli>, pattern: RegExp) {
  assert.is.not(r.status, 0);
  const lines = r.stderr.trim().split("\n");
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0], /^edgeprune: error: /);
  assert.match(lines[0], pattern);
  assert.not.match(r.stderr, /\n\s+at /);
}

test("errors are one clear line and a non-zero exit", () => {
  const notGguf = join(tmp, "not.gguf");
  writeFileSync(notGguf, "hello, this is text");
  assertOneLineError(cli("generate", join(tmp, "missing.gguf"), "-p", "x"), /model .*missing\.gguf does not exist/);
  assertOneLineError(cli("generate", notGguf, "-p", "x"), /not\.gguf: invalid GGUF at byte 0 \(magic\)/);
  assertOneLineError(cli("generate", MODEL, "-p", "x", "-n", "abc"), /-n must be an integer/);
  assertOneLineError(cli("generate", MODEL, "-p", "x", "--top-p", "2"), /--top-p must be greater than 0 and at most 1, got 2/);
  assertOneLineError(cli("info", sharedPath("models/vocab/ggml-vocab-gpt-2.gguf"), "--nope"), /unknown option/);
  const out = join(tmp, "never.gguf");
  assertOneLineError(cli("quantize", MODEL, "--type", "q3_k", "-o", out), /q3_k.*(invalid|Allowed choices)/i);
  assert.not.ok(existsSync(out));
  assertOneLineError(cli("ppl", MODEL, "--file", join(tmp, "none.txt")), /text file .* does not exist/);
  assertOneLineError(cli("generate", MODEL, "-p", "Once", "-n", "4000", "--ctx", "64"), /exceed the context size 64/);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));
test.run();
