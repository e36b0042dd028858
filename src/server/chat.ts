// Chat prompts: render OpenAI-style messages with the model's own `tokenizer.chat_template` (Jinja, via
// @huggingface/jinja, the implementation transformers.js uses), or a plain transcript when the model has none.
// Text only: not tokenization, not generation.
import { Template } from "@huggingface/jinja";
import { metaString } from "../gguf/metadata.js";
import { KEY } from "../gguf/names.js";
import type { GgufFile } from "../gguf/types.js";
import type { Tokenizer } from "../tokenizer/index.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatFormatter {
  /** "template" (the GGUF's chat template) or "fallback" (the plain transcript) */
  readonly kind: "template" | "fallback";
  /** the prompt text, ending where the assistant's reply starts */
  render(messages: ChatMessage[]): string;
}

/**
 * The fallback for models without a template (stories260K, base models): one `role: content` line per message and
 * a last line `assistant:`, which the model continues. Documented in docs/serving.md.
 */
export function fallbackTranscript(messages: ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join("") + "assistant:";
}

/** The formatter for a model: its GGUF chat template if it has one that parses, else the fallback transcript. */
export function chatFormatter(file: GgufFile, tokenizer: Tokenizer): ChatFormatter {
  const source = metaString(file.kv, KEY.chatTemplate, "");
  if (!source) return { kind: "fallback", render: fallbackTranscript };
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new Error(`the model's ${KEY.chatTemplate} does not parse: ${(e as Error).message}`);
  }
  const special = (id: number) => (id >= 0 && id < tokenizer.vocabSize ? tokenizer.tokenText(id) : "");
  const bos = special(tokenizer.bosId);
  const eos = special(tokenizer.eosId);
  return {
    kind: "template",
    render: (messages) => template.render({ messages, bos_token: bos, eos_token: eos, add_generation_prompt: true }),
  };
}

/**
 * Token ids of a rendered chat prompt. Templates usually write the BOS text themselves; it is stripped and BOS is
 * added as a token instead, so the prompt never starts with two BOS (llama.cpp warns about the same thing).
 */
export function encodeChat(tokenizer: Tokenizer, text: string): number[] {
  const bos = tokenizer.bosId >= 0 && tokenizer.bosId < tokenizer.vocabSize ? tokenizer.tokenText(tokenizer.bosId) : "";
  const body = bos && text.startsWith(bos) ? text.slice(bos.length) : text;
  return tokenizer.encode(body, { addBos: tokenizer.addBos });
}
