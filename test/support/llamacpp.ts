// Test oracle: native llama.cpp (through node-llama-cpp, CPU only, F32 KV cache unless asked, no flash attention
// unless asked or a quantized V cache needs it)
// evaluating exact token ids and returning greedy tokens and full next-token probability vectors, free-running or
// teacher-forced at every position. It reports which ggml CPU backend it loaded, and EDGEPRUNE_LLAMA_CPU=<variant>
// (haswell = AVX2, zen4, skylakex, icelake, sse42, x64, ...) forces one. Test support only, not a sampler.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { ControlledEvaluateInputItem, Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";

/** Oracle settings; a context is cached per (model, threads, contextSize). */
export interface OracleOptions {
  threads?: number; // default 1
  contextSize?: number; // default 512; prompt + generated tokens must fit (context shift would change results)
  /** KV cache type (default F32); a quantized V cache needs llama.cpp's flash attention, which it then turns on */
  kvType?: KvType;
  /** the V cache's type when it differs from kvType (the K cache's) */
  kvTypeV?: KvType;
  /** flash attention on or off (default: on exactly when the V cache is quantized, which needs it) */
  flashAttention?: boolean;
}
type KvType = "F32" | "F16" | "Q8_0";

const DEFAULT_THREADS = 1;
const DEFAULT_CONTEXT_SIZE = 512;
const GGML_TYPE: Record<KvType, number> = { F32: 0, F16: 1, Q8_0: 8 }; // ggml_type enum values

// Asks llama.cpp's sampler for the argmax token plus the softmax of the raw logits over the whole vocabulary.
// temperature 0 selects node-llama-cpp's greedy chain (token bias, penalties, XTC, greedy): with none of
// those configured only llama_sampler_greedy runs, which picks the argmax and leaves the logits untouched;
// top-k/top-p/min-p are not in that chain. The addon then computes softmax(logits) at temperature 1.
const GREEDY_NEXT = { generateNext: { token: true, probabilities: true, options: { temperature: 0 } } } as const;

/** The folder node-llama-cpp looks in before its prebuilt package; a forced backend is a copy of that package there. */
const FORCED_MARK = "_edgeprune-forced-cpu.txt";

/**
 * Makes node-llama-cpp load exactly one ggml CPU backend variant, by giving it a local "prebuilt" folder that holds
 * links to the package's files and only that variant's libggml-cpu-*.so (ggml loads the best-scoring variant it
 * finds); without the variable a folder left by an earlier forced run is removed, so the choice never lingers.
 */
export function arrangeCpuBackend(): void {
  if (process.platform !== "linux" || process.arch !== "x64") return;
  const require = createRequire(import.meta.url);
  const nlcRoot = path.dirname(path.dirname(require.resolve("node-llama-cpp")));
  const local = path.join(nlcRoot, "bins", "linux-x64");
  const forced = process.env.EDGEPRUNE_LLAMA_CPU;
  const ours = existsSync(path.join(local, FORCED_MARK));
  if (!forced) {
    if (ours) rmSync(local, { recursive: true, force: true });
    return;
  }
  if (ours && readFileSync(path.join(local, FORCED_MARK), "utf8").trim() === forced) return;
  if (existsSync(local) && !ours) throw new Error(`oracle: ${local} exists and is not ours (a local llama.cpp build?); cannot force a CPU backend`);
  const pkg = path.join(path.dirname(path.dirname(require.resolve("@node-llama-cpp/linux-x64", { paths: [nlcRoot] }))), "bins", "linux-x64");
  const variant = `libggml-cpu-${forced}.so`;
  if (!existsSync(path.join(pkg, variant))) {
    const have = readdirSync(pkg).filter((f) => f.startsWith("libggml-cpu-")).map((f) => f.slice(12, -3));
    throw new Error(`oracle: EDGEPRUNE_LLAMA_CPU=${forced}: no ${variant} in ${pkg} (have: ${have.join(", ")})`);
  }
  rmSync(local, { recursive: true, force: true });
  mkdirSync(local, { recursive: true });
  for (const f of readdirSync(pkg)) {
    if (f.startsWith("libggml-cpu-") && f !== variant) continue;
    symlinkSync(path.join(pkg, f), path.join(local, f));
  }
  writeFileSync(path.join(local, FORCED_MARK), `${forced}\n`);
  if (!lstatSync(path.join(local, variant)).isSymbolicLink()) throw new Error("oracle: could not link the forced backend");
}

let backendFile: string | undefined;

/** The ggml CPU backend variant llama.cpp loaded (e.g. "zen4", "haswell"); "unknown" before the first call. */
export function llamaCppBackend(): string {
  const m = backendFile ? /libggml-cpu-([\w-]+)\.so/.exec(backendFile) : null;
  return m ? m[1]! : backendFile ? path.basename(backendFile) : "unknown";
}

interface CachedContext {
  context: LlamaContext;
  sequence: LlamaContextSequence;
}

let llamaPromise: Promise<Llama> | undefined;
let printed = false;
let quietLevel: import("node-llama-cpp").LlamaLogLevel | undefined;
const models = new Map<string, Promise<LlamaModel>>();
const contexts = new Map<string, Promise<CachedContext>>();
let queue: Promise<unknown> = Promise.resolve();

// Oracle calls share one sequence per context, so they run one at a time.
function serial<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

async function getLlamaInstance(): Promise<Llama> {
  llamaPromise ??= (async () => {
    process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= "true";
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    // Quiet by default; EDGEPRUNE_ORACLE_LOG=debug shows llama.cpp's own log (e.g. which CPU backend .so loaded).
    const requested = process.env.EDGEPRUNE_ORACLE_LOG as keyof typeof LlamaLogLevel | undefined;
    const show = requested != null && requested in LlamaLogLevel ? LlamaLogLevel[requested] : LlamaLogLevel.error;
    quietLevel = show;
    const order = [LlamaLogLevel.disabled, LlamaLogLevel.fatal, LlamaLogLevel.error, LlamaLogLevel.warn, LlamaLogLevel.info, LlamaLogLevel.log, LlamaLogLevel.debug];
    arrangeCpuBackend();
    // debug level so that the "loaded CPU backend from ..." line reaches us; only what was asked for is printed
    const llama = await getLlama({
      gpu: false, build: "never", logLevel: LlamaLogLevel.debug,
      logger: (level, message) => {
        const m = /loaded CPU backend from (\S+)/.exec(message);
        if (m) backendFile = m[1];
        if (order.indexOf(level) <= order.indexOf(show)) console.error(`[llama.cpp] ${message.trimEnd()}`);
      },
    });
    return llama;
  })();
  try {
    return await llamaPromise;
  } catch (err) {
    llamaPromise = undefined;
    throw err;
  }
}

async function getModel(modelPath: string, vocabOnly = false): Promise<LlamaModel> {
  const key = path.resolve(modelPath) + (vocabOnly ? "\0vocab" : "");
  let model = models.get(key);
  if (model == null) {
    model = getLlamaInstance().then(async (llama) => {
      const m = await llama.loadModel({ modelPath: path.resolve(modelPath), gpuLayers: 0, vocabOnly });
      // the backend's log line arrives asynchronously; by the time a model has loaded it has
      if (!printed) {
        printed = true;
        if (quietLevel) llama.logLevel = quietLevel; // the debug level was only for that line; some debug lines bypass the logger
        console.log(`    llama.cpp CPU backend: ${llamaCppBackend()}${process.env.EDGEPRUNE_LLAMA_CPU ? " (forced by EDGEPRUNE_LLAMA_CPU)" : ""}`);
      }
      return m;
    });
    models.set(key, model);
    model.catch(() => models.delete(key));
  }
  return model;
}

async function getContext(modelPath: string, opts: OracleOptions | undefined): Promise<CachedContext> {
  const threads = opts?.threads ?? DEFAULT_THREADS;
  const contextSize = opts?.contextSize ?? DEFAULT_CONTEXT_SIZE;
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`oracle: threads must be a positive integer, got ${threads}`);
  if (!Number.isInteger(contextSize) || contextSize < 1) throw new Error(`oracle: contextSize must be a positive integer, got ${contextSize}`);
  const kvType = opts?.kvType ?? "F32", kvTypeV = opts?.kvTypeV ?? kvType;
  const flash = opts?.flashAttention ?? kvTypeV === "Q8_0";
  const key = `${path.resolve(modelPath)}\0${threads}\0${contextSize}\0${kvType}\0${kvTypeV}\0${flash}`;
  let cached = contexts.get(key);
  if (cached == null) {
    cached = (async () => {
      const model = await getModel(modelPath);
      const context = await model.createContext({
        contextSize,
        threads,
        sequences: 1,
        // classic attention path (KQ, softmax and KQV in F32) unless the V cache is quantized, which needs flash attention
        flashAttention: flash,
        experimentalKvCacheKeyType: kvType,
        experimentalKvCacheValueType: kvTypeV,
      });
      if (context.kvCacheKeyType !== GGML_TYPE[kvType] || context.kvCacheValueType !== GGML_TYPE[kvTypeV] || context.flashAttention !== flash) {
        await context.dispose();
        throw new Error(`oracle: expected a ${kvType}/${kvTypeV} KV cache (flash attention ${flash}), got K=${context.kvCacheKeyType} V=${context.kvCacheValueType} (${context.flashAttention})`);
      }
      return { context, sequence: context.getSequence() };
    })();
    contexts.set(key, cached);
    cached.catch(() => contexts.delete(key));
  }
  return cached;
}

function checkTokens(tokens: number[], what: string): void {
  if (tokens.length === 0) throw new Error(`oracle: ${what} must not be empty`);
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0) throw new Error(`oracle: ${what} holds an invalid token id ${t}`);
  }
}

// Full probability vector indexed by token id, from the addon's (token, probability) pairs, renormalized in
// float64. The addon (AddonContext.cpp) sums expf(logit - max) in float32 from the largest term down, so terms
// under half an ulp of the running sum are dropped: on a peaked distribution its probabilities sum to 1 + 9e-6
// (stories-deep-16L, position 32 of the teacher sequence), an error of the harness, not of llama.cpp's model.
// Dividing by their float64 sum leaves expf(logit - max) / Σ, the softmax of llama.cpp's logits.
function toVector(probabilities: Map<number, number>): Float32Array {
  const raw = new Float64Array(probabilities.size);
  let sum = 0;
  for (const [token, p] of probabilities) {
    if (token >= raw.length) throw new Error(`oracle: probability list is not the whole vocabulary (token ${token} of ${raw.length})`);
    raw[token] = p;
    sum += p;
  }
  return Float32Array.from(raw, (p) => p / sum);
}

// Evaluates `tokens` after what the sequence already holds and returns the greedy next token and its distribution.
async function step(sequence: LlamaContextSequence, tokens: number[]): Promise<{ token: number; probs: Float32Array }> {
  const ids = tokens as Token[]; // node-llama-cpp brands token ids; ours are plain numbers
  const input: ControlledEvaluateInputItem[] = ids.slice(0, -1);
  input.push([ids[ids.length - 1]!, GREEDY_NEXT]);
  let result: Awaited<ReturnType<LlamaContextSequence["controlledEvaluate"]>>;
  try {
    result = await sequence.controlledEvaluate(input);
  } catch (err) {
    throw new Error(`oracle: llama.cpp failed to evaluate ${tokens.length} tokens (a token id outside the vocabulary?): ${err}`);
  }
  const next = result[tokens.length - 1]?.next;
  if (next?.token == null || next.probabilities == null) throw new Error("oracle: llama.cpp returned no next token");
  return { token: next.token, probs: toVector(next.probabilities) };
}

async function withFreshSequence<T>(modelPath: string, opts: OracleOptions | undefined, needed: number, fn: (s: LlamaContextSequence) => Promise<T>): Promise<T> {
  const { context, sequence } = await getContext(modelPath, opts);
  if (needed > context.contextSize) {
    throw new Error(`oracle: ${needed} tokens do not fit in contextSize ${context.contextSize}; pass a larger contextSize`);
  }
  await sequence.clearHistory();
  if (sequence.nextTokenIndex !== 0) throw new Error("oracle: failed to clear the sequence");
  return fn(sequence);
}

/** Evaluates exactly `promptTokens` (no BOS added), then greedy-decodes `nTokens` tokens; probs[i] is the distribution tokens[i] was picked from. */
export async function llamaCppGreedy(
  modelPath: string,
  promptTokens: number[],
  nTokens: number,
  opts?: OracleOptions,
): Promise<{ tokens: number[]; probs: Float32Array[] }> {
  checkTokens(promptTokens, "promptTokens");
  if (!Number.isInteger(nTokens) || nTokens < 0) throw new Error(`oracle: nTokens must be a non-negative integer, got ${nTokens}`);
  return serial(() =>
    // The last generated token is never evaluated, so the context holds prompt + nTokens - 1 tokens.
    withFreshSequence(modelPath, opts, promptTokens.length + Math.max(0, nTokens - 1), async (sequence) => {
      const tokens: number[] = [];
      const probs: Float32Array[] = [];
      let input = promptTokens;
      while (tokens.length < nTokens) {
        const next = await step(sequence, input);
        tokens.push(next.token);
        probs.push(next.probs);
        input = [next.token];
      }
      return { tokens, probs };
    }),
  );
}

/**
 * Teacher forcing: evaluates `tokens` once and returns llama.cpp's next-token distribution after each prefix
 * tokens[0..i], for i from `from` (default 0) to tokens.length - 1. CPU-independent comparisons use this rather
 * than free-running greedy text, where one near-tie on one backend changes every later token.
 */
export async function llamaCppTeacherForced(modelPath: string, tokens: number[], opts?: OracleOptions & { from?: number }): Promise<Float32Array[]> {
  checkTokens(tokens, "tokens");
  const from = opts?.from ?? 0;
  if (!Number.isInteger(from) || from < 0 || from >= tokens.length) throw new Error(`oracle: from = ${from} is not a position of the ${tokens.length} tokens`);
  return serial(() => withFreshSequence(modelPath, opts, tokens.length, async (sequence) => {
    const input: ControlledEvaluateInputItem[] = (tokens as Token[]).map((t, i) => (i >= from ? [t, GREEDY_NEXT] : t));
    let result: Awaited<ReturnType<LlamaContextSequence["controlledEvaluate"]>>;
    try {
      result = await sequence.controlledEvaluate(input);
    } catch (err) {
      throw new Error(`oracle: llama.cpp failed to evaluate ${tokens.length} tokens: ${err}`);
    }
    const out: Float32Array[] = [];
    for (let i = from; i < tokens.length; i++) {
      const next = result[i]?.next;
      if (next?.probabilities == null) throw new Error(`oracle: llama.cpp returned no distribution at position ${i}`);
      out.push(toVector(next.probabilities));
    }
    return out;
  }));
}

/** Softmax (temperature 1, untruncated) of llama.cpp's logits for the token that follows `tokens`. */
export async function llamaCppNextTokenProbs(modelPath: string, tokens: number[], opts?: OracleOptions): Promise<Float32Array> {
  checkTokens(tokens, "tokens");
  return serial(() => withFreshSequence(modelPath, opts, tokens.length, async (sequence) => (await step(sequence, tokens)).probs));
}

/**
 * llama.cpp's tokenization of `text` (special-token text is not parsed), with the model's BOS prepended when `addBos`.
 * `vocabOnly` loads just the vocabulary (a vocab-only GGUF, as `convert --vocab-only` writes).
 */
export async function llamaCppTokenize(modelPath: string, text: string, addBos: boolean, opts: { vocabOnly?: boolean } = {}): Promise<number[]> {
  return serial(async () => {
    const model = await getModel(modelPath, opts.vocabOnly ?? false);
    const tokens = [...model.tokenize(text, false)];
    if (!addBos) return tokens;
    const bos = model.tokens.bos;
    if (bos == null) throw new Error(`oracle: ${modelPath} has no BOS token`);
    return [bos, ...tokens];
  });
}

/** Frees every cached context, model and the llama.cpp instance, so the test process can exit. */
export async function disposeOracle(): Promise<void> {
  return serial(async () => {
    const pending = [...contexts.values()];
    contexts.clear();
    for (const c of await Promise.allSettled(pending)) {
      if (c.status === "fulfilled") await c.value.context.dispose();
    }
    const pendingEmbedding = [...embeddingContexts.values()];
    embeddingContexts.clear();
    for (const c of await Promise.allSettled(pendingEmbedding)) {
      if (c.status === "fulfilled") await c.value.dispose();
    }
    const pendingModels = [...models.values()];
    models.clear();
    for (const m of await Promise.allSettled(pendingModels)) {
      if (m.status === "fulfilled") await m.value.dispose();
    }
    const llama = llamaPromise;
    llamaPromise = undefined;
    if (llama != null) await (await llama.catch(() => undefined))?.dispose();
  });
}

const embeddingContexts = new Map<string, Promise<{ embed: (tokens: number[]) => Promise<Float64Array>; kv: string; dispose: () => Promise<void> }>>();

/**
 * What llama.cpp's embedding path returns for exact token ids, through node-llama-cpp. `kv: "default"` is
 * node-llama-cpp's own embedding context (model.createEmbeddingContext: llama.cpp's default F16 KV cache); `kv:
 * "F32"` is a context made the same way (embeddings on, `_embeddings: true`, as that class makes its own) with an
 * F32 cache, evaluated as LlamaEmbeddingContext.getEmbeddingFor does, so that only the arithmetic differs. Either
 * way llama.cpp uses the model's pooling type: a llama GGUF without `llama.pooling_type` has pooling NONE, and the
 * addon then reads llama_get_embeddings_ith(ctx, -1), the final-normed hidden state (result_norm) of the last token,
 * unnormalized. Tokens must start with BOS (node-llama-cpp adds it otherwise).
 */
export async function llamaCppEmbedding(modelPath: string, tokens: number[], opts: { kv?: "default" | "F32"; contextSize?: number } = {}): Promise<{ vector: Float64Array; kv: string }> {
  checkTokens(tokens, "embedding input");
  const kv = opts.kv ?? "default";
  const contextSize = opts.contextSize ?? DEFAULT_CONTEXT_SIZE;
  const key = `${path.resolve(modelPath)}\0${kv}\0${contextSize}`;
  let entry = embeddingContexts.get(key);
  if (entry == null) {
    entry = getModel(modelPath).then(async (m) => {
      if (kv === "default") {
        const e = await m.createEmbeddingContext({ contextSize, threads: DEFAULT_THREADS });
        const inner = (e as unknown as { _llamaContext: LlamaContext })._llamaContext;
        return {
          embed: async (t: number[]) => Float64Array.from((await e.getEmbeddingFor(t as Token[])).vector),
          kv: `K=${inner.kvCacheKeyType ?? "llama.cpp default"} V=${inner.kvCacheValueType ?? "llama.cpp default"}`,
          dispose: () => e.dispose(),
        };
      }
      const context = await m.createContext({
        contextSize, threads: DEFAULT_THREADS, sequences: 1, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", _embeddings: true,
      } as Parameters<LlamaModel["createContext"]>[0]);
      const sequence = context.getSequence();
      return {
        embed: async (t: number[]) => {
          await sequence.eraseContextTokenRanges([{ start: 0, end: sequence.nextTokenIndex }]);
          for await (const _ of sequence.evaluate(t as Token[], { _noSampling: true } as never)) break;
          return Float64Array.from((context as unknown as { _ctx: { getEmbedding(n: number): Float64Array } })._ctx.getEmbedding(t.length));
        },
        kv: `K=${context.kvCacheKeyType} V=${context.kvCacheValueType}`,
        dispose: () => context.dispose(),
      };
    });
    embeddingContexts.set(key, entry);
    entry.catch(() => embeddingContexts.delete(key));
  }
  const e = await entry;
  return serial(async () => ({ vector: await e.embed(tokens), kv: e.kv }));
}
