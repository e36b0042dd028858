// Tokenizer conformance against llama.cpp's own vocab fixtures (test-tokenizer-0: add_special = false,
// parse_special = false) plus round trips, special-token parsing and the stories260K model's vocab.
import { readFileSync } from "node:fs";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readGgufHeader } from "../src/gguf/reader.js";
import { GgufTokenizer, tokenizerFromGguf } from "../src/tokenizer/index.js";
import { preTokenizer } from "../src/tokenizer/pre.js";
import { codepoints, fromCodepoints } from "../src/tokenizer/unicode.js";
import { sharedPath } from "./support/paths.js";

const SEP = "\n__ggml_vocab_test__\n";

function load(file: string): GgufTokenizer {
  const path = sharedPath("models", ...file.split("/"));
  return tokenizerFromGguf(readGgufHeader(new Uint8Array(readFileSync(path)), path).kv);
}

/** the .inp/.out pairs, split exactly as test-tokenizer-0.cpp does */
function cases(vocabFile: string): { text: string; ids: number[] }[] {
  const raw = readFileSync(sharedPath("models", "vocab", vocabFile + ".inp"), "utf8");
  const inputs: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(SEP, pos);
    if (next === -1) {
      inputs.push(raw.slice(pos));
      break;
    }
    inputs.push(raw.slice(pos, next));
    pos = next + SEP.length;
  }
  const outLines = readFileSync(sharedPath("models", "vocab", vocabFile + ".out"), "utf8").split("\n");
  if (outLines[outLines.length - 1] === "") outLines.pop();
  assert.is(inputs.length, outLines.length, `${vocabFile}: .inp and .out case counts differ`);
  return inputs.map((text, i) => ({
    text,
    ids: outLines[i].trim() === "" ? [] : outLines[i].trim().split(" ").map(Number),
  }));
}

function conformance(vocabFile: string, tok: GgufTokenizer): void {
  const all = cases(vocabFile);
  assert.is(all.length, 46);
  const failures: string[] = [];
  for (const c of all) {
    const got = tok.encode(c.text, { addBos: false, parseSpecial: false });
    if (got.join(" ") !== c.ids.join(" ")) {
      failures.push(`${JSON.stringify(c.text)}\n  expected ${c.ids.join(" ")}\n  got      ${got.join(" ")}`);
    }
  }
  assert.is(failures.length, 0, `${vocabFile}: ${failures.length}/${all.length} cases differ:\n${failures.join("\n")}`);
}

let spm: GgufTokenizer;
let gpt2: GgufTokenizer;

test.before(() => {
  spm = load("vocab/ggml-vocab-llama-spm.gguf");
  gpt2 = load("vocab/ggml-vocab-gpt-2.gguf");
});

test("llama-spm: metadata", () => {
  assert.is(spm.model, "llama");
  assert.is(spm.vocabSize, 32000);
  assert.is(spm.bosId, 1);
  assert.is(spm.eosId, 2);
  assert.is(spm.addBos, true);
  assert.ok(spm.isEog(2));
  assert.not.ok(spm.isEog(1));
  assert.is(spm.tokenText(1), "<s>");
});

test("llama-spm: 46/46 fixture cases match llama.cpp", () => {
  conformance("ggml-vocab-llama-spm.gguf", spm);
});

test("gpt-2: 46/46 fixture cases match llama.cpp", () => {
  conformance("ggml-vocab-gpt-2.gguf", gpt2);
});

test("llama-spm: decode(encode(x)) === x (leading prefix space dropped as llama.cpp does)", () => {
  for (const c of cases("ggml-vocab-llama-spm.gguf")) {
    assert.is(spm.decode(spm.encode(c.text, { addBos: false })), c.text);
    assert.is(spm.decode(c.ids), c.text);
  }
});

test("gpt-2: decode round trip (exact without clean-up; llama.cpp's clean_spaces by default)", () => {
  for (const c of cases("ggml-vocab-gpt-2.gguf")) {
    const ids = gpt2.encode(c.text, { addBos: false });
    assert.is(gpt2.decode(ids, { cleanSpaces: false }), c.text);
    const cleaned = c.text
      .replace(/ ([?!.,])/g, "$1");
    // the fixtures contain no " ' " or " 's"-style sequences, so pass 1 is the only one that applies
    assert.is(gpt2.decode(ids), cleaned);
  }
});

test("tokenBytes streams back to the same text", () => {
  for (const tok of [spm, gpt2]) {
    const text = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～";
    const ids = tok.encode(text, { addBos: false });
    const dec = new TextDecoder("utf-8");
    let s = "";
    for (const id of ids) s += dec.decode(tok.tokenBytes(id), { stream: true });
    s += dec.decode();
    assert.is(tok.model === "llama" ? s.slice(1) : s, text);
  }
});

test("llama-spm: BOS, control tokens and parseSpecial", () => {
  assert.equal(spm.encode(""), [1]);
  assert.equal(spm.encode("", { addBos: false }), []);
  const plain = spm.encode("Hello</s>", { addBos: false });
  assert.not.ok(plain.includes(2), "control text is not parsed by default");
  const parsed = spm.encode("<s>Hello</s> world", { addBos: false, parseSpecial: true });
  const hello = spm.encode("Hello", { addBos: false });
  const world = spm.encode(" world", { addBos: false }); // "▁▁world": the prefix space is added after a special token too
  assert.equal(parsed, [1, ...hello, 2, ...world]);
  assert.is(spm.tokenBytes(2).length, 0);
  assert.is(spm.decode([1, 2]), "");
  assert.is(spm.decode([2], { special: true }), "</s>");
  // byte fallback: a character not in the vocab becomes its UTF-8 bytes as <0xNN> tokens
  const ids = spm.encode("\u{1F999}", { addBos: false });
  assert.ok(ids.every((id) => id === 29871 || spm.tokenText(id).startsWith("<0x")), ids.join(" "));
  assert.is(spm.decode(ids), "\u{1F999}");
});

test("gpt-2: special token <|endoftext|>", () => {
  assert.is(gpt2.model, "gpt2");
  assert.is(gpt2.vocabSize, 50257);
  assert.is(gpt2.addBos, false);
  assert.ok(gpt2.isEog(50256));
  assert.equal(gpt2.encode("a<|endoftext|>b", { parseSpecial: true }), [64, 50256, 65]);
  assert.not.ok(gpt2.encode("a<|endoftext|>b").includes(50256));
});

test("stories260K: encode with BOS", () => {
  const tok = load("stories260K.gguf");
  assert.equal(tok.encode("Once upon a time"), [1, 403, 407, 261, 378]);
  assert.is(tok.decode([1, 403, 407, 261, 378]), " Once upon a time"); // llama.cpp keeps the space after a BOS
  assert.is(tok.decode([403, 407, 261, 378]), "Once upon a time");
});

/** FNV-1a over token ids, to pin a long tokenization without storing it */
function fnv1a(ids: number[]): string {
  let h = 0x811c9dc5;
  for (const id of ids) {
    h ^= id;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16);
}

test("WikiText-2 test split (1.3 MB): same ids as llama.cpp (the time is printed, not asserted)", () => {
  // reference counts and hashes: llama.cpp via node-llama-cpp 3.21.1, llama_tokenize(add_special=false, parse_special=false)
  const text = readFileSync(sharedPath("data", "wikitext-2-raw", "wiki.test.raw"), "utf8");
  for (const [tok, count, hash] of [[spm, 335687, "e954d4f3"], [gpt2, 286221, "b7db4650"]] as const) {
    const t0 = performance.now();
    const ids = tok.encode(text, { addBos: false });
    const ms = performance.now() - t0;
    assert.is(ids.length, count, `${tok.model}: token count`);
    assert.is(fnv1a(ids), hash, `${tok.model}: ids differ from llama.cpp`);
    console.log(`    ${tok.model}: ${ids.length} ids in ${ms.toFixed(0)} ms`);
    assert.is(tok.decode(ids, { cleanSpaces: false }), text);
  }
});

test("pre-tokenizers: smollm/starcoder split every digit, qwen2 single digits, llama3 runs of three", () => {
  const pieces = (name: string, text: string) => {
    const cpts = codepoints(text);
    let offsets = [cpts.length];
    for (const split of preTokenizer(name)!.split) offsets = split(cpts, offsets);
    let s = 0;
    return offsets.map((n) => { const p = fromCodepoints(cpts, s, s + n); s += n; return p; });
  };
  assert.equal(pieces("smollm", "v 2024 is\u0663x"), ["v", " ", "2", "0", "2", "4", " is", "\u0663", "x"]);
  assert.equal(pieces("qwen2", "v 2024 is"), ["v", " ", "2", "0", "2", "4", " is"]);
  assert.equal(pieces("llama-bpe", "v 2024 is"), ["v", " ", "202", "4", " is"]);
  assert.is(preTokenizer("smollm")!.cleanSpaces, false);
  assert.is(preTokenizer("llama-bpe")!.ignoreMerges, true);
  assert.is(preTokenizer("no-such-pre"), undefined);
});

test("unsupported tokenizer model names the key", () => {
  const kv = new Map([["tokenizer.ggml.model", { key: "tokenizer.ggml.model", type: 8, value: "bert" }]]);
  assert.throws(() => tokenizerFromGguf(kv as never), /tokenizer\.ggml\.model/);
  assert.throws(() => tokenizerFromGguf(new Map()), /tokenizer\.ggml\.model/);
});

test.run();
