// GPTQ for one weight matrix (Frantar et al. 2022, `fasterquant`): dampened H, dead columns, Cholesky of H⁻¹,
// lazy block updates, error feedback, group scales at group start (static with act-order), GGUF blocks out.
// Not calibration (calibrate.ts) and not the whole-model walk (model.ts).
import type { WasmRuntime } from "../wasm.js";
import { GroupParams, type Codec } from "./codec.js";
import { inverseCholeskyUpper } from "./linalg.js";

export interface GptqOptions {
  /** columns sharing one scale; a multiple of the format's block size (default 32) */
  group?: number;
  /** quantize columns in order of decreasing H diagonal, with static groups (default false) */
  actOrder?: boolean;
  /** dampening, as a fraction of the mean of H's diagonal added to it (default 0.01) */
  damp?: number;
  /** columns per lazy-update block (default 128, rounded up to a multiple of the group) */
  blockSize?: number;
}

export const GPTQ_DEFAULTS = { group: 32, actOrder: false, damp: 0.01, blockSize: 128 } as const;

/** H prepared once per calibration site and shared by every matrix that reads that input. */
export interface PreparedHessian {
  n: number;
  /** quantization order: perm[i] is the original column quantized i-th (the identity without act-order) */
  perm: Int32Array;
  actOrder: boolean;
  /** 1 for columns whose input was always zero: their weights are zeroed (GPTQ's dead columns) */
  dead: Uint8Array;
  /** the upper Cholesky factor of (H + λI)⁻¹ in quantization order, (n, n) f32 for the kernels */
  hinv: Float32Array;
  /** the λ added to the diagonal (after retries, if H needed more) */
  lambda: number;
}

/**
 * Dampen, drop dead columns, order and factor H (n, n) float64, symmetric. If H + λI is not positive definite
 * (possible with few calibration tokens), λ is multiplied by 10 up to four times before giving up.
 */
export function prepareHessian(h: Float64Array, n: number, opts: GptqOptions = {}): PreparedHessian {
  const damp = opts.damp ?? GPTQ_DEFAULTS.damp;
  const actOrder = opts.actOrder ?? GPTQ_DEFAULTS.actOrder;
  if (!(damp >= 0) || !Number.isFinite(damp)) throw new Error(`dampening must be a non-negative number, got ${damp}`);
  const dead = new Uint8Array(n);
  const diag = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    diag[i] = h[i * n + i];
    if (diag[i] === 0) { dead[i] = 1; diag[i] = 1; }
  }
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  // a stable sort (ties keep column order), so the result never depends on the engine's sort
  if (actOrder) perm.sort((a, b) => (diag[b] - diag[a]) || (a - b));
  let mean = 0;
  for (let i = 0; i < n; i++) mean += diag[i];
  mean /= n;
  let lambda = damp * mean;
  const hp = new Float64Array(n * n);
  for (let attempt = 0; attempt < 5; attempt++) {
    for (let a = 0; a < n; a++) {
      const pa = perm[a];
      for (let b = 0; b < n; b++) hp[a * n + b] = dead[pa] || dead[perm[b]] ? 0 : h[pa * n + perm[b]];
      hp[a * n + a] = diag[pa] + lambda;
    }
    const u = inverseCholeskyUpper(hp, n);
    if (u) return { n, perm, actOrder, dead, hinv: Float32Array.from(u), lambda };
    lambda = lambda > 0 ? lambda * 10 : 1e-6 * mean;
  }
  throw new Error(`the calibration Hessian (${n}×${n}) is not positive definite even with dampening ${lambda / mean}; use more --tokens or a larger --damp`);
}

export interface GptqMatrixResult {
  /** the matrix as GGUF blocks of the codec's format, row after row */
  bytes: Uint8Array;
  /** what a decoder reads back from `bytes`, (rows, n) f32 in the original column order */
  dequantized: Float32Array;
}

/**
 * Quantize w (rows, n) f32, row-major, against a prepared H: GPTQ's column loop with the rank-1 and block
 * updates in wasm. Deterministic: no randomness, fixed summation orders.
 */
export function gptqMatrix(rt: WasmRuntime, w: Float32Array, rows: number, n: number, hess: PreparedHessian, codec: Codec, opts: GptqOptions = {}): GptqMatrixResult {
  const G = opts.group ?? GPTQ_DEFAULTS.group;
  const bs = codec.format.blockSize;
  if (hess.n !== n) throw new Error(`gptqMatrix: H is ${hess.n}×${hess.n} but rows have ${n} columns`);
  if (!(Number.isInteger(G) && G > 0 && G % bs === 0)) throw new Error(`group size ${G} is not a multiple of ${codec.format.name}'s block size ${bs}`);
  if (n % G !== 0) throw new Error(`group size ${G} does not divide the row length ${n}`);
  const B = G * Math.ceil((opts.blockSize ?? GPTQ_DEFAULTS.blockSize) / G);
  const nGroups = n / G;
  const { perm, hinv, dead, actOrder } = hess;
  const params = new GroupParams(rows, nGroups);

  const work = Float32Array.from(w);
  for (let c = 0; c < n; c++) if (dead[c]) for (let r = 0; r < rows; r++) work[r * n + c] = 0;
  // static groups: every scale from the weights before any update, so act-order keeps groups of whole blocks
  if (actOrder) {
    for (let r = 0; r < rows; r++) for (let g = 0; g < nGroups; g++) {
      codec.choose(work.subarray(r * n + g * G, r * n + g * G + G), G, params, r * nGroups + g);
    }
  }

  const codes = new Int16Array(rows * n);
  const dequantized = new Float32Array(rows * n);
  const k = rt.k;
  const mark = rt.mark();
  try {
    const wPtr = rt.alloc(rows * n * 4); // (rows, n) weights being updated, columns in quantization order
    const hPtr = rt.alloc(n * n * 4); // (n, n) upper Cholesky factor of H⁻¹
    const errPtr = rt.alloc(rows * B * 4); // (rows, block) scaled errors of the current block
    const ePtr = rt.alloc(Math.max(rows, 4) * 4); // (rows) scaled error of the current column
    const f = rt.f32; // memory does not grow below, so this view stays valid
    const wBase = wPtr >> 2, errBase = errPtr >> 2, eBase = ePtr >> 2;
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) f[wBase + r * n + j] = work[r * n + perm[j]];
    f.set(hinv, hPtr >> 2);
    const group = new Float32Array(G);

    for (let i1 = 0; i1 < n; i1 += B) {
      const i2 = Math.min(n, i1 + B);
      const nb = i2 - i1;
      for (let i = i1; i < i2; i++) {
        const orig = perm[i];
        const g = Math.floor(orig / G);
        if (!actOrder && i % G === 0) {
          // the group's scale from the current weights, which already carry the error of earlier columns
          for (let r = 0; r < rows; r++) {
            const row = wBase + r * n + i;
            for (let j = 0; j < G; j++) group[j] = f[row + j];
            codec.choose(group, G, params, r * nGroups + g);
          }
        }
        const d = f[(hPtr >> 2) + i * n + i];
        for (let r = 0; r < rows; r++) {
          const x = f[wBase + r * n + i];
          const at = r * nGroups + g;
          const q = codec.code(x, params, at);
          const v = codec.value(q, params, at);
          codes[r * n + orig] = q;
          dequantized[r * n + orig] = v;
          const e = (x - v) / d;
          f[eBase + r] = e;
          f[errBase + r * nb + (i - i1)] = e;
        }
        if (i + 1 < i2) k.gptq_rank1_update(wPtr, ePtr, hPtr + i * n * 4, rows, n, i + 1, i2);
      }
      if (i2 < n) k.gptq_block_update(wPtr, errPtr, hPtr, rows, n, i1, i2);
    }
  } finally {
    rt.release(mark);
  }

  const ts = codec.format.typeSize;
  const rowBytes = (n / bs) * ts;
  const bytes = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < n / bs; b++) codec.pack(bytes, r * rowBytes + b * ts, codes, r * n + b * bs, params, r * nGroups + Math.floor((b * bs) / G));
  }
  return { bytes, dequantized };
}

/**
 * Σ_r a_r H a_rᵀ for a (rows, n) and H (n, n) f32 already in wasm at hPtr: ‖a X‖² over the calibration inputs
 * when H = Σ x xᵀ. The product a·H runs in the matmul_f32 kernel; the final sum is float64.
 */
export function quadraticForm(rt: WasmRuntime, hPtr: number, a: Float32Array, rows: number, n: number): number {
  const mark = rt.mark();
  try {
    const aPtr = rt.alloc(rows * n * 4);
    const outPtr = rt.alloc(rows * n * 4);
    rt.f32.set(a, aPtr >> 2);
    rt.k.matmul_f32(outPtr, aPtr, hPtr, n, n, rows);
    const out = rt.f32At(outPtr, rows * n);
    let s = 0;
    for (let i = 0; i < rows * n; i++) s += a[i] * out[i];
    return s;
  } finally {
    rt.release(mark);
  }
}
