// Next-token sampling from logits: repetition penalty, top-k, top-p, min-p, temperature, in llama.cpp's order,
// with a seeded generator so runs repeat. Temperature 0 is greedy (argmax, lowest id on ties). Not decoding.
import { mulberry32 } from "./random.js";

export interface SamplerOptions {
  /** 0 → greedy; default 0.8 (llama.cpp's default) */
  temperature?: number;
  /** keep the k most likely tokens; 0 = off; default 40 */
  topK?: number;
  /** keep the smallest set whose probability reaches p; 1 = off; default 0.95 */
  topP?: number;
  /** drop tokens below minP × the top probability; 0 = off; default 0.05 */
  minP?: number;
  /** divide positive (multiply negative) logits of recently seen tokens; 1 = off (default) */
  repeatPenalty?: number;
  /** how many recent tokens the penalties look at; default 64 */
  repeatLastN?: number;
  /** subtract this × (how often a token occurs in the recent tokens) from its logit; 0 = off (default) */
  frequencyPenalty?: number;
  /** subtract this from the logit of every token that occurs in the recent tokens; 0 = off (default) */
  presencePenalty?: number;
  /** added to the logits of these token ids before anything else (-Infinity bans a token) */
  logitBias?: ReadonlyMap<number, number>;
  /** seed of the sampling generator; default: random */
  seed?: number;
}

export const SAMPLER_DEFAULTS = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, repeatLastN: 64, frequencyPenalty: 0, presencePenalty: 0 } as const;

/** Checks values a user typed, with the option's name in the message. */
export function validateSamplerOptions(o: SamplerOptions): void {
  const bad = (name: string, v: unknown, want: string) => { throw new Error(`invalid ${name} ${String(v)}: expected ${want}`); };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad("temperature", o.temperature, "a number ≥ 0");
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad("top-k", o.topK, "an integer ≥ 0");
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad("top-p", o.topP, "a number in (0, 1]");
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad("min-p", o.minP, "a number in [0, 1]");
  if (o.repeatPenalty !== undefined && !(o.repeatPenalty > 0 && Number.isFinite(o.repeatPenalty))) bad("repeat penalty", o.repeatPenalty, "a number > 0");
  if (o.repeatLastN !== undefined && !(Number.isInteger(o.repeatLastN) && o.repeatLastN >= 0)) bad("repeat-last-n", o.repeatLastN, "an integer ≥ 0");
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad("seed", o.seed, "an integer");
  if (o.frequencyPenalty !== undefined && !Number.isFinite(o.frequencyPenalty)) bad("frequency penalty", o.frequencyPenalty, "a finite number");
  if (o.presencePenalty !== undefined && !Number.isFinite(o.presencePenalty)) bad("presence penalty", o.presencePenalty, "a finite number");
}

/** Index of the largest value; the lowest index wins a tie (as llama.cpp's greedy sampler). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export class Sampler {
  readonly options: Required<Omit<SamplerOptions, "seed" | "logitBias">> & { seed: number; logitBias?: ReadonlyMap<number, number> };
  private readonly random: () => number;

  constructor(opts: SamplerOptions = {}) {
    validateSamplerOptions(opts);
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    this.options = { ...SAMPLER_DEFAULTS, ...stripUndefined(opts), seed };
    this.random = mulberry32(seed);
  }

  get greedy(): boolean {
    return this.options.temperature <= 0;
  }

  /** Pick the next token. `history` is every token so far (prompt and generated); logits are not modified. */
  sample(logits: Float32Array, history: ArrayLike<number> = []): number {
    const o = this.options;
    let work = logits;
    if (o.logitBias?.size) {
      work = logits.slice();
      for (const [id, bias] of o.logitBias) if (id >= 0 && id < work.length) work[id] += bias;
    }
    const penalize = o.repeatLastN > 0 && history.length > 0 && (o.repeatPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0);
    if (penalize) {
      // llama.cpp's penalties sampler: repetition scaling, then frequency and presence, over the last repeatLastN tokens
      if (work === logits) work = logits.slice();
      const counts = new Map<number, number>();
      for (let i = Math.max(0, history.length - o.repeatLastN); i < history.length; i++) counts.set(history[i], (counts.get(history[i]) ?? 0) + 1);
      for (const [id, count] of counts) {
        if (id < 0 || id >= work.length) continue;
        if (o.repeatPenalty !== 1) work[id] = work[id] > 0 ? work[id] / o.repeatPenalty : work[id] * o.repeatPenalty;
        work[id] -= count * o.frequencyPenalty + o.presencePenalty;
      }
    }
    if (this.greedy) return argmax(work);

    // candidates sorted by logit, cut to top-k first so the rest works on few tokens
    let ids = topIndices(work, o.topK > 0 ? Math.min(o.topK, work.length) : work.length);
    // softmax over the candidates (at temperature 1: top-p and min-p see the model's own distribution)
    let probs = softmax(ids.map((i) => work[i]));
    if (o.topP < 1) {
      let cum = 0;
      let keep = ids.length;
      for (let i = 0; i < ids.length; i++) {
        cum += probs[i];
        if (cum >= o.topP) { keep = i + 1; break; }
      }
      ids = ids.slice(0, keep);
      probs = softmax(ids.map((i) => work[i]));
    }
    if (o.minP > 0) {
      const cut = probs[0] * o.minP;
      let keep = 1;
      while (keep < ids.length && probs[keep] >= cut) keep++;
      ids = ids.slice(0, keep);
    }
    const final = softmax(ids.map((i) => work[i] / o.temperature));
    let r = this.random();
    for (let i = 0; i < ids.length; i++) {
      r -= final[i];
      if (r < 0) return ids[i];
    }
    return ids[ids.length - 1];
  }
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topIndices(x: ArrayLike<number>, k: number): number[] {
  if (k >= x.length) {
    return Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
  }
  // a size-k selection: keep a sorted window, cheap for the usual small k
  const top: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (top.length === k && !(x[i] > x[top[k - 1]])) continue;
    if (top.length < k) top.push(i);
    else top[k - 1] = i;
    // bubble the newcomer up; strict comparison keeps the lower index first on ties
    for (let j = top.length - 1; j > 0 && x[top[j - 1]] < x[top[j]]; j--) {
      const tmp = top[j - 1];
      top[j - 1] = top[j];
      top[j] = tmp;
    }
  }
  return top;
}

/** Stable softmax in float64. */
export function softmax(v: number[]): number[] {
  let max = -Infinity;
  for (const a of v) if (a > max) max = a;
  let sum = 0;
  const e = v.map((a) => { const x = Math.exp(a - max); sum += x; return x; });
  return e.map((x) => x / sum);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
