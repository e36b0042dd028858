// The documentation's library examples, run as written (README.md and docs/serving.md): each block that imports
// edgeprune is written to a folder of its own beside stories260K.gguf and run in every runtime it is meant for
// (Node, Deno, headless Chromium; Electron's main process in Node with a stand-in `electron` module, its renderer in
// Chromium under the page's own Content-Security-Policy). Also loadModel's sources (path, file: URL, http URL,
// Blob, File, bytes) in each runtime where they exist. Everything is served from 127.0.0.1.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { Page } from "playwright-core";
import { loadModel, generateStream, generate } from "../src/index.js";
import { localModel, MODEL } from "./server-support.js";
import { snippets, type Snippet } from "./support/snippets.js";
import { launchChromium, type Chromium } from "./support/chromium.js";

const ROOT = process.cwd();
const OUT = path.resolve("test-output/snippets");
const PROMPT = "Once upon a time";

/** The greedy continuation of the prompt with n new tokens (what every snippet must print). */
function expected(n: number): { text: string; tokens: number[] } {
  const m = localModel();
  const ids = m.tokenizer.encode(PROMPT, { addBos: m.tokenizer.addBos });
  const r = generate(m.createContext({ contextSize: 256 }), m.tokenizer, ids, { maxTokens: n, temperature: 0 });
  return { text: r.text, tokens: r.tokens };
}

const maxTokens = (code: string) => Number(/maxTokens: (\d+)/.exec(code)![1]);

function run(cmd: string, args: string[], cwd: string, timeoutMs = 60_000): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } });
  let out = "", err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  return new Promise((resolve) => child.on("close", (code) => { clearTimeout(timer); resolve({ code, out, err }); }));
}
const deno = (args: string[], cwd: string) => run("npx", ["deno", "run", "--allow-read", "--allow-net=127.0.0.1", `--import-map=${path.join(ROOT, "examples/import_map.json")}`, ...args], cwd);

/** A folder for one snippet (or a group of them) with the model beside it. */
function folder(id: string, files: Record<string, string>): string {
  const dir = path.join(OUT, id);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.symlinkSync(MODEL, path.join(dir, "stories260K.gguf"));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

// the library's examples: named blocks that use edgeprune, and the pages that hold them
const docs = [...snippets("README.md"), ...snippets("docs/serving.md")]
  .filter((s) => (s.lang === "js" || s.lang === "html") && s.name !== undefined && (/edgeprune/.test(s.code) || s.name.endsWith(".html")));
const named = (name: string) => docs.filter((s) => s.name === name);

// a static server: /dist/ is the build, /s/<id>/ a snippet folder (its node_modules/edgeprune/ is this package)
const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json", ".gguf": "application/octet-stream" };
let server: http.Server;
let base = "";
let chromium: Chromium | undefined;

test.before(async () => {
  server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? "/").split("?")[0]);
    let file: string | undefined;
    const pkg = /\/node_modules\/edgeprune\/(dist\/.*)$/.exec(url);
    if (pkg) file = path.join(ROOT, path.normalize(pkg[1]));
    // /dist/ and /s/dist/ (a page at /s/<id>/ importing ../dist/, as examples/ pages do)
    else if (/^\/(s\/)?dist\//.test(url)) file = path.join(ROOT, path.normalize(url.replace(/^\/s\//, "/")));
    else if (url.startsWith("/s/")) file = path.join(OUT, path.normalize(url.slice(3)));
    if (!file || !(file.startsWith(path.join(ROOT, "dist")) || file.startsWith(OUT)) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream", "Content-Length": fs.statSync(file).size });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  chromium = await launchChromium("snippets");
});

test.after(async () => {
  await chromium?.close();
  server?.closeAllConnections();
  server?.close();
});

/** Open a page and collect its console and errors. */
async function open(url: string): Promise<{ page: Page; logs: string[]; errors: string[] }> {
  const page = await chromium!.context.newPage();
  const logs: string[] = [], errors: string[] = [];
  page.on("console", (m) => (m.type() === "error" ? errors : logs).push(m.text()));
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { page, logs, errors };
}

/** Wait until #story holds `text` (or fail with what it holds). */
async function storyIs(p: { page: Page; errors: string[] }, text: string): Promise<void> {
  try {
    await p.page.waitForFunction((t) => document.getElementById("story")?.textContent === t, text, { timeout: 20_000 });
  } catch {
    const got = await p.page.textContent("#story");
    assert.fixture(got ?? "", text, `#story; page errors: ${p.errors.join("; ")}`);
  }
}

test("the documentation has the library snippets this test runs", () => {
  const names = docs.map((s) => `${s.name} (${s.where})`);
  for (const n of ["story.mjs", "story.html", "main.mjs", "index.html", "renderer.js"]) assert.ok(named(n).length > 0, `no ${n} snippet among ${names.join(", ")}`);
});

test("README and serving.md story.mjs: Node prints the greedy story (and, with no Node built-ins, Deno and Chromium too)", async () => {
  for (const s of named("story.mjs")) {
    const want = expected(maxTokens(s.code)).text;
    const id = `story-${s.where.replace(/[^\w]+/g, "-")}`;
    const dir = folder(id, { "story.mjs": s.code });
    const node = await run(process.execPath, ["story.mjs"], dir);
    assert.is(node.code, 0, `${s.where} in Node: ${node.err}`);
    assert.is(node.out.replace(/\n$/, ""), want, `${s.where} in Node`);
    if (/process\.|node:/.test(s.code)) continue; // a Node-only example
    const d = await deno(["story.mjs"], dir);
    assert.is(d.code, 0, `${s.where} in Deno: ${d.err}`);
    assert.is(d.out.replace(/\n$/, ""), want, `${s.where} in Deno`);
    fs.writeFileSync(path.join(dir, "index.html"), `<!doctype html><link rel="icon" href="data:,"><script type="importmap">{ "imports": { "edgeprune": "/dist/src/index.js" } }</script><script type="module" src="story.mjs"></script>`);
    const p = await open(`${base}/s/${id}/index.html`);
    try {
      await p.page.waitForFunction(() => true);
      for (let i = 0; i < 200 && p.logs.length === 0 && p.errors.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(p.errors, [], `${s.where} in Chromium`);
      assert.is(p.logs[0], want, `${s.where} in Chromium`);
    } finally {
      await p.page.close();
    }
  }
});

test("serving.md story.html: Chromium streams the greedy story into the page", async () => {
  for (const s of named("story.html")) {
    const id = `page-${s.where.replace(/[^\w]+/g, "-")}`;
    folder(id, { "story.html": `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">\n${s.code}` });
    const p = await open(`${base}/s/${id}/story.html`);
    try {
      await storyIs(p, expected(maxTokens(s.code)).text);
      assert.equal(p.errors, []);
    } finally {
      await p.page.close();
    }
  }
});

test("serving.md main.mjs (Electron main process): in Node with a stand-in electron module, its IPC handler returns the greedy story", async () => {
  const [s] = named("main.mjs");
  const stub = `export const handlers = new Map();
export const ipcMain = { handle: (name, fn) => { handlers.set(name, fn); } };
export const app = { whenReady: () => Promise.resolve() };
export class BrowserWindow { loadFile(file) { globalThis.loadedFile = file; return Promise.resolve(); } }
`;
  const driver = `await import("./main.mjs");
const { handlers } = await import("electron");
await new Promise((r) => setTimeout(r, 0));
const text = await handlers.get("story")({}, ${JSON.stringify(PROMPT)});
console.log(JSON.stringify({ text, loadedFile: globalThis.loadedFile }));
`;
  const dir = folder("electron-main", {
    "main.mjs": s.code, "driver.mjs": driver,
    "node_modules/electron/package.json": JSON.stringify({ name: "electron", type: "module", exports: "./index.js" }), "node_modules/electron/index.js": stub,
  });
  const r = await run(process.execPath, ["driver.mjs"], dir);
  assert.is(r.code, 0, r.err);
  const got = JSON.parse(r.out.trim().split("\n").pop()!) as { text: string; loadedFile: string };
  assert.is(got.text, expected(maxTokens(s.code)).text);
  assert.is(got.loadedFile, "index.html");
});

test("serving.md index.html + renderer.js (Electron renderer): under its CSP in Chromium, a picked File gives the greedy story; without 'wasm-unsafe-eval' the model cannot load", async () => {
  const [html] = named("index.html");
  const [js] = named("renderer.js");
  assert.match(html.code, /'wasm-unsafe-eval'/);
  folder("renderer", { "index.html": `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">\n${html.code}`, "renderer.js": js.code });
  const p = await open(`${base}/s/renderer/index.html`);
  try {
    await p.page.setInputFiles("#file", MODEL);
    await storyIs(p, expected(maxTokens(js.code)).text);
    assert.equal(p.errors, []);
  } finally {
    await p.page.close();
  }
  folder("renderer-no-wasm", { "index.html": `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">\n${html.code.replace(" 'wasm-unsafe-eval'", "")}`, "renderer.js": js.code });
  const q = await open(`${base}/s/renderer-no-wasm/index.html`);
  try {
    await q.page.setInputFiles("#file", MODEL);
    for (let i = 0; i < 100 && q.errors.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(q.errors.join("\n"), /WebAssembly|wasm-unsafe-eval|Content Security Policy/i);
    assert.is(await q.page.textContent("#story"), "");
  } finally {
    await q.page.close();
  }
});

/** First 8 greedy tokens of a model (the same for every source). */
async function firstTokens(m: Awaited<ReturnType<typeof loadModel>>): Promise<number[]> {
  const ids: number[] = [];
  for await (const t of generateStream(m, PROMPT, { maxTokens: 8, temperature: 0 })) if (t.id >= 0) ids.push(t.id);
  return ids;
}

test("loadModel's sources: path, file: URL, http URL, Blob, File and bytes in Node; the same in Deno; URL, path, Blob, File and bytes in Chromium", async () => {
  const want = expected(8).tokens;
  const httpUrl = `${base}/s/sources/stories260K.gguf`;
  const dir = folder("sources", {});
  const bytes = fs.readFileSync(MODEL);
  const node: Record<string, unknown> = {
    "path (absolute)": MODEL, "path (relative)": path.relative(ROOT, MODEL), "file: URL": pathToFileURL(MODEL), "file: URL string": pathToFileURL(MODEL).href,
    "http URL": httpUrl, Blob: new Blob([bytes]), File: new File([bytes], "stories260K.gguf"), Uint8Array: new Uint8Array(bytes), ArrayBuffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
  };
  for (const [kind, src] of Object.entries(node)) {
    assert.equal(await firstTokens(await loadModel(src as string, { contextSize: 64 })), want, `Node: ${kind}`);
  }
  fs.writeFileSync(path.join(dir, "sources.mjs"), `import { generateStream, loadModel } from "edgeprune";
const [file, url] = Deno.args;
const bytes = await Deno.readFile(file);
const kinds = { path: file, "file: URL": new URL("file://" + file), "http URL": url, Blob: new Blob([bytes]), File: new File([bytes], "m.gguf"), Uint8Array: bytes };
const out = {};
for (const [k, v] of Object.entries(kinds)) {
  const m = await loadModel(v, { contextSize: 64 });
  const ids = [];
  for await (const t of generateStream(m, ${JSON.stringify(PROMPT)}, { maxTokens: 8, temperature: 0 })) if (t.id >= 0) ids.push(t.id);
  out[k] = ids;
}
console.log(JSON.stringify(out));
`);
  const d = await deno(["sources.mjs", MODEL, httpUrl], dir);
  assert.is(d.code, 0, d.err);
  const inDeno = JSON.parse(d.out.trim().split("\n").pop()!) as Record<string, number[]>;
  for (const [kind, ids] of Object.entries(inDeno)) assert.equal(ids, want, `Deno: ${kind}`);
  assert.is(Object.keys(inDeno).length, 6);

  fs.writeFileSync(path.join(dir, "index.html"), `<!doctype html><link rel="icon" href="data:,"><input id="file" type="file">
<script type="importmap">{ "imports": { "edgeprune": "/dist/src/index.js" } }</script>
<script type="module">
import { generateStream, loadModel } from "edgeprune";
async function first(src) {
  const m = await loadModel(src, { contextSize: 64 });
  const ids = [];
  for await (const t of generateStream(m, ${JSON.stringify(PROMPT)}, { maxTokens: 8, temperature: 0 })) if (t.id >= 0) ids.push(t.id);
  return ids;
}
window.run = async () => {
  const bytes = new Uint8Array(await (await fetch("stories260K.gguf")).arrayBuffer());
  return {
    "URL": await first(new URL("stories260K.gguf", location.href)), "URL string": await first(location.href.replace(/[^/]*$/, "stories260K.gguf")),
    "relative path": await first("stories260K.gguf"), "absolute path": await first(location.pathname.replace(/[^/]*$/, "stories260K.gguf")),
    Blob: await first(new Blob([bytes])), File: await first(document.getElementById("file").files[0]), Uint8Array: await first(bytes),
  };
};
</script>`);
  const p = await open(`${base}/s/sources/index.html`);
  try {
    await p.page.setInputFiles("#file", MODEL);
    await p.page.waitForFunction(() => typeof (window as unknown as { run?: unknown }).run === "function");
    const inChromium = await p.page.evaluate(() => (window as unknown as { run: () => Promise<Record<string, number[]>> }).run());
    for (const [kind, ids] of Object.entries(inChromium)) assert.equal(ids, want, `Chromium: ${kind}`);
    assert.is(Object.keys(inChromium).length, 7);
    assert.equal(p.errors, []);
  } finally {
    await p.page.close();
  }
});

test.run();
