// `edgeprune pull` (the real CLI) against a mirror on 127.0.0.1 that lies (issue 18 item 3): an endless body, a
// Content-Length that disagrees with the manifest or is absurd, and an upstream file that changes between an
// interrupted download and its resume (with --no-verify, where no hash would catch a splice). Every case must stop
// at the expected size, say why, and leave nothing at the final path.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "./server-support.js";
import { sharedPath } from "./support/paths.js";

const FILE = "stories260K.gguf";
const original = fs.readFileSync(sharedPath("models", FILE));
const SIZE = original.length;
/** the changed upstream: same size, different bytes */
const changed = Buffer.from(original.map((b, i) => (i >= 300_000 ? b ^ 0x5a : b)));
const tmpRoot = fs.mkdtempSync(path.join(tmpdir(), "edgeprune-hostile-pull-"));
/** the mirror never sends more than this in one response, so even a pull that does not stop ends */
const SERVER_CAP = 64 * 2 ** 20;

interface Behaviour {
  /** "endless": SIZE real bytes then zeros until the client stops (or SERVER_CAP) */
  body: "file" | "endless";
  bytes: Buffer;
  /** a Content-Length to announce instead of the true one; null: none (chunked) */
  contentLength?: number | null;
  etag?: string;
  lastModified?: string;
  /** answer a Range request with 206 even when If-Range no longer matches (a broken cache) */
  ignoreIfRange?: boolean;
  /** drop the connection after this many bytes (once) */
  cutAfter?: number;
}

let behaviour: Behaviour = { body: "file", bytes: original };
const log: { range?: string; ifRange?: string; sent: number }[] = [];
let base = "";

const server = http.createServer((req, res) => {
  const b = behaviour;
  const entry = { range: req.headers.range, ifRange: req.headers["if-range"] as string | undefined, sent: 0 };
  log.push(entry);
  const validators: http.OutgoingHttpHeaders = { "Accept-Ranges": "bytes", ...(b.etag ? { ETag: b.etag } : {}), ...(b.lastModified ? { "Last-Modified": b.lastModified } : {}) };
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  const ifRangeOk = !entry.ifRange || entry.ifRange === b.etag || entry.ifRange === b.lastModified;
  const start = m && (ifRangeOk || b.ignoreIfRange) ? Number(m[1]) : 0;
  if (b.body === "endless") {
    res.writeHead(200, { ...validators, "Content-Type": "application/octet-stream", ...(typeof b.contentLength === "number" ? { "Content-Length": b.contentLength } : {}) });
    const zeros = Buffer.alloc(64 * 1024);
    const pump = () => {
      while (entry.sent < SERVER_CAP) {
        const chunk = entry.sent < SIZE ? b.bytes.subarray(entry.sent, Math.min(SIZE, entry.sent + zeros.length)) : zeros;
        entry.sent += chunk.length;
        if (!res.write(chunk)) { res.once("drain", pump); return; }
      }
      res.end();
    };
    res.on("close", () => res.removeAllListeners("drain"));
    pump();
    return;
  }
  const part = b.bytes.subarray(start);
  res.writeHead(start > 0 ? 206 : 200, {
    ...validators, "Content-Type": "application/octet-stream",
    "Content-Length": b.contentLength === undefined ? part.length : b.contentLength ?? undefined,
    ...(start > 0 ? { "Content-Range": `bytes ${start}-${b.bytes.length - 1}/${b.bytes.length}` } : {}),
  });
  if (b.cutAfter) {
    const n = b.cutAfter;
    behaviour = { ...b, cutAfter: undefined };
    entry.sent = n;
    res.write(part.subarray(0, n), () => setTimeout(() => res.socket?.destroy(), 50));
    return;
  }
  entry.sent = part.length;
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

const cache = (label: string) => fs.mkdtempSync(path.join(tmpRoot, `${label}-`));
const byName = (c: string) => runCli(["pull", "stories260K"], { EDGEPRUNE_CACHE: c, EDGEPRUNE_MIRROR: base }, 60_000);
const byUrl = (c: string, ...flags: string[]) => runCli(["pull", `${base}${FILE}`, ...flags], { EDGEPRUNE_CACHE: c, EDGEPRUNE_MIRROR: "" }, 60_000);
const lastLine = (s: string) => s.trim().split("\n").pop() ?? "";

test("an endless body stops at the manifest's size with a clear error; nothing is left in the cache", async () => {
  behaviour = { body: "endless", bytes: original, contentLength: null };
  log.length = 0;
  const c = cache("endless");
  const r = await byName(c);
  const sent = log[0].sent;
  console.log(`  endless body: the mirror had sent ${sent} bytes (${SIZE} expected, +${sent - SIZE} in socket buffers) when pull stopped: ${lastLine(r.stderr)}`);
  assert.is(r.code, 1, r.stderr);
  assert.match(lastLine(r.stderr), new RegExp(`sent more than the ${SIZE} bytes models/manifest\\.json lists for ${FILE.replace(".", "\\.")}; stopped at byte \\d+, the download was deleted`));
  assert.not.match(r.stderr, /resume/);
  assert.equal(fs.readdirSync(c), []);
  assert.ok(sent < SIZE + 8 * 2 ** 20, `the mirror sent ${sent} bytes before pull stopped reading`);
});

test("an endless body with an absurd Content-Length is refused before a byte is stored (URL, --no-verify)", async () => {
  behaviour = { body: "endless", bytes: original, contentLength: 64 * 2 ** 30 };
  log.length = 0;
  const c = cache("absurd");
  const r = await byUrl(c, "--no-verify");
  assert.is(r.code, 1, r.stderr);
  assert.match(lastLine(r.stderr), /68719476736 bytes \(Content-Length\) is more than the 34359738368 bytes pull accepts \(MAX_MODEL_BYTES\)/);
  assert.equal(fs.readdirSync(c), []);
  assert.ok(log[0].sent < SIZE + 8 * 2 ** 20, `the mirror sent ${log[0].sent} bytes`);
});

test("a Content-Length that disagrees with the manifest is refused at the headers", async () => {
  for (const contentLength of [2 * SIZE, 1000]) {
    // each body as long as it says: the lie is about the file, not about the body
    behaviour = { body: "file", bytes: contentLength > SIZE ? Buffer.concat([original, original]) : original.subarray(0, contentLength) };
    log.length = 0;
    const c = cache("length");
    const r = await byName(c);
    assert.is(r.code, 1, r.stderr);
    assert.match(lastLine(r.stderr), new RegExp(`the server announces ${contentLength} bytes \\(Content-Length\\), but ${FILE.replace(".", "\\.")} has ${SIZE}`));
    assert.equal(fs.readdirSync(c), []);
  }
});

test("a resume after the upstream file changed starts over (If-Range), with --no-verify too: never a splice", async () => {
  for (const validator of ["etag", "last-modified", "none"] as const) {
    const v1 = validator === "etag" ? { etag: '"v1"' } : validator === "last-modified" ? { lastModified: "Mon, 01 Jan 2024 00:00:00 GMT" } : {};
    const v2 = validator === "etag" ? { etag: '"v2"' } : validator === "last-modified" ? { lastModified: "Tue, 02 Jan 2024 00:00:00 GMT" } : {};
    const c = cache(`changed-${validator}`);
    behaviour = { body: "file", bytes: original, ...v1, cutAfter: 400_000 };
    log.length = 0;
    const first = await byUrl(c, "--no-verify");
    assert.is(first.code, 1, first.stderr);
    if (validator === "none") {
      // nothing could tell a later resume whether the file changed: the part is not kept
      assert.match(lastLine(first.stderr), /run the same pull again to start over/);
      assert.equal(fs.readdirSync(c), []);
    } else {
      assert.match(lastLine(first.stderr), /run the same pull again to resume/);
      const partial = fs.statSync(path.join(c, `${FILE}.part`)).size;
      assert.ok(partial > 0 && partial < SIZE);
    }
    behaviour = { body: "file", bytes: changed, ...v2 };
    const second = await byUrl(c, "--no-verify");
    assert.is(second.code, 0, second.stderr);
    const got = fs.readFileSync(path.join(c, FILE));
    assert.ok(got.equals(changed), `${validator}: the stored file is the new upstream file, not a splice of two`);
    assert.equal(fs.readdirSync(c), [FILE]);
    if (validator === "none") assert.is(log[1].range, undefined, "without a validator nothing is resumed");
    else assert.is(log[1].ifRange, validator === "etag" ? '"v1"' : v1.lastModified, "the resume asked If-Range");
  }
});

test("a mirror that ignores If-Range and splices versions is caught by its ETag; the partial download is deleted", async () => {
  const c = cache("ignores");
  behaviour = { body: "file", bytes: original, etag: '"v1"', cutAfter: 400_000 };
  await byUrl(c, "--no-verify");
  behaviour = { body: "file", bytes: changed, etag: '"v2"', ignoreIfRange: true };
  const r = await byUrl(c, "--no-verify");
  assert.is(r.code, 1, r.stderr);
  assert.match(lastLine(r.stderr), /changed since the interrupted download \(ETag "v1" → "v2"\); the partial download was deleted, run the same pull again to start over/);
  assert.equal(fs.readdirSync(c), []);
  const again = await byUrl(c, "--no-verify");
  assert.is(again.code, 0, again.stderr);
  assert.ok(fs.readFileSync(path.join(c, FILE)).equals(changed));
});

test("a connection cut by a server that cannot resume says to start over, not to resume", async () => {
  const c = cache("noresume");
  behaviour = { body: "file", bytes: original, cutAfter: 400_000 };
  const r = await byUrl(c, "--no-verify");
  assert.is(r.code, 1);
  assert.match(lastLine(r.stderr), /stopped at byte \d+ of 1185376 .*run the same pull again to start over/);
});

test.run();
