// A loaded model: parsed header, config, tokenizer and weights resident in one wasm runtime, or in several (shards,
// shards.ts) when weights, KV cache and scratch do not fit one wasm32 memory. Contexts (KV caches) are created from it. Portable: it reads through a ByteSource, never the file system.
import { bytesSource, ByteSource, readGgufHeader } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { tokenizerFromGguf, type Tokenizer } from "../tokenizer/index.js";
import { hasSharedMemory, WasmRuntime } from "../wasm.js";
import { ThreadPool, warnOnce, type PoolOptions } from "../threads/pool.js";
import { checkModelFile } from "./check.js";
import type { LlamaConfig } from "./config.js";
import { Context, contextBytes, kvCacheBytes, kvFormats, logitsBytes, workspaceBytes, type ContextOptions, type ContextShard } from "./forward.js";
import { allocateWeights, tensorPlaces, weightBytes, type Weights } from "./weights.js";
import { size, type MemoryPart } from "./budget.js";
import { checkShardBytes, defaultShardBytes, placementOf, planShards, ShardError, WASM32_LIMIT, type Shard } from "./shards.js";

/** the most of a stream of unknown length read while looking for the end of its header */
const MAX_UNSIZED_HEADER = 256 << 20;

export { MAX_MODEL_BYTES, WASM32_LIMIT } from "./shards.js";

export interface LoadOptions extends ContextOptions {
  /** name used in error messages (a file path, a URL) */
  name?: string;
  /**
   * threads the kernels will run on (default 1). Above 1 the weights go into a shared memory, and
   * `await model.startThreads()` starts the workers; without SharedArrayBuffer it says so once and uses one.
   */
  threads?: number;
  /** contexts (KV caches) the caller will create at the default size, planned up front with the weights (default 1) */
  contexts?: number;
  /**
   * most bytes one wasm memory (shard) is planned to hold (default: 3.75 GiB, or EDGEPRUNE_MAX_SHARD_MIB); a model
   * that needs more is spread over several, layers in contiguous ranges. Small values force shards (tests).
   */
  maxShardBytes?: number;
}

export class Model {
  private constructor(
    readonly name: string,
    readonly file: GgufFile,
    readonly config: LlamaConfig,
    readonly tokenizer: Tokenizer,
    /** one runtime per shard, in layer order (one for a model that fits one memory) */
    readonly runtimes: readonly WasmRuntime[],
    /** what each runtime holds, as planned at load */
    readonly shards: readonly Shard[],
    readonly weights: Weights,
    readonly defaultContext: ContextOptions,
    /** threads asked for at load time */
    readonly threadsRequested = 1,
  ) {}

  /** the first (or only) runtime */
  get rt(): WasmRuntime {
    return this.runtimes[0];
  }

  /** the worker threads of each shard's runtime, once startThreads() has run (empty: one thread) */
  pools: (ThreadPool | undefined)[] = [];

  /** the first shard's worker threads (undefined: one thread) */
  get pool(): ThreadPool | undefined {
    return this.pools[0];
  }

  /**
   * Starts the worker threads asked for at load time (LoadOptions.threads), one pool per shard (only one pool
   * works at a time: the others' workers park); returns how many threads the kernels now run on. Contexts created
   * afterwards use them.
   */
  async startThreads(opts: PoolOptions = {}): Promise<number> {
    if (this.pools.length === 0 && this.threadsRequested > 1) {
      for (const rt of this.runtimes) {
        const p = await ThreadPool.start(rt, this.threadsRequested, opts);
        if (!p) { this.stopThreads(); break; }
        this.pools.push(p);
      }
    }
    return this.pool?.size ?? 1;
  }

  /** Stops the worker threads (contexts fall back to one thread only if created afterwards). */
  stopThreads(): void {
    for (const p of this.pools) p?.close();
    this.pools = [];
  }

  /** Load from any ByteSource (or bytes). Tensors are copied once, straight into wasm memory. */
  static load(source: ByteSource | Uint8Array, opts: LoadOptions = {}): Model {
    const src = source instanceof Uint8Array ? bytesSource(source) : source;
    const name = opts.name ?? "<model>";
    const { model, weights } = Model.prepare(readGgufHeader(src, name), opts);
    weights.fill((dst, at) => {
      if (src.readInto) src.readInto(dst, at);
      else dst.set(src.read(at, dst.length));
    });
    return model;
  }

  /**
   * Load from bytes that arrive in order (a fetch body, Blob.stream()) of a file of `size` bytes (undefined when
   * unknown): the header is parsed from the first bytes, the memory is planned, and each later chunk is copied
   * straight to the tensors it holds, so the file is never whole in the JS heap (browsers, Deno, any runtime).
   */
  static async loadStream(stream: ReadableStream<Uint8Array>, size: number | undefined, opts: LoadOptions = {}): Promise<Model> {
    const name = opts.name ?? "<model>";
    const reader = stream.getReader();
    const total = size ?? Number.MAX_SAFE_INTEGER;
    // the header, from a prefix that doubles until the parser no longer runs past it
    let prefix = new Uint8Array(0);
    let ended = false;
    const more = async (want: number) => {
      const parts: Uint8Array[] = [prefix];
      let have = prefix.length;
      while (have < want && !ended) {
        const r = await reader.read();
        if (r.done) { ended = true; break; }
        parts.push(r.value);
        have += r.value.length;
      }
      const next = new Uint8Array(have);
      let o = 0;
      for (const p of parts) { next.set(p, o); o += p.length; }
      prefix = next;
    };
    await more(1 << 20);
    let file: GgufFile;
    for (;;) {
      const shortBy = { need: 0 };
      try {
        file = readGgufHeader(prefixSource(prefix, ended ? prefix.length : total, shortBy), name);
        // a stream of unknown length is taken to end where its tensors do (checked when it has ended)
        if (size === undefined && !ended) file = { ...file, fileSize: dataEnd(file) };
        break;
      } catch (e) {
        if (!shortBy.need || ended) throw e;
        // a length the stream has not stated: a header past 256 MiB is taken for a hostile file, not fetched
        if (size === undefined && shortBy.need > MAX_UNSIZED_HEADER) throw new Error(`${name}: the GGUF header claims more than ${MAX_UNSIZED_HEADER >> 20} MiB before the tensor data`);
        await more(Math.max(shortBy.need, 2 * prefix.length));
      }
    }
    const { model, weights } = Model.prepare(file, opts);
    // each chunk's bytes go to the tensors they overlap (tensors are laid out in increasing offsets)
    const spans = weights.spans();
    let pos = 0, next = 0;
    const place = (chunk: Uint8Array) => {
      const end = pos + chunk.length;
      while (next < spans.length && spans[next].end <= pos) next++;
      for (let i = next; i < spans.length && spans[i].start < end; i++) {
        const s = spans[i];
        const a = Math.max(s.start, pos), b = Math.min(s.end, end);
        model.runtimes[s.shard].u8.set(chunk.subarray(a - pos, b - pos), s.ptr + (a - s.start));
        s.filled += b - a;
      }
      pos = end;
    };
    place(prefix);
    prefix = new Uint8Array(0);
    // to the end of the stream, but no further than a few bytes past the last tensor: a body that goes on (an
    // endless or padded one) is refused there rather than read to loadModel's maxBytes
    const end = dataEnd(file);
    while (!ended && pos <= end) {
      const r = await reader.read();
      if (r.done) break;
      place(r.value);
    }
    if (pos > end) await reader.cancel().catch(() => undefined);
    const short = spans.find((s) => s.filled !== s.end - s.start);
    if (short) throw new Error(`${name}: the file ends at byte ${pos}, inside tensor "${short.name}" (bytes ${short.start}..${short.end})`);
    if (pos > end) throw new Error(`${name}: the file has ${ended ? `${pos - end} bytes` : "bytes"} after its last tensor; its types or shapes do not match its data`);
    return model;
  }

  /** Everything a load does once the header is known: checks, the memory plan and runtime, tensors placed (not filled). */
  private static prepare(file: GgufFile, opts: LoadOptions): { model: Model; weights: { fill(read: (dst: Uint8Array, at: number) => void): void; spans(): Span[] } } {
    const name = opts.name ?? "<model>";
    const config = checkModelFile(file, name);
    let tokenizer: Tokenizer;
    try {
      tokenizer = tokenizerFromGguf(file.kv);
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message}`);
    }
    kvFormats(config, opts); // a cache type the model cannot take is refused before anything is allocated
    const shards = shardPlan(name, file, config, opts);
    const threads = opts.threads ?? 1;
    const shared = threads > 1 && hasSharedMemory();
    if (threads > 1 && !shared) warnOnce("SharedArrayBuffer is unavailable here (a page needs cross-origin isolation: COOP/COEP headers), so the model runs on one thread");
    const runtimes = shards.map((s) => WasmRuntime.create({ initialBytes: s.bytes, shared }));
    const weights = allocateWeights(runtimes, file, config, name, placementOf(shards));
    const model = new Model(name, file, config, tokenizer, runtimes, shards, weights, { contextSize: opts.contextSize, batchSize: opts.batchSize, cacheTypeK: opts.cacheTypeK, cacheTypeV: opts.cacheTypeV }, shared ? threads : 1);
    const places = tensorPlaces(weights);
    return {
      model,
      weights: {
        fill: (read) => { for (const p of places) read(runtimes[p.shard].u8At(p.ptr, p.tensor.byteSize), file.dataOffset + p.tensor.info.offset); },
        spans: () => places.map((p) => {
          const start = file.dataOffset + p.tensor.info.offset;
          return { name: p.tensor.name, start, end: start + p.tensor.byteSize, shard: p.shard, ptr: p.ptr, filled: 0 };
        }),
      },
    };
  }

  /** A new KV cache and scratch space over these weights (in every shard). Its memory stays allocated while the model lives. */
  createContext(opts: ContextOptions = {}): Context {
    const o = { ...this.defaultContext, ...opts };
    if (this.runtimes.length === 1) return new Context(this.rt, this.config, this.weights, o, this.pool);
    const shards: ContextShard[] = this.shards.map((s, i) => ({ rt: this.runtimes[i], pool: this.pools[i], start: s.start, end: s.end }));
    return new Context(shards, this.config, this.weights, o);
  }

  /**
   * Whether `count` more contexts of these sizes fit in every shard's memory; the one-line reason when not (a
   * server's --parallel slots are checked before they are allocated).
   */
  contextsFit(count: number, opts: ContextOptions = {}): string | undefined {
    const o = { ...this.defaultContext, ...opts };
    const contextSize = o.contextSize ?? Math.min(this.config.trainContext, 2048);
    const batchSize = Math.min(o.batchSize ?? 64, contextSize);
    for (let i = 0; i < this.runtimes.length; i++) {
      const s = this.shards[i];
      const per = kvCacheBytes(this.config, contextSize, o, [s.start, s.end]) + workspaceBytes(this.config, contextSize, batchSize, o) + (s.head ? logitsBytes(this.config, batchSize) : 0);
      const need = this.runtimes[i].bytesUsed + count * per;
      if (need > WASM32_LIMIT) {
        const where = this.runtimes.length > 1 ? ` in shard ${i} (layers ${s.start}–${s.end - 1})` : "";
        return `${count} more contexts of ${contextSize} tokens need ${size(need)} of wasm memory${where}, over wasm32's ${size(WASM32_LIMIT)}`;
      }
    }
    return undefined;
  }

  /** Marks of every shard's allocation top, for release(): scratch a tool allocates and frees (contexts included). */
  mark(): number[] {
    return this.runtimes.map((r) => r.mark());
  }

  /** Frees everything allocated in every shard since mark(). */
  release(marks: readonly number[]): void {
    this.runtimes.forEach((r, i) => r.release(marks[i]));
  }

  /** Contexts handed back by releaseContext, ready for reuse (wasm memory is never freed piecemeal). */
  private readonly idle: Context[] = [];

  /** A reset context of at least these sizes: an idle one when it fits, else a new one. Give it back with releaseContext. */
  acquireContext(opts: ContextOptions = {}): Context {
    const want = { ...this.defaultContext, ...opts };
    const contextSize = want.contextSize ?? Math.min(this.config.trainContext, 2048);
    const kv = kvFormats(this.config, want);
    const i = this.idle.findIndex((c) => c.contextSize >= contextSize && (want.batchSize === undefined || c.batchSize === Math.min(want.batchSize, c.contextSize)) &&
      c.kv.k === kv.k && c.kv.v === kv.v);
    const ctx = i >= 0 ? this.idle.splice(i, 1)[0] : this.createContext(opts);
    ctx.reset();
    return ctx;
  }

  releaseContext(ctx: Context): void {
    if (!this.idle.includes(ctx)) this.idle.push(ctx);
  }

  /** Bytes of wasm memory in use, over every shard (weights and every context created so far). */
  get memoryBytes(): number {
    return this.runtimes.reduce((a, r) => a + r.memory.buffer.byteLength, 0);
  }
}

/** where a file's tensor data ends (its last tensor, padded to the alignment) */
function dataEnd(file: GgufFile): number {
  let end = 0;
  for (const t of file.tensors) end = Math.max(end, t.offset + Math.ceil(t.byteSize / file.alignment) * file.alignment);
  return file.dataOffset + end;
}

/** the file bytes [start, end) of one tensor, its place in wasm memory, and how much of it has arrived */
interface Span { name: string; start: number; end: number; shard: number; ptr: number; filled: number }

/**
 * A ByteSource over the first bytes of a file of `size` bytes: reading past them records how far the reader
 * wanted to go (shortBy.need) and throws, so the caller can fetch more and parse again.
 */
function prefixSource(prefix: Uint8Array, size: number, shortBy: { need: number }): ByteSource {
  return {
    size,
    read(offset, length) {
      if (offset + length > prefix.length) {
        shortBy.need = offset + length;
        throw new Error(`the first ${prefix.length} bytes do not hold the header`);
      }
      return prefix.subarray(offset, offset + length);
    },
  };
}

export { kvCacheBytes } from "./forward.js";

/** "F16" when K and V share a type, else "Q8_0 K / F16 V": how messages name a context's cache */
export function kvCacheName(config: LlamaConfig, opts: ContextOptions): string {
  const f = kvFormats(config, opts);
  return f.k === f.v ? f.k.name : `${f.k.name} K / ${f.v.name} V`;
}

/** Weights plus the contexts asked for (one by default), in bytes, in one memory (the sum over shards is a little more). */
export function planBytes(file: GgufFile, config: LlamaConfig, opts: ContextOptions & { contexts?: number } = {}): number {
  return loadParts(file, config, opts).reduce((a, p) => a + p.bytes, 0);
}

/**
 * The shards a load makes: one when weights, contexts and scratch fit in one memory's budget (LoadOptions.maxShardBytes,
 * else the default), else as many as the layers need; a model one of whose layers alone does not fit is refused
 * in one line.
 */
export function shardPlan(name: string, file: GgufFile, config: LlamaConfig, opts: LoadOptions = {}): Shard[] {
  const max = opts.maxShardBytes !== undefined ? checkShardBytes(opts.maxShardBytes) : defaultShardBytes();
  // one memory where it fits, exactly as planned for one runtime
  const one = planBytes(file, config, opts);
  if (one <= max) {
    const kv = (opts.contexts ?? 1) * kvCacheBytes(config, opts.contextSize ?? Math.min(config.trainContext, 2048), opts);
    const w = weightBytes(file, config);
    return [{ start: 0, end: config.nLayers, embed: true, head: true, weightBytes: w, contextBytes: one - w, kvBytes: kv, bytes: one }];
  }
  try {
    return planShards(file, config, { ...opts, maxShardBytes: max }, name);
  } catch (e) {
    throw e instanceof ShardError ? new Error(e.message) : e;
  }
}

/** planBytes part by part, for messages */
function loadParts(file: GgufFile, config: LlamaConfig, opts: ContextOptions & { contexts?: number }): MemoryPart[] {
  const contextSize = opts.contextSize ?? Math.min(config.trainContext, 2048);
  const batchSize = Math.min(opts.batchSize ?? 64, contextSize);
  const n = opts.contexts ?? 1;
  const kv = kvCacheBytes(config, contextSize, opts);
  const per = contextBytes(config, contextSize, batchSize, opts);
  return [
    { what: "weights", bytes: weightBytes(file, config) },
    { what: `${n > 1 ? `${n} × ` : ""}the ${kvCacheName(config, opts)} KV cache of ${contextSize} tokens`, bytes: n * kv },
    { what: "scratch", bytes: n * (per - kv) + (1 << 16) },
  ];
}
