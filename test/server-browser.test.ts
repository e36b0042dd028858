// A web page on another origin calls the server with the official `openai` client (its browser build, with its
// own X-Stainless-* headers and an API key, so every request is preflighted), in headless Chromium: with --cors
// naming the page's origin, and with --cors *. Everything on 127.0.0.1.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as http from "node:http";
import path from "node:path";
import { fallbackTranscript } from "../src/server/chat.js";
import { greedyText, serve, type ServerProcess } from "./server-support.js";
import { launchChromium, type Chromium } from "./support/chromium.js";

const OPENAI = path.resolve("node_modules/openai");
const KEY = "browser-key";
const PROMPT = "Once upon a time";
const servers: ServerProcess[] = [];
let page: http.Server;
let pageOrigin = "";
let chromium: Chromium | undefined;

test.before(async () => {
  // the page's own origin serves an empty page and the openai package's ESM files
  page = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? "/").split("?")[0]);
    if (url === "/") { res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><link rel=icon href='data:,'><title>app</title>"); return; }
    const file = path.join(OPENAI, path.normalize(url.replace(/^\/openai\//, "/")));
    if (!url.startsWith("/openai/") || !file.startsWith(OPENAI) || !fs.existsSync(file) || !fs.statSync(file).isFile()) { res.writeHead(404).end(); return; }
    res.writeHead(200, { "Content-Type": "text/javascript" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => page.listen(0, "127.0.0.1", r));
  pageOrigin = `http://127.0.0.1:${(page.address() as { port: number }).port}`;
  chromium = await launchChromium("cors");
});
test.after(async () => {
  await chromium?.close();
  await Promise.all(servers.map((s) => s.kill()));
  page.closeAllConnections();
  page.close();
});

/** In a page at pageOrigin: a completion, a streamed chat, and a completion with logprobs, through the openai client. */
async function fromPage(serverUrl: string): Promise<{ completion: string; chat: string; logprobs: number; error?: string }> {
  const tab = await chromium!.context.newPage();
  try {
    await tab.goto(`${pageOrigin}/`);
    return await tab.evaluate(async ({ url, key, prompt }) => {
      try {
        const { default: OpenAI } = await import("/openai/index.mjs" as string) as { default: typeof import("openai").default };
        const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, dangerouslyAllowBrowser: true, maxRetries: 0 });
        const c = await client.completions.create({ model: "m", prompt, max_tokens: 24, temperature: 0 });
        let chat = "";
        const stream = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: prompt }], max_tokens: 24, temperature: 0, stream: true });
        for await (const chunk of stream) chat += chunk.choices[0]?.delta.content ?? "";
        const lp = await client.completions.create({ model: "m", prompt, max_tokens: 4, temperature: 0, logprobs: 1 });
        return { completion: c.choices[0].text, chat, logprobs: lp.choices[0].logprobs!.token_logprobs!.length };
      } catch (e) {
        return { completion: "", chat: "", logprobs: 0, error: `${(e as Error).name}: ${(e as Error).message}` };
      }
    }, { url: serverUrl, key: KEY, prompt: PROMPT });
  } finally {
    await tab.close();
  }
}

for (const cors of ["origin", "*"]) {
  test(`--cors ${cors === "*" ? "*" : "<the page's origin>"}: the openai client in a page on another origin completes, streams chat and gets logprobs`, async () => {
    const s = await serve(["--ctx", "256", "--quiet", "--warmup", "0", "--api-key", KEY, "--cors", cors === "*" ? "*" : pageOrigin]);
    servers.push(s);
    const got = await fromPage(s.url);
    assert.is(got.error, undefined, got.error);
    assert.is(got.completion, greedyText(PROMPT, 24).text);
    assert.is(got.chat, greedyText(fallbackTranscript([{ role: "user", content: PROMPT }]), 24).text);
    assert.is(got.logprobs, 4);
  });
}

test.run();
