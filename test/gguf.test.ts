// GGUF reader and writer: byte-identical round trips of every shared file, the refusals the reader owes, and a
// fuzz run over truncations and byte flips that must end in a clear error or a valid parse.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { readGgufHeader, GgufError, GgufType, bytesSource, type ByteSource } from "../src/gguf/reader.js";
import { specFromFile, writeGgufBytes, layoutGguf } from "../src/gguf/writer.js";
import { metaNumber, metaString } from "../src/gguf/metadata.js";
import { sharedPath } from "./support/paths.js";
import { Model } from "../src/model/model.js";
import { rng as mulberry32 } from "./support/util.js";

const FILES = [
  "models/stories260K.gguf",
  "models/stories-deep-16L.gguf",
  "models/vocab/ggml-vocab-llama-spm.gguf",
  "models/vocab/ggml-vocab-gpt-2.gguf",
];

function load(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(sharedPath(rel)));
}

function roundTrip(bytes: Uint8Array): Uint8Array {
  const f = readGgufHeader(bytes);
  return writeGgufBytes(specFromFile(f), (i) => {
    const t = f.tensors[i];
    return bytes.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + t.byteSize);
  });
}

for (const rel of FILES) {
  test(`round trip is byte-identical: ${rel}`, () => {
    const bytes = load(rel);
    const out = roundTrip(bytes);
    assert.is(out.length, bytes.length);
    assert.ok(Buffer.from(out).equals(Buffer.from(bytes)), "bytes differ");
  });
}

test("stories260K header matches its provenance dump", () => {
  const f = readGgufHeader(load("models/stories260K.gguf"), "stories260K.gguf");
  assert.is(f.version, 3);
  assert.is(f.kv.size, 19);
  assert.is(f.tensors.length, 48);
  assert.is(f.dataOffset, 14176);
  assert.is(metaString(f.kv, "general.architecture"), "llama");
  assert.is(metaNumber(f.kv, "llama.feed_forward_length"), 172);
  const down = f.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!;
  assert.equal(down.dims, [172, 64]);
  assert.equal(down.shape, [64, 172]);
  assert.is(down.offset, 355840);
  assert.is(down.format.name, "F32");
});

test("a Node Buffer (whose slice() is a view) reads the same as a plain Uint8Array", () => {
  const plain = load("models/stories260K.gguf");
  const fromBuffer = readGgufHeader(readFileSync(sharedPath("models/stories260K.gguf")));
  const fromPlain = readGgufHeader(plain);
  for (const key of ["tokenizer.ggml.token_type", "tokenizer.ggml.scores", "tokenizer.ggml.tokens"]) {
    const a = (fromBuffer.kv.get(key)!.value as { items: ArrayLike<unknown> }).items;
    const b = (fromPlain.kv.get(key)!.value as { items: ArrayLike<unknown> }).items;
    assert.equal(Array.from(a), Array.from(b), key);
  }
});

test("nested arrays, every scalar type and 64-bit values survive write → read", () => {
  const kv = [
    { key: "a.u8", type: GgufType.UINT8, value: 255 },
    { key: "a.i8", type: GgufType.INT8, value: -128 },
    { key: "a.u16", type: GgufType.UINT16, value: 65535 },
    { key: "a.i16", type: GgufType.INT16, value: -32768 },
    { key: "a.u32", type: GgufType.UINT32, value: 4294967295 },
    { key: "a.i32", type: GgufType.INT32, value: -2147483648 },
    { key: "a.f32", type: GgufType.FLOAT32, value: 1.5 },
    { key: "a.f64", type: GgufType.FLOAT64, value: Math.PI },
    { key: "a.u64", type: GgufType.UINT64, value: 18446744073709551615n },
    { key: "a.i64", type: GgufType.INT64, value: -9223372036854775808n },
    { key: "a.bool", type: GgufType.BOOL, value: true },
    { key: "a.str", type: GgufType.STRING, value: "héllo ▁ 世界" },
    {
      key: "a.nested", type: GgufType.ARRAY, value: {
        itemType: GgufType.ARRAY, items: [
          { itemType: GgufType.STRING, items: ["x", "", "yz"] },
          { itemType: GgufType.INT32, items: new Int32Array([1, -2, 3]) },
          { itemType: GgufType.ARRAY, items: [{ itemType: GgufType.BOOL, items: [true, false] }] },
        ],
      },
    },
  ];
  const bytes = writeGgufBytes({ version: 3, kv, tensors: [{ name: "w", dims: [64, 2], type: 8 }] }, () => new Uint8Array(2 * 2 * 34));
  const f = readGgufHeader(bytes);
  for (const e of kv) {
    const got = f.kv.get(e.key)!;
    assert.is(got.type, e.type, e.key);
    if (e.type !== GgufType.ARRAY) assert.equal(got.value, e.value, e.key);
  }
  const nested = f.kv.get("a.nested")!.value as any;
  assert.equal(nested.items[0].items.toArray(), ["x", "", "yz"]);
  assert.equal(Array.from(nested.items[1].items), [1, -2, 3]);
  assert.equal(nested.items[2].items[0].items, [true, false]);
  assert.ok(Buffer.from(roundTrip(bytes)).equals(Buffer.from(bytes)));
});

/** A tiny valid file to corrupt on purpose. */
function tiny(): Uint8Array {
  return writeGgufBytes({
    kv: [{ key: "general.architecture", type: GgufType.STRING, value: "llama" }],
    tensors: [{ name: "a", dims: [32], type: 0 }, { name: "b", dims: [32, 2], type: 2 }],
  }, (i) => new Uint8Array(i === 0 ? 128 : 36));
}

function expectError(bytes: Uint8Array, pattern: RegExp) {
  try {
    readGgufHeader(bytes, "bad.gguf");
  } catch (e) {
    assert.instance(e, GgufError);
    assert.match((e as Error).message, /^bad\.gguf: invalid GGUF at byte \d+ \(/);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected an error matching ${pattern}`);
}

function patch(bytes: Uint8Array, at: number, write: (v: DataView) => void): Uint8Array {
  const b = bytes.slice();
  write(new DataView(b.buffer, at));
  return b;
}

test("refusals name the offset and the field", () => {
  const ok = tiny();
  readGgufHeader(ok); // valid
  expectError(patch(ok, 0, (v) => v.setUint32(0, 0x12345678, true)), /magic.*not a GGUF file/);
  expectError(patch(ok, 4, (v) => v.setUint32(0, 7, true)), /version.*unsupported GGUF version 7/);
  expectError(patch(ok, 4, (v) => v.setUint32(0, 3, false)), /big-endian/);
  expectError(patch(ok, 8, (v) => v.setBigUint64(0, 1n << 40n, true)), /tensor_count.*cannot fit/);
  expectError(patch(ok, 16, (v) => v.setBigUint64(0, 1n << 40n, true)), /metadata_kv_count.*cannot fit/);
  // the first key's length
  expectError(patch(ok, 24, (v) => v.setBigUint64(0, 1n << 50n, true)), /metadata key #0 length.*cannot fit/);
  // tensor "b" is the last tensor info: …, dims (2 × u64), type (u32), offset (u64)
  const headerEnd = exactInfoEnd(ok);
  expectError(ok.subarray(0, headerEnd - 4), /tensor "b" offset.*needs 8 bytes but the file ends after 4 more/);
  expectError(patch(ok, headerEnd - 12, (v) => v.setUint32(0, 99, true)), /tensor "b" type.*unknown ggml tensor type 99/);
  expectError(patch(ok, headerEnd - 8, (v) => v.setBigUint64(0, 160n, true)), /tensor "b".*past the end/);
  expectError(patch(ok, headerEnd - 8, (v) => v.setBigUint64(0, 64n, true)), /tensor "b" data.*overlaps tensor "a"/);
  expectError(patch(ok, headerEnd - 8, (v) => v.setBigUint64(0, 129n, true)), /not a multiple of the alignment/);
  // dims of "b": 32 × 2 → 2^62 × 2^62 overflows
  expectError(patch(ok, headerEnd - 28, (v) => { v.setBigUint64(0, 1n << 52n, true); v.setBigUint64(8, 1n << 52n, true); }), /overflows/);
  expectError(patch(ok, headerEnd - 28, (v) => v.setBigUint64(0, 33n, true)), /not a multiple of Q4_0's block size 32/);
  expectError(patch(ok, headerEnd - 32, (v) => v.setUint32(0, 9, true)), /n_dims.*must be 1\.\.4/);
});

/** Offset where the tiny file's tensor infos end (before alignment padding). */
function exactInfoEnd(bytes: Uint8Array): number {
  // magic, version, counts, one kv, two tensor infos: walk them
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  let p = 24;
  const klen = Number(v.getBigUint64(p, true)); p += 8 + klen + 4;
  const slen = Number(v.getBigUint64(p, true)); p += 8 + slen;
  for (let t = 0; t < 2; t++) {
    const nlen = Number(v.getBigUint64(p, true)); p += 8 + nlen;
    const nd = v.getUint32(p, true); p += 4 + nd * 8 + 4 + 8;
  }
  return p;
}

/** A source that counts how many bytes were requested, to catch reads (and so allocations) past the file. */
function countingSource(bytes: Uint8Array): ByteSource & { requested: number } {
  const s = bytesSource(bytes);
  const out = { size: s.size, requested: 0, read(o: number, l: number) { out.requested += l; return s.read(o, l); } };
  return out;
}

/** Errors the loader may raise on a file that parses but is not a usable model: they name the file. */
const CLEAR_MODEL_ERROR = /^fuzz\.gguf: |^GGUF metadata key "/;

function outcome(bytes: Uint8Array, load = false): "ok" | "error" {
  const src = countingSource(bytes);
  const t0 = performance.now();
  try {
    readGgufHeader(src, "fuzz.gguf");
    if (load) Model.load(bytes, { name: "fuzz.gguf", contextSize: 64 });
    return "ok";
  } catch (e) {
    if (e instanceof GgufError) return "error";
    if (load && e instanceof Error && e.constructor === Error && CLEAR_MODEL_ERROR.test(e.message)) return "error";
    throw new Error(`crash, not a clear error: ${(e as Error).stack}`);
  } finally {
    const ms = performance.now() - t0;
    if (ms > 2000) throw new Error(`parse took ${ms} ms: a hang`);
    if (src.requested > bytes.length + (1 << 20)) throw new Error(`requested ${src.requested} bytes from a ${bytes.length}-byte file`);
  }
}

test("fuzz: every truncation of stories260K's header and tensor-info region ends in a clear error", () => {
  const bytes = load("models/stories260K.gguf");
  const f = readGgufHeader(bytes);
  const heapBefore = process.memoryUsage().arrayBuffers;
  let errors = 0;
  for (let cut = 0; cut < f.dataOffset; cut++) {
    if (outcome(bytes.subarray(0, cut)) === "error") errors++;
  }
  assert.is(errors, f.dataOffset, "every truncated header must be refused");
  assert.ok(process.memoryUsage().arrayBuffers - heapBefore < 256 << 20);
});

test("fuzz: random byte flips in the header end in a clear error or a valid load", () => {
  const bytes = load("models/stories260K.gguf");
  const f = readGgufHeader(bytes);
  const rand = mulberry32(1234);
  const counts = { ok: 0, error: 0 };
  for (let i = 0; i < 4000; i++) {
    const b = bytes.slice();
    const flips = 1 + Math.floor(rand() * 4);
    for (let j = 0; j < flips; j++) {
      // bias towards the counts and the tensor-info region, where lengths and offsets live
      const at = rand() < 0.3 ? Math.floor(rand() * 32) : Math.floor(rand() * f.dataOffset);
      b[at] = rand() < 0.5 ? b[at] ^ (1 << Math.floor(rand() * 8)) : Math.floor(rand() * 256);
    }
    counts[outcome(b, true)]++;
  }
  assert.ok(counts.error > 100, `flips should break many parses (${JSON.stringify(counts)})`);
  assert.ok(counts.ok > 100, `flips in string bytes should still parse (${JSON.stringify(counts)})`);
});

test.run();
