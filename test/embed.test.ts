// One portable build: `import "edgeprune"` generates the same greedy tokens in Node, in Deno (installed from npm)
// and in headless Chromium, where examples/story.html loads stories260K over HTTP from a static server on 127.0.0.1
// and streams the story into the page. The screenshot goes to test-output/.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { MODEL } from "./server-support.js";

const PROMPT = "Once upon a time";
const N = 48;
const ROOT = process.cwd();
const CHROMIUM = "/usr/bin/chromium";

let expected: { tokens: number[]; text: string };

test.before(async () => {
  // the package by name (Node resolves a package's own name through its "exports")
  const { loadModel, generateStream } = await import("edgeprune");
  const model = await loadModel(new Uint8Array(fs.readFileSync(MODEL)), { contextSize: 256 });
  const tokens: number[] = [];
  let text = "";
  for await (const t of generateStream(model, PROMPT, { maxTokens: N, temperature: 0 })) {
    if (t.id >= 0) tokens.push(t.id);
    text += t.text;
  }
  expected = { tokens, text };
});

test("Node: import \"edgeprune\" streams the greedy story", () => {
  assert.is(expected.tokens.length, N);
  assert.equal(expected.tokens.slice(0, 5), [432, 383, 286, 261, 376]);
  assert.ok(expected.text.startsWith(", there was a little girl named Lily."), expected.text);
});

test("Deno: the same script-level import gives the same greedy tokens", async () => {
  const deno = spawn("npx", ["deno", "run", "--allow-read", "--import-map=examples/import_map.json", "examples/deno-generate.ts", MODEL, PROMPT, String(N)], {
    stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
  let out = "", err = "";
  deno.stdout.on("data", (d: Buffer) => (out += d.toString()));
  deno.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => deno.kill("SIGKILL"), 30_000);
  const code = await new Promise<number | null>((r) => deno.on("close", r));
  clearTimeout(timer);
  assert.is(code, 0, err);
  const got = JSON.parse(out.trim().split("\n").pop()!) as { tokens: number[]; text: string };
  assert.equal(got.tokens, expected.tokens);
  assert.is(got.text, expected.text);
});

test("Chromium: examples/story.html fetches the model over HTTP and shows the same greedy story", async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)`);
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".json": "application/json", ".gguf": "application/octet-stream" };
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? "/").split("?")[0]);
    // the repository root, plus the shared models under /shared-models/; nothing outside either
    const file = url.startsWith("/shared-models/")
      ? path.join(path.dirname(MODEL), path.basename(url))
      : path.join(ROOT, path.normalize(url).replace(/^(\.\.[/\\])+/, ""));
    if (!file.startsWith(ROOT) && !file.startsWith(path.dirname(MODEL))) { res.writeHead(403).end(); return; }
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) { res.writeHead(404).end(); return; }
    res.writeHead(200, { "Content-Type": types[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const profile = fs.mkdtempSync(path.join(tmpdir(), "edgeprune-chromium-"));
  let browser: BrowserContext | undefined;
  try {
    // a fresh profile directory (playwright passes it as --user-data-dir)
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 900, height: 600 },
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(`${base}/examples/story.html?model=/shared-models/${path.basename(MODEL)}&tokens=${N}`);
    await page.waitForSelector("body[data-done=true]", { timeout: 20_000 }).catch((e) => { throw new Error(`${(e as Error).message}; page errors: ${errors.join("; ")}`); });
    const tokens = JSON.parse((await page.getAttribute("body", "data-tokens"))!) as number[];
    const story = await page.textContent("#story");
    assert.equal(tokens, expected.tokens);
    assert.is(story, PROMPT + expected.text);
    assert.equal(errors, []);
    fs.mkdirSync("test-output", { recursive: true });
    const shot = path.resolve("test-output/embed-story.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`  screenshot: ${shot}`);
  } finally {
    await browser?.close();
    server.closeAllConnections();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test.run();
