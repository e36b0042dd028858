// Chat prompts: render OpenAI-style messages with the model's own `tokenizer.chat_template` (Jinja, via
// @huggingface/jinja, the implementation transformers.js uses) in the template sandbox, or a plain transcript
// when the model has none. Text only: not tokenization, not generation.
import { Template } from "@huggingface/jinja";
import { metaString } from "../gguf/metadata.js";
import { KEY } from "../gguf/names.js";
import type { GgufFile } from "../gguf/types.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { TemplateError, TemplateSandbox, type SandboxLimits } from "./template-sandbox.js";

export { TemplateError } from "./template-sandbox.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatFormatter {
  /** "template" (the GGUF's chat template) or "fallback" (the plain transcript) */
  readonly kind: "template" | "fallback";
  /** the prompt text, ending where the assistant's reply starts; rejects with a TemplateError past `maxChars` */
  render(messages: ChatMessage[], maxChars: number): Promise<string>;
  /** stop the template's renderer process, if any */
  close(): void;
}

/**
 * The fallback for models without a template (stories260K, base models): one `role: content` line per message and
 * a last line `assistant:`, which the model continues. Documented in docs/serving.md.
 */
export function fallbackTranscript(messages: ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join("") + "assistant:";
}

/** The variables a chat template sees besides the messages. */
export function templateVariables(tokenizer: Tokenizer): { bos_token: string; eos_token: string; add_generation_prompt: true } {
  const special = (id: number) => (id >= 0 && id < tokenizer.vocabSize ? tokenizer.tokenText(id) : "");
  return { bos_token: special(tokenizer.bosId), eos_token: special(tokenizer.eosId), add_generation_prompt: true };
}

/** Render a template in this process: only for templates one trusts (tests, tools); the server uses the sandbox. */
export function renderTemplate(source: string, messages: ChatMessage[], tokenizer: Tokenizer): string {
  return new Template(source).render({ messages, ...templateVariables(tokenizer) });
}

/**
 * Conversations rendered once at start-up: a template that cannot render an ordinary conversation within the
 * limits is refused before the server says it is ready. Some templates refuse a system message, hence the second.
 */
const SAMPLE_CONVERSATIONS: ChatMessage[][] = [
  [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "Hello!" }, { role: "assistant", content: "Hi! How can I help?" }, { role: "user", content: "Tell me a story." }],
  [{ role: "user", content: "Hello!" }, { role: "assistant", content: "Hi! How can I help?" }, { role: "user", content: "Tell me a story." }],
];
const SAMPLE_MAX_CHARS = 1 << 16;

/**
 * The formatter for a model: its GGUF chat template (started in a sandbox with `limits`, and checked on sample
 * conversations) if it has one, else the fallback transcript. Throws a TemplateError for a template that does not
 * parse or cannot render the samples within the limits.
 */
export async function chatFormatter(file: GgufFile, tokenizer: Tokenizer, limits: SandboxLimits): Promise<ChatFormatter> {
  const source = metaString(file.kv, KEY.chatTemplate, "");
  if (!source) {
    return { kind: "fallback", render: async (messages) => fallbackTranscript(messages), close: () => {} };
  }
  const where = `the model's ${KEY.chatTemplate}`;
  let sandbox: TemplateSandbox;
  try {
    sandbox = await TemplateSandbox.start(source, limits);
  } catch (e) {
    throw new TemplateError(`${where}: ${(e as Error).message}`, (e as TemplateError).reason ?? "template");
  }
  const vars = templateVariables(tokenizer);
  const render = (messages: ChatMessage[], maxChars: number) => sandbox.render({ messages, ...vars }, maxChars);
  let lastError: TemplateError | undefined;
  for (const sample of SAMPLE_CONVERSATIONS) {
    try {
      await render(sample, SAMPLE_MAX_CHARS);
      lastError = undefined;
      break;
    } catch (e) {
      lastError = e as TemplateError;
      // an exception may be the template refusing a system message; a limit hit is refused outright
      if (lastError.reason !== "template") break;
    }
  }
  if (lastError) {
    sandbox.close();
    throw new TemplateError(`${where} cannot render a sample conversation: ${lastError.message}`, lastError.reason);
  }
  return { kind: "template", render, close: () => sandbox.close() };
}

/**
 * Token ids of a rendered chat prompt. Templates usually write the BOS text themselves; it is stripped and BOS is
 * added as a token instead, so the prompt never starts with two BOS (llama.cpp warns about the same thing). The
 * template's control tokens (<|im_start|>, <start_of_turn>, ...) are parsed as tokens, as llama.cpp's server does.
 */
export function encodeChat(tokenizer: Tokenizer, text: string): number[] {
  return tokenizer.encode(stripBosText(tokenizer, text), { addBos: tokenizer.addBos, parseSpecial: true });
}

/** The rendered prompt without a leading BOS text (encodeChat adds BOS as a token). */
export function stripBosText(tokenizer: Tokenizer, text: string): string {
  const bos = tokenizer.bosId >= 0 && tokenizer.bosId < tokenizer.vocabSize ? tokenizer.tokenText(tokenizer.bosId) : "";
  return bos && text.startsWith(bos) ? text.slice(bos.length) : text;
}
