// Load on one `edgeprune serve --embeddings` process on 127.0.0.1: 8 concurrent clients send 300 requests in all
// (completions and chat, streamed and not, some cancelled mid-stream, some invalid or unauthorized; log-probabilities,
// JSON-schema output, embeddings, /tokenize, /detokenize, /props). Every valid one must give what the library
// computes here (greedy text, embeddings, tokens), every invalid one its status, memory must stay flat, /health must
// still answer, and 1000 requests for random paths must leave /metrics with the same series.
//
// Memory: the server process's RSS after the run must be within 10% of its RSS after the first client request; its
// wasm memory (weights and the pooled KV caches) must not change at all. Both are read from /metrics. The server
// runs with `node --expose-gc`, so /metrics collects garbage before it reads memory, at both points alike. The
// first request is the first one this test sends. The server's own start-up warm-up (src/server/warmup.ts) has
// already run by then, because /health answers 200 only after it. What keeps RSS flat (measured, docs/serving.md):
// the serve command keeps V8's young generation at its start-up size (src/node/heap.ts), and the warm-up moves
// the one-time growth of a fresh Node process (JIT-compiled code, the memory glibc keeps after compiling, and
// xgrammar's WebAssembly and vocabulary for JSON-schema output) before the first request.
import { test } from "uvu";
import * as assert from "uvu/assert";
import OpenAI from "openai";
import { Ajv } from "ajv";
import { embedTokens } from "../src/embedding.js";
import { fallbackTranscript } from "../src/server/chat.js";
import { greedyText, localModel, metric, serve, type ServerProcess } from "./server-support.js";
import { defaultSimdBuild } from "../src/wasm.js";

const KEY = "load-test-key";
const CLIENTS = 8;
const REQUESTS = 300;
const PROMPTS = ["Once upon a time", "The dog", "Lily and Tom went to the park", "One day, a big bird"];

type Kind = "bad-json" | "missing" | "too-long" | "no-key" | "completion" | "completion-stream" | "chat" | "chat-stream" | "cancel" |
  "logprobs" | "json" | "embeddings" | "tokenize" | "detokenize" | "props";
const KINDS: Kind[] = [
  "bad-json", "completion", "completion-stream", "missing", "chat", "chat-stream", "too-long", "cancel", "no-key", "completion",
  "logprobs", "json", "embeddings", "tokenize", "detokenize", "props", "json", "embeddings", "chat", "logprobs",
];
const SCHEMA = {
  type: "object", additionalProperties: false, required: ["name", "age", "pet"],
  properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer", minimum: 1, maximum: 99 }, pet: { enum: ["cat", "dog", "bird"] } },
};
const validate = new Ajv().compile(SCHEMA);

let s: ServerProcess;
test.after(async () => { await s?.kill(); });

async function memory(): Promise<{ rss: number; wasm: number; heapUsed: number; heapTotal: number; external: number }> {
  const r = await fetch(`${s.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } });
  const text = await r.text();
  return {
    rss: metric(text, "process_resident_memory_bytes"), wasm: metric(text, "edgeprune_wasm_memory_bytes"),
    heapUsed: metric(text, "nodejs_heap_used_bytes"), heapTotal: metric(text, "nodejs_heap_total_bytes"), external: metric(text, "nodejs_external_bytes"),
  };
}

test(`${CLIENTS} clients, ${REQUESTS} requests: valid ones correct, invalid ones refused, memory flat, still healthy`, async () => {
  s = await serve(["--ctx", "256", "--parallel", "2", "--queue", "64", "--api-key", KEY, "--quiet", "--embeddings"], { NODE_OPTIONS: "--expose-gc", EDGEPRUNE_SIMD: defaultSimdBuild() }); // this process's kernels: embeddings compared bit for bit
  const lm = localModel(), tok = lm.tokenizer;
  const embCtx = lm.createContext({ contextSize: 256 });
  const embeddings = new Map<string, number[]>();
  const wantEmbedding = (p: string) => {
    if (!embeddings.has(p)) embeddings.set(p, Array.from(embedTokens(embCtx, tok.encode(p, { addBos: tok.addBos }), { pooling: "last" })));
    return embeddings.get(p)!;
  };
  const authed = (route: string, body?: unknown) => fetch(`${s.url}${route}`, body === undefined ? { headers: { Authorization: `Bearer ${KEY}` } } :
    { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: KEY, maxRetries: 0 });
  const expected = new Map<string, string>();
  const want = (prompt: string, n: number) => {
    const k = `${n}\u0000${prompt}`;
    if (!expected.has(k)) expected.set(k, greedyText(prompt, n).text);
    return expected.get(k)!;
  };
  const chatMessages = (p: string) => [{ role: "user" as const, content: p }];

  const first = await client.completions.create({ model: "m", prompt: PROMPTS[0], max_tokens: 32, temperature: 0 });
  assert.is(first.choices[0].text, want(PROMPTS[0], 32));
  // this test's own JSON schema, compiled once before the baseline: compiling a new schema grows xgrammar's
  // WebAssembly heap to that grammar's high-water mark once (10-15 MiB; the cache then keeps it, bounded by
  // SCHEMA_CACHE_SIZE), which the server's warm-up, with its own schema, cannot do for a schema it has not seen
  await client.chat.completions.create({ model: "m", messages: chatMessages(PROMPTS[1]), max_tokens: 48, temperature: 0.8, seed: 1, response_format: { type: "json_schema", json_schema: { name: "pet", schema: SCHEMA } } });
  const afterFirst = await memory();

  const counts = new Map<string, number>();
  const run = async (i: number): Promise<void> => {
    const kind = KINDS[i % KINDS.length];
    const prompt = PROMPTS[i % PROMPTS.length];
    const n = 16 + (i % 5) * 12;
    const raw = (body: string, headers: Record<string, string> = { Authorization: `Bearer ${KEY}` }) =>
      fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body });
    const expectStatus = async (r: Response, status: number) => {
      const j = await r.json() as { error?: { type: string } };
      if (r.status !== status || !j.error?.type) throw new Error(`status ${r.status}, body ${JSON.stringify(j)}; expected ${status}`);
    };
    switch (kind) {
      case "bad-json": return expectStatus(await raw(`{"prompt": "${prompt}", `), 400);
      case "missing": return expectStatus(await raw(JSON.stringify({ max_tokens: n })), 400);
      case "too-long": return expectStatus(await raw(JSON.stringify({ prompt, max_tokens: 256 })), 400);
      case "no-key": return expectStatus(await raw(JSON.stringify({ prompt, max_tokens: n }), {}), 401);
      case "completion": {
        const r = await client.completions.create({ model: "m", prompt, max_tokens: n, temperature: 0 });
        if (r.choices[0].text !== want(prompt, n)) throw new Error(`text ${JSON.stringify(r.choices[0].text)}`);
        return;
      }
      case "completion-stream": {
        let text = "";
        for await (const c of await client.completions.create({ model: "m", prompt, max_tokens: n, temperature: 0, stream: true })) text += c.choices[0].text;
        if (text !== want(prompt, n)) throw new Error(`streamed text ${JSON.stringify(text)}`);
        return;
      }
      case "chat": {
        const r = await client.chat.completions.create({ model: "m", messages: chatMessages(prompt), max_tokens: n, temperature: 0 });
        if (r.choices[0].message.content !== want(fallbackTranscript(chatMessages(prompt)), n)) throw new Error(`chat ${r.choices[0].message.content}`);
        return;
      }
      case "chat-stream": {
        let text = "";
        for await (const c of await client.chat.completions.create({ model: "m", messages: chatMessages(prompt), max_tokens: n, temperature: 0, stream: true })) {
          text += c.choices[0]?.delta.content ?? "";
        }
        if (text !== want(fallbackTranscript(chatMessages(prompt)), n)) throw new Error(`streamed chat ${JSON.stringify(text)}`);
        return;
      }
      case "logprobs": {
        const r = await client.completions.create({ model: "m", prompt, max_tokens: n, temperature: 0, logprobs: 2 });
        const lp = r.choices[0].logprobs!;
        if (r.choices[0].text !== want(prompt, n)) throw new Error(`logprobs text ${JSON.stringify(r.choices[0].text)}`);
        if (lp.tokens!.length !== r.usage!.completion_tokens || lp.token_logprobs!.some((x) => !(x <= 0)) || lp.top_logprobs!.some((t) => Object.keys(t).length < 1)) {
          throw new Error(`logprobs ${JSON.stringify(lp).slice(0, 200)}`);
        }
        return;
      }
      case "json": {
        const r = await client.chat.completions.create({
          model: "m", messages: chatMessages(prompt), max_tokens: 48, temperature: 0.8, seed: i,
          response_format: { type: "json_schema", json_schema: { name: "pet", schema: SCHEMA } },
        });
        const text = r.choices[0].message.content ?? "";
        if (r.choices[0].finish_reason !== "stop" || !validate(JSON.parse(text))) throw new Error(`json ${text} (${r.choices[0].finish_reason})`);
        return;
      }
      case "embeddings": {
        const r = await client.embeddings.create({ model: "m", input: prompt, ...(i % 2 ? { encoding_format: "float" as const } : {}) });
        if (JSON.stringify(r.data[0].embedding) !== JSON.stringify(wantEmbedding(prompt))) throw new Error("embedding differs from the library's");
        return;
      }
      case "tokenize": {
        const j = await (await authed("/tokenize", { content: prompt })).json() as { tokens: number[] };
        if (JSON.stringify(j.tokens) !== JSON.stringify(tok.encode(prompt, { addBos: false }))) throw new Error(`tokens ${JSON.stringify(j)}`);
        return;
      }
      case "detokenize": {
        const ids = tok.encode(prompt, { addBos: false });
        const j = await (await authed("/detokenize", { tokens: ids })).json() as { content: string };
        if (j.content !== tok.decode(ids)) throw new Error(`content ${JSON.stringify(j)}`);
        return;
      }
      case "props": {
        const j = await (await authed("/props")).json() as { total_slots: number; default_generation_settings: { n_ctx: number } };
        if (j.total_slots !== 2 || j.default_generation_settings.n_ctx !== 256) throw new Error(`props ${JSON.stringify(j).slice(0, 200)}`);
        return;
      }
      case "cancel": {
        const stream = await client.completions.create({ model: "m", prompt, max_tokens: 200, temperature: 0, stream: true });
        let got = 0;
        for await (const _ of stream) if (++got === 3) { stream.controller.abort(); break; }
        return;
      }
    }
  };

  const failures: string[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    for (let i = next++; i < REQUESTS; i = next++) {
      const kind = KINDS[i % KINDS.length];
      try {
        await run(i);
        counts.set(kind, (counts.get(kind) ?? 0) + 1);
      } catch (e) {
        failures.push(`#${i} ${kind}: ${(e as Error).message}`);
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;

  assert.equal(failures, [], failures.slice(0, 5).join("\n"));
  assert.is([...counts.values()].reduce((a, b) => a + b, 0), REQUESTS);

  const h = await fetch(`${s.url}/health`);
  assert.is(h.status, 200);
  const m = await (await fetch(`${s.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).text();
  assert.is(metric(m, "edgeprune_queue_length"), 0);
  assert.is(metric(m, "edgeprune_requests_active"), 0);
  assert.ok(metric(m, "edgeprune_generations_cancelled_total") >= 1, "mid-stream cancels reached the server");
  const after = await memory();
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  const growth = (after.rss - afterFirst.rss) / afterFirst.rss;
  // the V8 figures say where a change came from (heap in use, heap committed, buffers) when the RSS check fails
  console.log(`  load: ${REQUESTS} requests from ${CLIENTS} clients in ${secs.toFixed(1)} s, ${metric(m, "edgeprune_generations_cancelled_total")} generations cancelled; ` +
    `RSS after the first request ${mib(afterFirst.rss)} MiB, after the run ${mib(after.rss)} MiB (${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)}%); ` +
    `V8 heap used ${mib(afterFirst.heapUsed)} → ${mib(after.heapUsed)}, committed ${mib(afterFirst.heapTotal)} → ${mib(after.heapTotal)}, ` +
    `external ${mib(afterFirst.external)} → ${mib(after.external)} MiB; wasm ${mib(after.wasm)} MiB`);
  assert.is(after.wasm, afterFirst.wasm, "wasm memory (weights + pooled KV caches) unchanged");
  assert.ok(Math.abs(growth) <= 0.1, `RSS changed by ${(growth * 100).toFixed(1)}% from after the first request to after the run`);
  for (const k of KINDS) assert.ok((counts.get(k) ?? 0) > 0, `${k} requests ran`);

  // /metrics: one series per (route, status) from the fixed list; 1000 random paths add none
  const series = async () => (await (await authed("/metrics")).text()).split("\n").filter((l) => l.startsWith("edgeprune_requests_total{")).map((l) => l.replace(/ \S+$/, ""));
  const random = (j: number) => `/${Math.random().toString(36).slice(2)}/${j}${j % 3 ? "?x=1" : ""}`;
  await fetch(`${s.url}${random(0)}`, { headers: { Authorization: `Bearer ${KEY}` } });
  await fetch(`${s.url}${random(1)}`);
  const before = await series();
  for (const route of ["/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/tokenize", "/detokenize", "/props"]) {
    assert.ok(before.some((l) => l.includes(`route="${route}",status="200"`)), `${route} has its own label`);
  }
  assert.ok(before.every((l) => /route="(\/health|\/metrics|\/v1\/models|\/v1\/completions|\/v1\/chat\/completions|\/tokenize|\/detokenize|\/props|\/v1\/embeddings|other)"/.test(l)), before.join("\n"));
  for (let j = 0; j < 1000; j += 20) {
    await Promise.all(Array.from({ length: 20 }, (_, k) => fetch(`${s.url}${random(j + k)}`, {
      method: ["GET", "POST", "DELETE", "PUT"][k % 4], headers: k % 2 ? { Authorization: `Bearer ${KEY}` } : {},
    }).then((r) => r.arrayBuffer())));
  }
  assert.equal(await series(), before, "1000 random paths add no series");
  const total = (await (await authed("/metrics")).text()).match(/^edgeprune_requests_total\{route="other",status="404"\} (\d+)$/m);
  assert.ok(total && Number(total[1]) >= 500, "the random paths were counted as other");
});

test.run();
