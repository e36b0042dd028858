// The server against hostile clients (issue 18), every server a real `edgeprune serve` on 127.0.0.1 unless a test
// needs to look inside: /metrics under 20 000 random paths (fixed series, escaped labels, RSS flat), bodies over the
// limit (a 413 the client reads, not a reset), huge prompts refused before tokenizing, --parallel bounded, /health
// honest under overload and answering HEAD, the Host/Origin/Content-Type policy, and a bounded mixed attack run.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as http from "node:http";
import OpenAI from "openai";
import { startServer } from "../src/server/server.js";
import { greedyText, localModel, metric, MODEL, runCli, serve, type ServerProcess } from "./server-support.js";
import { rng } from "./support/util.js";

const servers: ServerProcess[] = [];
test.after(async () => { await Promise.all(servers.map((s) => s.kill())); });
async function server(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const s = await serve(args, env);
  servers.push(s);
  return s;
}

const KEY = "hostile-key";
const PROMPT = "Once upon a time";
const json = { "Content-Type": "application/json" };
const mib = (b: number) => (b / 2 ** 20).toFixed(1);

/** One raw request on a keep-alive agent; resolves with status and body (never rejects on HTTP errors). */
function request(agent: http.Agent, port: number, o: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer }): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, agent, method: o.method ?? "GET", path: o.path, headers: o.headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(o.body);
  });
}

/** Every sample line of a Prometheus text body, parsed strictly (name, labels with escaped values, value). */
function samples(text: string): { name: string; labels: Record<string, string> }[] {
  const out: { name: string; labels: Record<string, string> }[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text exposition: ${JSON.stringify(line.slice(0, 200))}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    if (!Number.isFinite(Number(m[3]))) throw new Error(`not a number: ${line}`);
    out.push({ name: m[1], labels });
  }
  return out;
}

/** A random path of printable characters, with the ones that break label syntax ("}\{) mixed in. */
function randomPath(rand: () => number): string {
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789-_./\"}{\\=,%~!$&'()*+;:@";
  let p = "/";
  const n = 1 + Math.floor(rand() * 60);
  for (let i = 0; i < n; i++) p += chars[Math.floor(rand() * chars.length)];
  return p;
}

test("item 1: 20 000 random paths leave /metrics with a fixed set of series, valid exposition, and RSS flat", async () => {
  const s = await server(["--ctx", "256", "--api-key", KEY, "--quiet"], { NODE_OPTIONS: "--expose-gc" });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const auth = { Authorization: `Bearer ${KEY}` };
  const scrape = async () => {
    const r = await request(agent, s.port, { path: "/metrics", headers: auth });
    assert.is(r.status, 200);
    const all = samples(r.body);
    return { text: r.body, series: all.filter((x) => x.name === "edgeprune_requests_total"), rss: metric(r.body, "process_resident_memory_bytes") };
  };
  // every route once, and a first unknown path with and without the key, so every series that can exist exists
  await request(agent, s.port, { method: "POST", path: "/v1/completions", headers: { ...json, ...auth }, body: JSON.stringify({ prompt: PROMPT, max_tokens: 4, temperature: 0 }) });
  await request(agent, s.port, { path: "/v1/models", headers: auth });
  await request(agent, s.port, { path: "/no/such/path", headers: auth });
  await request(agent, s.port, { path: "/no/such/path" });
  await request(agent, s.port, { path: '/x"}evil{route="forged' });
  await scrape();
  const before = await scrape();

  const rand = rng(18);
  const N = 20_000;
  let next = 0;
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let i = next++; i < N; i = next++) {
      const r = await request(agent, s.port, { path: randomPath(rand), headers: i % 2 ? auth : {} });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const after = await scrape();
  agent.destroy();

  const growth = (after.rss - before.rss) / before.rss;
  console.log(`  metrics: ${N} random paths in ${secs.toFixed(1)} s (${JSON.stringify(Object.fromEntries(statuses))}); ` +
    `requests_total series ${before.series.length} → ${after.series.length}; /metrics ${before.text.length} → ${after.text.length} bytes; ` +
    `RSS ${mib(before.rss)} → ${mib(after.rss)} MiB (${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)}%)`);
  assert.equal(after.series.map((x) => JSON.stringify(x.labels)).sort(), before.series.map((x) => JSON.stringify(x.labels)).sort(), "the same series before and after");
  assert.ok(after.series.every((x) => ["/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "other"].includes(x.labels.route)), "routes from the fixed list");
  assert.ok(after.text.length < 8192, `/metrics is ${after.text.length} bytes`);
  assert.ok(Math.abs(growth) <= 0.1, `RSS changed by ${(growth * 100).toFixed(1)}%`);
});

test("item 8: a body over the limit gets a 413 the client reads (the OpenAI SDK does not retry it); announced ones before they are sent", async () => {
  const s = await server(["--ctx", "256", "--quiet", "--warmup", "0"]);
  const big = JSON.stringify({ prompt: "x".repeat(5 * 2 ** 20), max_tokens: 4 });
  const r = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: big });
  assert.is(r.status, 413);
  assert.is(((await r.json()) as { error: { code: string } }).error.code, "request_too_large");
  // chunked, no Content-Length: refused mid-body, still a 413
  const stream = new ReadableStream({ start(c) { for (let i = 0; i < 6; i++) c.enqueue(new TextEncoder().encode("x".repeat(2 ** 20))); c.close(); } });
  const chunked = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: stream, duplex: "half" } as RequestInit);
  assert.is(chunked.status, 413);
  // the OpenAI SDK retries resets and 5xx, but a 413 is an answer
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 2 });
  const e = await client.completions.create({ model: "m", prompt: "x".repeat(5 * 2 ** 20), max_tokens: 4 }).then(() => undefined, (err) => err);
  assert.instance(e, OpenAI.APIError);
  assert.is((e as InstanceType<typeof OpenAI.APIError>).status, 413, String(e));
  const m = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(m, /edgeprune_requests_total\{route="\/v1\/completions",status="413"\} 3\n/, `three 413s, no retries:\n${m.split("\n").filter((l) => l.startsWith("edgeprune_requests_total")).join("\n")}`);
  // `Expect: 100-continue` with an announced oversized body: refused before the body is sent
  const early = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: s.port, method: "POST", path: "/v1/completions", headers: { ...json, "Content-Length": 6 * 2 ** 20, Expect: "100-continue" } });
    req.on("continue", () => reject(new Error("the server asked for the body")));
    req.on("response", (res) => { res.resume(); resolve(res.statusCode ?? 0); req.destroy(); });
    req.on("error", () => {});
    req.flushHeaders();
  });
  assert.is(early, 413);
  assert.is((await fetch(`${s.url}/health`)).status, 200);
});

test("item 5: a prompt too long for the context is refused by its byte length, before it is tokenized", async () => {
  const model = localModel();
  const tok = model.tokenizer;
  const encode = tok.encode.bind(tok);
  let longest = 0;
  (tok as { encode: typeof tok.encode }).encode = (text, o) => { longest = Math.max(longest, Buffer.byteLength(text)); return encode(text, o); };
  const srv = await startServer({ model: async () => model, port: 0, contextSize: 256, warmup: 0, modelId: "m" });
  try {
    await srv.ready;
    const huge = "Once upon a time there was a dog. ".repeat(110_000); // 3.7 MiB
    const lag = await eventLoopLag(async () => {
      for (const [route, body] of [
        ["/v1/completions", { prompt: huge, max_tokens: 4 }],
        ["/v1/chat/completions", { messages: [{ role: "user", content: huge }], max_tokens: 4 }],
      ] as const) {
        const r = await fetch(`${srv.url}${route}`, { method: "POST", headers: json, body: JSON.stringify(body) });
        const j = await r.json() as { error: { code: string; message: string } };
        assert.is(r.status, 400, JSON.stringify(j));
        assert.is(j.error.code, "context_length_exceeded");
        assert.match(j.error.message, /bytes/);
      }
    });
    console.log(`  large prompt: longest text tokenized ${longest} bytes; event loop blocked at most ${lag.toFixed(0)} ms`);
    assert.ok(longest < 4096, `the tokenizer was given ${longest} bytes`);
    // a prompt that fits is still served
    const ok = await fetch(`${srv.url}/v1/completions`, { method: "POST", headers: json, body: JSON.stringify({ prompt: PROMPT, max_tokens: 8, temperature: 0 }) });
    assert.is(((await ok.json()) as { choices: { text: string }[] }).choices[0].text, greedyText(PROMPT, 8).text);
  } finally {
    (tok as { encode: typeof tok.encode }).encode = encode;
    await srv.close();
  }
});

/** The longest the event loop stalled while `f` ran (a 5 ms timer's worst lateness). */
async function eventLoopLag(f: () => Promise<void>): Promise<number> {
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => { const now = performance.now(); worst = Math.max(worst, now - last - 5); last = now; }, 5);
  try {
    await f();
  } finally {
    clearInterval(timer);
  }
  return worst;
}

test("item 8: serve --parallel is bounded with a clear error before anything is allocated", async () => {
  const r = await runCli(["serve", MODEL, "--port", "0", "--parallel", "100000"]);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /^edgeprune: error: invalid --parallel 100000: expected an integer from 1 to 64/);
});

test("item 8: /health says busy (503, Retry-After) when a request would get 429, ok again after; HEAD /health is answered", async () => {
  const s = await server(["--ctx", "512", "--parallel", "1", "--queue", "1", "--quiet", "--warmup", "0"]);
  const head = await fetch(`${s.url}/health`, { method: "HEAD" });
  assert.is(head.status, 200);
  assert.is(await head.text(), "");
  const long = { prompt: PROMPT, max_tokens: 480, temperature: 0, stream: true };
  const first = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: JSON.stringify(long) });
  const reader = first.body!.getReader();
  await reader.read();
  const queued = fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: JSON.stringify({ ...long, stream: false, max_tokens: 4 }) });
  await waitFor(async () => metric(await (await fetch(`${s.url}/metrics`)).text(), "edgeprune_queue_length") === 1);
  const busy = await fetch(`${s.url}/health`);
  const body = await busy.json() as { status: string; slots_idle: number; queued: number };
  assert.is(busy.status, 503);
  assert.is(body.status, "busy");
  assert.is(busy.headers.get("retry-after"), "1");
  assert.is(body.slots_idle, 0);
  assert.is(body.queued, 1);
  assert.is((await fetch(`${s.url}/health`, { method: "HEAD" })).status, 503);
  // and the request it predicts is refused
  assert.is((await fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: JSON.stringify(long) })).status, 429);
  await reader.cancel();
  assert.is((await queued).status, 200);
  await waitFor(async () => (await fetch(`${s.url}/health`)).status === 200);
});

test("item 4: foreign Host headers, foreign Origins and text/plain bodies are refused; no generation starts", async () => {
  const s = await server(["--ctx", "256", "--quiet", "--warmup", "0"]);
  const agent = new http.Agent({ keepAlive: true });
  const body = JSON.stringify({ prompt: PROMPT, max_tokens: 8, temperature: 0 });
  const cases: [string, http.OutgoingHttpHeaders, number, string][] = [
    ["DNS rebinding (a foreign Host)", { ...json, Host: `attacker.example:${s.port}` }, 403, "host_not_allowed"],
    ["a Host with a user part", { ...json, Host: `127.0.0.1@attacker.example:${s.port}` }, 403, "host_not_allowed"],
    ["a page on another origin (CORS)", { ...json, Origin: "http://attacker.example" }, 403, "origin_not_allowed"],
    ["a page on another local port", { ...json, Origin: "http://127.0.0.1:1" }, 403, "origin_not_allowed"],
    ["a sandboxed page (Origin: null)", { ...json, Origin: "null" }, 403, "origin_not_allowed"],
    ["a cross-site request without Origin", { ...json, "Sec-Fetch-Site": "cross-site" }, 403, "origin_not_allowed"],
    ["a CSRF simple request (text/plain)", { "Content-Type": "text/plain;charset=UTF-8" }, 415, "unsupported_media_type"],
    ["a form post", { "Content-Type": "application/x-www-form-urlencoded" }, 415, "unsupported_media_type"],
    ["no Content-Type", {}, 415, "unsupported_media_type"],
  ];
  for (const [what, headers, status, code] of cases) {
    const r = await request(agent, s.port, { method: "POST", path: "/v1/completions", headers, body });
    assert.is(r.status, status, `${what}: ${r.body}`);
    assert.is((JSON.parse(r.body) as { error: { code: string } }).error.code, code, what);
  }
  // what clients send is still served: loopback names and IPs in Host, no Origin, application/json (any charset)
  for (const host of [`127.0.0.1:${s.port}`, `localhost:${s.port}`, `LOCALHOST:${s.port}`, `app.localhost:${s.port}`, `[::1]:${s.port}`, "127.0.0.1"]) {
    const r = await request(agent, s.port, { method: "POST", path: "/v1/completions", headers: { "Content-Type": "application/json; charset=utf-8", Host: host }, body });
    assert.is(r.status, 200, `${host}: ${r.body}`);
  }
  const m = await (await fetch(`${s.url}/metrics`)).text();
  assert.is(metric(m, "edgeprune_generated_tokens_total"), 6 * 8, "only the six allowed requests generated");
  agent.destroy();
});

test("item 4: --cors lets the listed origins in (with CORS headers and preflight), nobody else", async () => {
  const s = await server(["--ctx", "256", "--quiet", "--warmup", "0", "--cors", "http://localhost:3000,https://app.example"]);
  const agent = new http.Agent({ keepAlive: true });
  const body = JSON.stringify({ prompt: PROMPT, max_tokens: 4 });
  const pre = await request(agent, s.port, { method: "OPTIONS", path: "/v1/completions", headers: { Origin: "http://localhost:3000", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" } });
  assert.is(pre.status, 204);
  assert.is(pre.headers["access-control-allow-origin"], "http://localhost:3000");
  assert.match(String(pre.headers["access-control-allow-methods"]), /POST/);
  const ok = await request(agent, s.port, { method: "POST", path: "/v1/completions", headers: { ...json, Origin: "https://app.example" }, body });
  assert.is(ok.status, 200);
  assert.is(ok.headers["access-control-allow-origin"], "https://app.example");
  assert.is(ok.headers.vary, "Origin");
  const other = await request(agent, s.port, { method: "OPTIONS", path: "/v1/completions", headers: { Origin: "http://localhost:3001", "Access-Control-Request-Method": "POST" } });
  assert.is(other.status, 403);
  // text/plain stays refused even from an allowed origin
  const plain = await request(agent, s.port, { method: "POST", path: "/v1/completions", headers: { "Content-Type": "text/plain", Origin: "https://app.example" }, body });
  assert.is(plain.status, 415);
  agent.destroy();
  const bad = await runCli(["serve", MODEL, "--port", "0", "--cors", "http://x.example/path"]);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /--cors: "http:\/\/x\.example\/path" is not an origin/);
});

test("attack run: 1000 mixed hostile requests from 16 connections, bounded; the server stays healthy and correct", async () => {
  const s = await server(["--ctx", "256", "--quiet", "--parallel", "2", "--warmup", "0"]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const rand = rng(1818);
  const big = Buffer.alloc(4 * 2 ** 20 + 1, 0x20);
  const attacks: [string, () => { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer }, number[]][] = [
    ["random path", () => ({ path: randomPath(rand) }), [404]],
    ["foreign host", () => ({ path: "/v1/models", headers: { Host: "evil.example" } }), [403]],
    ["foreign origin", () => ({ method: "POST", path: "/v1/completions", headers: { ...json, Origin: "http://evil.example" }, body: "{}" }), [403]],
    ["text/plain", () => ({ method: "POST", path: "/v1/chat/completions", headers: { "Content-Type": "text/plain" }, body: '{"messages":[]}' }), [415]],
    ["bad json", () => ({ method: "POST", path: "/v1/completions", headers: json, body: '{"prompt": "x", ' }), [400]],
    ["deep json", () => ({ method: "POST", path: "/v1/completions", headers: json, body: "[".repeat(100_000) + "]".repeat(100_000) }), [400]],
    ["wrong types", () => ({ method: "POST", path: "/v1/completions", headers: json, body: JSON.stringify({ prompt: { $gt: "" }, max_tokens: -1, temperature: "hot" }) }), [400]],
    ["800k token ids", () => ({ method: "POST", path: "/v1/completions", headers: json, body: JSON.stringify({ prompt: new Array(800_000).fill(1) }) }), [400]],
    ["100k messages", () => ({ method: "POST", path: "/v1/chat/completions", headers: json, body: JSON.stringify({ messages: new Array(100_000).fill({ role: "user", content: "hi" }) }) }), [400]],
    ["over-limit body", () => ({ method: "POST", path: "/v1/completions", headers: json, body: big }), [413]],
    ["wrong method", () => ({ method: "DELETE", path: "/v1/completions" }), [405]],
    ["valid", () => ({ method: "POST", path: "/v1/completions", headers: json, body: JSON.stringify({ prompt: PROMPT, max_tokens: 2, temperature: 0 }) }), [200, 429]],
  ];
  const N = 1000;
  // the heavy bodies are a small share of the run, so it stays within seconds
  const pick = (i: number) => attacks[i % 100 === 0 ? 9 : i % 100 === 25 ? 8 : i % 100 === 50 ? 7 : i % 10 === 5 ? 5 : [0, 1, 2, 3, 4, 6, 10, 11][i % 8]];
  const failures: string[] = [];
  const counts = new Map<string, number>();
  const ms = new Map<string, number>();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let i = next++; i < N; i = next++) {
      const [what, make, want] = pick(i);
      try {
        const t = performance.now();
        const r = await request(agent, s.port, make());
        ms.set(what, (ms.get(what) ?? 0) + performance.now() - t);
        if (!want.includes(r.status)) failures.push(`${what}: ${r.status} ${r.body.slice(0, 120)}`);
        counts.set(what, (counts.get(what) ?? 0) + 1);
      } catch (e) {
        failures.push(`${what}: ${(e as Error).message}`);
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  agent.destroy();
  console.log(`  attack run: ${N} requests in ${secs.toFixed(1)} s: ${[...counts].map(([k, v]) => `${k} ${v} (${(ms.get(k)! / v).toFixed(0)} ms)`).join(", ")}`);
  assert.equal(failures.slice(0, 5), []);
  assert.is((await fetch(`${s.url}/health`)).status, 200);
  const r = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: JSON.stringify({ prompt: PROMPT, max_tokens: 16, temperature: 0 }) });
  assert.is(((await r.json()) as { choices: { text: string }[] }).choices[0].text, greedyText(PROMPT, 16).text);
});

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("condition not met in time");
}

test.run();
