// What the studies measure about one model (or one model with layers skipped): held-out per-document perplexity,
// KL divergence from and top-1 agreement with the dense model, and multiple-choice accuracy on a task. The dense
// model's logits are taken once and kept. Portable: returns numbers. Not the tables (commands/study.ts).
import type { ForwardOptions } from "../model/forward.js";
import type { Model } from "../model/model.js";
import { evaluateDocuments } from "../prune/evaluate.js";
import { scoreTasks, type Accuracy, type ChoiceTask } from "../quality/choice.js";

/** The dense model's outputs on the held-out documents, which every cell is compared with. */
export interface DenseReference {
  docs: number[][];
  tokens: number;
  argmax: Int32Array;
  logits: Float32Array[];
  perplexity: number;
}

export interface TaskAccuracy {
  acc: Accuracy;
  accNorm: Accuracy;
  accToken: Accuracy;
  accMi: Accuracy;
}

export interface Quality {
  perplexity: number;
  /** mean KL divergence from the dense model, and its standard error */
  kld: number;
  kldError: number;
  /** fraction of positions whose most likely token is the dense model's */
  top1: number;
  accuracy?: TaskAccuracy;
}

type Skip = Pick<ForwardOptions, "skipLayers" | "skipAttention" | "skipFfn">;

export function denseReference(model: Model, docs: number[][]): DenseReference {
  const e = evaluateDocuments(model, docs, { keepLogits: true });
  return { docs, tokens: e.tokens, argmax: e.argmax, logits: e.logits!, perplexity: e.perplexity };
}

/** Every measurement of `model` (with `forward`'s layers skipped) against the dense reference. */
export function measureQuality(model: Model, ref: DenseReference, tasks: ChoiceTask[] | undefined, forward?: Skip): Quality {
  const e = evaluateDocuments(model, ref.docs, { forward, reference: ref.argmax, referenceLogits: ref.logits });
  const q: Quality = { perplexity: e.perplexity, kld: e.kld!.kld.mean, kldError: e.kld!.kld.error, top1: e.top1Agreement! };
  if (tasks && tasks.length) {
    const r = scoreTasks(model, tasks, { forward });
    q.accuracy = { acc: r.acc, accNorm: r.accNorm, accToken: r.accToken, accMi: r.accMi };
  }
  return q;
}
