// The OpenAI wire format: checks a request body field by field into typed parameters, and builds the error,
// response and stream-chunk objects. Pure functions, no I/O; not the HTTP server and not generation.
import type { ChatMessage } from "./chat.js";

/** An error the client caused or must see, with its HTTP status and OpenAI's error fields. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export interface SamplingParams {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  /** undefined: the route's default */
  maxTokens?: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

export type CompletionRequest = SamplingParams & { model?: string; prompt: string | number[] };
export type ChatRequest = SamplingParams & { model?: string; messages: ChatMessage[] };

type Body = Record<string, unknown>;

const bad = (param: string, message: string) => new ApiError(400, message, "invalid_request_error", param);

/** Parse a request body; invalid JSON or a non-object is a 400. */
export function parseJson(text: string): Body {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `We could not parse the JSON body of your request: ${(e as Error).message}`, "invalid_request_error", null, "invalid_json");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ApiError(400, "The request body must be a JSON object.");
  return v as Body;
}

function optNumber(b: Body, key: string, min: number, max: number, integer = false): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw bad(key, `'${key}' must be a number, got ${JSON.stringify(v)}.`);
  if (integer && !Number.isInteger(v)) throw bad(key, `'${key}' must be an integer, got ${v}.`);
  if (v < min || v > max) throw bad(key, `'${key}' must be between ${min} and ${max}, got ${v}.`);
  return v;
}

function optBool(b: Body, key: string): boolean | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw bad(key, `'${key}' must be a boolean, got ${JSON.stringify(v)}.`);
  return v;
}

/** Fields the server does not implement: accepted at their neutral values, refused otherwise (never ignored silently). */
function refuseUnsupported(b: Body): void {
  for (const key of ["frequency_penalty", "presence_penalty"]) {
    const v = optNumber(b, key, -2, 2);
    if (v !== undefined && v !== 0) throw bad(key, `'${key}' is not supported by edgeprune; use 'repeat_penalty' instead.`);
  }
  for (const key of ["logprobs", "echo"]) {
    const v = b[key];
    if (v !== undefined && v !== null && v !== false && v !== 0) throw bad(key, `'${key}' is not supported by edgeprune.`);
  }
  if (b.top_logprobs !== undefined && b.top_logprobs !== null && b.top_logprobs !== 0) throw bad("top_logprobs", "'top_logprobs' is not supported by edgeprune.");
  if (b.logit_bias !== undefined && b.logit_bias !== null && Object.keys(b.logit_bias as object).length > 0) {
    throw bad("logit_bias", "'logit_bias' is not supported by edgeprune.");
  }
  const n = optNumber(b, "n", 1, 128, true);
  if (n !== undefined && n !== 1) throw bad("n", "Only n=1 is supported.");
  const bestOf = optNumber(b, "best_of", 1, 20, true);
  if (bestOf !== undefined && bestOf !== 1) throw bad("best_of", "Only best_of=1 is supported.");
}

function sampling(b: Body, maxTokensKey: string): SamplingParams {
  refuseUnsupported(b);
  if (b.model !== undefined && typeof b.model !== "string") throw bad("model", `'model' must be a string, got ${JSON.stringify(b.model)}.`);
  let stop: string[] = [];
  if (typeof b.stop === "string") stop = [b.stop];
  else if (Array.isArray(b.stop)) {
    if (b.stop.length > 4 || !b.stop.every((s) => typeof s === "string")) throw bad("stop", "'stop' must be a string or an array of at most 4 strings.");
    stop = b.stop as string[];
  } else if (b.stop !== undefined && b.stop !== null) throw bad("stop", "'stop' must be a string or an array of at most 4 strings.");
  const streamOptions = b.stream_options;
  if (streamOptions !== undefined && streamOptions !== null && (typeof streamOptions !== "object" || Array.isArray(streamOptions))) {
    throw bad("stream_options", "'stream_options' must be an object.");
  }
  const maxTokens = optNumber(b, maxTokensKey, 1, 2 ** 31 - 1, true) ?? optNumber(b, "max_tokens", 1, 2 ** 31 - 1, true);
  return {
    temperature: optNumber(b, "temperature", 0, 2),
    topP: optNumber(b, "top_p", Number.MIN_VALUE, 1),
    topK: optNumber(b, "top_k", 0, 2 ** 31 - 1, true),
    minP: optNumber(b, "min_p", 0, 1),
    repeatPenalty: optNumber(b, "repeat_penalty", Number.MIN_VALUE, 100),
    seed: optNumber(b, "seed", -(2 ** 53), 2 ** 53, true),
    maxTokens,
    stop: stop.filter((s) => s.length > 0),
    stream: optBool(b, "stream") ?? false,
    includeUsage: streamOptions ? optBool(streamOptions as Body, "include_usage") ?? false : false,
  };
}

/** POST /v1/completions: one prompt, as text or token ids. */
export function parseCompletion(b: Body): CompletionRequest {
  let prompt: string | number[];
  const p = b.prompt;
  if (p === undefined || p === null) throw bad("prompt", "You must provide a 'prompt'.");
  if (typeof p === "string") prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") prompt = p[0];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => Number.isInteger(x) && x >= 0)) prompt = p as number[];
  else if (Array.isArray(p) && p.length > 1 && p.every((x) => typeof x === "string" || Array.isArray(x))) throw bad("prompt", "Only one prompt per request is supported.");
  else throw bad("prompt", "'prompt' must be a string, an array of one string, or an array of token ids.");
  return { ...sampling(b, "max_tokens"), model: b.model as string | undefined, prompt };
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

/** POST /v1/chat/completions: text messages (content parts of type "text" are joined). */
export function parseChat(b: Body): ChatRequest {
  const m = b.messages;
  if (m === undefined || m === null) throw bad("messages", "You must provide 'messages'.");
  if (!Array.isArray(m) || m.length === 0) throw bad("messages", "'messages' must be a non-empty array.");
  const messages = m.map((x, i): ChatMessage => {
    const where = `messages[${i}]`;
    if (typeof x !== "object" || x === null || Array.isArray(x)) throw bad(where, `'${where}' must be an object.`);
    const { role, content } = x as Body;
    if (typeof role !== "string" || !ROLES.has(role)) throw bad(`${where}.role`, `'${where}.role' must be one of ${[...ROLES].join(", ")}.`);
    if (typeof content === "string") return { role, content };
    if (content === null && role === "assistant") return { role, content: "" };
    if (Array.isArray(content) && content.every((c) => c && typeof c === "object" && (c as Body).type === "text" && typeof (c as Body).text === "string")) {
      return { role, content: content.map((c) => (c as Body).text as string).join("") };
    }
    throw bad(`${where}.content`, `'${where}.content' must be a string or an array of text parts.`);
  });
  return { ...sampling(b, "max_completion_tokens"), model: b.model as string | undefined, messages };
}

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(prompt: number, completion: number): Usage {
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function completionBody(id: string, created: number, model: string, text: string, finish: FinishReason, u: Usage): object {
  return { id, object: "text_completion", created, model, choices: [{ index: 0, text, finish_reason: finish, logprobs: null }], usage: u };
}

export function completionChunk(id: string, created: number, model: string, text: string, finish: FinishReason | null): object {
  return { id, object: "text_completion", created, model, choices: [{ index: 0, text, finish_reason: finish, logprobs: null }] };
}

export function chatBody(id: string, created: number, model: string, content: string, finish: FinishReason, u: Usage): object {
  return {
    id, object: "chat.completion", created, model,
    choices: [{ index: 0, message: { role: "assistant", content, refusal: null }, finish_reason: finish, logprobs: null }],
    usage: u,
  };
}

export function chatChunk(id: string, created: number, model: string, delta: { role?: "assistant"; content?: string }, finish: FinishReason | null): object {
  return { id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] };
}

/** The final usage-only chunk sent when stream_options.include_usage is set. */
export function usageChunk(id: string, created: number, model: string, object: string, u: Usage): object {
  return { id, object, created, model, choices: [], usage: u };
}
