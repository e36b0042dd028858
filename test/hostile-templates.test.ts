// Hostile chat templates (issue 18 item 2): the template is code from whoever made the model file. A template that
// cannot render an ordinary conversation within the limits is refused at start-up; one that loops, allocates or
// grows only on some messages gets a 400 for those, within the sandbox's deadline, while the server goes on serving
// other clients. Real `edgeprune serve` processes on 127.0.0.1, models from test/support/crafted.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEFAULTS } from "../src/cli.js";
import { Template } from "@huggingface/jinja";
import { CRAFTED_TEMPLATES, withChatTemplate } from "./support/crafted.js";
import { greedyText, localModel, runCli, serve, type ServerProcess } from "./server-support.js";

const tmp = mkdtempSync(path.join(tmpdir(), "edgeprune-templates-"));
const servers: ServerProcess[] = [];
test.after(async () => { await Promise.all(servers.map((s) => s.kill())); rmSync(tmp, { recursive: true, force: true }); });

const json = { "Content-Type": "application/json" };
const PROMPT = "Once upon a time";
/** a hang (the old server rendered on its main thread: 93 s for a 10^8 loop) must fail the test, not stall it */
const CLIENT_TIMEOUT_MS = 15_000;

function modelWith(name: string, source: string): string {
  const p = path.join(tmp, `${name}.gguf`);
  writeFileSync(p, withChatTemplate(source));
  return p;
}

for (const t of CRAFTED_TEMPLATES.filter((x) => x.refused === "startup")) {
  test(`start-up refusal: ${t.name}`, async () => {
    const t0 = performance.now();
    const r = await runCli(["serve", modelWith(t.name, t.source), "--port", "0", "--warmup", "0"], {}, 20_000);
    const secs = (performance.now() - t0) / 1000;
    const last = r.stderr.trim().split("\n").pop() ?? "";
    console.log(`  ${t.name}: refused ${secs.toFixed(2)} s after the process started: ${last.slice(0, 150)}`);
    assert.is(r.code, 1, `exit ${r.code} ${r.signal ?? ""}:\n${r.stderr.slice(-500)}`);
    assert.match(r.stderr, /listening on/, "it listened first, so /health said loading meanwhile");
    assert.match(last, /^edgeprune: error: .*tokenizer\.chat_template/);
    assert.match(last, t.error);
    assert.match(last, /will not serve a chat template it cannot render safely/);
  });
}

for (const t of CRAFTED_TEMPLATES.filter((x) => x.refused === "request")) {
  test(`per-request bomb: ${t.name} gets a 400 within the deadline while another client streams and /health answers`, async () => {
    const s = await serve(["--ctx", "512", "--parallel", "2", "--quiet", "--warmup", "0"], {}, modelWith(t.name, t.source));
    servers.push(s);
    const chat = (content: string, maxTokens: number) => fetch(`${s.url}/v1/chat/completions`, {
      method: "POST", headers: json, signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
      body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: maxTokens, temperature: 0 }),
    });
    const story = [{ role: "user", content: "Tell me a story." }];
    // the prompt as the template renders it in this process (a trusted render: we wrote these templates)
    const tok = localModel().tokenizer;
    const prompt = new Template(t.source).render({ messages: story, bos_token: tok.tokenText(tok.bosId), eos_token: tok.tokenText(tok.eosId), add_generation_prompt: true });
    const expected = greedyText(prompt, 16).text;
    const before = await chat("Tell me a story.", 16);
    assert.is(before.status, 200);
    assert.is(((await before.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content, expected);

    // another client streams a long completion through the whole attack
    const other = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: json, body: JSON.stringify({ prompt: PROMPT, max_tokens: 300, temperature: 0, stream: true }) });
    const reader = other.body!.getReader();
    await reader.read();
    let healthWorst = 0;
    let healthChecks = 0;
    let attacking = true;
    const health = (async () => {
      while (attacking) {
        const h0 = performance.now();
        const h = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) });
        healthWorst = Math.max(healthWorst, performance.now() - h0);
        healthChecks++;
        assert.is(h.status, 200);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const t0 = performance.now();
    const bomb = await chat(t.trigger!, 8).catch((e: Error) => e);
    const ms = performance.now() - t0;
    attacking = false;
    await health;
    assert.ok(!(bomb instanceof Error), `the bomb request failed: ${(bomb as Error).message}`);
    const r = bomb as Response;
    const j = await r.json() as { error: { message: string; code: string | null; param: string } };
    console.log(`  ${t.name}: ${r.status} after ${ms.toFixed(0)} ms (deadline ${DEFAULTS.serve.templateMs} ms); /health answered ${healthChecks}× meanwhile, worst ${healthWorst.toFixed(0)} ms; "${j.error.message.slice(0, 120)}"`);
    assert.is(r.status, 400);
    assert.is(j.error.param, "messages");
    assert.match(j.error.message, t.error);
    assert.ok(ms < 5000, `the 400 took ${ms.toFixed(0)} ms`);

    // the streaming client got its whole greedy completion
    let rest = "";
    const dec = new TextDecoder();
    for (;;) { const c = await reader.read(); if (c.done) break; rest += dec.decode(c.value); }
    assert.ok(rest.endsWith("data: [DONE]\n\n"), rest.slice(-200));
    // and chat works again (a killed renderer is replaced)
    const after = await chat("Tell me a story.", 16);
    assert.is(((await after.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content, expected);
    await s.kill();
  });
}

test.run();
