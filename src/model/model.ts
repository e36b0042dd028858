// A loaded model: parsed header, config, tokenizer and weights resident in one wasm runtime. Contexts (KV caches)
// are created from it. Portable: it reads through a ByteSource, never the file system.
import { bytesSource, ByteSource, readGgufHeader } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { tokenizerFromGguf, type Tokenizer } from "../tokenizer/index.js";
import { hasSharedMemory, WasmRuntime } from "../wasm.js";
import { ThreadPool, warnOnce, type PoolOptions } from "../threads/pool.js";
import { checkModelFile } from "./check.js";
import type { LlamaConfig } from "./config.js";
import { Context, contextBytes, kvCacheBytes, kvFormats, type ContextOptions } from "./forward.js";
import { allocateWeights, weightBytes, weightTensors, type Weights } from "./weights.js";
import { overLimit, size, type MemoryPart } from "./budget.js";

/** the most of a stream of unknown length read while looking for the end of its header */
const MAX_UNSIZED_HEADER = 256 << 20;

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
  /** contexts (KV caches) the caller will create at the default size, planned up front with the weights (default 1) */
  contexts?: number;
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
        model.rt.u8.set(chunk.subarray(a - pos, b - pos), s.ptr + (a - s.start));
        s.filled += b - a;
      }
      pos = end;
    };
    place(prefix);
    prefix = new Uint8Array(0);
    // to the end of the stream: a source that caps its length (loadModel's maxBytes) says so there
    while (!ended) {
      const r = await reader.read();
      if (r.done) break;
      place(r.value);
    }
    const short = spans.find((s) => s.filled !== s.end - s.start);
    if (short) throw new Error(`${name}: the file ends at byte ${pos}, inside tensor "${short.name}" (bytes ${short.start}..${short.end})`);
    if (pos > dataEnd(file)) throw new Error(`${name}: the file has ${pos - dataEnd(file)} bytes after its last tensor; its types or shapes do not match its data`);
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
    const need = planBytes(file, config, opts);
    if (need > WASM32_LIMIT) throw loadLimitError(name, file, config, opts);
    const threads = opts.threads ?? 1;
    const shared = threads > 1 && hasSharedMemory();
    if (threads > 1 && !shared) warnOnce("SharedArrayBuffer is unavailable here (a page needs cross-origin isolation: COOP/COEP headers), so the model runs on one thread");
    const rt = WasmRuntime.create({ initialBytes: need, shared });
    const weights = allocateWeights(rt, file, config, name);
    const model = new Model(name, file, config, tokenizer, rt, weights, { contextSize: opts.contextSize, batchSize: opts.batchSize, cacheTypeK: opts.cacheTypeK, cacheTypeV: opts.cacheTypeV }, shared ? threads : 1);
    const tensors = weightTensors(weights);
    return {
      model,
      weights: {
        fill: (read) => { for (const t of tensors) read(rt.u8At(t.ptr, t.byteSize), file.dataOffset + t.info.offset); },
        spans: () => tensors.map((t) => ({ name: t.name, start: file.dataOffset + t.info.offset, end: file.dataOffset + t.info.offset + t.byteSize, ptr: t.ptr, filled: 0 })),
      },
    };
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

  /** Bytes of wasm memory in use (weights and every context created so far). */
  get memoryBytes(): number {
    return this.rt.memory.buffer.byteLength;
  }
}

/** where a file's tensor data ends (its last tensor, padded to the alignment) */
function dataEnd(file: GgufFile): number {
  let end = 0;
  for (const t of file.tensors) end = Math.max(end, t.offset + Math.ceil(t.byteSize / file.alignment) * file.alignment);
  return file.dataOffset + end;
}

/** the file bytes [start, end) of one tensor, its place in wasm memory, and how much of it has arrived */
interface Span { name: string; start: number; end: number; ptr: number; filled: number }

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

/** Weights plus the contexts asked for (one by default), in bytes: what loading will ask of wasm memory. */
export function planBytes(file: GgufFile, config: LlamaConfig, opts: ContextOptions & { contexts?: number } = {}): number {
  return loadParts(file, config, opts).reduce((a, p) => a + p.bytes, 0);
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

/**
 * The one-line refusal of a model that does not fit: what it needs, part by part, and what would fit (the largest
 * --ctx, or that the weights alone are too large and by how much).
 */
function loadLimitError(name: string, file: GgufFile, config: LlamaConfig, opts: ContextOptions & { contexts?: number }): Error {
  const parts = loadParts(file, config, opts);
  const n = opts.contexts ?? 1;
  const perToken = n * kvCacheBytes(config, 1, opts);
  const atOne = planBytes(file, config, { ...opts, contextSize: 1 });
  let advice: string;
  if (atOne + 64 * perToken > WASM32_LIMIT) {
    advice = `the weights alone need ${size(parts[0].bytes)}: use a smaller quantization, or wait for weights spread over several memories (not built yet)`;
  } else {
    let lo = 1, hi = opts.contextSize ?? Math.min(config.trainContext, 2048);
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (planBytes(file, config, { ...opts, contextSize: mid }) <= WASM32_LIMIT) lo = mid; else hi = mid - 1;
    }
    const f = kvFormats(config, opts);
    const smaller = f.k.name !== "Q8_0" || f.v.name !== "Q8_0" ? "; or a smaller cache type: --cache-type-k q8_0 --cache-type-v q8_0 (Q8_0 takes 34 bytes per 32 values, F16 64, F32 128)" : "";
    advice = `use --ctx ${lo} or less (the ${kvCacheName(config, opts)} KV cache takes ${size(perToken)} per token${n > 1 ? ` for ${n} contexts` : ""})${smaller}`;
  }
  return overLimit(`${name}: loading it`, parts, WASM32_LIMIT, advice)!;
}
