// The server's start-up warm-up: before /health answers 200, the server sends itself a round of requests of every
// kind over loopback HTTP, so that the first client request finds the process as it will stay. Node-only.
//
// Why: a fresh Node process grows by about 10 MiB of RSS the first time it runs a request path hot, and then stays
// there. V8 compiles the hot functions (HTTP parsing and writing, the handlers, JSON and SSE, sampling and the
// forward pass) with TurboFan, which mallocs its working memory and frees it after each compilation; glibc keeps
// those pages. Code space grows too, and more of the node binary is paged in. Measured on stories260K
// (test/server-load.test.ts): it happens once, whatever the load (a plain node:http server with the same request
// mix grows the same way) and levels off. A client should not see it as growth after its first request.
// Small: 256 requests of at most 8 tokens by default, about 1 s on stories260K. A cap on its CPU time stops it sooner
// on a large model, whose memory dwarfs this growth anyway.
import * as http from "node:http";

export interface WarmupOptions {
  /** the listening server's address */
  host: string;
  port: number;
  apiKey?: string;
  /** header that marks the requests as the server's own: not logged, not counted in /metrics */
  header: [string, string];
  /** requests in all */
  requests: number;
  /** requests at a time (more than the contexts, so some wait in the queue) */
  concurrency: number;
  /** no new request starts after the process has spent this many milliseconds of CPU time on the warm-up */
  budgetMs: number;
  /** stop early (the server is closing) */
  stopped: () => boolean;
  /** /v1/embeddings is served (--embeddings) */
  embeddings: boolean;
}

export interface WarmupResult {
  requests: number;
  /** requests whose status was not the one their kind expects */
  unexpected: string[];
  ms: number;
}

type Kind = "completion" | "completion-stream" | "chat" | "chat-stream" | "cancel" | "bad-json" | "missing-field" | "no-key" |
  "json" | "logprobs" | "embeddings" | "tokenize" | "detokenize" | "props";

// Every response kind the server makes: JSON and SSE for both routes, a stream the client drops (cancellation),
// 400s, and a 401 when a key is set; JSON-schema output (its first use loads xgrammar's WebAssembly and compiles
// the vocabulary: tens of MiB once), log-probabilities with echo, embeddings, /tokenize, /detokenize, /props.
// Greedy and sampled decoding alternate because they take different paths.
const KINDS: Kind[] = [
  "completion", "completion-stream", "chat", "chat-stream", "cancel", "bad-json", "json", "completion", "logprobs", "chat-stream",
  "missing-field", "no-key", "embeddings", "tokenize", "detokenize", "props", "json", "chat",
];
const WARMUP_SCHEMA = { type: "object", properties: { name: { type: "string" }, n: { type: "integer" } }, required: ["name", "n"] };
const MAX_TOKENS = 8;

export async function warmUp(o: WarmupOptions): Promise<WarmupResult> {
  const t0 = performance.now();
  const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
  const c0 = cpuMs();
  // loopback to the address the server listens on; a wildcard bind answers on the loopback address
  const host = o.host === "0.0.0.0" ? "127.0.0.1" : o.host === "::" ? "::1" : o.host;
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const unexpected: string[] = [];
  let next = 0;
  let sent = 0;
  const worker = async () => {
    for (let i = next++; i < o.requests; i = next++) {
      // every kind runs at least once; past that, the budget is CPU time, not wall time: on a machine shared with
      // other work a wall-clock budget ran out after a dozen requests, and the process grew after its first client
      if (o.stopped() || (i >= KINDS.length && cpuMs() - c0 > o.budgetMs)) return;
      const kind = KINDS[i % KINDS.length];
      if ((kind === "no-key" && o.apiKey === undefined) || (kind === "embeddings" && !o.embeddings)) continue;
      sent++;
      try {
        const status = await send(kind, i);
        const want = kind === "bad-json" || kind === "missing-field" ? 400 : kind === "no-key" ? 401 : 200;
        if (status !== want && !o.stopped()) unexpected.push(`${kind}: status ${status}`);
      } catch (e) {
        if (!o.stopped()) unexpected.push(`${kind}: ${(e as Error).message}`);
      }
    }
  };

  const send = (kind: Kind, i: number): Promise<number> => {
    const chat = kind === "chat" || kind === "chat-stream";
    const sampling = { temperature: i % 2 === 0 ? 0 : undefined, seed: i };
    const route: Record<string, string> = { embeddings: "/v1/embeddings", tokenize: "/tokenize", detokenize: "/detokenize", props: "/props" };
    const body =
      kind === "props" ? "" :
      kind === "embeddings" ? JSON.stringify({ input: i % 2 ? "Once upon a time" : ["The dog", "A cat"], encoding_format: i % 4 < 2 ? "float" : "base64" }) :
      kind === "tokenize" ? JSON.stringify({ content: "Once upon a time", with_pieces: i % 2 === 0 }) :
      kind === "detokenize" ? JSON.stringify({ tokens: [1, 2, 3] }) :
      kind === "json" ? JSON.stringify({ prompt: "Once upon a time", max_tokens: MAX_TOKENS, response_format: i % 2 ? { type: "json_object" } : { type: "json_schema", json_schema: { name: "w", schema: WARMUP_SCHEMA } }, stream: i % 4 < 2, ...sampling }) :
      kind === "logprobs" ? JSON.stringify({ prompt: "Once upon a time", max_tokens: MAX_TOKENS, logprobs: 2, echo: i % 2 === 0, ...sampling }) :
      kind === "bad-json" ? '{"prompt": "Once upon a time", ' :
      kind === "missing-field" ? JSON.stringify({ max_tokens: MAX_TOKENS }) :
      chat ? JSON.stringify({ messages: [{ role: "user", content: "Tell me a story." }], max_tokens: MAX_TOKENS, stream: kind === "chat-stream", ...sampling }) :
      JSON.stringify({ prompt: "Once upon a time", max_tokens: kind === "cancel" ? 4 * MAX_TOKENS : MAX_TOKENS, stream: kind !== "completion", ...sampling });
    const headers: http.OutgoingHttpHeaders = { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), [o.header[0]]: o.header[1] };
    if (o.apiKey !== undefined && kind !== "no-key") headers.Authorization = `Bearer ${o.apiKey}`;
    return new Promise<number>((resolve, reject) => {
      const req = http.request({ host, port: o.port, method: kind === "props" ? "GET" : "POST", path: route[kind] ?? (chat ? "/v1/chat/completions" : "/v1/completions"), headers, agent }, (res) => {
        if (kind === "cancel") {
          // drop the connection after the first event, as a client that goes away mid-stream does
          res.on("error", () => {});
          res.once("data", () => { req.destroy(); resolve(res.statusCode ?? 0); });
          res.once("end", () => resolve(res.statusCode ?? 0));
          return;
        }
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
        res.once("error", reject);
      });
      req.once("error", (e) => (kind === "cancel" && req.destroyed ? undefined : reject(e)));
      req.end(body);
    });
  };

  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return { requests: sent, unexpected, ms: performance.now() - t0 };
}
