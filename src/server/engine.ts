// The server's generation engine: slots (a context each, with the tokens its KV cache holds) lent to requests by a
// bounded queue, and one loop that drives every active sequence: a prompt chunk at a time, then one token per
// sequence per step, all decode steps of a round evaluated together. A new request reuses the longest common
// token prefix its slot already holds (cache_prompt). Not HTTP (server.ts) and not the wire format (openai.ts).
import { Context } from "../model/forward.js";
import { logprobsOf, Sequence, type SequenceOptions, type SequenceStep, type StopReason, type TokenLogprob } from "../sequence.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { TokenConstraint } from "./grammar.js";
import { ApiError } from "./openai.js";

/** A context and what its KV cache holds. */
export interface Slot {
  readonly index: number;
  readonly ctx: Context;
  /** the tokens in the cache, in order (ctx.nPast of them) */
  tokens: number[];
  /** when a request last gave it back (least recently used slots are reused first) */
  lastUsed: number;
  /** (vocabSize) the logits of the slot's last evaluated position */
  readonly logits: Float32Array;
}

/** Length of the common prefix of two token sequences. */
export function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A fixed set of slots, created once (memory stays flat however many requests come), lent to one request at a
 * time, with a bounded FIFO queue of waiting requests.
 */
export class SlotPool {
  private readonly free: Slot[];
  private readonly waiting: Waiter[] = [];
  private closed = false;
  readonly size: number;

  constructor(contexts: Context[], readonly maxQueue: number) {
    this.free = contexts.map((ctx, index) => {
      ctx.reset();
      return { index, ctx, tokens: [], lastUsed: 0, logits: new Float32Array(ctx.config.vocabSize) };
    });
    this.size = contexts.length;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Slots no request holds. */
  get idle(): number {
    return this.free.length;
  }

  /** Every slot is taken and the queue is full: a request arriving now gets 429. */
  get saturated(): boolean {
    return this.free.length === 0 && this.waiting.length >= this.maxQueue;
  }

  /**
   * A slot for one request: the idle one whose cache shares the longest prefix with `prompt` (ties: the least
   * recently used), after waiting its turn, or a 429 when the queue is full.
   */
  acquire(prompt: ArrayLike<number> | undefined, signal?: AbortSignal): Promise<Slot> {
    if (this.closed) return Promise.reject(new ApiError(503, "The server is shutting down.", "server_error"));
    if (this.free.length > 0) {
      let best = 0, bestShared = -1;
      this.free.forEach((s, i) => {
        const shared = prompt ? commonPrefix(s.tokens, prompt) : 0;
        if (shared > bestShared || (shared === bestShared && s.lastUsed < this.free[best].lastUsed)) { best = i; bestShared = shared; }
      });
      return Promise.resolve(this.free.splice(best, 1)[0]);
    }
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

  /** Give a slot back (its cache is kept for the next request): to the first waiter, if any. */
  release(slot: Slot): void {
    slot.lastUsed = performance.now();
    const w = this.waiting.shift();
    if (!w) { this.free.push(slot); return; }
    if (w.onAbort) w.signal!.removeEventListener("abort", w.onAbort);
    w.resolve(slot);
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

/** A prompt token's log-probability given the tokens before it (the first token has none). */
export interface PromptLogprob {
  id: number;
  logprob: number | null;
  top: TokenLogprob[] | null;
}

export interface JobOptions {
  slot: Slot;
  prompt: number[];
  sequence: SequenceOptions;
  /** reuse the longest prefix of the prompt the slot's cache holds */
  cachePrompt: boolean;
  /** restricts each token (a JSON schema's matcher) */
  constraint?: TokenConstraint;
  /** log-probabilities of the prompt's own tokens, with this many alternatives (echo with logprobs): the whole prompt is evaluated */
  promptLogprobs?: number;
  signal: AbortSignal;
  /** each generated token; a returned promise holds this sequence (not the others) until it resolves (a slow client) */
  onStep(step: SequenceStep): Promise<void> | void;
}

export interface JobResult {
  tokens: number[];
  text: string;
  stopReason: StopReason;
  promptTokens: number;
  cachedTokens: number;
  promptLogprobs?: PromptLogprob[];
  /** from the job's start to its first logits, and from then to its end (wall clock: other sequences interleave) */
  prefillMs: number;
  decodeMs: number;
}

/** Evaluates one token for each of several contexts (the decode step of a round). */
export type DecodeBatch = (items: { ctx: Context; token: number; out: Float32Array }[]) => void;

/** One token per context, one after another: what any Context can do. */
export const decodeOneByOne: DecodeBatch = (items) => {
  for (const it of items) it.ctx.eval([it.token], { out: it.out });
};

/** Every decode step of a round as one batch (Context.decodeBatch: one matmul over the N tokens), batchSize at a time. */
export const decodeTogether: DecodeBatch = (items) => {
  const size = items[0]?.ctx.batchSize ?? 1;
  for (let i = 0; i < items.length; i += size) Context.decodeBatch(items.slice(i, i + size));
};

type State = "prefill" | "sample" | "decode" | "blocked" | "done";

class Job {
  state: State = "prefill";
  readonly seq: Sequence;
  /** prompt tokens not yet evaluated start here */
  next: number;
  readonly cached: number;
  readonly t0 = performance.now();
  t1 = 0;
  promptLogprobs?: PromptLogprob[];
  readonly done: Promise<JobResult>;
  resolve!: (r: JobResult) => void;
  reject!: (e: unknown) => void;

  constructor(readonly o: JobOptions, tokenizer: Tokenizer) {
    const { slot, prompt } = o;
    if (prompt.length === 0) throw new Error("the prompt has no tokens");
    // the cache keeps the shared prefix; at least the last prompt token is evaluated again, for its logits
    const shared = o.cachePrompt && o.promptLogprobs === undefined ? Math.min(commonPrefix(slot.tokens, prompt), prompt.length - 1) : 0;
    slot.ctx.truncate(Math.min(shared, slot.ctx.nPast));
    slot.tokens.length = slot.ctx.nPast;
    this.cached = this.next = slot.ctx.nPast;
    if (o.promptLogprobs !== undefined) this.promptLogprobs = [{ id: prompt[0], logprob: null, top: null }];
    this.seq = new Sequence(tokenizer, prompt, o.sequence);
    this.done = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
  }

  result(): JobResult {
    const now = performance.now();
    return {
      tokens: this.seq.tokens, text: this.seq.text, stopReason: this.seq.stopReason!, promptTokens: this.o.prompt.length, cachedTokens: this.cached,
      promptLogprobs: this.promptLogprobs, prefillMs: (this.t1 || now) - this.t0, decodeMs: this.t1 ? now - this.t1 : 0,
    };
  }
}

/** Drives every running sequence from one loop on the main thread, yielding to the event loop each round. */
export class Engine {
  private readonly jobs = new Set<Job>();
  private running = false;
  private wake: (() => void) | undefined;
  private allLogits: Float32Array | undefined;

  constructor(private readonly tokenizer: Tokenizer, private readonly decode: DecodeBatch = decodeTogether) {}

  /** Sequences running now. */
  get active(): number {
    return this.jobs.size;
  }

  /** Generate one sequence in a slot; resolves when it is finished (cancelled through the signal). */
  run(o: JobOptions): Promise<JobResult> {
    const job = new Job(o, this.tokenizer);
    this.jobs.add(job);
    this.kick();
    return job.done;
  }

  /** Start the loop, or wake it if every sequence was waiting for its client. */
  private kick(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
    if (!this.running) {
      this.running = true;
      this.loop().catch(() => {}).finally(() => { this.running = false; });
    }
  }

  private async loop(): Promise<void> {
    while (this.jobs.size > 0) {
      for (const job of [...this.jobs]) {
        try {
          if (job.state === "sample") await this.sample(job);
        } catch (e) {
          this.fail(job, e);
        }
      }
      const decoding = [...this.jobs].filter((j) => j.state === "decode");
      if (decoding.length > 0) {
        try {
          this.decode(decoding.map((j) => ({ ctx: j.o.slot.ctx, token: j.seq.pending!, out: j.o.slot.logits })));
          for (const j of decoding) {
            j.o.slot.tokens.push(j.seq.pending!);
            j.state = "sample";
          }
        } catch (e) {
          for (const j of decoding) this.fail(j, e);
        }
      }
      // one prompt chunk per prefilling sequence per round, so that long prompts do not stall the others' tokens
      for (const job of [...this.jobs]) {
        try {
          if (job.state === "prefill") this.prefill(job);
        } catch (e) {
          this.fail(job, e);
        }
      }
      if (this.jobs.size > 0 && [...this.jobs].every((j) => j.state === "blocked")) {
        // every client is slower than generation: sleep until one of them has read what it was sent
        await new Promise<void>((resolve) => (this.wake = resolve));
      } else {
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }

  private prefill(job: Job): void {
    const { slot, prompt, signal } = job.o;
    if (signal.aborted) return this.finish(job, "cancelled");
    const ctx = slot.ctx;
    const end = Math.min(prompt.length, job.next + ctx.batchSize);
    const chunk = prompt.slice(job.next, end);
    const last = end === prompt.length;
    if (job.promptLogprobs) {
      const vocab = ctx.config.vocabSize;
      if (!this.allLogits || this.allLogits.length < ctx.batchSize * vocab) this.allLogits = new Float32Array(ctx.batchSize * vocab);
      const all = ctx.eval(chunk, { logits: "all", out: this.allLogits });
      const k = job.o.promptLogprobs!;
      for (let i = 0; i < chunk.length; i++) {
        const row = all.subarray(i * vocab, (i + 1) * vocab);
        if (job.next + i + 1 < prompt.length) {
          const id = prompt[job.next + i + 1];
          const r = logprobsOf(row, [id], k);
          job.promptLogprobs.push({ id, logprob: r.logprobs[0], top: r.top });
        } else {
          slot.logits.set(row);
        }
      }
    } else {
      ctx.eval(chunk, { logits: last ? "last" : "none", out: slot.logits });
    }
    for (let i = job.next; i < end; i++) slot.tokens.push(prompt[i]);
    job.next = end;
    if (last) {
      job.t1 = performance.now();
      job.state = "sample";
    }
  }

  private async sample(job: Job): Promise<void> {
    const { slot, signal, constraint } = job.o;
    if (signal.aborted) return this.finish(job, "cancelled");
    const mask = constraint ? await constraint.mask() : undefined;
    const step = job.seq.next(slot.logits, mask);
    if (step && constraint) constraint.accept(step.id);
    if (step && (step.text || job.seq.stopReason !== "stop")) {
      const hold = job.o.onStep(step);
      if (hold) {
        // this client reads slower than we write: the others go on meanwhile
        job.state = "blocked";
        hold.then(() => { if (job.state === "blocked") { this.afterStep(job); this.kick(); } }, (e) => this.fail(job, e));
        return;
      }
    }
    this.afterStep(job);
  }

  private afterStep(job: Job): void {
    const { slot, signal } = job.o;
    if (job.seq.done) return this.finish(job, job.seq.stopReason!);
    if (signal.aborted) return this.finish(job, "cancelled");
    if (slot.ctx.nPast >= slot.ctx.contextSize) return this.finish(job, "context");
    job.state = "decode";
  }

  private finish(job: Job, reason: StopReason): void {
    if (job.state === "done") return;
    job.seq.finish(reason);
    const tail = job.seq.flush();
    if (tail) job.o.onStep({ id: -1, text: tail });
    job.state = "done";
    this.jobs.delete(job);
    job.o.constraint?.dispose();
    job.resolve(job.result());
  }

  private fail(job: Job, e: unknown): void {
    if (job.state === "done") return;
    job.state = "done";
    this.jobs.delete(job);
    job.o.constraint?.dispose();
    // the cache may hold a half-evaluated prompt: the slot starts from nothing next time
    job.o.slot.ctx.reset();
    job.o.slot.tokens.length = 0;
    job.reject(e);
  }
}
