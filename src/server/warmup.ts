// The server's start-up warm-up: before /health answers 200, the server sends itself a round of requests of every
// kind over loopback HTTP, so that the first client request finds the process as it will stay. Node-only.
//
// Why: a fresh Node process grows by about 10 MiB of RSS the first time it runs a request path hot, and then stays
// there. V8 compiles the hot functions (HTTP parsing and writing, the handlers, JSON and SSE, sampling and the
// forward pass) with TurboFan, which mallocs its working memory and frees it after each compilation; glibc keeps
// those pages. Code space grows too, and more of the node binary is paged in. Measured on stories260K
// (test/server-load.test.ts): it happens once, whatever the load (a plain node:http server with the same request
// mix grows the same way) and levels off. A client should not see it as growth after its first request.
// Small: 256 requests of at most 8 tokens by default, about 1 s on stories260K. A time cap stops it sooner on a large
// model, whose memory dwarfs this growth anyway.
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
  /** no new request starts after this many milliseconds */
  budgetMs: number;
  /** stop early (the server is closing) */
  stopped: () => boolean;
}

export interface WarmupResult {
  requests: number;
  /** requests whose status was not the one their kind expects */
  unexpected: string[];
  ms: number;
}

type Kind = "completion" | "completion-stream" | "chat" | "chat-stream" | "cancel" | "bad-json" | "missing-field" | "no-key";

// Every response kind the server makes: JSON and SSE for both routes, a stream the client drops (cancellation),
// 400s, and a 401 when a key is set. Greedy and sampled decoding alternate because they take different paths.
const KINDS: Kind[] = ["completion", "completion-stream", "chat", "chat-stream", "cancel", "bad-json", "completion", "chat-stream", "missing-field", "no-key"];
const MAX_TOKENS = 8;

export async function warmUp(o: WarmupOptions): Promise<WarmupResult> {
  const t0 = performance.now();
  // loopback to the address the server listens on; a wildcard bind answers on the loopback address
  const host = o.host === "0.0.0.0" ? "127.0.0.1" : o.host === "::" ? "::1" : o.host;
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const unexpected: string[] = [];
  let next = 0;
  let sent = 0;
  const worker = async () => {
    for (let i = next++; i < o.requests; i = next++) {
      if (o.stopped() || performance.now() - t0 > o.budgetMs) return;
      const kind = KINDS[i % KINDS.length];
      if (kind === "no-key" && o.apiKey === undefined) continue;
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
    const body =
      kind === "bad-json" ? '{"prompt": "Once upon a time", ' :
      kind === "missing-field" ? JSON.stringify({ max_tokens: MAX_TOKENS }) :
      chat ? JSON.stringify({ messages: [{ role: "user", content: "Tell me a story." }], max_tokens: MAX_TOKENS, stream: kind === "chat-stream", ...sampling }) :
      JSON.stringify({ prompt: "Once upon a time", max_tokens: kind === "cancel" ? 4 * MAX_TOKENS : MAX_TOKENS, stream: kind !== "completion", ...sampling });
    const headers: http.OutgoingHttpHeaders = { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), [o.header[0]]: o.header[1] };
    if (o.apiKey !== undefined && kind !== "no-key") headers.Authorization = `Bearer ${o.apiKey}`;
    return new Promise<number>((resolve, reject) => {
      const req = http.request({ host, port: o.port, method: "POST", path: chat ? "/v1/chat/completions" : "/v1/completions", headers, agent }, (res) => {
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
