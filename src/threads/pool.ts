// Threads for the kernels: worker threads that share the runtime's WebAssembly.Memory and claim chunks of each
// matmul (rows or tokens) and of attention (kv heads), dispatched through a SharedArrayBuffer control block. The
// main thread writes a job, claims chunks like any worker, then spins until every chunk is done; a worker that is
// descheduled or parked only means the others do more. Workers spin for a short bound between jobs and then park
// in Atomics.wait (wasm-facts.md: a wake costs ~40 µs, a spin ~1 µs).
// Portable: Node worker_threads, or module Web Workers in browsers and Deno. Not a scheduler for anything else.
import { hasSharedMemory, WasmRuntime } from "../wasm.js";
import { isPrefillKernel, PREFILL_TOKEN_GROUP } from "../quant/formats.js";
import { C, CONTROL_INTS, f32Bits, firstTicket, MATMUL_KERNELS, matmulChunks, OP, runChunks, type MatmulKernelName } from "./share.js";
import type { WorkerInit } from "./worker.js";

/** What ThreadPool needs of a worker: Node's worker_threads.Worker and the web Worker both fit. */
export interface WorkerLike {
  postMessage(message: unknown): void;
  terminate(): unknown;
}

export interface PoolOptions {
  /** spin this long for the next job before parking (default 2 ms) */
  spinMs?: number;
  /** make a worker; default: worker_threads in Node, module Web Workers elsewhere */
  spawn?: () => WorkerLike | Promise<WorkerLike>;
  /** give up starting after this long (default 20 s) */
  timeoutMs?: number;
}

/** Matmuls smaller than this many multiply-adds run on the calling thread alone: a dispatch costs a few µs. */
const MIN_PARALLEL_MACS = 1 << 16;

let warned = false;
/** Says once per process (stderr in Node, the console in browsers) why threads were not used. */
export function warnOnce(message: string): void {
  if (warned) return;
  warned = true;
  console.warn(`edgeprune: ${message}`);
}

/** Cores the engine reports: os.availableParallelism() in Node, navigator.hardwareConcurrency elsewhere. */
export async function availableThreads(): Promise<number> {
  if (typeof process !== "undefined" && process.versions?.node) {
    const os = await import("node:os");
    return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  }
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return Math.max(1, nav?.hardwareConcurrency ?? 1);
}

async function defaultSpawn(): Promise<() => WorkerLike> {
  const url = new URL("./worker.js", import.meta.url);
  const g = globalThis as { Deno?: unknown; Worker?: new (u: URL, o: { type: "module" }) => WorkerLike };
  if (typeof process !== "undefined" && process.versions?.node && !g.Deno) {
    const { Worker } = await import("node:worker_threads");
    return () => {
      // a kernel worker allocates almost no JS objects: a small young generation saves ~2 MiB of RSS per worker
      const w = new Worker(url, { resourceLimits: { maxYoungGenerationSizeMb: 2 } });
      w.unref(); // idle workers never keep the process alive
      return w;
    };
  }
  if (typeof g.Worker === "function") {
    const W = g.Worker;
    return () => new W(url, { type: "module" });
  }
  throw new Error("this engine has no Worker API");
}

/** A runtime and the worker threads over its memory (pool undefined: one thread), for layer streams (model/layers.ts). */
export interface ThreadedRuntime {
  rt: WasmRuntime;
  pool?: ThreadPool;
}

/**
 * A runtime for `threads` threads: over a shared memory with `threads - 1` workers started, or (no shared memory,
 * or workers that do not start: said once, as ThreadPool.start does) an unshared one with no pool.
 */
export async function threadedRuntime(threads: number, opts: PoolOptions = {}): Promise<ThreadedRuntime> {
  if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`threads must be a positive integer, got ${threads}`);
  const shared = threads > 1 && hasSharedMemory();
  if (threads > 1 && !shared) warnOnce("SharedArrayBuffer is unavailable here (a page needs cross-origin isolation: COOP/COEP headers), so the model runs on one thread");
  const rt = WasmRuntime.create({ shared });
  return { rt, pool: shared ? await ThreadPool.start(rt, threads, opts) : undefined };
}

export class ThreadPool {
  private readonly c: Int32Array;
  private closed = false;

  private constructor(readonly rt: WasmRuntime, readonly size: number, private readonly workers: WorkerLike[], control: SharedArrayBuffer) {
    this.c = new Int32Array(control);
  }

  /**
   * Starts `threads - 1` workers over rt's shared memory. Returns undefined (after saying why, once) when threads
   * cannot be used: a runtime without shared memory, or workers that fail to start.
   */
  static async start(rt: WasmRuntime, threads: number, opts: PoolOptions = {}): Promise<ThreadPool | undefined> {
    if (!(Number.isInteger(threads) && threads >= 1)) throw new Error(`threads must be a positive integer, got ${threads}`);
    if (threads === 1) return undefined;
    if (!rt.shared) {
      warnOnce("SharedArrayBuffer is unavailable here (a page needs cross-origin isolation: COOP/COEP headers), so the model runs on one thread");
      return undefined;
    }
    const control = new SharedArrayBuffer(CONTROL_INTS * 4);
    const c = new Int32Array(control);
    const workers: WorkerLike[] = [];
    try {
      const spawn = opts.spawn ?? (await defaultSpawn());
      for (let i = 1; i < threads; i++) {
        const w = await spawn();
        workers.push(w);
        const init: WorkerInit = { module: rt.module, memory: rt.memory, control, index: i, size: threads, spinMs: opts.spinMs ?? 2 };
        w.postMessage(init);
      }
      const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
      while (Atomics.load(c, C.ready) < threads - 1) {
        if (Date.now() > deadline) throw new Error(`only ${Atomics.load(c, C.ready)} of ${threads - 1} workers started`);
        await new Promise((r) => setTimeout(r, 1));
      }
    } catch (e) {
      for (const w of workers) w.terminate();
      warnOnce(`worker threads could not start (${(e as Error).message}), so the model runs on one thread`);
      return undefined;
    }
    return new ThreadPool(rt, threads, workers, control);
  }

  /** Opens the job written into the control block (of `chunks` chunks), works on it and waits for every chunk. */
  private run(chunks: number): void {
    if (this.closed) throw new Error("ThreadPool: used after close()");
    const c = this.c;
    const gen = (c[C.gen] + 1) | 0;
    c[C.chunks] = chunks;
    Atomics.store(c, C.done, 0);
    Atomics.store(c, C.next, firstTicket(gen));
    Atomics.store(c, C.gen, gen);
    if (Atomics.load(c, C.parked) > 0) Atomics.notify(c, C.gen);
    runChunks(this.rt.k, c, 0, gen);
    while (Atomics.load(c, C.done) !== chunks) { /* spin: at most one chunk per worker is still running */ }
    if (Atomics.load(c, C.error)) {
      Atomics.store(c, C.error, 0);
      throw new Error("a worker thread's kernel failed");
    }
  }

  /**
   * out (t, d) = x · wᵀ with `kernel`, split across the threads (small ones run here alone); tokenGroup: x's
   * (formats.ts). A prefill kernel cut by rows takes every token on its rows in one call; cut by tokens, whole
   * groups of PREFILL_TOKEN_GROUP.
   */
  matmul(kernel: MatmulKernelName, out: number, x: number, w: number, n: number, d: number, t: number, wRowBytes: number, xRowBytes: number, tokenGroup = 1): void {
    if (n * d * t < MIN_PARALLEL_MACS) {
      this.rt.k[kernel](out, x, w, n, d, t, d);
      return;
    }
    const prefill = isPrefillKernel(kernel);
    const c = this.c, a = C.args;
    const cut = matmulChunks(d, t, this.size, prefill ? Math.max(tokenGroup, PREFILL_TOKEN_GROUP) : tokenGroup);
    c[C.op] = OP.matmul;
    c[a] = MATMUL_KERNELS.indexOf(kernel);
    c[a + 1] = out; c[a + 2] = x; c[a + 3] = w; c[a + 4] = n; c[a + 5] = d; c[a + 6] = t; c[a + 7] = wRowBytes; c[a + 8] = xRowBytes;
    c[a + 9] = cut.byRows ? 1 : 0; c[a + 10] = cut.size; c[a + 11] = prefill ? 1 : 0;
    this.run(cut.count);
  }

  /**
   * attention_kv() split by kv heads; scores holds `size` stretches of scoresStride bytes, one per thread. scale,
   * window, softcap and the cache types as attention_kv (1/sqrt(headSize), 0, 0 for plain causal attention; ggml
   * type ids, F32 by default).
   */
  attention(out: number, q: number, kCache: number, vCache: number, scores: number, scoresStride: number,
            nHeads: number, nKvHeads: number, headSize: number, pos0: number, t: number,
            scale = Math.fround(1 / Math.fround(Math.sqrt(headSize))), window = 0, softcap = 0, kType = 0, vType = 0): void {
    const c = this.c, a = C.args;
    c[C.op] = OP.attention;
    c[a] = out; c[a + 1] = q; c[a + 2] = kCache; c[a + 3] = vCache; c[a + 4] = scores; c[a + 5] = scoresStride;
    c[a + 6] = nHeads; c[a + 7] = nKvHeads; c[a + 8] = headSize; c[a + 9] = pos0; c[a + 10] = t;
    c[a + 11] = f32Bits(scale); c[a + 12] = window; c[a + 13] = f32Bits(softcap); c[a + 14] = kType; c[a + 15] = vType;
    this.run(nKvHeads);
  }

  /** gptq_rank1_update split by rows of w (bit-identical to one call: rows are independent); small ones run here. */
  gptqRank1(w: number, e: number, hrow: number, rows: number, n: number, c0: number, c1: number): void {
    if (rows * (c1 - c0) < MIN_PARALLEL_MACS || rows < 2 * this.size) {
      this.rt.k.gptq_rank1_update(w, e, hrow, rows, n, c0, c1);
      return;
    }
    this.rowJob(OP.gptqRank1, [w, e, hrow, rows, n, c0, c1], rows);
  }

  /** gptq_block_update split by rows of w (bit-identical to one call); small ones run here. */
  gptqBlock(w: number, err: number, hinv: number, rows: number, n: number, i1: number, i2: number): void {
    if (rows * (n - i2) * (i2 - i1) < MIN_PARALLEL_MACS || rows < 2 * this.size) {
      this.rt.k.gptq_block_update(w, err, hinv, rows, n, i1, i2);
      return;
    }
    this.rowJob(OP.gptqBlock, [w, err, hinv, rows, n, i1, i2], rows);
  }

  /** a job over `rows` rows in two runs per thread; args then the run length go into the control block */
  private rowJob(op: number, args: number[], rows: number): void {
    const c = this.c, a = C.args;
    const size = Math.ceil(rows / (2 * this.size));
    c[C.op] = op;
    for (let i = 0; i < args.length; i++) c[a + i] = args[i];
    c[a + args.length] = size;
    this.run(Math.ceil(rows / size));
  }

  /** Stops and terminates the workers. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.c, C.stop, 1);
    Atomics.add(this.c, C.gen, 1);
    Atomics.notify(this.c, C.gen);
    for (const w of this.workers) w.terminate();
  }
}
