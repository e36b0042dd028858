// loadModel against hostile or odd inputs (issue 18 item 8): any typed array or DataView is bytes; anything else is
// refused in one short line that never quotes the value; a URL whose body never ends, or is larger than it says, than
// its tensors or than maxBytes, is cut off there. The body comes from a server on 127.0.0.1.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import { loadModel } from "../src/index.js";
import { MODEL } from "./server-support.js";

const bytes = new Uint8Array(readFileSync(MODEL));
let sent = 0;
let mode: "endless" | "overlong" = "endless";
const server = http.createServer((req, res) => {
  sent = 0;
  const zeros = Buffer.alloc(64 * 1024);
  const cap = 256 * 2 ** 20;
  if (mode === "overlong") res.writeHead(200, { "Content-Length": bytes.length });
  else res.writeHead(200, { "Content-Type": "application/octet-stream" });
  const pump = () => {
    while (sent < cap) {
      const chunk = sent < bytes.length ? Buffer.from(bytes.subarray(sent, sent + zeros.length)) : zeros;
      sent += chunk.length;
      if (mode === "overlong" && sent > bytes.length) { res.end(); return; }
      if (!res.write(chunk)) { res.once("drain", pump); return; }
    }
    res.end();
  };
  res.on("close", () => res.removeAllListeners("drain"));
  req.on("error", () => {});
  pump();
});
let base = "";
test.before(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
test.after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

test("a DataView, an Int8Array or a view into a larger buffer load as the same bytes", async () => {
  const padded = new Uint8Array(bytes.length + 100);
  padded.set(bytes, 37);
  for (const source of [new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), padded.subarray(37, 37 + bytes.length), bytes.slice().buffer]) {
    const m = await loadModel(source, { contextSize: 64 });
    assert.is(m.config.nLayers, 5);
    assert.is(m.config.vocabSize, 512);
  }
});

test("anything else is refused in one short line that does not quote the value", async () => {
  for (const source of [Array.from(bytes.subarray(0, 4096)), { length: 4 }, 42, null]) {
    const e = await loadModel(source as unknown as Uint8Array).then(() => undefined, (err: Error) => err);
    assert.instance(e, TypeError);
    assert.ok(e!.message.length < 200, e!.message);
    assert.not.match(e!.message, /71,71,85,70/);
    assert.match(e!.message, /loadModel takes bytes .* or a URL, got (an array|an object \(Object\)|a number|null)$/);
  }
});

test("a URL whose body never ends stops past its last tensor, or at maxBytes; one that sends more than its Content-Length is cut there", async () => {
  mode = "endless";
  // the model's bytes, then zeros without end and no Content-Length: refused just past the last tensor
  let e = await loadModel(`${base}/endless.gguf`).then(() => undefined, (err: Error) => err);
  console.log(`  endless body: stopped with ${sent} bytes sent (the file is ${bytes.length}, the rest in socket buffers)`);
  assert.match(String(e?.message), /endless\.gguf: the file has bytes after its last tensor/);
  assert.ok(sent < bytes.length + 8 * 2 ** 20, `${sent} bytes were sent`);
  // a maxBytes below the file's size stops the read there
  const maxBytes = 512 * 1024;
  e = await loadModel(`${base}/endless.gguf`, { maxBytes }).then(() => undefined, (err: Error) => err);
  assert.match(String(e?.message), /the body is larger than 524288 bytes \(loadModel's maxBytes\); stopped reading/);
  mode = "overlong";
  // undici ends the body at its Content-Length; the model loads from exactly that many bytes
  const m = await loadModel(`${base}/overlong.gguf`, { contextSize: 64 });
  assert.is(m.config.nLayers, 5);
});

test.run();
