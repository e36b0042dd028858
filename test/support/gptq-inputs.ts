// Synthetic inputs for the GPTQ tests: a layer whose inputs are correlated as real activations are, their Gram
// matrix in float64, and the output error ‖WX − ŴX‖ / ‖WX‖ measured on them (gptq.test.ts, gptq-stream.test.ts).
// Test support only; calibration windows from text are fixtures.ts storiesWindows.
import { normal, rng } from "./util.js";

/** A layer (rows, n) of weights ~ N(0, 0.05²) and inputs x (t, n) made of 8 latent factors plus noise. */
export function correlatedInputs(seed: number, rows: number, n: number, t: number): { w: Float32Array; x: Float32Array } {
  const rand = rng(seed);
  const latent = 8;
  const mix = normal(rand, latent * n), z = normal(rand, t * latent), noise = normal(rand, t * n, 0.1);
  const x = new Float32Array(t * n);
  for (let j = 0; j < t; j++) for (let i = 0; i < n; i++) {
    let s = noise[j * n + i];
    for (let l = 0; l < latent; l++) s += z[j * latent + l] * mix[l * n + i];
    x[j * n + i] = s;
  }
  return { w: normal(rand, rows * n, 0.05), x };
}

/** H = XᵀX (n, n) of x (t, n), in float64. */
export function gram(x: Float32Array, n: number, t: number): Float64Array {
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = i; k < n; k++) {
    let s = 0;
    for (let j = 0; j < t; j++) s += x[j * n + i] * x[j * n + k];
    h[i * n + k] = s; h[k * n + i] = s;
  }
  return h;
}

/** ‖WX − ŴX‖ / ‖WX‖ computed directly from the inputs (not from H), in float64. */
export function outputError(w: Float32Array, wq: Float32Array, x: Float32Array, rows: number, n: number, t: number): number {
  let num = 0, den = 0;
  for (let j = 0; j < t; j++) for (let r = 0; r < rows; r++) {
    let y = 0, yq = 0;
    for (let i = 0; i < n; i++) { y += w[r * n + i] * x[j * n + i]; yq += wq[r * n + i] * x[j * n + i]; }
    num += (y - yq) ** 2; den += y * y;
  }
  return Math.sqrt(num / den);
}
