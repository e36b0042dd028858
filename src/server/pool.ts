// A fixed set of contexts (KV caches) over one model, lent to one request at a time, with a bounded FIFO queue of
// waiting requests. Contexts are created once, so memory stays flat however many requests come. Not scheduling
// of tokens: each request runs its own generation loop, and the event loop interleaves them between tokens.
import type { Context } from "../index.js";
import { ApiError } from "./openai.js";

interface Waiter {
  resolve: (ctx: Context) => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class ContextPool {
  private readonly free: Context[];
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(contexts: Context[], readonly maxQueue: number) {
    this.free = contexts.slice();
  }

  /** Requests waiting for a context. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Contexts no request holds. */
  get idle(): number {
    return this.free.length;
  }

  /** Every context is taken and the queue is full: a request arriving now gets 429. */
  get saturated(): boolean {
    return this.free.length === 0 && this.waiting.length >= this.maxQueue;
  }

  /** A context for one request: now, after waiting its turn, or a 429 when the queue is full. */
  acquire(signal?: AbortSignal): Promise<Context> {
    if (this.closed) return Promise.reject(new ApiError(503, "The server is shutting down.", "server_error"));
    const ctx = this.free.pop();
    if (ctx) return Promise.resolve(ctx);
    if (this.waiting.length >= this.maxQueue) {
      return Promise.reject(new ApiError(429, `The server is busy: ${this.waiting.length} requests are already queued. Retry later.`, "rate_limit_error", null, "queue_full"));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal };
      if (signal) {
        // a client that goes away while queued leaves the queue
        w.onAbort = () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new ApiError(499, "The client closed the request.", "cancelled"));
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.waiting.push(w);
    });
  }

  /** Give a context back: it is reset and handed to the first waiter, if any. */
  release(ctx: Context): void {
    ctx.reset();
    const w = this.waiting.shift();
    if (!w) { this.free.push(ctx); return; }
    if (w.onAbort) w.signal!.removeEventListener("abort", w.onAbort);
    w.resolve(ctx);
  }

  /** Refuse new requests and fail every queued one with a 503. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) {
      if (w.onAbort) w.signal!.removeEventListener("abort", w.onAbort);
      w.reject(new ApiError(503, "The server is shutting down.", "server_error"));
    }
  }
}
