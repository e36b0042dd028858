// Held-out evaluation of a (possibly pruned) model, document by document: perplexity over every predicted token,
// top-1 agreement with the dense model's next-token predictions at the same positions, and, given the dense
// model's logits, the KL divergence from it (quality/kld.ts). Used by the pruning and composition studies. Not
// llama.cpp's windowed perplexity (perplexity.ts), which suits long running text.
import type { ForwardOptions } from "../model/forward.js";
import type { Model } from "../model/model.js";
import { logSoftmaxAt } from "../perplexity.js";
import { KldAccumulator, logSoftmaxRow, type BaseDistribution, type KldSummary } from "../quality/kld.js";
import { STUDY_CACHE } from "../model/forward.js";

/** Most reference logits a study keeps in memory (2 GiB of float32): more documents need a base file. */
const MAX_REFERENCE_FLOATS = 2 ** 29;

export interface EvalResult {
  perplexity: number;
  nll: number;
  tokens: number;
  /** fraction of positions where the argmax equals the reference's argmax (when a reference was given) */
  top1Agreement?: number;
  /** argmax at every scored position, to serve as a reference */
  argmax: Int32Array;
  /** KL divergence from the reference logits (when they were given) */
  kld?: KldSummary;
  /** every document's logits at its predicting positions ((length − 1) × vocab each), when asked to keep them */
  logits?: Float32Array[];
}

/**
 * Each document (BOS + tokens, cut to `maxTokens`) runs as its own sequence; every position j predicts token j+1.
 * perplexity = exp(mean NLL over all predicted tokens of all documents).
 */
export function evaluateDocuments(model: Model, docs: number[][], opts: {
  maxTokens?: number;
  forward?: Pick<ForwardOptions, "skipLayers" | "skipAttention" | "skipFfn">;
  reference?: Int32Array;
  /** the dense model's logits (as `keepLogits` returns them): the KLD from them is measured */
  referenceLogits?: Float32Array[];
  keepLogits?: boolean;
  onProgress?: (done: number, total: number) => void;
} = {}): EvalResult {
  const maxTokens = opts.maxTokens ?? Math.min(512, model.config.trainContext);
  const used = docs.map((d) => d.slice(0, maxTokens)).filter((d) => d.length >= 2);
  if (used.length === 0) throw new Error("no evaluation document has two or more tokens");
  const total = used.reduce((a, d) => a + d.length - 1, 0);
  if (opts.reference && opts.reference.length !== total) throw new Error(`reference has ${opts.reference.length} positions, expected ${total}`);
  const vocab = model.config.vocabSize;
  if (opts.keepLogits && total * vocab > MAX_REFERENCE_FLOATS) throw new Error(`keeping ${total} × ${vocab} reference logits is over 2 GiB: evaluate fewer documents`);
  if (opts.referenceLogits) {
    if (opts.referenceLogits.length !== used.length) throw new Error(`reference logits for ${opts.referenceLogits.length} documents, expected ${used.length}`);
    opts.referenceLogits.forEach((r, i) => { if (r.length !== (used[i].length - 1) * vocab) throw new Error(`reference logits of document ${i} do not match its length or the vocabulary`); });
  }
  const ctx = model.createContext({ contextSize: maxTokens, batchSize: Math.min(64, maxTokens), ...STUDY_CACHE });
  const argmax = new Int32Array(total);
  const kept: Float32Array[] = [];
  const kld = opts.referenceLogits ? new KldAccumulator(vocab) : undefined;
  const base: BaseDistribution = { logProbs: new Float64Array(vocab), floor: -Infinity, argmax: 0 };
  let nll = 0;
  let pos = 0;
  let agree = 0;
  used.forEach((doc, di) => {
    ctx.reset();
    const logits = ctx.eval(doc, { ...opts.forward, logits: "all" });
    const ref = opts.referenceLogits?.[di];
    for (let j = 0; j + 1 < doc.length; j++, pos++) {
      nll -= logSoftmaxAt(logits, j * vocab, vocab, doc[j + 1]);
      let best = 0;
      const off = j * vocab;
      for (let v = 1; v < vocab; v++) if (logits[off + v] > logits[off + best]) best = v;
      argmax[pos] = best;
      if (opts.reference && opts.reference[pos] === best) agree++;
      if (kld && ref) {
        base.argmax = logSoftmaxRow(ref, off, vocab, base.logProbs);
        kld.add(base, logits, off, doc[j + 1]);
      }
    }
    if (opts.keepLogits) kept.push(logits.slice(0, (doc.length - 1) * vocab));
    opts.onProgress?.(di + 1, used.length);
  });
  const mean = nll / total;
  return {
    perplexity: Math.exp(mean), nll: mean, tokens: total, top1Agreement: opts.reference ? agree / total : undefined, argmax,
    kld: kld?.summary(), logits: opts.keepLogits ? kept : undefined,
  };
}
