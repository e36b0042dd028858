// `edgeprune chat MODEL`: an interactive conversation in the terminal, or line by line under a pipe. Each turn is
// rendered with the model's chat template (in the template sandbox, as the server does) or the plain transcript,
// and only what the KV cache does not already hold is evaluated (the longest common prefix is kept). /reset
// forgets the conversation; Ctrl-C stops the answer, not the program. Node-only; generation is src/generate.ts.
import type { Command } from "commander";
import * as readline from "node:readline";
import { generateSteps } from "../generate.js";
import { checkModelFile } from "../model/check.js";
import { loadModelFile, readGgufFileHeader } from "../node/load.js";
import { validateSamplerOptions } from "../sampler.js";
import { chatFormatter, stripBosText, type ChatMessage } from "../server/chat.js";
import { commonPrefix } from "../server/engine.js";
import { cacheTypeK, cacheTypeV, cacheTypes, checkContextOption, checkFile, int, num, startThreads, threadsAsked, threadsOption, type CacheTypeFlags } from "./common.js";
import { SAMPLER_DEFAULTS } from "../sampler.js";

/** The chat command's defaults (the sampler's are shared with generate and serve). */
const CHAT = { tokens: 512, contextSize: 2048, templateMs: 500, templateHeapMb: 64 } as const;

const HELP = "commands: /reset forgets the conversation, /exit (or Ctrl-D) quits; Ctrl-C stops an answer";

interface ChatFlags {
  system?: string; tokens: number; temp: number; topK: number; topP: number; minP: number; repeatPenalty: number; repeatLastN: number;
  seed?: number; ctx?: number; threads?: number; ignoreEos?: boolean; verbose?: boolean;
  cacheTypeK?: CacheTypeFlags["cacheTypeK"]; cacheTypeV?: CacheTypeFlags["cacheTypeV"];
}

export function registerChatCommand(program: Command): void {
  program
    .command("chat")
    .description("talk with a model: its chat template, the conversation kept in the KV cache, /reset, Ctrl-C stops the answer (works under a pipe: one message per line)")
    .argument("<model>", "GGUF file")
    .option("--system <text>", "a system message that starts the conversation (and survives /reset)")
    .option("-n, --tokens <n>", "tokens per answer at most", int("-n", { min: 1 }), CHAT.tokens)
    .option("--temp <t>", "temperature; 0 is greedy", num("--temp", { min: 0 }), SAMPLER_DEFAULTS.temperature)
    .option("--top-k <k>", "top-k (0 = off)", int("--top-k", { min: 0 }), SAMPLER_DEFAULTS.topK)
    .option("--top-p <p>", "top-p (1 = off)", num("--top-p", { above: 0, max: 1 }), SAMPLER_DEFAULTS.topP)
    .option("--min-p <p>", "min-p (0 = off)", num("--min-p", { min: 0, max: 1 }), SAMPLER_DEFAULTS.minP)
    .option("--repeat-penalty <r>", "repetition penalty (1 = off)", num("--repeat-penalty", { above: 0 }), SAMPLER_DEFAULTS.repeatPenalty)
    .option("--repeat-last-n <n>", "tokens the penalty looks back over", int("--repeat-last-n", { min: 0 }), SAMPLER_DEFAULTS.repeatLastN)
    .option("-s, --seed <n>", "sampling seed (default: random)", int("--seed"))
    .option("--ctx <n>", `context size: the conversation's tokens (default: the model's, at most ${CHAT.contextSize})`, int("--ctx", { min: 2 }))
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .addOption(threadsOption())
    .option("--ignore-eos", "keep answering past end-of-sequence (until -n)")
    .option("--verbose", "after each answer, print its prompt, cache and speed figures to stderr")
    .action((model: string, o: ChatFlags) => chat(model, o));
}

async function chat(modelPath: string, o: ChatFlags): Promise<void> {
  checkFile(modelPath, "model");
  const config = checkModelFile(readGgufFileHeader(modelPath), modelPath);
  checkContextOption(o.ctx, config.trainContext);
  const sampling = { temperature: o.temp, topK: o.topK, topP: o.topP, minP: o.minP, repeatPenalty: o.repeatPenalty, repeatLastN: o.repeatLastN, seed: o.seed };
  validateSamplerOptions(sampling);
  const contextSize = o.ctx ?? Math.min(config.trainContext, CHAT.contextSize);
  if (o.tokens >= contextSize) throw new Error(`-n ${o.tokens} leaves no room for the conversation in a context of ${contextSize} tokens; use a smaller -n or a larger --ctx`);
  const asked = await threadsAsked(o);
  const m = loadModelFile(modelPath, { contextSize, threads: asked, ...cacheTypes(o) });
  await startThreads(m, asked);
  const tok = m.tokenizer;
  const formatter = await chatFormatter(m.file, tok, { timeoutMs: CHAT.templateMs, heapMb: CHAT.templateHeapMb });
  const ctx = m.createContext({ contextSize });
  // what the KV cache holds, in order (ctx.nPast tokens)
  let cached: number[] = [];
  const start: ChatMessage[] = o.system !== undefined ? [{ role: "system", content: o.system }] : [];
  let messages: ChatMessage[] = [...start];
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const say = (line: string) => process.stderr.write(`${line}\n`);
  if (tty) say(`edgeprune chat: ${m.name}, ${formatter.kind === "template" ? "its chat template" : "no chat template (a plain transcript)"}, ${contextSize} tokens of context. ${HELP}`);

  let answering = false;
  let interrupted = false;
  let quitting = false;
  const rl = readline.createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty, prompt: "> " });
  // In a terminal readline turns Ctrl-C into its own event; under a pipe it arrives as SIGINT.
  let pressedOnce = false;
  const onInterrupt = () => {
    if (answering) { interrupted = true; return; }
    if (!tty) { quitting = true; rl.close(); return; }
    if (pressedOnce || rl.line === "") {
      if (pressedOnce) { quitting = true; rl.close(); return; }
      pressedOnce = true;
      process.stdout.write("\n(Ctrl-C again, Ctrl-D or /exit to quit)\n");
    } else {
      process.stdout.write("\n");
    }
    rl.write(null, { ctrl: true, name: "u" });
    rl.prompt();
  };
  rl.on("SIGINT", onInterrupt);
  process.on("SIGINT", onInterrupt);

  /** Render the conversation and tokenize it, as the server does (a template's special tokens are tokens). */
  const render = async (msgs: ChatMessage[]) => {
    const text = await formatter.render(msgs, contextSize * 64);
    return tok.encode(stripBosText(tok, text), { addBos: tok.addBos, parseSpecial: formatter.kind === "template" });
  };

  async function turn(userText: string): Promise<void> {
    messages.push({ role: "user", content: userText });
    let prompt = await render(messages);
    // the oldest exchanges go (the system message stays) until the prompt and an answer fit
    while (prompt.length + o.tokens > contextSize && messages.length > start.length + 1) {
      messages.splice(start.length, messages[start.length].role === "user" && messages[start.length + 1]?.role === "assistant" ? 2 : 1);
      prompt = await render(messages);
      say("(the oldest messages were dropped to fit the context)");
    }
    if (prompt.length + o.tokens > contextSize) {
      messages.pop();
      say(`edgeprune: this message (${prompt.length} tokens) and an answer of -n ${o.tokens} do not fit the context of ${contextSize} tokens; it was not sent`);
      return;
    }
    const keep = Math.min(commonPrefix(cached, prompt), prompt.length - 1);
    ctx.truncate(keep);
    answering = true;
    interrupted = false;
    let text = "";
    try {
      const steps = generateSteps(ctx, tok, prompt, {
        maxTokens: o.tokens, ...sampling, cached: keep, stopAtEos: !o.ignoreEos,
        // the plain transcript has no end-of-turn token: the model's next "user:" line ends its answer
        stop: formatter.kind === "fallback" ? ["\nuser:"] : undefined,
        shouldStop: () => interrupted,
      });
      for (;;) {
        const step = steps.next();
        if (step.done) {
          const r = step.value;
          cached = [...prompt, ...r.tokens].slice(0, ctx.nPast);
          if (o.verbose) say(`[prompt ${r.promptTokens} tokens, ${r.cachedTokens} from the cache, ${(r.prefillMs).toFixed(0)} ms; ${r.tokens.length} tokens in ${r.decodeMs.toFixed(0)} ms; stopped by ${interrupted ? "Ctrl-C" : r.stopReason}]`);
          break;
        }
        text += step.value.text;
        process.stdout.write(step.value.text);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      answering = false;
    }
    process.stdout.write(interrupted && tty ? " [stopped]\n" : "\n");
    // as generated, so that the next render repeats the cached tokens (the transcript's "assistant: " has its own space)
    messages.push({ role: "assistant", content: formatter.kind === "fallback" ? text.replace(/^ /, "") : text });
  }

  try {
    if (tty) rl.prompt();
    for await (const line of rl) {
      pressedOnce = false;
      const input = line.trim();
      if (input === "/exit" || input === "/quit") break;
      if (input === "/reset") {
        messages = [...start];
        ctx.reset();
        cached = [];
        if (tty) say("(conversation forgotten)");
      } else if (input === "/help") {
        say(HELP);
      } else if (input.startsWith("/")) {
        say(`unknown command ${input}; ${HELP}`);
      } else if (input !== "") {
        await turn(input);
      }
      if (quitting) break;
      if (tty) rl.prompt();
    }
  } finally {
    rl.close();
    process.off("SIGINT", onInterrupt);
    formatter.close();
    m.stopThreads();
  }
  if (tty) process.stdout.write("\n");
}
