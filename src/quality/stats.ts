// Small statistics the quality commands report: a mean with its standard error from running sums, interpolated
// percentiles, and the Wilson score interval of a proportion. Portable, float64. Not the measurements themselves
// (kld.ts, choice.ts).

/** 1.96: the two-sided 95% normal quantile, to the digits llama.cpp's HellaSwag score uses. */
export const Z95 = 1.95996398454;

/**
 * Mean of n values from their sum and sum of squares, and the standard error of that mean, sqrt(var / (n − 1)),
 * as llama-perplexity computes it (0 for n ≤ 10 or a variance that rounds to ≤ 0).
 */
export function meanAndError(sum: number, sum2: number, n: number): { mean: number; error: number } {
  if (n < 1) return { mean: 0, error: 0 };
  const mean = sum / n;
  const v = sum2 / n - mean * mean;
  return { mean, error: v > 0 && n > 10 ? Math.sqrt(v / (n - 1)) : 0 };
}

/** Covariance of the two means (llama-perplexity's, for the error of a log-ratio); 0 below 10 values. */
export function meanCovariance(sumA: number, sumB: number, sumAB: number, n: number): number {
  if (n < 10) return 0;
  return (sumAB / n - (sumA / n) * (sumB / n)) / (n - 1);
}

/** The value at `fraction` of sorted values, linearly interpolated between neighbours (fraction·(n−1)). */
export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  if (fraction <= 0) return sorted[0];
  if (fraction >= 1) return sorted[n - 1];
  const p = fraction * (n - 1);
  const i = Math.floor(p);
  const f = p - i;
  return (1 - f) * sorted[i] + f * sorted[Math.min(i + 1, n - 1)];
}

/** The median of sorted values (the mean of the middle two for an even count). */
export function median(sorted: ArrayLike<number>): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  return n % 2 === 0 ? 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) : sorted[(n - 1) / 2];
}

/**
 * Wilson score interval for `successes` of `n` (Wilson 1927; Newcombe 1998, method 3): unlike the normal
 * approximation it stays inside [0, 1] and is honest near 0% and 100%.
 */
export function wilsonInterval(successes: number, n: number, z = Z95): { low: number; high: number } {
  if (!(n > 0)) return { low: 0, high: 1 };
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: Math.max(0, center - half), high: Math.min(1, center + half) };
}

/** A growable Float32Array: per-position values kept for percentiles without knowing the count up front. */
export class Float32List {
  private data = new Float32Array(1024);
  length = 0;

  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }

  /** A sorted copy. */
  sorted(): Float32Array {
    return this.data.slice(0, this.length).sort();
  }
}
