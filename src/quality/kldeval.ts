// The KL-divergence runs: a candidate model against a base model on llama-perplexity's windows (the same ones
// `ppl` scores), one window at a time; the base's distributions saved as llama.cpp's kl-divergence-base file; a
// candidate against such a file. Portable (bytes and ByteSources; the CLI writes files). Not the statistics
// (kld.ts) nor the file layout (kldbase.ts).
import type { ByteSource } from "../gguf/reader.js";
import type { Model } from "../model/model.js";
import { firstScored, windowAt, windowCount } from "../perplexity.js";
import { KldAccumulator, logSoftmaxRow, type BaseDistribution, type KldSummary } from "./kld.js";
import { decodeRecord, encodeKldBaseHeader, encodeRecord, KldBaseReader, recordLength, recordsPerChunk } from "./kldbase.js";

export interface KldRunOptions {
  /** window length in tokens (default 512, capped by the model's context length) */
  contextSize?: number;
  /** at most this many windows */
  maxChunks?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface KldRunResult {
  summary: KldSummary;
  chunks: number;
  contextSize: number;
}

function bosOf(model: Model): number | undefined {
  return model.tokenizer.addBos ? model.tokenizer.bosId : undefined;
}

function checkContext(model: Model, n: number, role: string): void {
  if (n > model.config.trainContext) throw new Error(`${role} ${model.name}: context size ${n} exceeds its context length ${model.config.trainContext}`);
}

/** The two models must share a vocabulary: same size and the same token strings. */
export function checkSameVocabulary(base: Model, candidate: Model): void {
  const a = base.config.vocabSize, b = candidate.config.vocabSize;
  if (a !== b) throw new Error(`the base ${base.name} has a vocabulary of ${a} tokens, the candidate ${candidate.name} ${b}: KL divergence needs the same vocabulary`);
  const ta = base.file.kv.get("tokenizer.ggml.tokens")?.value as { items?: ArrayLike<string> } | undefined;
  const tb = candidate.file.kv.get("tokenizer.ggml.tokens")?.value as { items?: ArrayLike<string> } | undefined;
  if (ta?.items && tb?.items) {
    for (let i = 0; i < a; i++) {
      if (ta.items[i] !== tb.items[i]) throw new Error(`the base ${base.name} and the candidate ${candidate.name} differ at token ${i} (${JSON.stringify(ta.items[i])} vs ${JSON.stringify(tb.items[i])}): KL divergence needs the same vocabulary`);
    }
  }
}

/**
 * The candidate against the base, window by window: each window runs through the base (its distributions in
 * float64, nothing below a floor left out), then through the candidate. `tokens` is the tokenized text (with
 * BOS, as `ppl` tokenizes it).
 */
export function kldModels(base: Model, candidate: Model, tokens: ArrayLike<number>, opts: KldRunOptions = {}): KldRunResult {
  checkSameVocabulary(base, candidate);
  const n = opts.contextSize ?? Math.min(512, base.config.trainContext, candidate.config.trainContext);
  checkContext(base, n, "base");
  checkContext(candidate, n, "candidate");
  const chunks = windowCount(tokens.length, n, opts.maxChunks);
  const vocab = base.config.vocabSize;
  const first = firstScored(n);
  const bctx = base.createContext({ contextSize: n });
  const cctx = candidate.createContext({ contextSize: n });
  const acc = new KldAccumulator(vocab);
  // the base's distributions for the scored half of one window
  const rows = Array.from({ length: n - 1 - first }, (): BaseDistribution => ({ logProbs: new Float64Array(vocab), floor: -Infinity, argmax: 0 }));
  for (let c = 0; c < chunks; c++) {
    bctx.reset();
    const bw = windowAt(tokens, c, n, bosOf(base));
    const bl = bctx.eval(bw, { logits: "all" });
    rows.forEach((r, i) => { r.argmax = logSoftmaxRow(bl, (first + i) * vocab, vocab, r.logProbs); });
    cctx.reset();
    const cw = windowAt(tokens, c, n, bosOf(candidate));
    const cl = cctx.eval(cw, { logits: "all" });
    for (let j = first; j < n - 1; j++) acc.add(rows[j - first], cl, j * vocab, cw[j + 1]);
    opts.onProgress?.(c + 1, chunks);
  }
  return { summary: acc.summary(), chunks, contextSize: n };
}

/**
 * The base's distributions as llama.cpp's kl-divergence-base file, produced window by window as the writer asks
 * for the next chunk: the header first, then one chunk of records per window. `onWindow` sees each window's
 * mean NLL sum so the caller can report the base's perplexity.
 */
export function* kldBaseFile(base: Model, tokens: ArrayLike<number>, opts: KldRunOptions & { onNll?: (sumNll: number, count: number) => void } = {}): Generator<Uint8Array> {
  const n = opts.contextSize ?? Math.min(512, base.config.trainContext);
  checkContext(base, n, "base");
  const chunks = windowCount(tokens.length, n, opts.maxChunks);
  const vocab = base.config.vocabSize;
  const nv = recordLength(vocab);
  const first = firstScored(n);
  const per = recordsPerChunk(n);
  yield encodeKldBaseHeader({ nCtx: n, nVocab: vocab, nChunk: chunks, tokens: Int32Array.from({ length: n * chunks }, (_, i) => tokens[i]) });
  const ctx = base.createContext({ contextSize: n });
  const lp = new Float64Array(vocab);
  for (let c = 0; c < chunks; c++) {
    ctx.reset();
    const w = windowAt(tokens, c, n, bosOf(base));
    const logits = ctx.eval(w, { logits: "all" });
    const out = new Uint16Array(per * nv);
    let nll = 0;
    for (let j = first; j < n - 1; j++) {
      encodeRecord(logits, j * vocab, vocab, out.subarray((j - first) * nv, (j - first + 1) * nv));
      logSoftmaxRow(logits, j * vocab, vocab, lp);
      nll -= lp[w[j + 1]];
    }
    opts.onNll?.(nll, per);
    yield new Uint8Array(out.buffer);
    opts.onProgress?.(c + 1, chunks);
  }
}

/**
 * The candidate against a saved base (ours or llama.cpp's): its windows are the file's tokens, cut as the file
 * says (n_ctx), BOS substituted as the candidate's tokenizer wants; `maxChunks` compares only the first ones.
 */
export function kldAgainstBase(candidate: Model, baseFile: ByteSource, name: string, opts: Omit<KldRunOptions, "contextSize"> = {}): KldRunResult {
  const r = new KldBaseReader(baseFile, name);
  const vocab = candidate.config.vocabSize;
  if (r.nVocab !== vocab) throw new Error(`${name} holds distributions over ${r.nVocab} tokens, the candidate ${candidate.name} has ${vocab}: KL divergence needs the same vocabulary`);
  const n = r.nCtx;
  checkContext(candidate, n, "candidate");
  const tokens = r.tokens();
  const chunks = opts.maxChunks !== undefined ? Math.min(r.nChunk, opts.maxChunks) : r.nChunk;
  const first = firstScored(n);
  const nv = r.nv;
  const ctx = candidate.createContext({ contextSize: n });
  const acc = new KldAccumulator(vocab);
  const base: BaseDistribution = { logProbs: new Float64Array(vocab), floor: -16, argmax: 0 };
  for (let c = 0; c < chunks; c++) {
    const recs = r.chunk(c);
    ctx.reset();
    const w = windowAt(tokens, c, n, bosOf(candidate));
    const logits = ctx.eval(w, { logits: "all" });
    for (let j = first; j < n - 1; j++) {
      decodeRecord(recs.subarray((j - first) * nv, (j - first + 1) * nv), vocab, base);
      acc.add(base, logits, j * vocab, w[j + 1]);
    }
    opts.onProgress?.(c + 1, chunks);
  }
  return { summary: acc.summary(), chunks, contextSize: n };
}
