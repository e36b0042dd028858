// The OpenAI wire format (and llama-server's extra fields): checks a request body field by field against one table
// of the fields each route knows (supported, accepted only at their neutral value, or ignored as documented);
// any other field is refused with a 400 naming it. Builds the error, response and stream-chunk objects. Pure
// functions, no I/O; not the HTTP server and not generation.
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

/** How output must be shaped: free text, any JSON object, or JSON valid against a schema. */
export type ResponseFormat = { type: "text" } | { type: "json_object" } | { type: "json_schema"; schema: unknown; name?: string };

export interface SamplingParams {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  logitBias?: Map<number, number>;
  seed?: number;
  /** undefined: the route's default; "context": until the context is full (n_predict -1) */
  maxTokens?: number | "context";
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** choices to generate */
  n: number;
  /** undefined: no log-probabilities; k: the chosen token's and the k most likely ones' */
  logprobs?: number;
  responseFormat: ResponseFormat;
  /** reuse the longest prefix of the prompt a context already holds (llama-server's cache_prompt, default true) */
  cachePrompt: boolean;
  ignoreEos: boolean;
}

export type CompletionRequest = SamplingParams & { model?: string; prompt: string | number[]; echo: boolean };
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

type Route = "completion" | "chat";
/** what a field is: parsed below, accepted only at the value that switches it off, or accepted and ignored */
type FieldKind = "supported" | "neutral" | "ignored";
interface Field { kind: FieldKind; routes?: Route[]; neutral?: (v: unknown) => boolean; why?: string }

const off = (...values: unknown[]) => (v: unknown) => v === undefined || v === null || values.includes(v);
const emptyList = (v: unknown) => v === undefined || v === null || (Array.isArray(v) && v.length === 0);

/**
 * Every field a request may carry. Supported ones are parsed below. Neutral ones are llama-server sampler or
 * OpenAI features edgeprune does not implement: accepted at their off value, refused otherwise (never silently
 * ignored). Ignored ones change nothing a client could observe (metadata, storage, service tiers). The table is
 * docs/serving.md's list; any other field is refused by name.
 */
export const FIELDS: Readonly<Record<string, Field>> = {
  model: { kind: "supported" },
  prompt: { kind: "supported", routes: ["completion"] },
  echo: { kind: "supported", routes: ["completion"] },
  messages: { kind: "supported", routes: ["chat"] },
  max_tokens: { kind: "supported" },
  max_completion_tokens: { kind: "supported", routes: ["chat"] },
  n_predict: { kind: "supported" },
  temperature: { kind: "supported" },
  top_p: { kind: "supported" },
  top_k: { kind: "supported" },
  min_p: { kind: "supported" },
  repeat_penalty: { kind: "supported" },
  repeat_last_n: { kind: "supported" },
  frequency_penalty: { kind: "supported" },
  presence_penalty: { kind: "supported" },
  logit_bias: { kind: "supported" },
  seed: { kind: "supported" },
  stop: { kind: "supported" },
  stream: { kind: "supported" },
  stream_options: { kind: "supported" },
  n: { kind: "supported" },
  best_of: { kind: "neutral", routes: ["completion"], neutral: off(1), why: "only best_of=1 is supported (use n for several choices)" },
  logprobs: { kind: "supported" },
  top_logprobs: { kind: "supported", routes: ["chat"] },
  n_probs: { kind: "supported" },
  response_format: { kind: "supported" },
  json_schema: { kind: "supported" },
  cache_prompt: { kind: "supported" },
  ignore_eos: { kind: "supported" },
  // llama-server's other samplers and options, at the value that switches them off
  typical_p: { kind: "neutral", neutral: off(1), why: "locally typical sampling is not implemented" },
  tfs_z: { kind: "neutral", neutral: off(1), why: "tail-free sampling is not implemented" },
  mirostat: { kind: "neutral", neutral: off(0), why: "mirostat is not implemented" },
  mirostat_tau: { kind: "neutral", neutral: () => true },
  mirostat_eta: { kind: "neutral", neutral: () => true },
  dynatemp_range: { kind: "neutral", neutral: off(0), why: "dynamic temperature is not implemented" },
  dynatemp_exponent: { kind: "neutral", neutral: () => true },
  xtc_probability: { kind: "neutral", neutral: off(0), why: "XTC sampling is not implemented" },
  xtc_threshold: { kind: "neutral", neutral: () => true },
  dry_multiplier: { kind: "neutral", neutral: off(0), why: "DRY sampling is not implemented" },
  top_n_sigma: { kind: "neutral", neutral: off(-1), why: "top-n-sigma sampling is not implemented" },
  min_keep: { kind: "neutral", neutral: off(0), why: "min_keep is not implemented" },
  n_keep: { kind: "neutral", neutral: off(0), why: "context shifting is not implemented: a request must fit the context" },
  id_slot: { kind: "neutral", neutral: off(-1), why: "requests cannot pick a slot: the server picks the one holding the longest common prefix" },
  post_sampling_probs: { kind: "neutral", neutral: off(false), why: "log-probabilities are the model's, before sampling" },
  samplers: { kind: "neutral", neutral: () => false, why: "the sampler order is fixed (penalties, top-k, top-p, min-p, temperature)" },
  grammar: { kind: "neutral", neutral: off(""), why: "GBNF grammars are not supported; use response_format with a JSON schema" },
  suffix: { kind: "neutral", routes: ["completion"], neutral: off(""), why: "insertion (suffix) is not supported" },
  tools: { kind: "neutral", routes: ["chat"], neutral: emptyList, why: "tool calls are not supported" },
  tool_choice: { kind: "neutral", routes: ["chat"], neutral: off("none"), why: "tool calls are not supported" },
  functions: { kind: "neutral", routes: ["chat"], neutral: emptyList, why: "function calls are not supported" },
  function_call: { kind: "neutral", routes: ["chat"], neutral: off("none"), why: "function calls are not supported" },
  // accepted and ignored: they change nothing a client can observe
  user: { kind: "ignored" },
  metadata: { kind: "ignored" },
  store: { kind: "ignored" },
  service_tier: { kind: "ignored" },
  parallel_tool_calls: { kind: "ignored", routes: ["chat"] },
};

function checkFields(b: Body, route: Route): void {
  for (const key of Object.keys(b)) {
    const f = Object.hasOwn(FIELDS, key) ? FIELDS[key] : undefined;
    if (!f || (f.routes && !f.routes.includes(route))) {
      throw bad(key, `Unrecognized request argument supplied: ${key} (docs/serving.md lists the fields edgeprune knows).`);
    }
    if (f.kind === "neutral" && !f.neutral!(b[key])) {
      throw bad(key, `'${key}' is not supported by edgeprune: ${f.why}.`);
    }
  }
}

/** logit_bias: {"token id": bias}, bias from -100 (bans the token) to 100, as OpenAI; ids checked later against the vocabulary. */
function logitBias(b: Body): Map<number, number> | undefined {
  const v = b.logit_bias;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw bad("logit_bias", "'logit_bias' must be an object mapping token ids to biases from -100 to 100.");
  const out = new Map<number, number>();
  for (const [k, bias] of Object.entries(v as Body)) {
    if (!/^\d+$/.test(k)) throw bad("logit_bias", `'logit_bias' keys must be token ids, got ${JSON.stringify(k)}.`);
    if (typeof bias !== "number" || !(bias >= -100 && bias <= 100)) throw bad("logit_bias", `'logit_bias' values must be numbers from -100 to 100, got ${JSON.stringify(bias)}.`);
    // -100 bans the token outright, as OpenAI says it does
    out.set(Number(k), bias <= -100 ? -Infinity : bias);
  }
  return out;
}

function responseFormat(b: Body): ResponseFormat {
  const rf = b.response_format;
  const js = b.json_schema;
  if (js !== undefined && js !== null) {
    if (rf !== undefined && rf !== null) throw bad("json_schema", "Give either 'response_format' or 'json_schema', not both.");
    if (typeof js !== "object" || Array.isArray(js)) throw bad("json_schema", "'json_schema' must be a JSON schema object.");
    return { type: "json_schema", schema: js };
  }
  if (rf === undefined || rf === null) return { type: "text" };
  if (typeof rf !== "object" || Array.isArray(rf)) throw bad("response_format", "'response_format' must be an object.");
  const { type } = rf as Body;
  if (type === "text") return { type: "text" };
  if (type === "json_object") return { type: "json_object" };
  if (type === "json_schema") {
    const spec = (rf as Body).json_schema;
    if (typeof spec !== "object" || spec === null || Array.isArray(spec)) throw bad("response_format.json_schema", "'response_format.json_schema' must be an object with a 'schema'.");
    const { schema, name } = spec as Body;
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw bad("response_format.json_schema.schema", "'response_format.json_schema.schema' must be a JSON schema object.");
    return { type: "json_schema", schema, name: typeof name === "string" ? name : undefined };
  }
  throw bad("response_format.type", `'response_format.type' must be "text", "json_object" or "json_schema", got ${JSON.stringify(type)}.`);
}

function sampling(b: Body, route: Route): SamplingParams {
  checkFields(b, route);
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
  // n_predict (llama-server) wins over max_tokens, as it does there; -1 means until the context is full
  const nPredict = optNumber(b, "n_predict", -1, 2 ** 31 - 1, true);
  if (nPredict === 0) throw bad("n_predict", "'n_predict' must be -1 (until the context is full) or at least 1, got 0.");
  const maxTokens = nPredict === -1 ? "context" : nPredict ??
    (route === "chat" ? optNumber(b, "max_completion_tokens", 1, 2 ** 31 - 1, true) : undefined) ?? optNumber(b, "max_tokens", 1, 2 ** 31 - 1, true);
  // log-probabilities: completions' logprobs (0-5 alternatives), chat's logprobs (bool) + top_logprobs (0-20), llama-server's n_probs
  let logprobs: number | undefined;
  if (route === "chat") {
    const want = optBool(b, "logprobs");
    const top = optNumber(b, "top_logprobs", 0, 20, true);
    if (top !== undefined && !want) throw bad("top_logprobs", "'top_logprobs' needs 'logprobs': true.");
    if (want) logprobs = top ?? 0;
  } else {
    logprobs = optNumber(b, "logprobs", 0, 5, true);
  }
  const nProbs = optNumber(b, "n_probs", 0, 20, true);
  if (nProbs !== undefined && nProbs > 0) logprobs = Math.max(logprobs ?? 0, nProbs);
  const repeatLastN = optNumber(b, "repeat_last_n", -1, 2 ** 31 - 1, true);
  return {
    temperature: optNumber(b, "temperature", 0, 2),
    topP: optNumber(b, "top_p", Number.MIN_VALUE, 1),
    topK: optNumber(b, "top_k", 0, 2 ** 31 - 1, true),
    minP: optNumber(b, "min_p", 0, 1),
    repeatPenalty: optNumber(b, "repeat_penalty", Number.MIN_VALUE, 100),
    // -1: the whole context, as llama-server
    repeatLastN: repeatLastN === -1 ? 2 ** 31 - 1 : repeatLastN,
    frequencyPenalty: optNumber(b, "frequency_penalty", -2, 2),
    presencePenalty: optNumber(b, "presence_penalty", -2, 2),
    logitBias: logitBias(b),
    seed: optNumber(b, "seed", -(2 ** 53), 2 ** 53, true),
    maxTokens,
    stop: stop.filter((s) => s.length > 0),
    stream: optBool(b, "stream") ?? false,
    includeUsage: streamOptions ? optBool(streamOptions as Body, "include_usage") ?? false : false,
    n: optNumber(b, "n", 1, MAX_CHOICES, true) ?? 1,
    logprobs,
    responseFormat: responseFormat(b),
    cachePrompt: optBool(b, "cache_prompt") ?? true,
    ignoreEos: optBool(b, "ignore_eos") ?? false,
  };
}

/** choices one request may ask for (n): each one is a generation of its own */
export const MAX_CHOICES = 16;

/** POST /v1/completions: one prompt, as text or token ids. */
export function parseCompletion(b: Body): CompletionRequest {
  let prompt: string | number[];
  const p = b.prompt;
  if (p === undefined || p === null) throw bad("prompt", "You must provide a 'prompt'.");
  if (typeof p === "string") prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") prompt = p[0];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => Number.isInteger(x) && x >= 0)) prompt = p as number[];
  else if (Array.isArray(p) && p.length === 1 && Array.isArray(p[0]) && p[0].length > 0 && p[0].every((x: unknown) => Number.isInteger(x) && (x as number) >= 0)) prompt = p[0] as number[];
  else if (Array.isArray(p) && p.length > 1 && p.every((x) => typeof x === "string" || Array.isArray(x))) throw bad("prompt", "Only one prompt per request is supported (use n for several choices).");
  else throw bad("prompt", "'prompt' must be a string, an array of one string, or an array of token ids.");
  const s = sampling(b, "completion");
  return { ...s, model: b.model as string | undefined, prompt, echo: optBool(b, "echo") ?? false };
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
  return { ...sampling(b, "chat"), model: b.model as string | undefined, messages };
}

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** prompt tokens served from the context's cache (OpenAI's prompt_tokens_details.cached_tokens) */
  prompt_tokens_details?: { cached_tokens: number };
}

export function usage(prompt: number, completion: number, cached?: number): Usage {
  const u: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (cached !== undefined) u.prompt_tokens_details = { cached_tokens: cached };
  return u;
}

/** One token's log-probability as the wire shows it: its text, and its UTF-8 bytes (a token may hold part of a character). */
export interface WireLogprob {
  token: string;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
  /** where the token's text starts in the choice's text */
  offset: number;
}

/** Completions' logprobs object: parallel arrays (token_logprobs[i] null for the first echoed prompt token). */
export function completionLogprobs(items: (WireLogprob | { token: string; offset: number; logprob: null; top: null })[]): object {
  return {
    tokens: items.map((t) => t.token),
    token_logprobs: items.map((t) => t.logprob),
    top_logprobs: items.map((t) => (t.top ? Object.fromEntries(t.top.map((a) => [a.token, a.logprob])) : null)),
    text_offset: items.map((t) => t.offset),
  };
}

/** Chat's logprobs object: one entry per token with its alternatives. */
export function chatLogprobs(items: WireLogprob[]): object {
  return {
    content: items.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes, top_logprobs: t.top })),
    refusal: null,
  };
}

export interface Choice {
  index: number;
  text: string;
  finish: FinishReason;
  logprobs: object | null;
}

export function completionBody(id: string, created: number, model: string, choices: Choice[], u: Usage): object {
  return {
    id, object: "text_completion", created, model,
    choices: choices.map((c) => ({ index: c.index, text: c.text, finish_reason: c.finish, logprobs: c.logprobs })), usage: u,
  };
}

export function completionChunk(id: string, created: number, model: string, index: number, text: string, finish: FinishReason | null, logprobs: object | null = null): object {
  return { id, object: "text_completion", created, model, choices: [{ index, text, finish_reason: finish, logprobs }] };
}

export function chatBody(id: string, created: number, model: string, choices: Choice[], u: Usage): object {
  return {
    id, object: "chat.completion", created, model,
    choices: choices.map((c) => ({ index: c.index, message: { role: "assistant", content: c.text, refusal: null }, finish_reason: c.finish, logprobs: c.logprobs })),
    usage: u,
  };
}

export function chatChunk(id: string, created: number, model: string, index: number, delta: { role?: "assistant"; content?: string }, finish: FinishReason | null, logprobs: object | null = null): object {
  return { id, object: "chat.completion.chunk", created, model, choices: [{ index, delta, finish_reason: finish, logprobs }] };
}

/** The final usage-only chunk sent when stream_options.include_usage is set. */
export function usageChunk(id: string, created: number, model: string, object: string, u: Usage): object {
  return { id, object, created, model, choices: [], usage: u };
}

/** inputs one embeddings request may carry (OpenAI's limit) */
export const MAX_EMBEDDING_INPUTS = 2048;

export interface EmbeddingsRequest {
  model?: string;
  /** texts, or token-id arrays used as given */
  input: (string | number[])[];
  encoding: "float" | "base64";
  /** llama-server's embd_normalize (2: Euclidean) */
  normalize: number;
}

const EMBEDDING_FIELDS = new Set(["input", "content", "model", "encoding_format", "embd_normalize", "dimensions", "user"]);

const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.every((v) => Number.isInteger(v) && v >= 0);

/**
 * POST /v1/embeddings: `input` (llama-server also takes `content`) as a string, an array of strings, an array of
 * token ids, or an array of token-id arrays; `encoding_format` float or base64; `embd_normalize` as llama-server;
 * `dimensions` only at the model's own width (checked by the server), `user` ignored.
 */
export function parseEmbeddings(b: Body): EmbeddingsRequest {
  for (const key of Object.keys(b)) {
    if (!EMBEDDING_FIELDS.has(key)) throw bad(key, `Unrecognized request argument supplied: ${key} (docs/serving.md lists the fields edgeprune knows).`);
  }
  if (b.model !== undefined && typeof b.model !== "string") throw bad("model", `'model' must be a string, got ${JSON.stringify(b.model)}.`);
  if (b.input !== undefined && b.content !== undefined) throw bad("content", "Give either 'input' or 'content', not both.");
  const key = b.input !== undefined ? "input" : "content";
  const v = b[key];
  if (v === undefined || v === null) throw bad("input", "You must provide an 'input'.");
  let input: (string | number[])[];
  const shape = `'${key}' must be a string, an array of strings, an array of token ids, or an array of token-id arrays.`;
  if (typeof v === "string") input = [v];
  else if (!Array.isArray(v) || v.length === 0) throw bad(key, shape);
  else if (v.every((x) => typeof x === "string")) input = v as string[];
  else if (isIds(v)) input = [v];
  else if (v.every(isIds)) input = v as number[][];
  else throw bad(key, shape);
  if (input.length > MAX_EMBEDDING_INPUTS) throw bad(key, `'${key}' holds ${input.length} inputs; at most ${MAX_EMBEDDING_INPUTS} per request.`);
  const fmt = b.encoding_format ?? "float";
  if (fmt !== "float" && fmt !== "base64") throw bad("encoding_format", `'encoding_format' must be "float" or "base64", got ${JSON.stringify(fmt)}.`);
  const normalize = optNumber(b, "embd_normalize", -1, 1000, true) ?? 2;
  return { model: b.model as string | undefined, input, encoding: fmt, normalize };
}

/** OpenAI's embeddings list; base64 is the little-endian float32 bytes, as OpenAI and llama-server send them. */
export function embeddingsBody(model: string, vectors: Float32Array[], encoding: "float" | "base64", promptTokens: number): object {
  return {
    object: "list",
    data: vectors.map((v, index) => ({
      object: "embedding", index,
      embedding: encoding === "float" ? Array.from(v) : base64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)),
    })),
    model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

/** Base64 of bytes, without Node's Buffer (this file is plain TypeScript). */
function base64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
