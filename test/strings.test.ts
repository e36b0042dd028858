// Compact string arrays (gguf/strings.ts) and the text -> id index over them (tokenizer/table.ts): they must answer
// exactly as the JS strings and Map<string, number> they replace, including the awkward inputs (invalid UTF-8,
// lone surrogates, empty and duplicate items, astral characters).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { GgufStringArray } from "../src/gguf/strings.js";
import { GgufType, type GgufArray } from "../src/gguf/types.js";
import { readGgufHeader } from "../src/gguf/reader.js";
import { writeGgufBytes } from "../src/gguf/writer.js";
import { isWellFormedUtf8, normalizeStrings, TextIndex } from "../src/tokenizer/table.js";
import { tokenizerFromGguf } from "../src/tokenizer/index.js";

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const SAMPLES = ["", "a", "▁the", "é", "世界", "😀x", "\uFEFF", "<0x0A>", "a b", "ab", "ba", " ", "\u2581\u2581", "𝔘𝔫𝔦"];

/** GgufStringArray straight from raw byte items (what a file may hold), not through TextEncoder */
function fromBytes(items: number[][]): GgufStringArray {
  const offsets = new Uint32Array(items.length + 1);
  const bytes = new Uint8Array(items.reduce((n, b) => n + b.length, 0));
  let o = 0;
  items.forEach((b, i) => { bytes.set(b, o); o += b.length; offsets[i + 1] = o; });
  return new GgufStringArray(bytes, offsets);
}

test("GgufStringArray: get, bytesOf, byteLength, iteration and range checks", () => {
  const a = GgufStringArray.from(SAMPLES);
  assert.is(a.length, SAMPLES.length);
  assert.equal(a.toArray(), SAMPLES);
  assert.equal([...a], SAMPLES);
  SAMPLES.forEach((s, i) => {
    assert.is(a.get(i), s);
    assert.equal(Array.from(a.bytesOf(i)), Array.from(new TextEncoder().encode(s)));
    assert.is(a.byteLength(i), new TextEncoder().encode(s).length);
  });
  assert.throws(() => a.get(-1), /out of range/);
  assert.throws(() => a.get(SAMPLES.length), /out of range/);
});

test("the reader returns string arrays compactly and the writer writes them back byte for byte", () => {
  const kv = [{ key: "s", type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: SAMPLES } }];
  const bytes = writeGgufBytes({ kv, tensors: [] }, () => new Uint8Array(0));
  const read = readGgufHeader(bytes).kv.get("s")!.value as GgufArray & { items: GgufStringArray };
  assert.ok(read.items instanceof GgufStringArray);
  assert.equal(read.items.toArray(), SAMPLES);
  const again = writeGgufBytes({ kv: [{ key: "s", type: GgufType.ARRAY, value: read }], tensors: [] }, () => new Uint8Array(0));
  assert.equal(Array.from(again), Array.from(bytes));
});

test("isWellFormedUtf8 agrees with a fatal TextDecoder", () => {
  const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const cases = [[0x61], [0xc3, 0xa9], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0xa0, 0x80], [0xed, 0xa0, 0x80],
    [0xed, 0x9f, 0xbf], [0xf0, 0x8f, 0xbf, 0xbf], [0xf0, 0x90, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80], [0xe4, 0xb8], [0x80], [0xff], [0xe2, 0x96, 0x81, 0x61], [0xc3], [0x61, 0xf0, 0x9f, 0x98]];
  const r = rngBytes(7);
  for (let k = 0; k < 2000; k++) cases.push(Array.from({ length: 1 + (r() % 6) }, () => [0x41, 0x80, 0xbf, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xa0, 0x90][r() % 12]));
  for (const c of cases) {
    let ok = true;
    try { fatal.decode(new Uint8Array(c)); } catch { ok = false; }
    assert.is(isWellFormedUtf8(new Uint8Array(c), 0, c.length), ok, c.map((x) => x.toString(16)).join(" "));
  }
});

test("TextIndex answers as a Map keyed by the decoded texts, for whole strings and slices", () => {
  // raw items: valid, invalid UTF-8 (decodes to U+FFFD), and an item equal to what the invalid one decodes to
  const raw = [[0x61], [0xe2, 0x96, 0x81, 0x61], [0xf0, 0x9f, 0x98, 0x80], [0xff, 0x61], [0xc3, 0xa9], [0x61, 0x62]];
  const strings = normalizeStrings(fromBytes(raw));
  const map = new Map<string, number>();
  raw.forEach((b, i) => { const s = decoder.decode(new Uint8Array(b)); if (!map.has(s)) map.set(s, i); });
  const index = new TextIndex(strings);
  const probes = ["a", "▁a", "😀", "\uFFFDa", "é", "ab", "b", "", "\uD83D", "\uDE00", "a\uD83D", "▁", "aa", "\u00e9"];
  for (const p of probes) assert.is(index.get(p), map.get(p), JSON.stringify(p));
  // slices: get(s, start, end) === get(s.slice(start, end))
  const text = "x▁a😀ab\uD83Dé";
  for (let a = 0; a <= text.length; a++) {
    for (let b = a; b <= text.length; b++) assert.is(index.get(text, a, b), map.get(text.slice(a, b)), `${a}..${b}`);
  }
});

test("TextIndex: first id wins on duplicates unless onDuplicate throws; skip leaves items out", () => {
  const s = GgufStringArray.from(["x", "y", "x", "z"]);
  assert.is(new TextIndex(s).get("x"), 0);
  assert.throws(() => new TextIndex(s, { onDuplicate: (a, b) => { throw new Error(`dup ${a} ${b}`); } }), /dup 0 2/);
  assert.is(new TextIndex(s, { skip: (i) => i === 0 }).get("x"), 2);
});

test("vocabulary: an empty token becomes [EMPTY_<id>] and a duplicate token is refused", () => {
  const kv = (tokens: string[]) => new Map([
    ["tokenizer.ggml.model", { key: "tokenizer.ggml.model", type: GgufType.STRING, value: "llama" }],
    ["tokenizer.ggml.tokens", { key: "tokenizer.ggml.tokens", type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: tokens } }],
  ]);
  const tok = tokenizerFromGguf(kv(["<unk>", "<s>", "</s>", "", "▁a"]));
  assert.is(tok.tokenText(3), "[EMPTY_3]");
  assert.is(tok.vocab.tokenToId.get("[EMPTY_3]"), 3);
  assert.equal(tok.encode("a", { addBos: false }), [4]);
  assert.throws(() => tokenizerFromGguf(kv(["<unk>", "<s>", "</s>", "▁a", "▁a"])), /duplicate token.*"▁a" has ids 3 and 4/);
});

function rngBytes(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0; return s >>> 8; };
}

test.run();
