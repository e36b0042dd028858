// The OpenAI-compatible HTTP server on node:http: routes, the Host/Origin policy (policy.ts), API-key check, body
// limits, JSON and server-sent-event responses, cancellation when a client disconnects, and a graceful stop.
// Generation runs on the main thread, one token at a time per request, yielding to the event loop between tokens;
// chat templates render in a sandbox process (template-sandbox.ts). Node-only; not the request format (openai.ts).
import * as http from "node:http";
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { createReadStream } from "node:fs";
import * as path from "node:path";
import { DEFAULTS, packageVersion } from "../cli.js";
import { metaArray, metaString } from "../gguf/metadata.js";
import { KEY } from "../gguf/names.js";
import { GgufStringArray } from "../gguf/types.js";
import { type Model } from "../index.js";
import type { LoadOptions } from "../model/model.js";
import type { KvCacheType } from "../quant/formats.js";
import { loadModelFile } from "../node/load.js";
import { KEY as TOKENIZER_KEY } from "../tokenizer/vocab.js";
import { chatFormatter, stripBosText, TemplateError, type ChatFormatter, type ChatMessage } from "./chat.js";
import { Metrics } from "./metrics.js";
import {
  ApiError, chatBody, chatChunk, chatLogprobs, completionBody, completionChunk, completionLogprobs, embeddingsBody, parseChat, parseCompletion, parseEmbeddings, parseJson, usage, usageChunk,
  type Choice, type FinishReason, type SamplingParams, type WireLogprob,
} from "./openai.js";
import { RequestPolicy } from "./policy.js";
import { Engine, SlotPool, type PromptLogprob } from "./engine.js";
import { JsonConstraints } from "./grammar.js";
import type { SequenceStep, StopReason } from "../sequence.js";
import type { Tokenizer } from "../tokenizer/index.js";
import { warmUp } from "./warmup.js";
import { embedTokens, POOLINGS, type Pooling } from "../embedding.js";

export interface ServeOptions {
  /** a GGUF path (loaded after the server starts listening), a loaded Model, or a function that loads one */
  model: string | Model | (() => Promise<Model>);
  /** the id /v1/models reports and responses echo; default: the file name without .gguf */
  modelId?: string;
  /** the address to bind; a non-loopback one also makes the server answer any Host header (policy.ts) */
  host?: string;
  /** origins whose web pages may call the server (--cors): exact origins, or "*"; default none */
  cors?: readonly string[];
  /** 0 picks a free port */
  port?: number;
  /** when set, every route but /health needs `Authorization: Bearer <apiKey>` */
  apiKey?: string;
  /** contexts (KV caches), i.e. requests generating at once */
  parallel?: number;
  /** requests that may wait for a context; more get 429 */
  queue?: number;
  /** tokens per context (prompt + completion) */
  contextSize?: number;
  /** KV cache types (default f16, as llama.cpp): --cache-type-k / --cache-type-v */
  cacheTypeK?: KvCacheType;
  cacheTypeV?: KvCacheType;
  /** threads the kernels run on (default 1) */
  threads?: number;
  /** on close(), how long in-flight requests may run before they are cancelled */
  graceMs?: number;
  /** requests the server sends itself before /health answers 200 (warmup.ts says why); 0: none */
  warmup?: number;
  /** serve POST /v1/embeddings (llama-server's --embeddings); default false: a 501 says how to turn it on */
  embeddings?: boolean;
  /** how /v1/embeddings pools the hidden states (--pooling); default "last" */
  pooling?: Pooling;
  /** one line per event (listening, loaded, each request); default: none */
  log?: (line: string) => void;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** resolves when the model is loaded and the server warmed up (and /health answers 200); rejects if loading fails */
  readonly ready: Promise<void>;
  /** stop accepting, let in-flight requests finish (up to graceMs), cancel the rest, and close */
  close(): Promise<void>;
}

/** Defaults of the serve command live with the CLI's (one place); the server reads them from there. */
const SERVE_DEFAULTS = DEFAULTS.serve;
const WARMUP_HEADER = "x-edgeprune-warmup";
/** the warm-up starts no request after this much CPU time: with a large model it would take long and matter little */
const WARMUP_BUDGET_MS = 2000;
/** an over-limit body is read and discarded up to this much (so the client sees the 413, not a reset), then cut */
const DISCARD_LIMIT_BYTES = 4 * SERVE_DEFAULTS.maxBodyBytes;
const DISCARD_LIMIT_MS = 10_000;

/** The routes and the methods each answers (HEAD wherever GET). /metrics counts every other path as one "other". */
const ROUTES: ReadonlyMap<string, readonly string[]> = new Map([
  ["/health", ["GET", "HEAD"]],
  ["/metrics", ["GET", "HEAD"]],
  ["/v1/models", ["GET", "HEAD"]],
  ["/v1/completions", ["POST"]],
  ["/v1/chat/completions", ["POST"]],
  ["/tokenize", ["POST"]],
  ["/detokenize", ["POST"]],
  ["/props", ["GET", "HEAD"]],
  ["/v1/embeddings", ["POST"]],
]);

interface InFlight {
  abort: AbortController;
  done: Promise<void>;
}

/** Start listening now; the model loads in the background while /health answers 503. */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const log = opts.log ?? (() => {});
  const host = opts.host ?? SERVE_DEFAULTS.host;
  const parallel = opts.parallel ?? SERVE_DEFAULTS.parallel;
  const graceMs = opts.graceMs ?? SERVE_DEFAULTS.graceMs;
  if (!(Number.isInteger(parallel) && parallel >= 1 && parallel <= SERVE_DEFAULTS.maxParallel)) {
    // every context is a KV cache allocated up front, and generations share one thread: more would only wait
    throw new Error(`invalid --parallel ${parallel}: expected an integer from 1 to ${SERVE_DEFAULTS.maxParallel} (each one is a KV cache allocated at start-up, and generations share one thread)`);
  }
  const queueLimit = opts.queue ?? SERVE_DEFAULTS.queue;
  if (!(Number.isInteger(queueLimit) && queueLimit >= 0)) throw new Error(`invalid --queue ${queueLimit}: expected an integer ≥ 0`);
  const warmupRequests = opts.warmup ?? SERVE_DEFAULTS.warmup;
  if (!(Number.isInteger(warmupRequests) && warmupRequests >= 0)) throw new Error(`invalid --warmup ${warmupRequests}: expected an integer ≥ 0`);
  const modelId = opts.modelId ?? (typeof opts.model === "string" ? path.basename(opts.model).replace(/\.gguf$/i, "") : (opts.model as Model).name ?? "model");
  const policy = new RequestPolicy({ bindHost: host, cors: opts.cors });
  const pooling = opts.pooling ?? "last";
  if (!POOLINGS.includes(pooling)) throw new Error(`invalid --pooling ${JSON.stringify(pooling)}: expected ${POOLINGS.join(" or ")}`);
  const metrics = new Metrics(ROUTES.keys());
  const inflight = new Set<InFlight>();
  const created = Math.floor(Date.now() / 1000);
  let state: { model: Model; pool: SlotPool; engine: Engine; json: JsonConstraints; chat: ChatFormatter; contextSize: number; maxPromptBytes: number } | undefined;
  // false while the model loads and while the server warms up: /health says 503 and clients' generations get 503
  let serving = false;
  // marks the warm-up's own requests (served before ready, neither logged nor counted); unset once ready
  let warmupToken: string | undefined;
  let stopping = false;

  const keyHash = opts.apiKey !== undefined ? sha256(opts.apiKey) : undefined;
  const authorized = (req: http.IncomingMessage): boolean => {
    if (!keyHash) return true;
    const h = req.headers.authorization ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(h);
    return m !== null && timingSafeEqual(sha256(m[1].trim()), keyHash);
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const t0 = performance.now();
    const method = req.method ?? "GET";
    const pathname = (req.url ?? "/").split("?")[0];
    const internal = warmupToken !== undefined && req.headers[WARMUP_HEADER] === warmupToken;
    if (!internal) {
      res.on("finish", () => {
        metrics.countRequest(pathname, res.statusCode);
        log(`${method} ${printable(pathname)} ${res.statusCode} ${(performance.now() - t0).toFixed(0)} ms`);
      });
    }
    handle(req, res, method, pathname, internal).catch((e) => sendError(res, e));
  };
  const server = http.createServer(onRequest);
  server.keepAliveTimeout = 5000;
  // `Expect: 100-continue` (curl sends it for large bodies): refuse an announced oversized body before it is sent
  server.on("checkContinue", (req, res) => {
    if (Number(req.headers["content-length"]) > SERVE_DEFAULTS.maxBodyBytes) {
      res.setHeader("Connection", "close");
      sendError(res, bodyTooLarge());
      return;
    }
    res.writeContinue();
    onRequest(req, res);
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, method: string, pathname: string, internal: boolean): Promise<void> {
    if (stopping) res.setHeader("Connection", "close");
    const refusal = policy.refusal(req.headers);
    if (refusal) throw new ApiError(refusal.status, refusal.message, "invalid_request_error", null, refusal.code);
    for (const [k, v] of Object.entries(policy.corsHeaders(req.headers.origin, req.headers.host))) res.setHeader(k, v);
    const methods = ROUTES.get(pathname);
    if (method === "OPTIONS" && req.headers.origin !== undefined) return preflight(req, res, methods);
    if (pathname === "/health" && methods) {
      if (!methods.includes(method)) throw methodNotAllowed(res, pathname, methods);
      return health(res);
    }
    if (!authorized(req)) throw new ApiError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.", "invalid_request_error", null, "invalid_api_key");
    if (!methods) throw new ApiError(404, `Unknown route ${method} ${printable(pathname)}.`, "invalid_request_error", null, "not_found");
    if (!methods.includes(method)) throw methodNotAllowed(res, pathname, methods);
    switch (pathname) {
      case "/metrics":
        res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
        res.end(metrics.render({
          queued: state?.pool.queued ?? 0, active: inflight.size, parallel, loaded: state !== undefined,
          wasmBytes: state?.model.memoryBytes ?? 0,
        }));
        return;
      case "/v1/models":
        return sendJson(res, 200, { object: "list", data: [{ id: modelId, object: "model", created, owned_by: "edgeprune" }] });
      case "/props":
        if (!state) throw new ApiError(503, "The model is still loading; retry when GET /health answers 200.", "server_error", null, "model_loading");
        return sendJson(res, 200, props(state.model, state.contextSize, parallel));
      case "/tokenize":
      case "/detokenize": {
        requireJson(req);
        const body = parseJson(await readBody(req));
        if (!state) throw new ApiError(503, "The model is still loading; retry when GET /health answers 200.", "server_error", null, "model_loading");
        return sendJson(res, 200, pathname === "/tokenize" ? tokenize(state.model.tokenizer, body, state.maxPromptBytes) : detokenize(state.model.tokenizer, body));
      }
      case "/v1/embeddings": {
        requireJson(req);
        const body = parseJson(await readBody(req));
        if (!opts.embeddings) throw new ApiError(501, "This server does not serve embeddings: start it with --embeddings (and --pooling mean|last).", "not_supported_error", null, "embeddings_disabled");
        if (stopping) throw new ApiError(503, "The server is shutting down.", "server_error");
        if (!state || (!serving && !internal)) throw new ApiError(503, "The model is still loading; retry when GET /health answers 200.", "server_error", null, "model_loading");
        return embeddingsResponse(res, body, state, internal);
      }
      default: {
        requireJson(req);
        const body = parseJson(await readBody(req));
        if (stopping) throw new ApiError(503, "The server is shutting down.", "server_error");
        if (!state || (!serving && !internal)) throw new ApiError(503, "The model is still loading; retry when GET /health answers 200.", "server_error", null, "model_loading");
        const chat = pathname === "/v1/chat/completions";
        return generateResponse(res, chat, body, state, internal);
      }
    }
  }

  /** 200 when a request would be served now; 503 while loading, stopping, or when every context and queue slot is taken. */
  function health(res: http.ServerResponse): void {
    if (stopping) return sendJson(res, 503, { status: "stopping" });
    if (!serving || !state) return sendJson(res, 503, { status: "loading" });
    const { pool } = state;
    const detail = { slots_idle: pool.idle, slots_processing: parallel - pool.idle, queued: pool.queued, queue_limit: pool.maxQueue };
    // llama-server's /health says "ok" whatever the load; here it says what a request arriving now would meet
    if (pool.saturated) {
      res.setHeader("Retry-After", "1");
      return sendJson(res, 503, { status: "busy", ...detail });
    }
    sendJson(res, 200, { status: "ok", ...detail });
  }

  /** POST /v1/embeddings: each input tokenized as llama-server does (BOS, special tokens parsed), pooled, normalized. */
  async function embeddingsResponse(res: http.ServerResponse, body: Record<string, unknown>, s: NonNullable<typeof state>, internal: boolean): Promise<void> {
    const { model, pool, contextSize, maxPromptBytes } = s;
    const tok = model.tokenizer;
    const r = parseEmbeddings(body);
    const dims = body.dimensions;
    if (dims !== undefined && dims !== null && dims !== model.config.dim) {
      throw new ApiError(400, `'dimensions' must be this model's embedding width, ${model.config.dim} (shortened embeddings are not supported), got ${JSON.stringify(dims)}.`, "invalid_request_error", "dimensions");
    }
    const inputs = r.input.map((x, i) => {
      const param = r.input.length > 1 ? `input[${i}]` : "input";
      let ids: number[];
      if (typeof x === "string") {
        if (Buffer.byteLength(x) > maxPromptBytes) {
          throw new ApiError(400, `This model's context is ${contextSize} tokens, but ${param} has ${Buffer.byteLength(x)} bytes, more than that many tokens can hold (${maxPromptBytes} bytes).`, "invalid_request_error", param, "context_length_exceeded");
        }
        ids = tok.encode(x, { addBos: tok.addBos, parseSpecial: true });
      } else {
        const badId = x.find((id) => id >= tok.vocabSize);
        if (badId !== undefined) throw new ApiError(400, `Token id ${badId} in ${param} is outside the vocabulary (${tok.vocabSize} tokens).`, "invalid_request_error", param);
        ids = x;
      }
      if (ids.length === 0) throw new ApiError(400, `${param} has no tokens.`, "invalid_request_error", param);
      if (ids.length > contextSize) throw new ApiError(400, `This model's context is ${contextSize} tokens, but ${param} has ${ids.length}.`, "invalid_request_error", param, "context_length_exceeded");
      return ids;
    });
    const abort = new AbortController();
    res.on("close", () => { if (!res.writableEnded) abort.abort(); });
    const slot = await pool.acquire(inputs[0], abort.signal);
    const vectors: Float32Array[] = [];
    let tokens = 0;
    const t0 = performance.now();
    try {
      for (const ids of inputs) {
        if (abort.signal.aborted || stopping) break;
        try {
          vectors.push(embedTokens(slot.ctx, ids, { pooling, normalize: r.normalize }));
        } catch (e) {
          slot.ctx.reset();
          slot.tokens.length = 0;
          throw e;
        }
        slot.tokens = ids.slice();
        tokens += ids.length;
        // between inputs, the other slots' generations and other clients go on
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      pool.release(slot);
    }
    if (!internal) metrics.countGeneration(tokens, 0, performance.now() - t0, 0);
    if (vectors.length < inputs.length) {
      if (res.destroyed) return;
      throw new ApiError(503, "The server shut down before this request finished.", "server_error", null, "shutdown");
    }
    sendJson(res, 200, embeddingsBody(modelId, vectors, r.encoding, tokens));
  }

  async function generateResponse(res: http.ServerResponse, chat: boolean, body: Record<string, unknown>, s: NonNullable<typeof state>, internal: boolean): Promise<void> {
    const { model, pool, engine, contextSize, maxPromptBytes } = s;
    const tok = model.tokenizer;
    let params: SamplingParams;
    let prompt: number[];
    let echo = "";
    let echoed = false;
    // Tokenizing blocks the event loop for every client, so a text that cannot fit is refused by its length first:
    // no token covers more input bytes than its own text has (SentencePiece and byte-level BPE as llama.cpp runs
    // them do not normalize text), so more than contextSize × the longest token's bytes cannot fit.
    const checkBytes = (text: string, param: string) => {
      const bytes = Buffer.byteLength(text);
      if (bytes > maxPromptBytes) {
        throw new ApiError(400, `This model's context is ${contextSize} tokens, but the prompt has ${bytes} bytes, more than that many tokens can hold (${maxPromptBytes} bytes).`, "invalid_request_error", param, "context_length_exceeded");
      }
    };
    if (chat) {
      const r = parseChat(body);
      params = r;
      const text = await renderChat(s.chat, r.messages, maxPromptBytes, contextSize);
      const promptText = stripBosText(tok, text);
      checkBytes(promptText, "messages");
      // the template's control tokens (<|im_start|>, <start_of_turn>, [INST]) are tokens, as in llama.cpp's server; the
      // plain transcript (no template) has none, so its text is never parsed for them
      prompt = tok.encode(promptText, { addBos: tok.addBos, parseSpecial: s.chat.kind === "template" });
    } else {
      const r = parseCompletion(body);
      params = r;
      if (typeof r.prompt === "string") {
        checkBytes(r.prompt, "prompt");
        prompt = tok.encode(r.prompt, { addBos: tok.addBos });
        echoed = r.echo;
        if (r.echo) echo = r.prompt;
      } else {
        if (r.prompt.length >= contextSize) {
          throw new ApiError(400, `This model's context is ${contextSize} tokens, but the prompt has ${r.prompt.length}.`, "invalid_request_error", "prompt", "context_length_exceeded");
        }
        const badId = r.prompt.find((id) => id >= tok.vocabSize);
        if (badId !== undefined) throw new ApiError(400, `Token id ${badId} is outside the vocabulary (${tok.vocabSize} tokens).`, "invalid_request_error", "prompt");
        prompt = r.prompt;
        echoed = r.echo;
        if (r.echo) echo = tok.decode(prompt, { removeSpecial: true });
      }
    }
    const badBias = [...params.logitBias?.keys() ?? []].find((id) => id >= tok.vocabSize);
    if (badBias !== undefined) throw new ApiError(400, `'logit_bias' names token ${badBias}, outside the vocabulary (${tok.vocabSize} tokens).`, "invalid_request_error", "logit_bias");
    if (prompt.length === 0) throw new ApiError(400, "The prompt has no tokens.", "invalid_request_error", chat ? "messages" : "prompt");
    if (prompt.length >= contextSize) {
      throw new ApiError(400, `This model's context is ${contextSize} tokens, but the prompt has ${prompt.length}.`, "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded");
    }
    const maxKey = body.n_predict !== undefined ? "n_predict" : chat && body.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens";
    const maxTokens = params.maxTokens === "context" ? contextSize - prompt.length : params.maxTokens ?? (chat ? contextSize - prompt.length : SERVE_DEFAULTS.completionTokens);
    if (prompt.length + maxTokens > contextSize) {
      throw new ApiError(400, `This model's context is ${contextSize} tokens: the prompt (${prompt.length}) plus ${maxKey} (${maxTokens}) exceed it.`, "invalid_request_error", maxKey, "context_length_exceeded");
    }
    const formatParam = body.json_schema !== undefined ? "json_schema" : "response_format";
    // compile the schema now, so that a bad one is a 400 before anything is streamed (the compiler caches it)
    (await s.json.constraint(params.responseFormat, formatParam))?.dispose();
    // echo with logprobs: the prompt's tokens get theirs too (BOS, which no text shows, is left out)
    const promptLogprobs = echoed && params.logprobs !== undefined ? params.logprobs : undefined;

    const abort = new AbortController();
    let finishInflight!: () => void;
    const entry: InFlight = { abort, done: new Promise((r) => (finishInflight = r)) };
    res.on("close", () => { if (!res.writableEnded) abort.abort(); });

    const slot = await pool.acquire(prompt, abort.signal);
    inflight.add(entry);
    try {
      await run();
    } finally {
      pool.release(slot);
      inflight.delete(entry);
      finishInflight();
    }

    async function run(): Promise<void> {
      const id = `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
      const t = Math.floor(Date.now() / 1000);
      if (params.stream) {
        res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: stopping ? "close" : "keep-alive" });
        res.flushHeaders();
      }
      const choices: Choice[] = [];
      let completionTokens = 0;
      let cached = 0;
      let cancelled = false;
      for (let index = 0; index < params.n && !cancelled; index++) {
        const items: (WireLogprob | { token: string; offset: number; logprob: null; top: null })[] = [];
        let text = echo;
        let sentText = 0, sentItems = 0;
        const hold = holdback(params.stop);
        const chunkLogprobs = () => {
          if (params.logprobs === undefined || sentItems === items.length) return null;
          const part = items.slice(sentItems) as WireLogprob[];
          sentItems = items.length;
          return chat ? chatLogprobs(part) : completionLogprobs(part);
        };
        // text that could be the start of a stop string waits until it is known not to be one
        const flush = (final: boolean): Promise<void> | void => {
          const safe = final ? text.length : text.length - hold(text);
          if (safe <= sentText && !final) return;
          const piece = text.slice(sentText, Math.max(safe, sentText));
          sentText = Math.max(safe, sentText);
          if (!piece && !final) return;
          if (!piece && (params.logprobs === undefined || sentItems === items.length)) return;
          return sse(res, chat ? chatChunk(id, t, modelId, index, { content: piece }, null, chunkLogprobs()) : completionChunk(id, t, modelId, index, piece, null, chunkLogprobs()));
        };
        if (params.stream && chat) await sse(res, chatChunk(id, t, modelId, index, { role: "assistant", content: "" }, null));
        const constraint = await s.json.constraint(params.responseFormat, formatParam);
        const r = await engine.run({
          slot, prompt, cachePrompt: params.cachePrompt, constraint, promptLogprobs, signal: abort.signal,
          sequence: {
            maxTokens,
            temperature: params.temperature ?? DEFAULTS.temperature,
            topK: params.topK ?? DEFAULTS.topK,
            topP: params.topP ?? DEFAULTS.topP,
            minP: params.minP ?? DEFAULTS.minP,
            repeatPenalty: params.repeatPenalty ?? DEFAULTS.repeatPenalty,
            repeatLastN: params.repeatLastN ?? DEFAULTS.repeatLastN,
            frequencyPenalty: params.frequencyPenalty, presencePenalty: params.presencePenalty, logitBias: params.logitBias,
            // each choice its own stream of random numbers, repeatable under one seed
            seed: params.seed !== undefined ? params.seed + index : undefined,
            stop: params.stop,
            stopAtEos: !params.ignoreEos,
            logprobs: params.logprobs,
          },
          onStep: (step: SequenceStep) => {
            if (step.logprob !== undefined) items.push(wireLogprob(tok, step, text.length));
            text += step.text;
            if (params.stream && !abort.signal.aborted) return flush(false);
          },
        }).catch((e) => { constraint?.dispose(); throw e; });
        if (index === 0) cached = r.cachedTokens;
        if (r.promptLogprobs) items.unshift(...promptItems(tok, r.promptLogprobs, echo));
        if (!internal) metrics.countGeneration(r.promptTokens - r.cachedTokens, r.tokens.length, r.prefillMs, r.decodeMs);
        if (r.stopReason === "cancelled") { cancelled = true; break; }
        completionTokens += r.tokens.length;
        const finish = finishReason(r.stopReason);
        // a stop string the holdback kept back is cut from the text: what was sent stays, the rest follows
        text = echo + r.text;
        if (params.stream) {
          await flush(true);
          await sse(res, chat ? chatChunk(id, t, modelId, index, {}, finish) : completionChunk(id, t, modelId, index, "", finish));
        } else {
          choices.push({ index, text, finish, logprobs: params.logprobs === undefined ? null : chat ? chatLogprobs(items as WireLogprob[]) : completionLogprobs(items) });
        }
      }
      if (cancelled) {
        if (!internal) metrics.cancelled++;
        if (res.destroyed) return;
        // only a server shutdown cancels a request whose client is still there
        const err = new ApiError(503, "The server shut down before this request finished.", "server_error", null, "shutdown");
        if (params.stream) { await sse(res, err.body()); res.end(); } else sendError(res, err);
        return;
      }
      const u = usage(prompt.length, completionTokens, cached);
      if (!params.stream) return sendJson(res, 200, chat ? chatBody(id, t, modelId, choices, u) : completionBody(id, t, modelId, choices, u));
      if (params.includeUsage) await sse(res, usageChunk(id, t, modelId, chat ? "chat.completion.chunk" : "text_completion", u));
      res.end("data: [DONE]\n\n");
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? SERVE_DEFAULTS.port, host, () => { server.off("error", reject); resolve(); });
  });
  const port = (server.address() as { port: number }).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log(`listening on ${url} (model ${modelId}, loading)`);

  const ready = (async () => {
    const t0 = performance.now();
    const model = await obtainModel(opts.model, { contextSize: opts.contextSize, threads: opts.threads, contexts: parallel, cacheTypeK: opts.cacheTypeK, cacheTypeV: opts.cacheTypeV });
    await model.startThreads();
    const kvOpts = { ...(opts.cacheTypeK ? { cacheTypeK: opts.cacheTypeK } : {}), ...(opts.cacheTypeV ? { cacheTypeV: opts.cacheTypeV } : {}) };
    const first = model.createContext({ ...(opts.contextSize !== undefined ? { contextSize: opts.contextSize } : {}), ...kvOpts });
    const over = model.contextsFit(parallel - 1, { contextSize: first.contextSize, batchSize: first.batchSize, ...kvOpts });
    if (over) throw new Error(`${model.name}: --parallel ${parallel}: ${over}; use a smaller --parallel or --ctx`);
    const contexts = [first, ...Array.from({ length: parallel - 1 }, () => model.createContext({ contextSize: first.contextSize, ...kvOpts }))];
    let chat: ChatFormatter;
    try {
      chat = await chatFormatter(model.file, model.tokenizer, { timeoutMs: SERVE_DEFAULTS.templateMs, heapMb: SERVE_DEFAULTS.templateHeapMb });
    } catch (e) {
      throw new Error(`${model.name}: ${(e as Error).message}; edgeprune will not serve a chat template it cannot render safely`);
    }
    if (stopping) chat.close();
    state = {
      model, pool: new SlotPool(contexts, queueLimit), engine: new Engine(model.tokenizer), json: new JsonConstraints(model.tokenizer, model.config.vocabSize),
      chat, contextSize: first.contextSize, maxPromptBytes: first.contextSize * maxTokenBytes(model),
    };
    log(`model loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s: ${parallel} slot(s) of ${contexts[0].contextSize} tokens, ${model.pool?.size ?? 1} thread(s), ${model.runtimes.length > 1 ? `in ${model.runtimes.length} wasm memories, ` : ""}chat prompts: ${chat.kind === "template" ? "the model's chat template" : "fallback transcript"}`);
    if (warmupRequests > 0 && !stopping) {
      warmupToken = randomUUID();
      const w = await warmUp({
        host, port, apiKey: opts.apiKey, header: [WARMUP_HEADER, warmupToken], requests: warmupRequests,
        // more than the contexts so that some wait in the queue, but never more than the queue admits
        concurrency: parallel + Math.min(queueLimit, parallel, 2), budgetMs: WARMUP_BUDGET_MS, stopped: () => stopping, embeddings: opts.embeddings ?? false,
      });
      warmupToken = undefined;
      log(`warmed up with ${w.requests} request(s) in ${(w.ms / 1000).toFixed(2)} s` +
        (w.unexpected.length ? `; ${w.unexpected.length} unexpected: ${w.unexpected.slice(0, 3).join("; ")}` : ""));
    }
    serving = true;
  })();
  ready.catch(() => {});

  let closing: Promise<void> | undefined;
  const close = () => closing ??= (async () => {
    stopping = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    state?.pool.close();
    state?.chat.close();
    server.closeIdleConnections();
    const all = () => Promise.all([...inflight].map((f) => f.done));
    if (inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([all().then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
      clearTimeout(timer);
      if (timedOut) {
        log(`cancelling ${inflight.size} request(s) still running after ${graceMs} ms`);
        for (const f of inflight) f.abort.abort();
        await all();
      }
    }
    // give the last responses a moment to flush, then drop whatever connections remain
    setTimeout(() => server.closeAllConnections(), 200).unref();
    await closed;
  })();

  return { url, port, ready, close };
}

async function obtainModel(src: ServeOptions["model"], opts: LoadOptions): Promise<Model> {
  if (typeof src === "function") return src();
  if (typeof src !== "string") return src;
  // Read the file once asynchronously so the OS caches it while the event loop stays free to answer /health with
  // 503; the synchronous load that follows then copies from the page cache into wasm memory.
  await new Promise<void>((resolve, reject) => {
    const s = createReadStream(src, { highWaterMark: 1 << 20 });
    s.on("data", () => {});
    s.on("error", (e) => reject(new Error(`${src}: cannot read (${(e as NodeJS.ErrnoException).code ?? e.message})`)));
    s.on("end", resolve);
  });
  // every slot's context planned up front (opts.contexts): a sharded model places each slot's KV cache rows with its layers
  return loadModelFile(src, opts);
}

function finishReason(r: StopReason): FinishReason {
  return r === "length" || r === "context" ? "length" : "stop";
}

/** A token as the wire shows it: text (U+FFFD where it holds part of a UTF-8 character) and bytes. */
function tokenWire(tok: Tokenizer, id: number): { token: string; bytes: number[] } {
  const b = tok.tokenBytes(id);
  return { token: new TextDecoder().decode(b), bytes: Array.from(b) };
}

function wireLogprob(tok: Tokenizer, step: SequenceStep, offset: number): WireLogprob {
  return { ...tokenWire(tok, step.id), logprob: step.logprob!, top: (step.top ?? []).map((t) => ({ ...tokenWire(tok, t.id), logprob: t.logprob })), offset };
}

/** The echoed prompt's tokens with their log-probabilities; offsets into the echoed text (BOS has no text and is left out). */
function promptItems(tok: Tokenizer, items: PromptLogprob[], echo: string): (WireLogprob | { token: string; offset: number; logprob: null; top: null })[] {
  const out: (WireLogprob | { token: string; offset: number; logprob: null; top: null })[] = [];
  let offset = 0;
  for (const [i, it] of items.entries()) {
    const w = tokenWire(tok, it.id);
    if (i === 0 && w.bytes.length === 0) continue;
    // the first piece's leading space is the one SentencePiece adds and the text does not show
    const shown = offset === 0 && w.token.startsWith(" ") && !echo.startsWith(" ") ? w.token.length - 1 : w.token.length;
    out.push(it.logprob === null ? { token: w.token, offset, logprob: null, top: null } : { ...w, logprob: it.logprob, top: it.top!.map((t) => ({ ...tokenWire(tok, t.id), logprob: t.logprob })), offset });
    offset += shown;
  }
  return out;
}

/** GET /props: llama-server's description of the loaded model and the server's defaults. */
function props(model: Model, contextSize: number, slots: number): object {
  const tok = model.tokenizer;
  const special = (id: number) => (id >= 0 && id < tok.vocabSize ? tok.tokenText(id) : "");
  return {
    default_generation_settings: {
      n_ctx: contextSize,
      params: {
        n_predict: -1, temperature: DEFAULTS.temperature, top_k: DEFAULTS.topK, top_p: DEFAULTS.topP, min_p: DEFAULTS.minP,
        repeat_penalty: DEFAULTS.repeatPenalty, repeat_last_n: DEFAULTS.repeatLastN, frequency_penalty: 0, presence_penalty: 0, cache_prompt: true,
        max_tokens_completions: SERVE_DEFAULTS.completionTokens,
      },
    },
    total_slots: slots,
    model_path: model.name,
    n_ctx_train: model.config.trainContext,
    n_vocab: tok.vocabSize,
    chat_template: metaString(model.file.kv, KEY.chatTemplate, ""),
    bos_token: special(tok.bosId),
    eos_token: special(tok.eosId),
    build_info: `edgeprune ${packageVersion()}`,
    modalities: { vision: false, audio: false },
  };
}

/** POST /tokenize, as llama-server: {content, add_special = false, parse_special = true, with_pieces = false}. */
function tokenize(tok: Tokenizer, b: Record<string, unknown>, maxBytes: number): object {
  for (const k of Object.keys(b)) if (!["content", "add_special", "parse_special", "with_pieces"].includes(k)) throw new ApiError(400, `Unrecognized request argument supplied: ${k}.`, "invalid_request_error", k);
  if (typeof b.content !== "string") throw new ApiError(400, "'content' must be a string.", "invalid_request_error", "content");
  if (Buffer.byteLength(b.content) > maxBytes) throw new ApiError(400, `'content' has more bytes than the context can hold as tokens (${maxBytes}).`, "invalid_request_error", "content", "context_length_exceeded");
  const flag = (k: string, dflt: boolean) => {
    if (b[k] === undefined || b[k] === null) return dflt;
    if (typeof b[k] !== "boolean") throw new ApiError(400, `'${k}' must be a boolean.`, "invalid_request_error", k);
    return b[k] as boolean;
  };
  const tokens = tok.encode(b.content, { addBos: flag("add_special", false) && tok.addBos, parseSpecial: flag("parse_special", true) });
  if (!flag("with_pieces", false)) return { tokens };
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  return {
    tokens: tokens.map((id) => {
      const bytes = tok.tokenBytes(id);
      try {
        return { id, piece: utf8.decode(bytes) };
      } catch {
        // part of a UTF-8 character: the bytes, as llama-server sends them
        return { id, piece: Array.from(bytes) };
      }
    }),
  };
}

/** POST /detokenize: {tokens: [ids]} → {content}. */
function detokenize(tok: Tokenizer, b: Record<string, unknown>): object {
  for (const k of Object.keys(b)) if (k !== "tokens") throw new ApiError(400, `Unrecognized request argument supplied: ${k}.`, "invalid_request_error", k);
  const ids = b.tokens;
  if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0 && x < tok.vocabSize)) {
    throw new ApiError(400, `'tokens' must be an array of token ids from 0 to ${tok.vocabSize - 1}.`, "invalid_request_error", "tokens");
  }
  return { content: tok.decode(ids as number[]) };
}

/** How many trailing characters of `text` might begin a stop string (and so must not be streamed yet). */
function holdback(stops: string[]): (text: string) => number {
  if (stops.length === 0) return () => 0;
  return (text) => {
    let keep = 0;
    for (const s of stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) { keep = n; break; }
      }
    }
    return keep;
  };
}

/** Render a chat prompt in the template sandbox; the template's failures and limits become 400s. */
async function renderChat(chat: ChatFormatter, messages: ChatMessage[], maxChars: number, contextSize: number): Promise<string> {
  try {
    return await chat.render(messages, maxChars);
  } catch (e) {
    if (!(e instanceof TemplateError)) throw e;
    switch (e.reason) {
      case "output":
        throw new ApiError(400, `This model's context is ${contextSize} tokens, but the chat template's output for these messages is longer than that many tokens can hold (${e.message}).`, "invalid_request_error", "messages", "context_length_exceeded");
      case "template":
        throw new ApiError(400, `The chat template failed on these messages: ${e.message}`, "invalid_request_error", "messages");
      case "timeout":
      case "memory":
        throw new ApiError(400, `The model's chat template was stopped on these messages: ${e.message}.`, "invalid_request_error", "messages", "chat_template_limit");
      default:
        throw new ApiError(500, `The chat template could not be rendered: ${e.message}`, "server_error");
    }
  }
}

/** Bytes of the model's longest token text (the prompt byte bound); a vocabulary the file does not list counts 256. */
function maxTokenBytes(model: Model): number {
  const tokens = metaArray(model.file.kv, TOKENIZER_KEY.tokens)?.items;
  let max = 1;
  if (tokens instanceof GgufStringArray) for (let i = 0; i < tokens.length; i++) max = Math.max(max, tokens.byteLength(i));
  else max = 256;
  return max;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function bodyTooLarge(): ApiError {
  return new ApiError(413, `The request body is over ${SERVE_DEFAULTS.maxBodyBytes} bytes.`, "invalid_request_error", null, "request_too_large");
}

function methodNotAllowed(res: http.ServerResponse, pathname: string, methods: readonly string[]): ApiError {
  res.setHeader("Allow", methods.join(", "));
  return new ApiError(405, `Use ${methods[0]} ${pathname}.`);
}

/**
 * A CORS preflight from an origin the policy allowed (others were refused before): the route's methods, the
 * headers the page asks to send (the OpenAI SDK adds its own X-Stainless-* headers), and Chromium's Private
 * Network Access permission (a page on a public address calling this server on loopback asks for it).
 */
function preflight(req: http.IncomingMessage, res: http.ServerResponse, methods: readonly string[] | undefined): void {
  if (!methods) throw new ApiError(404, `Unknown route ${printable((req.url ?? "/").split("?")[0])}.`, "invalid_request_error", null, "not_found");
  const asked = req.headers["access-control-request-headers"];
  // a header list as the Fetch spec writes it: tokens and commas; anything else falls back to the two we need
  const headers = typeof asked === "string" && /^[\w\s,-]{1,1000}$/.test(asked) ? asked : "Authorization, Content-Type";
  res.writeHead(204, {
    "Access-Control-Allow-Methods": [...methods, "OPTIONS"].join(", "),
    "Access-Control-Allow-Headers": headers,
    "Access-Control-Max-Age": "600",
    ...(req.headers["access-control-request-private-network"] === "true" ? { "Access-Control-Allow-Private-Network": "true" } : {}),
  });
  res.end();
}

/** Bodies are JSON only: a text/plain body is what a page on another site can send without asking (CSRF). */
function requireJson(req: http.IncomingMessage): void {
  const type = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/json") {
    throw new ApiError(415, `Send the request body as JSON with 'Content-Type: application/json'${type ? ` (got '${printable(type)}')` : ""}.`, "invalid_request_error", null, "unsupported_media_type");
  }
}

/**
 * The body as text, at most maxBodyBytes. A larger one is read to its end and dropped, and only then refused with
 * a 413: a server that answers and closes while the client is still sending resets the connection, the client may
 * never read the answer, and clients such as the OpenAI SDK retry a reset. Past DISCARD_LIMIT_BYTES (or
 * DISCARD_LIMIT_MS) the 413 goes out at once and the connection is closed after it.
 */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const max = SERVE_DEFAULTS.maxBodyBytes;
    if (Number(req.headers["content-length"]) > DISCARD_LIMIT_BYTES) { reject(bodyTooLarge()); return; }
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const stop = () => { clearTimeout(timer); reject(bodyTooLarge()); };
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= max) { chunks.push(c); return; }
      if (chunks.length > 0) {
        chunks.length = 0;
        timer = setTimeout(stop, DISCARD_LIMIT_MS).unref();
      }
      if (size > DISCARD_LIMIT_BYTES) stop();
    });
    req.on("end", () => {
      clearTimeout(timer);
      if (size > max) reject(bodyTooLarge());
      else resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("close", () => clearTimeout(timer));
    req.on("error", (e) => { clearTimeout(timer); reject(e); });
  });
}

/** A request path as logs and messages show it: control characters escaped, long ones cut. */
function printable(s: string): string {
  const t = s.length > 200 ? `${s.slice(0, 200)}…` : s;
  return t.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, e: unknown): void {
  const err = e instanceof ApiError ? e : new ApiError(500, `Internal error: ${(e as Error)?.message ?? String(e)}`, "server_error");
  if (err.status === 499 || res.destroyed) { if (!res.headersSent) res.statusCode = 499; res.destroy(); return; }
  // a 413 sent before the body was read (announced or over the discard limit): the connection ends after it
  if (err.status === 413 && !res.headersSent && !res.req.complete) res.setHeader("Connection", "close");
  if (res.headersSent) {
    // mid-stream: the status is already 200, so the error goes in the stream, as OpenAI does
    res.end(`data: ${JSON.stringify(err.body())}\n\n`);
    return;
  }
  sendJson(res, err.status, err.body());
}

/** Write one server-sent event; a promise (resolved once the client has read it) only when it reads slower than we write. */
function sse(res: http.ServerResponse, data: object): Promise<void> | undefined {
  if (res.destroyed) return undefined;
  if (res.write(`data: ${JSON.stringify(data)}\n\n`)) return undefined;
  return new Promise((resolve) => {
    const done = () => { res.off("drain", done); res.off("close", done); resolve(); };
    res.on("drain", done);
    res.on("close", done);
  });
}
