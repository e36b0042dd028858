// The server's llama-server/OpenAI features through the official `openai` client, each checked against something
// computed here: log-probabilities against the float64 reference forward, n > 1 and seeds against the library's
// own sampler, JSON-schema output validated by ajv on 20 seeded samples, chat with a GGUF chat template (Llama 2's)
// against rendering and tokenizing it here, prompt-cache reuse against cache_prompt: false, four concurrent
// requests on --parallel 4 against each one alone, /tokenize, /detokenize and /props.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { Ajv } from "ajv";
import { generate } from "../src/generate.js";
import { renderTemplate, stripBosText } from "../src/server/chat.js";
import { SAMPLER_DEFAULTS } from "../src/sampler.js";
import { withChatTemplate } from "./support/crafted.js";
import { refLogProb, RefLlama } from "./support/ref-forward.js";
import { greedyText, localModel, MODEL, serve, type ServerProcess } from "./server-support.js";
import { PROB_VS_F64 } from "./tolerances.js";
import { STUDY_CACHE } from "../src/model/forward.js";

const PROMPT = "Once upon a time";
const servers: ServerProcess[] = [];
const tmp = mkdtempSync(join(tmpdir(), "edgeprune-features-"));
test.after(async () => { await Promise.all(servers.map((s) => s.kill())); rmSync(tmp, { recursive: true, force: true }); });

async function server(args: string[], model?: string): Promise<{ s: ServerProcess; client: OpenAI }> {
  // an F32 cache, here and in the local expectations: log-probabilities are checked at F32 tightness
  const s = await serve(["--quiet", "--warmup", "0", "-ctk", "f32", "-ctv", "f32", ...args], {}, model);
  servers.push(s);
  return { s, client: new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 }) };
}

let main: { s: ServerProcess; client: OpenAI };
test.before(async () => { main = await server(["--ctx", "512", "--parallel", "4"]); });

const ref = RefLlama.fromGguf(new Uint8Array(readFileSync(MODEL)));
const prob = (lp: number) => Math.exp(lp);

/** The library's sampled continuation with the server's defaults (what a seeded request must give). */
function sampled(prompt: number[], maxTokens: number, seed: number, temperature = 1): string {
  const m = localModel();
  return generate(m.createContext({ contextSize: 512, ...STUDY_CACHE }), m.tokenizer, prompt, { maxTokens, temperature, seed, topK: SAMPLER_DEFAULTS.topK, topP: SAMPLER_DEFAULTS.topP, minP: SAMPLER_DEFAULTS.minP }).text;
}

test("logprobs: completions (with echo) and chat give the float64 reference's log-probabilities, in OpenAI's shapes", async () => {
  const tok = localModel().tokenizer;
  const r = await main.client.completions.create({ model: "m", prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 3, echo: true });
  const c = r.choices[0];
  assert.is(c.text, PROMPT + greedyText(PROMPT, 8, STUDY_CACHE).text);
  const lp = c.logprobs!;
  const ids = tok.encode(PROMPT, { addBos: true });
  const all = [...ids, ...greedyText(PROMPT, 8, STUDY_CACHE).tokens];
  // every token but BOS, each with its text and offset into the echoed text
  assert.is(lp.tokens!.length, all.length - 1);
  assert.is(lp.tokens!.join("").trimStart(), c.text);
  lp.text_offset!.forEach((o, i) => assert.ok(c.text.slice(o).startsWith(lp.tokens![i].trimStart()) || c.text.slice(o).startsWith(lp.tokens![i]), `offset ${o} of ${lp.tokens![i]}`));
  const logits = ref.forward(all);
  const n = ref.config.vocabSize;
  let worst = 0;
  for (let i = 1; i < all.length; i++) {
    const want = refLogProb(logits, i - 1, n, all[i]);
    const got = lp.token_logprobs![i - 1]!;
    worst = Math.max(worst, Math.abs(prob(got) - prob(want)));
    const top = Object.entries(lp.top_logprobs![i - 1]!);
    assert.is(top.length, 3);
    assert.ok(top.every(([, v], j) => j === 0 || v <= top[j - 1][1]), "alternatives best first");
    if (i >= ids.length) assert.is(top[0][1], got, "greedy: the chosen token is the most likely one");
  }
  console.log(`  completions logprobs: max |p − p_f64| ${worst.toExponential(2)} over ${all.length - 1} tokens`);
  assert.ok(worst <= PROB_VS_F64, `max |p − p_f64| ${worst}`);

  const ch = await main.client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = ch.choices[0].logprobs!.content!;
  assert.is(content.length, ch.usage!.completion_tokens);
  assert.is(content.map((t) => t.token).join(""), ch.choices[0].message.content);
  for (const t of content) {
    assert.is(Buffer.from(t.bytes!).toString("utf8"), t.token);
    assert.is(t.top_logprobs.length, 2);
    assert.is(t.top_logprobs[0].logprob, t.logprob);
  }
});

test("n > 1: each choice is the library's sampling with seed + index; streamed choices carry their index", async () => {
  const ids = localModel().tokenizer.encode(PROMPT, { addBos: true });
  const r = await main.client.completions.create({ model: "m", prompt: PROMPT, max_tokens: 24, temperature: 1, seed: 11, n: 3 });
  assert.is(r.choices.length, 3);
  r.choices.forEach((c, i) => {
    assert.is(c.index, i);
    assert.is(c.text, sampled(ids, 24, 11 + i), `choice ${i}`);
  });
  assert.is.not(r.choices[0].text, r.choices[1].text);
  assert.is(r.usage!.completion_tokens, 72);
  const stream = await main.client.completions.create({ model: "m", prompt: PROMPT, max_tokens: 24, temperature: 1, seed: 11, n: 3, stream: true });
  const texts = ["", "", ""];
  for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.text;
  assert.equal(texts, r.choices.map((c) => c.text));
});

test("JSON schema: 20 seeded samples parse and validate against their schema (ajv); json_object gives an object", async () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 16 },
      age: { type: "integer", minimum: 1, maximum: 99 },
      happy: { type: "boolean" },
      pet: { enum: ["cat", "dog", "bird"] },
      friends: { type: "array", items: { type: "string", maxLength: 10 }, maxItems: 3 },
    },
    required: ["name", "age", "happy", "pet", "friends"],
    additionalProperties: false,
  };
  const validate = new Ajv({ strict: true }).compile(schema);
  const outputs: string[] = [];
  for (let seed = 0; seed < 20; seed++) {
    const r = await main.client.chat.completions.create({
      model: "m", messages: [{ role: "user", content: "Describe a child as JSON." }], temperature: 1, seed, max_tokens: 160,
      response_format: { type: "json_schema", json_schema: { name: "child", schema, strict: true } },
    });
    const text = r.choices[0].message.content!;
    assert.is(r.choices[0].finish_reason, "stop", text);
    const value = JSON.parse(text) as unknown;
    assert.ok(validate(value), `${text}: ${JSON.stringify(validate.errors)}`);
    outputs.push(text);
  }
  assert.ok(new Set(outputs).size >= 15, `${new Set(outputs).size} distinct outputs of 20`);
  console.log(`  json_schema: 20/20 valid, e.g. ${outputs[0]}`);
  // the same through llama-server's json_schema field and a completion
  const c = await fetch(`${main.s.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: PROMPT, json_schema: schema, seed: 3, temperature: 1, max_tokens: 160 }) });
  const cj = await c.json() as { choices: { text: string }[] };
  assert.ok(validate(JSON.parse(cj.choices[0].text)), cj.choices[0].text);
  // json_object: whatever the model writes is kept to a JSON object's prefix; a bounded one is given room to close
  const o = await main.client.completions.create({ model: "m", prompt: PROMPT, temperature: 0, max_tokens: 40, response_format: { type: "json_object" } } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.match(o.choices[0].text, /^\{/);
});

// Llama 2's chat template, as in meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json
const LLAMA2_TEMPLATE = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

test("chat with the GGUF's chat template (Llama 2's): the prompt is the rendered template with its <s> and </s> as tokens", async () => {
  const file = join(tmp, "stories260K-llama2-chat.gguf");
  writeFileSync(file, withChatTemplate(LLAMA2_TEMPLATE));
  const { client } = await server(["--ctx", "512"], file);
  const messages = [
    { role: "system" as const, content: "You tell stories." }, { role: "user" as const, content: "Tell me about a cat." },
    { role: "assistant" as const, content: "The cat was big." }, { role: "user" as const, content: "And then?" },
  ];
  const tok = localModel().tokenizer;
  const text = renderTemplate(LLAMA2_TEMPLATE, messages, tok);
  assert.match(text, /^<s>\[INST\] <<SYS>>\nYou tell stories\.\n<<\/SYS>>\n\nTell me about a cat\. \[\/INST\] The cat was big\. <\/s><s>\[INST\] And then\? \[\/INST\]$/);
  const ids = tok.encode(stripBosText(tok, text), { addBos: true, parseSpecial: true });
  // the turn's </s> and the next <s> are the model's EOS and BOS tokens, not their letters
  const eosAt = ids.indexOf(tok.eosId);
  assert.ok(eosAt > 0 && ids[eosAt + 1] === tok.bosId, "</s><s> inside the prompt are tokens");
  const m = localModel();
  const want = generate(m.createContext({ contextSize: 512, ...STUDY_CACHE }), m.tokenizer, ids, { maxTokens: 24, temperature: 0 });
  const r = await client.chat.completions.create({ model: "m", messages, max_tokens: 24, temperature: 0 });
  assert.is(r.usage!.prompt_tokens, ids.length);
  assert.is(r.choices[0].message.content, want.text);
});

test("prompt cache: a request sharing a prefix reuses it (cached_tokens) and gives the same text as without reuse", async () => {
  const tok = localModel().tokenizer;
  const story = readFileSync(join(process.cwd(), "../shared/data/tinystories/tinystories-validation-first1000.txt"), "utf8").slice(0, 900);
  const first = await main.client.completions.create({ model: "m", prompt: story, max_tokens: 8, temperature: 0 });
  const shared = tok.encode(story, { addBos: true }).length;
  const again = story + " The end.";
  const reused = await main.client.completions.create({ model: "m", prompt: again, max_tokens: 16, temperature: 0 });
  const fresh = await main.client.completions.create({ model: "m", prompt: again, max_tokens: 16, temperature: 0, cache_prompt: false } as OpenAI.CompletionCreateParamsNonStreaming);
  const lcp = (() => { const a = tok.encode(story, { addBos: true }), b = tok.encode(again, { addBos: true }); let i = 0; while (a[i] === b[i]) i++; return i; })();
  assert.ok(first.usage!.prompt_tokens === shared);
  assert.is((reused.usage as { prompt_tokens_details?: { cached_tokens: number } }).prompt_tokens_details?.cached_tokens, lcp);
  assert.is((fresh.usage as { prompt_tokens_details?: { cached_tokens: number } }).prompt_tokens_details?.cached_tokens, 0);
  assert.ok(lcp > 150, `shared prefix ${lcp} tokens`);
  assert.is(reused.choices[0].text, fresh.choices[0].text);
  const m = localModel();
  assert.is(reused.choices[0].text, generate(m.createContext({ contextSize: 512, ...STUDY_CACHE }), tok, tok.encode(again, { addBos: true }), { maxTokens: 16, temperature: 0 }).text);
});

test("--parallel 4: four concurrent greedy requests give each the tokens it gets alone, and run at the same time", async () => {
  const prompts = ["Once upon a time", "The dog", "Lily and Tom went to the park", "One day, a big bird"];
  const spans: [number, number][] = [];
  const texts = await Promise.all(prompts.map(async (p, i) => {
    let text = "";
    let firstAt = 0;
    const stream = await main.client.completions.create({ model: "m", prompt: p, max_tokens: 96, temperature: 0, stream: true });
    for await (const c of stream) { firstAt ||= performance.now(); text += c.choices[0].text; }
    spans[i] = [firstAt, performance.now()];
    return text;
  }));
  texts.forEach((t, i) => assert.is(t, greedyText(prompts[i], 96, STUDY_CACHE).text, prompts[i]));
  // every one had its first token before any of them finished: they were generated together
  const lastStart = Math.max(...spans.map((s) => s[0])), firstEnd = Math.min(...spans.map((s) => s[1]));
  assert.ok(lastStart < firstEnd, "the four generations overlapped");
});

test("/tokenize, /detokenize and /props, as llama-server answers them", async () => {
  const tok = localModel().tokenizer;
  const post = (p: string, body: unknown) => fetch(`${main.s.url}${p}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const t = await (await post("/tokenize", { content: PROMPT })).json() as { tokens: number[] };
  assert.equal(t.tokens, tok.encode(PROMPT, { addBos: false }));
  const withBos = await (await post("/tokenize", { content: PROMPT, add_special: true })).json() as { tokens: number[] };
  assert.equal(withBos.tokens, tok.encode(PROMPT, { addBos: true }));
  const pieces = await (await post("/tokenize", { content: "a ☃", with_pieces: true })).json() as { tokens: { id: number; piece: string | number[] }[] };
  assert.is(pieces.tokens.map((p) => (typeof p.piece === "string" ? p.piece : Buffer.from(p.piece).toString("latin1"))).length, tok.encode("a ☃", { addBos: false }).length);
  assert.ok(pieces.tokens.some((p) => Array.isArray(p.piece)), "byte-fallback pieces of ☃ come as bytes");
  const d = await (await post("/detokenize", { tokens: t.tokens })).json() as { content: string };
  assert.is(d.content, PROMPT);
  assert.is((await post("/detokenize", { tokens: [99999] })).status, 400);
  assert.is((await post("/tokenize", { text: "x" })).status, 400);
  const props = await (await fetch(`${main.s.url}/props`)).json() as { default_generation_settings: { n_ctx: number }; total_slots: number; chat_template: string; bos_token: string };
  assert.is(props.default_generation_settings.n_ctx, 512);
  assert.is(props.total_slots, 4);
  assert.is(props.chat_template, "");
  assert.is(props.bos_token, "<s>");
});

test.run();
