// edgeprune's public library API, the same ESM build in Node, Deno, browsers and Electron: load a GGUF model from
// bytes or a URL, generate, measure perplexity, quantize and prune. No Node built-ins here or below (except
// src/node/, src/server/ and src/cli.ts, which this file does not import).
import { generateSteps, type GeneratedToken, type GenerateOptions, type GenerateResult } from "./generate.js";
import type { ContextOptions } from "./model/forward.js";
import { MAX_MODEL_BYTES, Model, type LoadOptions } from "./model/model.js";
import { describeValue, isByteSource, locate, type ModelSource } from "./source.js";

export { MAX_MODEL_BYTES, Model, planBytes, WASM32_LIMIT, type LoadOptions } from "./model/model.js";
export type { ModelSource } from "./source.js";
export { Context, type ContextOptions, type ForwardOptions, type LayerOptions, type LayerObserver, type LinearObserver, type LinearSite } from "./model/forward.js";
export { configFromGguf, type LlamaConfig, type ModelConfig, type RopeConfig } from "./model/config.js";
export { ARCHITECTURES, REFUSED, architectureFor, type Architecture, type LayerRole } from "./model/arch.js";
export { checkModelFile, nonFiniteTensors } from "./model/check.js";
export { embedTokens, normalizeEmbedding, POOLINGS, type EmbeddingOptions, type Pooling } from "./embedding.js";
export { generate, generateSteps, type GenerateOptions, type GenerateResult, type GeneratedToken } from "./generate.js";
export { Sampler, SAMPLER_DEFAULTS, argmax, softmax, type SamplerOptions } from "./sampler.js";
export { perplexity, logSoftmaxAt, type PerplexityOptions, type PerplexityResult } from "./perplexity.js";
export { readGgufHeader, bytesSource, GgufError, type ByteSource } from "./gguf/reader.js";
export { writeGgufBytes, ggufChunks, layoutGguf, specFromFile, type GgufWriteSpec } from "./gguf/writer.js";
export * from "./gguf/types.js";
export { FORMATS, formatById, formatByName, type QuantFormat } from "./quant/formats.js";
export { quantizeModel, planQuantization, parseQuantType } from "./quant/quantize.js";
export { quantizeGptq, planGptq, calibrationWindows, errorTable, GPTQ_DEFAULTS, type GptqModelOptions, type GptqModelResult, type TensorError } from "./gptq/index.js";
export { removeLayers, type RemovalPlan } from "./prune/remove.js";
export { collectLayerStats, blockInfluence, blockDistance, type LayerStats, type StatsOptions } from "./prune/stats.js";
export { METRICS, rankUnits, selectForRemoval, allUnits, skipOptions, windowsNll, type Metric, type Granularity, type Unit, type Ranking } from "./prune/metrics.js";
export { evaluateDocuments, type EvalResult } from "./prune/evaluate.js";
export { runPruneStudy, calibrationAblation, kendallTau, type PruneStudyResult } from "./prune/study.js";
export { runComposeStudy, type ComposeResult } from "./studies/compose.js";
export { KldAccumulator, formatKldSummary, type KldSummary, type BaseDistribution } from "./quality/kld.js";
export { kldModels, kldAgainstBase, kldBaseFile, type KldRunResult } from "./quality/kldeval.js";
export { KldBaseReader, encodeRecord, decodeRecord } from "./quality/kldbase.js";
export { parseTasks, scoreTasks, type ChoiceTask, type ChoiceResult } from "./quality/choice.js";
export { wilsonInterval } from "./quality/stats.js";
export { splitDocuments, calibrationSplit, tokenizeDocuments, tokenWindows } from "./data/documents.js";
export { tokenizerFromGguf, type Tokenizer } from "./tokenizer/index.js";
export { WasmRuntime, defaultSimdBuild, hasRelaxedSimd, type SimdBuild } from "./wasm.js";
export { relaxedSelfTest, type RelaxedSelfTest } from "./kernels/selftest.js";
export { threadedRuntime, type ThreadedRuntime } from "./threads/pool.js";

export interface ModelSourceOptions extends LoadOptions {
  /** a URL's body or a Blob may not be larger than this (default: MAX_MODEL_BYTES, 32 GiB; larger models are sharded) */
  maxBytes?: number;
}

/**
 * Load a model from bytes (a Uint8Array, any other typed array or DataView, an ArrayBuffer), a Blob or File (a
 * page's file input), a ByteSource, a path or a file: URL (where the runtime has a file system: Node, Deno,
 * Electron's main process; a browser resolves a path against the page and fetches it), or an http(s) URL (any
 * runtime with fetch). Blobs and URL bodies stream: each chunk goes straight to its tensors in wasm memory, and the
 * file is never whole in the JS heap. A URL's body is read up to its Content-Length and never past `maxBytes`; a
 * Blob larger than `maxBytes` is refused before it is read.
 */
export async function loadModel(source: ModelSource, opts: ModelSourceOptions = {}): Promise<Model> {
  const max = opts.maxBytes ?? MAX_MODEL_BYTES;
  if (ArrayBuffer.isView(source)) return Model.load(new Uint8Array(source.buffer, source.byteOffset, source.byteLength), opts);
  if (source instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && source instanceof SharedArrayBuffer)) {
    return Model.load(new Uint8Array(source), opts);
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    const name = (source as File).name || "<blob>";
    if (source.size > max) throw new Error(`${name}: ${source.size} bytes is more than the ${max} loadModel accepts (maxBytes)`);
    return Model.loadStream(source.stream(), source.size, { name, ...opts });
  }
  if (isByteSource(source)) return Model.load(source, opts);
  if (typeof source !== "string" && !(source instanceof URL)) {
    throw new TypeError(`loadModel takes bytes (Uint8Array, another typed array, DataView, ArrayBuffer), a Blob or File, a ByteSource, a path or a URL, got ${describeValue(source)}`);
  }
  const where = locate(source);
  if (where.kind === "file") {
    // Node's file reader (Deno runs it too): tensors go from the file straight into wasm memory
    const { loadModelFile } = await import("./node/load.js");
    return loadModelFile(where.path, { name: where.name, ...opts });
  }
  let res: Response;
  try {
    res = await fetch(where.url);
  } catch (e) {
    const cause = (e as Error).cause as Error | undefined;
    throw new Error(`${where.name}: ${(e as Error).message}${cause?.message ? ` (${cause.message})` : ""}`);
  }
  const name = where.name;
  if (!res.ok) throw new Error(`${name}: HTTP ${res.status} ${res.statusText}`);
  const header = res.headers.get("content-length");
  const announced = header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
  if (announced !== undefined && announced > max) {
    await res.body?.cancel();
    throw new Error(`${name}: ${announced} bytes (Content-Length) is more than the ${max} loadModel accepts (maxBytes)`);
  }
  if (!res.body) return Model.load(new Uint8Array(0), { name, ...opts });
  // Content-Length is the file's size unless the body is compressed in transit
  const size = announced !== undefined && !res.headers.get("content-encoding") ? announced : undefined;
  return Model.loadStream(cappedBody(res.body, name, max, announced), size, { name, ...opts });
}

/** A response body that errors past `max` bytes or past the Content-Length it announced (an endless body stops there). */
function cappedBody(body: ReadableStream<Uint8Array>, name: string, max: number, announced: number | undefined): ReadableStream<Uint8Array> {
  const limit = announced ?? max;
  const reader = body.getReader();
  let size = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        if (announced !== undefined && size < announced) controller.error(new Error(`${name}: the body ended after ${size} of the ${announced} bytes its Content-Length announced`));
        else controller.close();
        return;
      }
      if (size + value.length > limit) {
        await reader.cancel();
        controller.error(new Error(`${name}: the body is larger than ${announced !== undefined ? `its Content-Length, ${announced} bytes` : `${max} bytes (loadModel's maxBytes)`}; stopped reading`));
        return;
      }
      size += value.length;
      controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

export interface StreamOptions extends Omit<GenerateOptions, "onToken">, ContextOptions {
  /** add BOS when the tokenizer wants one (default true) */
  addBos?: boolean;
  /** AbortSignal that cancels generation between tokens */
  signal?: AbortSignal;
}

/**
 * Generate from a text (or token ids) as an async iterator of tokens, yielding to the event loop between tokens
 * so other work (a UI, a server's other clients) keeps running. Returns the summary when done.
 */
export async function* generateStream(model: Model, prompt: string | number[], opts: StreamOptions): AsyncGenerator<GeneratedToken, GenerateResult> {
  const ids = typeof prompt === "string"
    ? model.tokenizer.encode(prompt, { addBos: (opts.addBos ?? true) && model.tokenizer.addBos })
    : prompt;
  // a pooled context: repeated calls reuse KV caches instead of allocating new wasm memory each time
  const ctx = model.acquireContext({ contextSize: opts.contextSize, batchSize: opts.batchSize });
  try {
    const steps = generateSteps(ctx, model.tokenizer, ids, { ...opts, shouldStop: () => opts.signal?.aborted ?? false });
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
      yield r.value;
      await yieldToEventLoop();
    }
  } finally {
    model.releaseContext(ctx);
  }
}

/**
 * A macrotask boundary that works in every runtime: setImmediate where it exists (Node), else a MessageChannel
 * message (browsers clamp setTimeout to ≥ 4 ms when nested), else setTimeout.
 */
function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
  if (typeof g.setImmediate === "function") return new Promise((r) => g.setImmediate!(r));
  if (typeof MessageChannel === "undefined") return new Promise((r) => setTimeout(r, 0));
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });
}
