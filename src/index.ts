// edgeprune's public library API, the same ESM build in Node, Deno, browsers and Electron: load a GGUF model from
// bytes or a URL, generate, measure perplexity, quantize and prune. No Node built-ins here or below (except
// src/node/, src/server/ and src/cli.ts, which this file does not import).
import { generateSteps, type GeneratedToken, type GenerateOptions, type GenerateResult } from "./generate.js";
import type { ContextOptions } from "./model/forward.js";
import { Model, type LoadOptions } from "./model/model.js";

export { Model, planBytes, WASM32_LIMIT, type LoadOptions } from "./model/model.js";
export { Context, type ContextOptions, type ForwardOptions, type LayerObserver, type LinearObserver, type LinearSite } from "./model/forward.js";
export { configFromGguf, type LlamaConfig } from "./model/config.js";
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
export { WasmRuntime } from "./wasm.js";

/** Load a model from bytes, or fetch it from a URL (any runtime with fetch). */
export async function loadModel(source: Uint8Array | ArrayBuffer | string | URL, opts: LoadOptions = {}): Promise<Model> {
  if (source instanceof Uint8Array) return Model.load(source, opts);
  if (source instanceof ArrayBuffer) return Model.load(new Uint8Array(source), opts);
  const url = source.toString();
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return Model.load(new Uint8Array(await res.arrayBuffer()), { name: url, ...opts });
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
