// `edgeprune chat` under a pipe, as a script would drive it: each line a user message, answers with the GGUF's chat
// template equal to the library's greedy continuation of the whole rendered conversation (so the KV cache it keeps
// between turns changes nothing but the work), /reset, and Ctrl-C (SIGINT) stopping an answer but not the program.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "../src/generate.js";
import { renderTemplate, stripBosText, type ChatMessage } from "../src/server/chat.js";
import { withChatTemplate } from "./support/crafted.js";
import { localModel, MODEL } from "./server-support.js";

const tmp = mkdtempSync(join(tmpdir(), "edgeprune-chat-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
// a Llama 2 style template: BOS + [INST] per user turn, each answer closed by EOS
const TEMPLATE = "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>' + message['content'] + '<</SYS>>' }}{% elif message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

function chat(model: string, args: string[], onStdout?: (all: string, child: ReturnType<typeof spawn>) => void): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = spawn(process.execPath, ["bin/edgeprune.js", "chat", model, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout!.on("data", (d: Buffer) => { out += d.toString(); onStdout?.(out, child); });
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return { child, done: new Promise((resolve) => child.on("close", (code) => resolve({ code, out, err }))) };
}

/** The greedy answer to a conversation, computed from scratch: render, tokenize (special tokens as tokens), generate. */
function answer(messages: ChatMessage[], n: number): string {
  const m = localModel();
  const text = stripBosText(m.tokenizer, renderTemplate(TEMPLATE, messages, m.tokenizer));
  const ids = m.tokenizer.encode(text, { addBos: true, parseSpecial: true });
  return generate(m.createContext({ contextSize: 512 }), m.tokenizer, ids, { maxTokens: n, temperature: 0 }).text;
}

test("under a pipe: each line is a turn of the conversation, answered as if the whole conversation were evaluated afresh; /reset starts over", async () => {
  const model = join(tmp, "chat.gguf");
  writeFileSync(model, withChatTemplate(TEMPLATE));
  const n = 20;
  const { child, done } = chat(model, ["--temp", "0", "-n", String(n), "--ctx", "512", "--system", "You tell stories.", "--verbose"]);
  child.stdin!.end("Tell me about a cat.\nAnd then?\n/reset\nTell me about a cat.\n");
  const r = await done;
  assert.is(r.code, 0, r.err);
  const system = { role: "system", content: "You tell stories." };
  const a1 = answer([system, { role: "user", content: "Tell me about a cat." }], n);
  const a2 = answer([system, { role: "user", content: "Tell me about a cat." }, { role: "assistant", content: a1 }, { role: "user", content: "And then?" }], n);
  assert.is(r.out, `${a1}\n${a2}\n${a1}\n`);
  // the second turn reused the first turn's prompt from the cache; after /reset nothing was cached
  const cached = [...r.err.matchAll(/(\d+) from the cache/g)].map((x) => Number(x[1]));
  assert.is(cached.length, 3);
  assert.ok(cached[0] === 0 && cached[1] > 20 && cached[2] === 0, `cached tokens per turn: ${cached}`);
});

test("Ctrl-C (SIGINT) stops the answer, not the program: the next line is answered and EOF ends it with exit 0", async () => {
  let signalled = false;
  const { child, done } = chat(MODEL, ["--temp", "0", "-n", "1500", "--ctx", "2048", "--ignore-eos", "--verbose"], (all, c) => {
    if (!signalled && all.length > 60) { signalled = true; c.kill("SIGINT"); }
  });
  child.stdin!.write("Tell me a long story.\n");
  // the second message is sent once the first answer has been stopped
  const timer = setInterval(() => { if (signalled) { clearInterval(timer); setTimeout(() => child.stdin!.end("Hi!\n"), 200); } }, 20);
  const r = await done;
  clearInterval(timer);
  assert.is(r.code, 0, r.err);
  const turns = [...r.err.matchAll(/(\d+) tokens in \d+ ms; stopped by (\S+)\]/g)].map((x) => [Number(x[1]), x[2]] as const);
  assert.is(turns.length, 2, r.err);
  assert.is(turns[0][1], "Ctrl-C");
  assert.ok(turns[0][0] < 1500, `${turns[0][0]} tokens before Ctrl-C`);
  assert.ok(turns[1][0] > 0, "the next message was answered");
});

test("chat refuses bad options before it starts", async () => {
  const r = await chat(MODEL, ["--ctx", "100000"]).done;
  assert.is(r.code, 1);
  assert.match(r.err, /--ctx 100000 is more than the model's context length 2048/);
  const t = await chat(MODEL, ["--temp", "-1"]).done;
  assert.match(t.err, /--temp must be at least 0, got -1/);
});

test.run();
