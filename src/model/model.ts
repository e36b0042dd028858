// A loaded model: parsed header, config, tokenizer and weights resident in one wasm runtime. Contexts (KV caches)
// are created from it. Portable: it reads through a ByteSource, never the file system.
import { bytesSource, ByteSource, readGgufHeader } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { tokenizerFromGguf, type Tokenizer } from "../tokenizer/index.js";
import { hasSharedMemory, WasmRuntime } from "../wasm.js";
import { ThreadPool, warnOnce, type PoolOptions } from "../threads/pool.js";
import { checkModelFile } from "./check.js";
import type { LlamaConfig } from "./config.js";
import { Context, contextBytes, type ContextOptions } from "./forward.js";
import { loadWeights, weightBytes, type Weights } from "./weights.js";

/** wasm32 can address 4 GiB; we refuse before loading rather than failing halfway. */
export const WASM32_LIMIT = 4 * 1024 ** 3;

export interface LoadOptions extends ContextOptions {
  /** name used in error messages (a file path, a URL) */
  name?: string;
  /**
   * threads the kernels will run on (default 1). Above 1 the weights go into a shared memory, and
   * `await model.startThreads()` starts the workers; without SharedArrayBuffer it says so once and uses one.
   */
  threads?: number;
}

export class Model {
  private constructor(
    readonly name: string,
    readonly file: GgufFile,
    readonly config: LlamaConfig,
    readonly tokenizer: Tokenizer,
    readonly rt: WasmRuntime,
    readonly weights: Weights,
    readonly defaultContext: ContextOptions,
    /** threads asked for at load time */
    readonly threadsRequested = 1,
  ) {}

  /** the worker threads, once startThreads() has run (undefined: one thread) */
  pool: ThreadPool | undefined;

  /**
   * Starts the worker threads asked for at load time (LoadOptions.threads); returns how many threads the kernels
   * now run on. Contexts created afterwards use them.
   */
  async startThreads(opts: PoolOptions = {}): Promise<number> {
    if (!this.pool && this.threadsRequested > 1) this.pool = await ThreadPool.start(this.rt, this.threadsRequested, opts);
    return this.pool?.size ?? 1;
  }

  /** Stops the worker threads (contexts fall back to one thread only if created afterwards). */
  stopThreads(): void {
    this.pool?.close();
    this.pool = undefined;
  }

  /** Load from any ByteSource (or bytes). Tensors are copied once, straight into wasm memory. */
  static load(source: ByteSource | Uint8Array, opts: LoadOptions = {}): Model {
    const src = source instanceof Uint8Array ? bytesSource(source) : source;
    const name = opts.name ?? "<model>";
    const file = readGgufHeader(src, name);
    const config = checkModelFile(file, name);
    let tokenizer: Tokenizer;
    try {
      tokenizer = tokenizerFromGguf(file.kv);
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message}`);
    }
    const need = planBytes(file, config, opts);
    if (need > WASM32_LIMIT) {
      throw new Error(`${name}: needs ${(need / 1024 ** 3).toFixed(2)} GiB of wasm memory (weights + KV cache), over wasm32's 4 GiB limit; try a smaller --ctx or a smaller quantization`);
    }
    const threads = opts.threads ?? 1;
    const shared = threads > 1 && hasSharedMemory();
    if (threads > 1 && !shared) warnOnce("SharedArrayBuffer is unavailable here (a page needs cross-origin isolation: COOP/COEP headers), so the model runs on one thread");
    const rt = WasmRuntime.create({ initialBytes: need, shared });
    const weights = loadWeights(rt, file, config, src, name);
    return new Model(name, file, config, tokenizer, rt, weights, { contextSize: opts.contextSize, batchSize: opts.batchSize }, shared ? threads : 1);
  }

  /** A new KV cache and scratch space over these weights. Its memory stays allocated while the model lives. */
  createContext(opts: ContextOptions = {}): Context {
    return new Context(this.rt, this.config, this.weights, { ...this.defaultContext, ...opts }, this.pool);
  }

  /** Contexts handed back by releaseContext, ready for reuse (wasm memory is never freed piecemeal). */
  private readonly idle: Context[] = [];

  /** A reset context of at least these sizes: an idle one when it fits, else a new one. Give it back with releaseContext. */
  acquireContext(opts: ContextOptions = {}): Context {
    const want = { ...this.defaultContext, ...opts };
    const contextSize = want.contextSize ?? Math.min(this.config.trainContext, 2048);
    const i = this.idle.findIndex((c) => c.contextSize >= contextSize && (want.batchSize === undefined || c.batchSize === Math.min(want.batchSize, c.contextSize)));
    const ctx = i >= 0 ? this.idle.splice(i, 1)[0] : this.createContext(opts);
    ctx.reset();
    return ctx;
  }

  releaseContext(ctx: Context): void {
    if (!this.idle.includes(ctx)) this.idle.push(ctx);
  }

  /** Bytes of wasm memory in use (weights and every context created so far). */
  get memoryBytes(): number {
    return this.rt.memory.buffer.byteLength;
  }
}

export { kvCacheBytes } from "./forward.js";

/** Weights plus one default context, in bytes: what loading will ask of wasm memory. */
export function planBytes(file: GgufFile, config: LlamaConfig, opts: ContextOptions = {}): number {
  const contextSize = opts.contextSize ?? Math.min(config.trainContext, 2048);
  const batchSize = Math.min(opts.batchSize ?? 64, contextSize);
  return weightBytes(file, config) + contextBytes(config, contextSize, batchSize) + (1 << 16);
}
