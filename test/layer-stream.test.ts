// Models larger than memory: Block Influence statistics layer by layer equal the whole-model pass bit for bit;
// loads that stream (a URL's body, a Blob) give the same model as bytes in hand and refuse a truncated file; and
// commands on models that do not fit say so at once, in one line naming what they need (sparse files of the
// Llama-2-7B and -13B shapes: a header and no data, so the test costs no disk).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { closeSync, ftruncateSync, mkdtempSync, openAsBlob, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../src/index.js";
import { bytesSource, readGgufHeader } from "../src/gguf/reader.js";
import { layoutGguf } from "../src/gguf/writer.js";
import { Model } from "../src/model/model.js";
import { calibrationWindows } from "../src/data/documents.js";
import { collectLayerStats, collectLayerStatsStream, type LayerStats } from "../src/prune/stats.js";
import { resolveShape, synthModel, type SynthType } from "../src/commands/synth.js";
import { runCli } from "./support/cli.js";
import { sharedPath } from "./support/paths.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-stream-"));
const STORIES = sharedPath("data/tinystories/tinystories-validation-first1000.txt");
const DEEP = sharedPath("models/stories-deep-16L.gguf");

function sameStats(a: LayerStats, b: LayerStats, what: string): void {
  for (const key of Object.keys(a) as (keyof LayerStats)[]) {
    const x = a[key], y = b[key];
    if (typeof x === "number") { assert.is(x, y, `${what}: ${key}`); continue; }
    const xs = x as Float64Array, ys = y as Float64Array;
    for (let i = 0; i < xs.length; i++) if (!Object.is(xs[i], ys[i])) assert.unreachable(`${what}: ${key}[${i}] ${xs[i]} (layer by layer) vs ${ys[i]} (whole model)`);
  }
}

test("Block Influence statistics layer by layer equal the whole-model pass bit for bit (every pair; layers and halves skipped)", () => {
  const bytes = new Uint8Array(readFileSync(DEEP));
  const model = Model.load(bytes);
  const windows = calibrationWindows(model.tokenizer, readFileSync(STORIES, "utf8"), 1024, 512).windows;
  const file = readGgufHeader(bytes);
  for (const opts of [{}, { skipLayers: new Set([3]), skipFfn: new Set([5]), skipAttention: new Set([9]) }, { includeBos: true }]) {
    const whole = collectLayerStats(model, windows, opts);
    sameStats(collectLayerStatsStream(bytesSource(bytes), file, windows, { ...opts, pairs: true }), whole, JSON.stringify(opts));
    // without pairs: the adjacent ones, and the rest unknown rather than 0
    const adjacent = collectLayerStatsStream(bytesSource(bytes), file, windows, opts);
    const B = whole.nLayers + 1;
    for (let l = 0; l < whole.nLayers; l++) assert.is(adjacent.boundaryCos[l * B + l + 1], whole.boundaryCos[l * B + l + 1]);
    assert.ok(Number.isNaN(adjacent.boundaryCos[0 * B + 5]));
  }
});

/** a local server for one file: with its Content-Length, or chunked in small pieces without it */
async function serve(path: string, chunked: boolean): Promise<{ url: string; close: () => void }> {
  const body = readFileSync(path);
  const server = http.createServer((_req, res) => {
    if (!chunked) { res.writeHead(200, { "content-length": body.length }); res.end(body); return; }
    res.writeHead(200);
    let at = 0;
    const step = () => { if (at >= body.length) return res.end(); res.write(body.subarray(at, at + 7777)); at += 7777; setImmediate(step); };
    step();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/m.gguf`, close: () => server.close() };
}

function logitsOf(m: Model): Float32Array {
  return m.createContext({ contextSize: 32 }).eval([1, 403, 407, 261, 378], { logits: "all" });
}

test("streaming loads (a URL's body with and without Content-Length, a Blob) give the model that bytes in hand give; a truncated file is refused", async () => {
  const path = sharedPath("models/stories260K.gguf");
  const want = logitsOf(Model.load(new Uint8Array(readFileSync(path))));
  for (const chunked of [false, true]) {
    const s = await serve(path, chunked);
    try {
      assert.equal(Array.from(logitsOf(await loadModel(s.url))), Array.from(want), `URL, ${chunked ? "chunked" : "Content-Length"}`);
    } finally {
      s.close();
    }
  }
  assert.equal(Array.from(logitsOf(await loadModel(await openAsBlob(path)))), Array.from(want), "Blob");
  const cut = join(tmp, "cut.gguf");
  writeFileSync(cut, readFileSync(path).subarray(0, 1_100_000)); // past the first MiB, where the header is read
  const s = await serve(cut, true);
  try {
    await loadModel(s.url).then(() => assert.unreachable("a truncated file loaded"), (e: Error) => assert.match(e.message, /the file ends at byte 1100000, inside tensor/));
  } finally {
    s.close();
  }
});

/** A GGUF of a model shape with its header and no tensor data (a sparse file: every weight reads as 0). */
function sparse(name: string, shape: { dim: number; layers: number; heads: number; hidden: number }, type: SynthType): string {
  const { spec } = synthModel({ shape: resolveShape({ ...shape, kvHeads: shape.heads, vocab: 32000, ctx: 4096 }), type });
  const layout = layoutGguf(spec);
  const path = join(tmp, name);
  const fd = openSync(path, "w");
  writeSync(fd, layout.header);
  ftruncateSync(fd, layout.totalSize);
  closeSync(fd);
  return path;
}

const LLAMA7B = { dim: 4096, layers: 32, heads: 32, hidden: 11008 };
const LLAMA13B = { dim: 5120, layers: 40, heads: 40, hidden: 13824 };

function oneLine(args: string[], pattern: RegExp, what: string): string {
  const r = runCli(...args);
  assert.ok(r.status !== 0, `${what}: exit ${r.status}`);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.is(lines.length, 1, `${what}: stderr has ${lines.length} lines: ${r.stderr}`);
  assert.match(lines[0], pattern, `${what}: ${lines[0]}`);
  assert.not.match(lines[0], /RangeError|Invalid typed array/, what);
  return lines[0];
}

test("a model that does not fit gets one line naming what it needs and what would fit", () => {
  const q13 = sparse("13b-q4_0.gguf", LLAMA13B, "q4_0"), q7 = sparse("7b-q4_0.gguf", LLAMA7B, "q4_0");
  const f13 = sparse("13b-f16.gguf", LLAMA13B, "f16"), f7 = sparse("7b-f16.gguf", LLAMA7B, "f16");
  const out = join(tmp, "out.gguf");
  const lines = [
    oneLine(["generate", q13, "-p", "hi", "-n", "4"], /needs [\d.]+ GiB of wasm memory \(weights [\d.]+ GiB .*the weights alone need/, "13B Q4_0 generate"),
    oneLine(["generate", q7, "-p", "hi", "-n", "4", "--ctx", "4096"], /F16 KV cache of 4096 tokens 2\.00 GiB.*use --ctx \d+ or less.*--cache-type-k q8_0 --cache-type-v q8_0/, "7B Q4_0 at 4096"),
    oneLine(["generate", q7, "-p", "hi", "-n", "4", "--ctx", "4096", "-ctk", "f32", "-ctv", "f32"], /F32 KV cache of 4096 tokens 4\.00 GiB.*use --ctx \d+ or less/, "7B Q4_0 at 4096, F32 cache"),
    oneLine(["ppl", q7, "-f", STORIES, "--ctx", "2048"], /use --ctx \d+ or less/, "7B Q4_0 ppl"),
    oneLine(["quantize", f13, "--type", "q4_0", "--method", "gptq", "--calib", STORIES, "-o", out], /widest site \(13824 inputs.*fewer calibration tokens cannot help/, "13B F16 GPTQ"),
    oneLine(["quantize", f7, "--type", "q4_0", "--method", "gptq", "--calib", STORIES, "--tokens", "65536", "-o", out], /residual streams of 65536 tokens.*use --tokens \d+ or fewer/, "7B F16 GPTQ with 65536 tokens"),
  ];
  for (const l of lines) console.log(`    ${l.slice(0, 160)}…`);
});

test.after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
