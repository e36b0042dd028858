// `edgeprune pull` (the real CLI) against a static HTTP server on 127.0.0.1 that serves ../shared/models with
// Range support and can cut a transfer short or corrupt a byte: a download, a resumed one, a corrupted one rejected
// with nothing left behind, a folder mirror, and refusals.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "./server-support.js";
import { sharedPath } from "./support/paths.js";

const MODELS = sharedPath("models");
const FILE = "stories260K.gguf";
const SHA = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
const bytes = fs.readFileSync(path.join(MODELS, FILE));

/** How the next responses misbehave. */
const mode = { cutAfter: 0, corrupt: false };
const seen: { url: string; range?: string }[] = [];
let base = "";
const tmpRoot = fs.mkdtempSync(path.join(tmpdir(), "edgeprune-pull-"));

const server = http.createServer((req, res) => {
  seen.push({ url: req.url ?? "", range: req.headers.range });
  const name = decodeURIComponent((req.url ?? "/").slice(1));
  const file = path.join(MODELS, path.basename(name));
  if (!name || !fs.existsSync(file) || !fs.statSync(file).isFile()) { res.writeHead(404).end(); return; }
  let body = fs.readFileSync(file);
  if (mode.corrupt) { body = Buffer.from(body); body[body.length >> 1] ^= 0xff; }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  const start = m ? Number(m[1]) : 0;
  if (start >= body.length) { res.writeHead(416, { "Content-Range": `bytes */${body.length}` }).end(); return; }
  const part = body.subarray(start);
  res.writeHead(m ? 206 : 200, {
    "Content-Length": part.length, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
    ...(m ? { "Content-Range": `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
  });
  if (mode.cutAfter > 0) {
    const n = mode.cutAfter;
    mode.cutAfter = 0;
    // send some bytes, then drop the connection as a flaky network would
    res.write(part.subarray(0, n), () => setTimeout(() => res.socket?.destroy(), 50));
    return;
  }
  res.end(part);
});

test.before(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
});
test.after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

function freshCache(label: string): string {
  return fs.mkdtempSync(path.join(tmpRoot, `${label}-`));
}

const pull = (args: string[], cache: string, mirror: string | undefined = base) =>
  runCli(["pull", ...args], { EDGEPRUNE_CACHE: cache, EDGEPRUNE_MIRROR: mirror ?? "" });

const sha = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");

test("pull NAME downloads from the mirror, verifies and stores it; a second pull uses the cache", async () => {
  const cache = freshCache("plain");
  seen.length = 0;
  const r = await pull(["stories260K"], cache);
  assert.is(r.code, 0, r.stderr);
  const stored = path.join(cache, FILE);
  assert.is(r.stdout.trim(), stored);
  assert.is(sha(stored), SHA);
  assert.equal(fs.readdirSync(cache), [FILE]);
  assert.match(r.stderr, /verified/);
  assert.equal(seen.map((s) => s.url), [`/${FILE}`]);

  const again = await pull(["stories260K"], cache);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stderr, /already cached/);
  assert.is(seen.length, 1, "no second request");
});

test("an interrupted download is resumed with a Range request", async () => {
  const cache = freshCache("resume");
  seen.length = 0;
  mode.cutAfter = 400_000;
  const first = await pull(["stories260K"], cache);
  assert.is.not(first.code, 0);
  assert.match(first.stderr, /run the same pull again to resume/);
  const part = path.join(cache, `${FILE}.part`);
  const have = fs.statSync(part).size;
  assert.ok(have > 0 && have < bytes.length, `part file has ${have} bytes`);
  assert.not.ok(fs.existsSync(path.join(cache, FILE)));

  const second = await pull(["stories260K"], cache);
  assert.is(second.code, 0, second.stderr);
  assert.is(seen[1].range, `bytes=${have}-`);
  assert.match(second.stderr, new RegExp(`resumed at byte ${have}`));
  assert.is(sha(path.join(cache, FILE)), SHA);
  assert.equal(fs.readdirSync(cache), [FILE]);
});

test("a corrupted download is rejected by its sha256 and nothing is left in the cache", async () => {
  const cache = freshCache("corrupt");
  mode.corrupt = true;
  try {
    const r = await pull(["stories260K"], cache);
    assert.is.not(r.code, 0);
    assert.match(r.stderr, /sha256 mismatch for stories260K\.gguf/);
    assert.match(r.stderr, /the download was deleted/);
    assert.equal(fs.readdirSync(cache), []);
  } finally {
    mode.corrupt = false;
  }
});

test("a folder mirror works offline; a URL needs --sha256 (or --no-verify); refusals are explained", async () => {
  const folder = freshCache("folder");
  const r = await pull(["stories-deep-16L"], folder, MODELS);
  assert.is(r.code, 0, r.stderr);
  assert.is(sha(path.join(folder, "stories-deep-16L.gguf")), "5bfd2734c7b2afee24433a7470a9b2e770d3e0dbe89767958542c3bb680760f4");

  const byUrl = freshCache("url");
  const unverified = await pull([`${base}${FILE}`], byUrl, undefined);
  assert.is.not(unverified.code, 0);
  assert.match(unverified.stderr, /no sha256 is known .* --sha256/);
  const wrong = await pull([`${base}${FILE}`, "--sha256", "0".repeat(64)], byUrl, undefined);
  assert.match(wrong.stderr, /sha256 mismatch/);
  assert.equal(fs.readdirSync(byUrl), []);
  const ok = await pull([`${base}${FILE}`, "--sha256", SHA], byUrl, undefined);
  assert.is(ok.code, 0, ok.stderr);

  const nothing = freshCache("refuse");
  const smol = await pull(["smollm2-135m-instruct"], nothing);
  assert.match(smol.stderr, /pre-tokenizer "smollm"/);
  for (const name of ["tinyllama-1.1b-chat-v1.0-q8_0", "tinyllama-1.1b-chat-v1.0-q4_0", "tinyllama-1.1b-chat-v1.0-q4_k_m"]) {
    const tiny = await pull([name], nothing);
    assert.match(tiny.stderr, /no sha256 is known/, `${name}: ${tiny.stderr}`);
  }
  const unknown = await pull(["gpt-17"], nothing);
  assert.match(unknown.stderr, /unknown model "gpt-17".*stories260K/);
  assert.equal(fs.readdirSync(nothing), []);
});

test.run();
