// Held-out evaluation of a (possibly pruned) model, document by document: perplexity over every predicted token,
// and top-1 agreement with the dense model's next-token predictions at the same positions. Used by the pruning and
// composition studies. Not llama.cpp's windowed perplexity (perplexity.ts), which suits long running text.
import type { ForwardOptions } from "../model/forward.js";
import type { Model } from "../model/model.js";
import { logSoftmaxAt } from "../perplexity.js";

export interface EvalResult {
  perplexity: number;
  nll: number;
  tokens: number;
  /** fraction of positions where the argmax equals the reference's argmax (when a reference was given) */
  top1Agreement?: number;
  /** argmax at every scored position, to serve as a reference */
  argmax: Int32Array;
}

/**
 * Each document (BOS + tokens, cut to `maxTokens`) runs as its own sequence; every position j predicts token j+1.
 * perplexity = exp(mean NLL over all predicted tokens of all documents).
 */
export function evaluateDocuments(model: Model, docs: number[][], opts: {
  maxTokens?: number;
  forward?: Pick<ForwardOptions, "skipLayers" | "skipAttention" | "skipFfn">;
  reference?: Int32Array;
  onProgress?: (done: number, total: number) => void;
} = {}): EvalResult {
  const maxTokens = opts.maxTokens ?? Math.min(512, model.config.trainContext);
  const used = docs.map((d) => d.slice(0, maxTokens)).filter((d) => d.length >= 2);
  if (used.length === 0) throw new Error("no evaluation document has two or more tokens");
  const total = used.reduce((a, d) => a + d.length - 1, 0);
  if (opts.reference && opts.reference.length !== total) throw new Error(`reference has ${opts.reference.length} positions, expected ${total}`);
  const vocab = model.config.vocabSize;
  const ctx = model.createContext({ contextSize: maxTokens, batchSize: Math.min(64, maxTokens) });
  const argmax = new Int32Array(total);
  let nll = 0;
  let pos = 0;
  let agree = 0;
  used.forEach((doc, di) => {
    ctx.reset();
    const logits = ctx.eval(doc, { ...opts.forward, logits: "all" });
    for (let j = 0; j + 1 < doc.length; j++, pos++) {
      nll -= logSoftmaxAt(logits, j * vocab, vocab, doc[j + 1]);
      let best = 0;
      const off = j * vocab;
      for (let v = 1; v < vocab; v++) if (logits[off + v] > logits[off + best]) best = v;
      argmax[pos] = best;
      if (opts.reference && opts.reference[pos] === best) agree++;
    }
    opts.onProgress?.(di + 1, used.length);
  });
  const mean = nll / total;
  return { perplexity: Math.exp(mean), nll: mean, tokens: total, top1Agreement: opts.reference ? agree / total : undefined, argmax };
}
