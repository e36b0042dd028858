// A web page against the local server, in headless Chromium (issue 18 item 4): a page on another origin tries a
// CSRF "simple request" (text/plain, no preflight), a no-cors JSON post and a CORS fetch; none starts a generation
// unless --cors names the page's origin. A page reached through a DNS name that resolves to 127.0.0.1 (rebinding,
// simulated with Chromium's --host-resolver-rules) is refused by the Host check. Everything on 127.0.0.1.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as http from "node:http";
import { greedyText, metric, serve, type ServerProcess } from "./server-support.js";
import { launchChromium, type Chromium } from "./support/chromium.js";

const PROMPT = "Once upon a time";
const servers: ServerProcess[] = [];
let page: http.Server;
let pageOrigin = "";
let chromium: Chromium | undefined;

test.before(async () => {
  // the attacker's page: any origin other than the server's own (here another port on 127.0.0.1)
  page = http.createServer((_req, res) => { res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>elsewhere</title><p>a page on another origin</p>"); });
  await new Promise<void>((r) => page.listen(0, "127.0.0.1", r));
  pageOrigin = `http://127.0.0.1:${(page.address() as { port: number }).port}`;
  chromium = await launchChromium("hostile", ["--host-resolver-rules=MAP rebind.attacker.test 127.0.0.1"]);
});
test.after(async () => {
  await chromium?.close();
  await Promise.all(servers.map((s) => s.kill()));
  page.closeAllConnections();
  page.close();
});

/** What the page's three attempts got back (status, or the network error a blocked fetch gives). */
async function attack(serverUrl: string): Promise<Record<string, string>> {
  const tab = await chromium!.context.newPage();
  try {
    await tab.goto(`${pageOrigin}/`);
    return await tab.evaluate(async ({ url, prompt }) => {
      const body = JSON.stringify({ prompt, max_tokens: 8, temperature: 0 });
      const out: Record<string, string> = {};
      const attempt = async (name: string, init: RequestInit) => {
        try {
          const r = await fetch(`${url}/v1/completions`, { method: "POST", body, ...init });
          out[name] = r.type === "opaque" ? "opaque" : `${r.status} ${await r.text()}`;
        } catch (e) {
          out[name] = `blocked: ${(e as Error).message}`;
        }
      };
      await attempt("csrf-text-plain", { mode: "no-cors", headers: { "Content-Type": "text/plain" } });
      await attempt("no-cors-json", { mode: "no-cors", headers: { "Content-Type": "application/json" } });
      await attempt("cors-json", { mode: "cors", headers: { "Content-Type": "application/json" } });
      return out;
    }, { url: serverUrl, prompt: PROMPT });
  } finally {
    await tab.close();
  }
}

const tokens = async (s: ServerProcess) => metric(await (await fetch(`${s.url}/metrics`)).text(), "edgeprune_generated_tokens_total");

test("without --cors: a cross-origin page starts no generation, whatever it tries", async () => {
  const s = await serve(["--ctx", "256", "--quiet", "--warmup", "0"]);
  servers.push(s);
  const got = await attack(s.url);
  console.log(`  without --cors: ${JSON.stringify(got).slice(0, 300)}`);
  assert.is(await tokens(s), 0, "no token was generated");
  assert.match(got["cors-json"], /^blocked/);
  const m = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(m, /edgeprune_requests_total\{route="\/v1\/completions",status="403"\} \d+/);
  assert.not.match(m, /route="\/v1\/completions",status="200"/);
});

test("with --cors naming the page's origin: its CORS fetch gets the greedy text; the text/plain one still does not run", async () => {
  const s = await serve(["--ctx", "256", "--quiet", "--warmup", "0", "--cors", pageOrigin]);
  servers.push(s);
  const got = await attack(s.url);
  const j = JSON.parse(got["cors-json"].replace(/^200 /, "")) as { choices: { text: string }[] };
  assert.is(j.choices[0].text, greedyText(PROMPT, 8).text);
  // only the CORS fetch ran: a no-cors request cannot carry Content-Type: application/json (the browser sends
  // text/plain instead), and text/plain is never parsed
  assert.is(await tokens(s), 8);
  assert.is(got["csrf-text-plain"], "opaque");
  const m = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(m, /route="\/v1\/completions",status="415"\} 2/);
});

test("DNS rebinding: a page at a name that resolves to 127.0.0.1 is refused by the Host check", async () => {
  const s = await serve(["--ctx", "256", "--quiet", "--warmup", "0", "--cors", "*"]);
  servers.push(s);
  const tab = await chromium!.context.newPage();
  try {
    const r = await tab.goto(`http://rebind.attacker.test:${s.port}/v1/models`);
    assert.is(r?.status(), 403);
    assert.match(await tab.content(), /host_not_allowed/);
  } finally {
    await tab.close();
  }
});

test.run();
