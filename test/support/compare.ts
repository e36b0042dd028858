// Comparing our next-token distributions with llama.cpp's in a way that does not depend on which CPU backend
// llama.cpp picked: teacher-forced distributions over a fixed token sequence, a bound on |p - p_llama.cpp| at
// every position and token, and argmax agreement wherever llama.cpp's top two candidates are further apart than
// that bound (closer is a tie that another backend may break the other way). Test support only.
import type { Model } from "../../src/model/model.js";
import { STUDY_CACHE, type ContextOptions } from "../../src/model/forward.js";

/** Softmax in float64 of one row of logits, as float32 (what llama.cpp's addon hands back). */
export function softmaxRow(logits: ArrayLike<number>, offset = 0, n = logits.length): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]);
  let sum = 0;
  const e = new Float64Array(n);
  for (let i = 0; i < n; i++) sum += (e[i] = Math.exp(logits[offset + i] - max));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = e[i] / sum;
  return out;
}

/** Our distribution after each prefix tokens[0..i] (i ≥ from), from one batched evaluation (an F32 KV cache unless `kv` says). */
export function ourTeacherForced(model: Model, tokens: number[], from = 0, contextSize = Math.max(tokens.length, 16),
                                 kv: Pick<ContextOptions, "cacheTypeK" | "cacheTypeV"> = STUDY_CACHE): Float32Array[] {
  const ctx = model.createContext({ contextSize, ...kv });
  const logits = ctx.eval(tokens, { logits: "all" });
  const v = model.config.vocabSize;
  const out: Float32Array[] = [];
  for (let i = from; i < tokens.length; i++) out.push(softmaxRow(logits, i * v, v));
  return out;
}

function top2(p: Float32Array): { best: number; gap: number } {
  let a = 0, b = -1;
  for (let i = 1; i < p.length; i++) {
    if (p[i] > p[a]) { b = a; a = i; } else if (b < 0 || p[i] > p[b]) b = i;
  }
  return { best: a, gap: b < 0 ? 1 : p[a] - p[b] };
}

export interface DistributionComparison {
  /** max over positions and tokens of |p_ours - p_theirs| */
  maxAbs: number;
  /** the position where it occurs */
  maxAt: number;
  /** positions where llama.cpp's top-2 gap exceeds 2 × the bound, so the argmax is decided */
  decisive: number;
  /** decisive positions whose argmax differs (should be none) */
  argmaxMismatches: { pos: number; ours: number; theirs: number; gap: number }[];
  positions: number;
}

/** Compares two lists of distributions position by position (see the file comment for what counts as a tie). */
export function compareDistributions(ours: Float32Array[], theirs: Float32Array[], bound: number): DistributionComparison {
  if (ours.length !== theirs.length) throw new Error(`compare: ${ours.length} positions against ${theirs.length}`);
  let maxAbs = 0, maxAt = -1, decisive = 0;
  const argmaxMismatches: DistributionComparison["argmaxMismatches"] = [];
  for (let pos = 0; pos < ours.length; pos++) {
    const a = ours[pos], b = theirs[pos];
    if (a.length !== b.length) throw new Error(`compare: position ${pos} has ${a.length} probabilities against ${b.length}`);
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (!(d <= maxAbs)) { maxAbs = d; maxAt = pos; }
    }
    const t = top2(b);
    if (t.gap > 2 * bound) {
      decisive++;
      const o = top2(a).best;
      if (o !== t.best) argmaxMismatches.push({ pos, ours: o, theirs: t.best, gap: t.gap });
    }
  }
  return { maxAbs, maxAt, decisive, argmaxMismatches, positions: ours.length };
}

/**
 * Throws unless every probability is within `bound` of llama.cpp's, every decisive argmax agrees, and at least
 * `minDecisive` of the positions are decisive (a test on a flat, tie-ridden distribution would prove nothing).
 */
export function assertDistributionsAgree(ours: Float32Array[], theirs: Float32Array[], bound: number, label: string, minDecisive = 0.5): DistributionComparison {
  const c = compareDistributions(ours, theirs, bound);
  if (!(c.maxAbs <= bound)) throw new Error(`${label}: max |p - p_llama.cpp| = ${c.maxAbs.toExponential(3)} at position ${c.maxAt}, over the bound ${bound}`);
  if (c.argmaxMismatches.length) {
    const m = c.argmaxMismatches[0];
    throw new Error(`${label}: at position ${m.pos} our argmax is ${m.ours}, llama.cpp's ${m.theirs} (its top-2 gap ${m.gap.toExponential(3)} is no tie)`);
  }
  if (c.decisive < minDecisive * c.positions) {
    throw new Error(`${label}: only ${c.decisive} of ${c.positions} positions have a top-2 gap over ${2 * bound}; the comparison would be meaningless`);
  }
  return c;
}

/**
 * Free-running greedy tokens against llama.cpp's: equal until they first differ, and there llama.cpp's two
 * candidates must be within 2 × bound of each other (a tie another backend may break either way); after that the
 * texts legitimately differ. Returns how they compare, for the log.
 */
export function assertGreedyAgrees(ours: number[], theirs: number[], theirProbs: Float32Array[], bound: number, label: string): string {
  for (let i = 0; i < theirs.length; i++) {
    if (ours[i] === theirs[i]) continue;
    const p = theirProbs[i];
    const gap = Math.abs(p[theirs[i]] - p[ours[i]]);
    if (!(gap <= 2 * bound)) throw new Error(`${label}: step ${i} we chose ${ours[i]}, llama.cpp ${theirs[i]}; its probabilities ${p[ours[i]]} vs ${p[theirs[i]]} differ by ${gap.toExponential(3)}, more than a tie (2 × ${bound})`);
    return `diverged at step ${i} on a tie (gap ${gap.toExponential(2)})`;
  }
  return "identical";
}

/** The smallest top-2 gap of llama.cpp's distributions along a greedy run: how decisive every step was. */
export function smallestTop2Gap(probs: Float32Array[]): number {
  let g = Infinity;
  for (const p of probs) g = Math.min(g, top2(p).gap);
  return g;
}
