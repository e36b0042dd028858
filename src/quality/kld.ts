// KL divergence of a candidate model's next-token distributions from a base model's, position by position, with
// the statistics `llama-perplexity --kl-divergence` prints: both perplexities and their log-ratio, mean KLD ± its
// standard error and its percentiles, Δp (candidate − base probability of the true token), and how often the two
// argmaxes agree. Streaming: one position at a time; only one float per position is kept (for percentiles).
// Portable. Not the evaluation loop (kldrun.ts) nor the base-file format (kldbase.ts).
import { Float32List, meanAndError, meanCovariance, median, percentile } from "./stats.js";

/**
 * The base model's distribution at one position: natural-log probabilities over the vocabulary, and the
 * probabilities at or below `floor` that the KLD sum leaves out (llama.cpp's base file stores log-probabilities
 * only down to 16 nats below the top one; exact bases use -Infinity, leaving nothing out).
 */
export interface BaseDistribution {
  logProbs: Float64Array;
  floor: number;
  /** index of the largest log-probability (the first of equals) */
  argmax: number;
}

/** Log-softmax of logits[offset … offset+n) in float64 into `out`; returns the argmax (the first of equals). */
export function logSoftmaxRow(logits: ArrayLike<number>, offset: number, n: number, out: Float64Array): number {
  let max = -Infinity;
  let arg = 0;
  for (let i = 0; i < n; i++) {
    const v = logits[offset + i];
    if (v > max) { max = v; arg = i; }
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[offset + i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < n; i++) out[i] = logits[offset + i] - lse;
  return arg;
}

export interface KldSummary {
  /** positions compared */
  count: number;
  ppl: { value: number; error: number };
  pplBase: { value: number; error: number };
  /** correlation of the two per-token NLLs' means (llama.cpp's Cor(ln PPL(Q), ln PPL(base))) */
  logPplCorrelation: number;
  /** mean ln(PPL(candidate)/PPL(base)) */
  logPplRatio: { value: number; error: number };
  pplRatio: { value: number; error: number };
  pplDiff: { value: number; error: number };
  kld: {
    mean: number; error: number;
    max: number; p999: number; p99: number; p95: number; p90: number; median: number; p10: number; p05: number; p01: number; p001: number; min: number;
  };
  /** candidate − base probability of the true next token */
  deltaP: {
    mean: number; error: number; rms: number; rmsError: number;
    max: number; p999: number; p99: number; p95: number; p90: number; p75: number; median: number; p25: number; p10: number; p05: number; p01: number; p001: number; min: number;
  };
  /** fraction of positions where both models' most likely token is the same, and its binomial standard error */
  sameTop: { value: number; error: number };
}

/** Running sums of every statistic, fed one position at a time (llama.cpp's kl_divergence_result). */
export class KldAccumulator {
  private sumNll = 0; private sumNll2 = 0;
  private sumNllBase = 0; private sumNllBase2 = 0; private sumNllNllBase = 0;
  private sumKld = 0; private sumKld2 = 0;
  private sumDp = 0; private sumDp2 = 0; private sumDp4 = 0;
  private sameTop = 0;
  count = 0;
  private readonly klds = new Float32List();
  private readonly dps = new Float32List();
  private readonly cand: Float64Array;

  constructor(readonly vocabSize: number) {
    this.cand = new Float64Array(vocabSize);
  }

  /**
   * One position: the base's distribution, the candidate's raw logits (vocabSize of them at `offset`) and the
   * true next token. Returns this position's KLD.
   */
  add(base: BaseDistribution, logits: ArrayLike<number>, offset: number, token: number): number {
    const n = this.vocabSize;
    const lp = this.cand;
    const argmax = logSoftmaxRow(logits, offset, n, lp);
    const b = base.logProbs;
    let kld = 0;
    for (let i = 0; i < n; i++) {
      const lb = b[i];
      if (lb > base.floor) kld += Math.exp(lb) * (lb - lp[i]);
    }
    const nll = -lp[token];
    const nllBase = -b[token];
    this.sumNll += nll; this.sumNll2 += nll * nll;
    this.sumNllBase += nllBase; this.sumNllBase2 += nllBase * nllBase;
    this.sumNllNllBase += nll * nllBase;
    this.sumKld += kld; this.sumKld2 += kld * kld;
    if (argmax === base.argmax) this.sameTop++;
    const dp = Math.exp(-nll) - Math.exp(-nllBase);
    this.sumDp += dp; this.sumDp2 += dp * dp; this.sumDp4 += dp * dp * dp * dp;
    this.count++;
    this.klds.push(kld);
    this.dps.push(dp);
    return kld;
  }

  /** Mean KLD so far. */
  get meanKld(): number {
    return this.count ? this.sumKld / this.count : 0;
  }

  summary(): KldSummary {
    const n = this.count;
    if (n === 0) throw new Error("KL divergence: no positions were compared");
    const logPpl = meanAndError(this.sumNll, this.sumNll2, n);
    const logPplBase = meanAndError(this.sumNllBase, this.sumNllBase2, n);
    const cov = meanCovariance(this.sumNll, this.sumNllBase, this.sumNllNllBase, n);
    const ratioErr = Math.sqrt(Math.max(0, logPpl.error ** 2 + logPplBase.error ** 2 - 2 * cov));
    const ppl = Math.exp(logPpl.mean), pplBase = Math.exp(logPplBase.mean);
    const pplErr = ppl * logPpl.error, pplBaseErr = pplBase * logPplBase.error;
    const ratio = Math.exp(logPpl.mean - logPplBase.mean);
    const pplCov = ppl * pplBase * cov;
    const kld = meanAndError(this.sumKld, this.sumKld2, n);
    const k = this.klds.sorted();
    const dp = meanAndError(this.sumDp, this.sumDp2, n);
    const mse = meanAndError(this.sumDp2, this.sumDp4, n);
    const rms = Math.sqrt(mse.mean);
    const d = this.dps.sorted();
    const same = this.sameTop / n;
    return {
      count: n,
      ppl: { value: ppl, error: pplErr },
      pplBase: { value: pplBase, error: pplBaseErr },
      logPplCorrelation: logPpl.error > 0 && logPplBase.error > 0 ? cov / (logPpl.error * logPplBase.error) : 1,
      logPplRatio: { value: logPpl.mean - logPplBase.mean, error: ratioErr },
      pplRatio: { value: ratio, error: ratio * ratioErr },
      pplDiff: { value: ppl - pplBase, error: Math.sqrt(Math.max(0, pplErr ** 2 + pplBaseErr ** 2 - 2 * pplCov)) },
      kld: {
        mean: kld.mean, error: kld.error,
        max: k[n - 1], p999: percentile(k, 0.999), p99: percentile(k, 0.99), p95: percentile(k, 0.95), p90: percentile(k, 0.9),
        median: median(k), p10: percentile(k, 0.1), p05: percentile(k, 0.05), p01: percentile(k, 0.01), p001: percentile(k, 0.001), min: k[0],
      },
      deltaP: {
        mean: dp.mean, error: dp.error, rms, rmsError: rms > 0 ? (0.5 / rms) * mse.error : 0,
        max: d[n - 1], p999: percentile(d, 0.999), p99: percentile(d, 0.99), p95: percentile(d, 0.95), p90: percentile(d, 0.9), p75: percentile(d, 0.75),
        median: median(d), p25: percentile(d, 0.25), p10: percentile(d, 0.1), p05: percentile(d, 0.05), p01: percentile(d, 0.01), p001: percentile(d, 0.001), min: d[0],
      },
      sameTop: { value: same, error: n > 1 ? Math.sqrt((same * (1 - same)) / (n - 1)) : 0 },
    };
  }
}

/** The summary as llama-perplexity prints it (its three blocks), for the terminal. */
export function formatKldSummary(s: KldSummary): string {
  const f = (v: number, d = 6) => v.toFixed(d).padStart(10);
  const pct = (v: number) => `${(100 * v).toFixed(3)}%`;
  const L: string[] = [];
  L.push("====== Perplexity statistics ======");
  L.push(`Mean PPL(Q)                   : ${f(s.ppl.value)} ± ${f(s.ppl.error)}`);
  L.push(`Mean PPL(base)                : ${f(s.pplBase.value)} ± ${f(s.pplBase.error)}`);
  L.push(`Cor(ln(PPL(Q)), ln(PPL(base))): ${(100 * s.logPplCorrelation).toFixed(2)}%`);
  L.push(`Mean ln(PPL(Q)/PPL(base))     : ${f(s.logPplRatio.value)} ± ${f(s.logPplRatio.error)}`);
  L.push(`Mean PPL(Q)/PPL(base)         : ${f(s.pplRatio.value)} ± ${f(s.pplRatio.error)}`);
  L.push(`Mean PPL(Q)-PPL(base)         : ${f(s.pplDiff.value)} ± ${f(s.pplDiff.error)}`);
  L.push("");
  L.push("====== KL divergence statistics ======");
  const k = s.kld;
  L.push(`Mean    KLD: ${f(k.mean)} ± ${f(k.error)}`);
  for (const [name, v] of [["Maximum", k.max], ["99.9%  ", k.p999], ["99.0%  ", k.p99], ["95.0%  ", k.p95], ["90.0%  ", k.p90], ["Median ", k.median],
    ["10.0%  ", k.p10], [" 5.0%  ", k.p05], [" 1.0%  ", k.p01], [" 0.1%  ", k.p001], ["Minimum", k.min]] as const) L.push(`${name} KLD: ${f(v)}`);
  L.push("");
  L.push("====== Token probability statistics ======");
  const d = s.deltaP;
  L.push(`Mean    Δp: ${(100 * d.mean).toFixed(3)} ± ${(100 * d.error).toFixed(3)} %`);
  for (const [name, v] of [["Maximum", d.max], ["99.9%  ", d.p999], ["99.0%  ", d.p99], ["95.0%  ", d.p95], ["90.0%  ", d.p90], ["75.0%  ", d.p75], ["Median ", d.median],
    ["25.0%  ", d.p25], ["10.0%  ", d.p10], [" 5.0%  ", d.p05], [" 1.0%  ", d.p01], [" 0.1%  ", d.p001], ["Minimum", d.min]] as const) L.push(`${name} Δp: ${pct(v)}`);
  L.push(`RMS Δp    : ${(100 * d.rms).toFixed(3)} ± ${(100 * d.rmsError).toFixed(3)} %`);
  L.push(`Same top p: ${(100 * s.sameTop.value).toFixed(3)} ± ${(100 * s.sameTop.error).toFixed(3)} %`);
  return L.join("\n");
}
