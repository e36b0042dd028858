// Test helpers: a seeded PRNG, closeness checks that explain their failures, and NMSE. Test-only.

import { appendFileSync } from "node:fs";
import { mulberry32 } from "../../src/random.js";

/** A seeded PRNG returning floats in [0, 1): the library's own mulberry32. */
export const rng = mulberry32;

/** n values uniform in [-scale, scale). */
export function uniform(rand: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** n standard normal values (Box-Muller) times scale. */
export function normal(rand: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rand(), v = rand();
    a[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v) * scale;
  }
  return a;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

type Num = ArrayLike<number>;

/** Throws unless |a - e| <= atol + rtol*|e| everywhere; the message gives maxdiff and the first 5 mismatches. */
export function assertClose(actual: Num, expected: Num, tol: Tolerance, what = "values"): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} != expected ${expected.length}`);
  let maxdiff = 0;
  const bad: string[] = [];
  let nbad = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    const diff = Math.abs(a - e);
    if (diff > maxdiff || Number.isNaN(diff)) maxdiff = Number.isNaN(diff) ? NaN : diff;
    if (!(diff <= tol.atol + tol.rtol * Math.abs(e))) {
      nbad++;
      if (bad.length < 5) bad.push(`[${i}] ${a} vs ${e}`);
    }
  }
  if (process.env.EDGEPRUNE_TOL_REPORT) recordUse(what, actual, expected, tol);
  if (nbad > 0) {
    throw new Error(`${what}: ${nbad}/${expected.length} outside atol=${tol.atol} rtol=${tol.rtol}; maxdiff=${maxdiff}; first: ${bad.join(", ")}`);
  }
}

// EDGEPRUNE_TOL_REPORT=FILE: every assertClose appends how much of its tolerance it used (the largest
// |a − e| / (atol + rtol·|e|)), so that test/tolerances.ts can say what each bound was derived from
// (node dist/test/support/tolerance-report.js FILE sums it up per kernel).
function recordUse(what: string, actual: Num, expected: Num, tol: Tolerance): void {
  let used = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]), allowed = tol.atol + tol.rtol * Math.abs(expected[i]);
    const u = allowed > 0 ? d / allowed : d > 0 ? Infinity : 0;
    if (!(u <= used)) used = u;
  }
  appendFileSync(process.env.EDGEPRUNE_TOL_REPORT!, JSON.stringify({ what, used, atol: tol.atol, rtol: tol.rtol }) + "\n");
}

/** Normalised mean squared error sum((a-e)^2) / sum(e^2) (ggml's test-backend-ops metric). */
export function nmse(actual: Num, expected: Num): number {
  let num = 0, den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i] - expected[i]) ** 2;
    den += expected[i] ** 2;
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : num / den;
}

/** Root mean squared error. */
export function rmse(actual: Num, expected: Num): number {
  let s = 0;
  for (let i = 0; i < expected.length; i++) s += (actual[i] - expected[i]) ** 2;
  return Math.sqrt(s / expected.length);
}

/** max |e| over the array (to scale an absolute tolerance to the data) */
export function maxAbs(a: Num): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
