// The OpenAI-compatible server driven by the official `openai` client and by raw HTTP: greedy completions and chat
// (streamed and not) equal `edgeprune generate`, errors and their statuses, API keys, the bounded queue, /health
// while loading, /metrics, and SIGTERM. Servers are real `edgeprune serve` processes on ephemeral 127.0.0.1 ports.
import { test } from "uvu";
import * as assert from "uvu/assert";
import OpenAI from "openai";
import { startServer } from "../src/server/server.js";
import { chatFormatter, encodeChat, fallbackTranscript, renderTemplate } from "../src/server/chat.js";
import { DEFAULTS } from "../src/cli.js";
import { GgufType, type GgufFile } from "../src/gguf/types.js";
import type { Tokenizer } from "../src/tokenizer/index.js";
import { greedyText, localModel, metric, MODEL, runCli, serve, type ServerProcess } from "./server-support.js";
import { generate } from "../src/generate.js";

const servers: ServerProcess[] = [];
test.after(async () => { await Promise.all(servers.map((s) => s.kill())); });

async function server(args: string[] = []): Promise<ServerProcess> {
  const s = await serve(args);
  servers.push(s);
  return s;
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });

const PROMPT = "Once upon a time";
const N = 48;
const LIMITS = { timeoutMs: DEFAULTS.serve.templateMs, heapMb: DEFAULTS.serve.templateHeapMb };

let main: ServerProcess;
let client: OpenAI;

test.before(async () => {
  main = await server(["--ctx", "256", "--parallel", "2"]);
  client = new OpenAI({ baseURL: `${main.url}/v1`, apiKey: "unused", maxRetries: 0 });
});

test("completions, greedy, equal edgeprune generate's text (streamed and not)", async () => {
  const cli = await runCli(["generate", MODEL, "-p", PROMPT, "--temp", "0", "-n", String(N), "--ctx", "256"]);
  assert.is(cli.code, 0, cli.stderr);
  const expected = cli.stdout.slice(PROMPT.length, -1);
  assert.is(expected, greedyText(PROMPT, N).text, "CLI and library agree");
  assert.ok(expected.startsWith(", there was a little girl named Lily."), expected);

  const r = await client.completions.create({ model: "stories260K", prompt: PROMPT, max_tokens: N, temperature: 0 });
  assert.is(r.choices[0].text, expected);
  assert.is(r.choices[0].finish_reason, "length");
  assert.equal({ ...r.usage, prompt_tokens_details: undefined }, { prompt_tokens: 5, completion_tokens: N, total_tokens: 5 + N, prompt_tokens_details: undefined });
  assert.is(r.model, "stories260K");

  const stream = await client.completions.create({ model: "stories260K", prompt: PROMPT, max_tokens: N, temperature: 0, stream: true });
  let text = "";
  let chunks = 0;
  let finish: string | null = null;
  for await (const c of stream) { text += c.choices[0].text; chunks++; finish = c.choices[0].finish_reason ?? finish; }
  assert.is(text, expected);
  assert.ok(chunks > 10, `streamed in ${chunks} chunks`);
  assert.is(finish, "length");
});

test("chat completions, greedy, fallback transcript, equal edgeprune generate (streamed and not)", async () => {
  const messages = [{ role: "system" as const, content: "You tell stories." }, { role: "user" as const, content: "Tell me about a cat." }];
  const prompt = fallbackTranscript(messages);
  assert.is(prompt, "system: You tell stories.\nuser: Tell me about a cat.\nassistant:");
  const cli = await runCli(["generate", MODEL, "-p", prompt, "--temp", "0", "-n", "40", "--ctx", "256"]);
  assert.is(cli.code, 0, cli.stderr);
  const expected = cli.stdout.slice(prompt.length, -1);
  assert.ok(expected.length > 20, expected);

  const r = await client.chat.completions.create({ model: "stories260K", messages, max_tokens: 40, temperature: 0 });
  assert.is(r.choices[0].message.role, "assistant");
  assert.is(r.choices[0].message.content, expected);
  assert.is(r.object, "chat.completion");

  const stream = await client.chat.completions.create({
    model: "stories260K", messages, max_completion_tokens: 40, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "";
  let usage: OpenAI.CompletionUsage | undefined | null;
  let role: string | undefined;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    if (!c.choices.length) continue;
    role ??= c.choices[0].delta.role;
    text += c.choices[0].delta.content ?? "";
  }
  assert.is(role, "assistant");
  assert.is(text, expected);
  assert.is(usage?.completion_tokens, r.usage?.completion_tokens);
});

test("sampling parameters: top_k 1 and min_p 1 are greedy, a seeded hot run is the library's and repeats, stop strings cut (and are not streamed)", async () => {
  const complete = async (params: Record<string, number>) => (await client.completions.create(
    { model: "m", prompt: PROMPT, max_tokens: 30, ...params } as OpenAI.CompletionCreateParamsNonStreaming)).choices[0].text;
  const greedy = greedyText(PROMPT, 30).text;
  // truncation that leaves one candidate makes any temperature and seed greedy
  assert.is(await complete({ temperature: 1.5, top_k: 1, top_p: 1, min_p: 0, seed: 3 }), greedy, "top_k 1");
  assert.is(await complete({ temperature: 1.5, top_k: 0, top_p: 1, min_p: 1, seed: 3 }), greedy, "min_p 1 keeps only the most likely token");
  // untruncated at temperature 1.2: not greedy, the library's sampler with the same seed, the same again, another seed differs
  const hot = { temperature: 1.2, top_k: 0, top_p: 1, min_p: 0 };
  const a = await complete({ ...hot, seed: 7 });
  assert.is.not(a, greedy);
  const m = localModel();
  const lib = generate(m.createContext({ contextSize: 256 }), m.tokenizer, m.tokenizer.encode(PROMPT, { addBos: m.tokenizer.addBos }),
    { maxTokens: 30, temperature: 1.2, topK: 0, topP: 1, minP: 0, seed: 7 }).text;
  assert.is(a, lib, "the server samples as the library does");
  assert.is(await complete({ ...hot, seed: 7 }), a);
  assert.is.not(await complete({ ...hot, seed: 8 }), a);
  // the default truncation (top_k 40, top_p 0.95, min_p 0.05) is applied: the library with those defaults agrees
  const dflt = await complete({ temperature: 1.2, seed: 11 });
  assert.is(dflt, generate(m.createContext({ contextSize: 256 }), m.tokenizer, m.tokenizer.encode(PROMPT, { addBos: m.tokenizer.addBos }), { maxTokens: 30, temperature: 1.2, seed: 11 }).text);

  const full = greedyText(PROMPT, N).text;
  const cut = full.indexOf(" Lily");
  const s = await client.completions.create({ model: "m", prompt: PROMPT, max_tokens: N, temperature: 0, stop: [" Lily", "zzz"] });
  assert.is(s.choices[0].text, full.slice(0, cut));
  assert.is(s.choices[0].finish_reason, "stop");
  const stream = await client.completions.create({ model: "m", prompt: PROMPT, max_tokens: N, temperature: 0, stop: " Lily", stream: true });
  let text = "";
  for await (const c of stream) text += c.choices[0].text;
  assert.is(text, full.slice(0, cut));
});

test("/v1/models, /metrics, 404 and 405", async () => {
  const models = await client.models.list();
  assert.equal(models.data.map((m) => m.id), ["stories260K"]);
  const m = await (await fetch(`${main.url}/metrics`)).text();
  assert.ok(metric(m, "edgeprune_generated_tokens_total") > 0);
  assert.is(metric(m, "edgeprune_queue_length"), 0);
  assert.is(metric(m, "edgeprune_model_loaded"), 1);
  assert.ok(metric(m, "edgeprune_tokens_per_second") > 0);
  assert.match(m, /edgeprune_requests_total\{route="\/v1\/completions",status="200"\} \d+/);
  assert.is((await fetch(`${main.url}/v2/nothing`)).status, 404);
  assert.is((await fetch(`${main.url}/v1/completions`)).status, 405);
});

test("invalid requests get 400 with an OpenAI error body", async () => {
  const c = `${main.url}/v1/completions`;
  const chat = `${main.url}/v1/chat/completions`;
  const cases: [string, unknown, string | null][] = [
    [c, "{not json", null],
    [c, "[1,2]", null],
    [c, {}, "prompt"],
    [c, { prompt: 42 }, "prompt"],
    [c, { prompt: "hi", max_tokens: "ten" }, "max_tokens"],
    [c, { prompt: "hi", max_tokens: 1.5 }, "max_tokens"],
    [c, { prompt: "hi", max_tokens: 300 }, "max_tokens"],
    [c, { prompt: "word ".repeat(400) }, "prompt"],
    [c, { prompt: "hi", temperature: -1 }, "temperature"],
    [c, { prompt: "hi", top_p: 0 }, "top_p"],
    [c, { prompt: "hi", n: 17 }, "n"],
    [c, { prompt: "hi", best_of: 2 }, "best_of"],
    [c, { prompt: "hi", frobnicate: true }, "frobnicate"],
    [c, { prompt: "hi", typical_p: 0.5 }, "typical_p"],
    [c, { prompt: "hi", mirostat: 2 }, "mirostat"],
    [c, { prompt: "hi", grammar: "root ::= \"x\"" }, "grammar"],
    [c, { prompt: "hi", logprobs: 6 }, "logprobs"],
    [c, { prompt: "hi", logit_bias: { "99999": 1 } }, "logit_bias"],
    [c, { prompt: "hi", n_predict: 0 }, "n_predict"],
    [c, { prompt: "hi", response_format: { type: "xml" } }, "response_format.type"],
    [c, { prompt: "hi", response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "frobnicate" } } } } } }, "response_format"],
    [c, { prompt: "hi", messages: [] }, "messages"],
    [c, { prompt: "hi", stream: "yes" }, "stream"],
    [c, { prompt: "hi", stop: [1] }, "stop"],
    [c, { prompt: [1, 99999] }, "prompt"],
    [chat, { model: "x" }, "messages"],
    [chat, { messages: [] }, "messages"],
    [chat, { messages: [{ role: "wizard", content: "hi" }] }, "messages[0].role"],
    [chat, { messages: [{ role: "user", content: 5 }] }, "messages[0].content"],
    [chat, { messages: [{ role: "user", content: "hi" }], tools: [{ type: "function", function: { name: "f" } }] }, "tools"],
    [chat, { messages: [{ role: "user", content: "hi" }], top_logprobs: 3 }, "top_logprobs"],
    [chat, { messages: [{ role: "user", content: "hi" }], echo: true }, "echo"],
  ];
  for (const [url, body, param] of cases) {
    const r = await post(url, body);
    const j = await r.json() as { error: { message: string; type: string; param: string | null } };
    assert.is(r.status, 400, `${JSON.stringify(body).slice(0, 60)} → ${r.status} ${JSON.stringify(j)}`);
    assert.is(j.error.type, "invalid_request_error");
    assert.is(j.error.param, param, JSON.stringify(j));
    assert.ok(j.error.message.length > 10);
  }
  // the openai client surfaces them as BadRequestError
  try {
    await client.completions.create({ model: "m", prompt: "hi", max_tokens: 1000 });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, OpenAI.BadRequestError);
    assert.is((e as InstanceType<typeof OpenAI.BadRequestError>).code, "context_length_exceeded");
  }
});

test("--api-key: 401 without it on every route but /health", async () => {
  const s = await server(["--ctx", "128", "--api-key", "sekret", "--quiet", "--warmup", "0"]);
  assert.is((await fetch(`${s.url}/health`)).status, 200);
  for (const [method, p] of [["GET", "/v1/models"], ["GET", "/metrics"], ["POST", "/v1/completions"], ["POST", "/v1/chat/completions"]]) {
    const r = await fetch(`${s.url}${p}`, { method, body: method === "POST" ? "{}" : undefined });
    assert.is(r.status, 401, p);
    assert.is(((await r.json()) as { error: { code: string } }).error.code, "invalid_api_key");
    assert.is((await fetch(`${s.url}${p}`, { method, body: method === "POST" ? "{}" : undefined, headers: { Authorization: "Bearer wrong" } })).status, 401);
  }
  const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "nope", maxRetries: 0 });
  await bad.models.list().then(() => assert.unreachable(), (e) => assert.instance(e, OpenAI.AuthenticationError));
  const good = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "sekret", maxRetries: 0 });
  const r = await good.completions.create({ model: "m", prompt: PROMPT, max_tokens: 8, temperature: 0 });
  assert.is(r.choices[0].text, greedyText(PROMPT, 8).text);
  await s.kill();
});

test("bounded queue: 429 past it; a client that disconnects cancels its generation", async () => {
  const s = await server(["--ctx", "512", "--parallel", "1", "--queue", "1", "--quiet", "--warmup", "0"]);
  const long = { prompt: PROMPT, max_tokens: 500, temperature: 0, stream: true };
  const ac = new AbortController();
  const first = await post(`${s.url}/v1/completions`, long, {}).then((r) => r);
  // the first holds the only context; read one event so it is surely generating
  const reader = first.body!.getReader();
  await reader.read();
  const second = fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...long, stream: false }), signal: ac.signal }).catch((e) => e);
  await waitFor(async () => metric(await (await fetch(`${s.url}/metrics`)).text(), "edgeprune_queue_length") === 1);
  const third = await post(`${s.url}/v1/completions`, long);
  assert.is(third.status, 429);
  assert.is(((await third.json()) as { error: { type: string } }).error.type, "rate_limit_error");
  // the queued client gives up: it leaves the queue
  ac.abort();
  await second;
  await waitFor(async () => metric(await (await fetch(`${s.url}/metrics`)).text(), "edgeprune_queue_length") === 0);
  // the generating client disconnects: its generation stops early and the context is free again
  await reader.cancel();
  await waitFor(async () => metric(await (await fetch(`${s.url}/metrics`)).text(), "edgeprune_generations_cancelled_total") >= 1);
  const m = await (await fetch(`${s.url}/metrics`)).text();
  assert.ok(metric(m, "edgeprune_generated_tokens_total") < 500, "stopped before max_tokens");
  const after = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 4, temperature: 0 });
  assert.is(after.status, 200);
  await s.kill();
});

test("chat templates: a GGUF's tokenizer.chat_template is rendered with Jinja (in the sandbox); BOS is never doubled", async () => {
  // TinyLlama-1.1B-Chat-v1.0's (Zephyr-style) template
  const zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n" +
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n" +
    "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
  const file = { kv: new Map([["tokenizer.chat_template", { key: "tokenizer.chat_template", type: GgufType.STRING, value: zephyr }]]) } as unknown as GgufFile;
  const real = localModel().tokenizer;
  const tok = { ...real, bosId: 1, eosId: 2, vocabSize: real.vocabSize, tokenText: (id: number) => ["<unk>", "<s>", "</s>"][id] ?? real.tokenText(id) } as Tokenizer;
  const f = await chatFormatter(file, tok, LIMITS);
  assert.is(f.kind, "template");
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }];
  assert.is(await f.render(messages, 1000), "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n");
  assert.is(renderTemplate(zephyr, messages, tok), await f.render(messages, 1000), "sandboxed and in-process rendering agree");
  f.close();
  const noTemplate = await chatFormatter({ kv: new Map() } as unknown as GgufFile, tok, LIMITS);
  assert.is(noTemplate.kind, "fallback");
  const m = localModel().tokenizer;
  const withBos = encodeChat(m, `${m.tokenText(m.bosId)}user: hi`);
  assert.equal(withBos, encodeChat(m, "user: hi"));
  assert.is(withBos.filter((id) => id === m.bosId).length, 1);
});

test("/health is 503 while the model loads, then 200", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const srv = await startServer({ model: async () => { await gate; return localModel(); }, port: 0, modelId: "gated", warmup: 0 });
  try {
    const h = await fetch(`${srv.url}/health`);
    assert.is(h.status, 503);
    assert.equal(await h.json(), { status: "loading" });
    const p = await post(`${srv.url}/v1/completions`, { prompt: "x", max_tokens: 2 });
    assert.is(p.status, 503);
    release();
    await srv.ready;
    assert.is((await fetch(`${srv.url}/health`)).status, 200);
    assert.is((await post(`${srv.url}/v1/completions`, { prompt: "x", max_tokens: 2 })).status, 200);
  } finally {
    await srv.close();
  }
});

test("SIGTERM: in-flight requests finish, queued ones get 503, the process exits 0", async () => {
  const s = await server(["--ctx", "512", "--parallel", "1", "--quiet", "--warmup", "0"]);
  const first = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 480, temperature: 0, stream: true });
  const reader = first.body!.getReader();
  await reader.read();
  const queued = post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 8 });
  await waitFor(async () => metric(await (await fetch(`${s.url}/metrics`)).text(), "edgeprune_queue_length") === 1);
  s.child.kill("SIGTERM");
  let rest = "";
  const dec = new TextDecoder();
  for (;;) { const r = await reader.read(); if (r.done) break; rest += dec.decode(r.value); }
  assert.match(rest, /"finish_reason":"(length|stop)"/);
  assert.ok(rest.endsWith("data: [DONE]\n\n"));
  assert.is((await queued).status, 503);
  assert.is(await s.exited, 0);
  assert.match(s.log(), /SIGTERM: stopping/);
});

test("SIGTERM with --grace 0: in-flight streams end with an error event, the process exits 0", async () => {
  const s = await server(["--ctx", "512", "--parallel", "1", "--quiet", "--grace", "0", "--warmup", "0"]);
  const first = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 480, temperature: 0, stream: true });
  const reader = first.body!.getReader();
  await reader.read();
  s.child.kill("SIGTERM");
  let rest = "";
  const dec = new TextDecoder();
  for (;;) { const r = await reader.read(); if (r.done) break; rest += dec.decode(r.value); }
  assert.match(rest, /"code":"shutdown"/);
  assert.is(await s.exited, 0);
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
