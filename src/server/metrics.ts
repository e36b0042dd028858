// Counters and gauges the server keeps, rendered as Prometheus text exposition format (version 0.0.4) for
// GET /metrics. Written by hand: a few lines of text, no client library needed. Node-only (reads process memory).
// Label values come from a fixed set (the server's routes, "other", HTTP statuses), so the number of series is
// bounded whatever clients request; they are escaped as the exposition format says all the same.

/** The route label of requests for paths the server does not serve: one series, not one per path a scanner tries. */
export const OTHER_ROUTE = "other";

/** A label value as the exposition format writes it: backslash, double quote and line feed escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

export class Metrics {
  /** completed HTTP requests by route and status */
  private readonly requests = new Map<string, number>();
  private readonly routes: ReadonlySet<string>;

  /** `routes`: the paths the server serves; every other path is counted as OTHER_ROUTE. */
  constructor(routes: Iterable<string>) {
    this.routes = new Set(routes);
  }
  promptTokens = 0;
  generatedTokens = 0;
  /** seconds spent prefilling and decoding, summed over requests */
  prefillSeconds = 0;
  decodeSeconds = 0;
  cancelled = 0;
  /** decode rate of the most recent finished generation */
  lastTokensPerSecond = 0;

  countRequest(path: string, status: number): void {
    const route = this.routes.has(path) ? path : OTHER_ROUTE;
    // statuses are the server's own; anything outside HTTP's range would be a bug, counted as 0 rather than a new series
    const code = Number.isInteger(status) && status >= 100 && status <= 599 ? status : 0;
    const key = `route="${escapeLabelValue(route)}",status="${code}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  countGeneration(promptTokens: number, generated: number, prefillMs: number, decodeMs: number): void {
    this.promptTokens += promptTokens;
    this.generatedTokens += generated;
    this.prefillSeconds += prefillMs / 1000;
    this.decodeSeconds += decodeMs / 1000;
    if (generated > 1 && decodeMs > 0) this.lastTokensPerSecond = ((generated - 1) / decodeMs) * 1000;
  }

  /** The exposition text; `live` holds gauges read at scrape time. */
  render(live: { queued: number; active: number; parallel: number; loaded: boolean; wasmBytes: number }): string {
    const out: string[] = [];
    const metric = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels ? `{${labels}}` : ""} ${Number.isFinite(v) ? v : 0}`);
    };
    metric("edgeprune_requests_total", "counter", "HTTP requests answered, by route and status.", [...this.requests]);
    metric("edgeprune_prompt_tokens_total", "counter", "Prompt tokens prefilled.", [["", this.promptTokens]]);
    metric("edgeprune_generated_tokens_total", "counter", "Tokens generated.", [["", this.generatedTokens]]);
    metric("edgeprune_prefill_seconds_total", "counter", "Seconds spent prefilling prompts.", [["", this.prefillSeconds]]);
    metric("edgeprune_decode_seconds_total", "counter", "Seconds spent generating tokens (wall clock, includes interleaving).", [["", this.decodeSeconds]]);
    metric("edgeprune_generations_cancelled_total", "counter", "Generations cancelled because the client went away or the server stopped.", [["", this.cancelled]]);
    metric("edgeprune_tokens_per_second", "gauge", "Decode rate of the most recent generation.", [["", this.lastTokensPerSecond]]);
    metric("edgeprune_queue_length", "gauge", "Requests waiting for a context.", [["", live.queued]]);
    metric("edgeprune_requests_active", "gauge", "Requests generating now.", [["", live.active]]);
    metric("edgeprune_contexts", "gauge", "Contexts (KV caches), the --parallel setting.", [["", live.parallel]]);
    metric("edgeprune_model_loaded", "gauge", "1 once the model is loaded.", [["", live.loaded ? 1 : 0]]);
    metric("edgeprune_wasm_memory_bytes", "gauge", "Bytes of WebAssembly memory (weights, KV caches, scratch).", [["", live.wasmBytes]]);
    // with `node --expose-gc`, collect first so memory figures show what is retained rather than when V8 last collected
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) gc();
    const mem = process.memoryUsage();
    metric("process_resident_memory_bytes", "gauge", "Resident set size in bytes.", [["", mem.rss]]);
    metric("nodejs_heap_used_bytes", "gauge", "V8 heap in use, in bytes.", [["", mem.heapUsed]]);
    metric("nodejs_heap_total_bytes", "gauge", "V8 heap committed, in bytes.", [["", mem.heapTotal]]);
    metric("nodejs_external_bytes", "gauge", "Memory of C++ objects bound to JavaScript (buffers, wasm memory), in bytes.", [["", mem.external]]);
    return out.join("\n") + "\n";
  }
}
