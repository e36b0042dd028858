// GPTQ for one weight matrix (Frantar et al. 2022, `fasterquant`): dampened H, dead columns, Cholesky of H⁻¹,
// lazy block updates, error feedback, group scales at group start (static with act-order), GGUF blocks out.
// Not calibration (calibrate.ts) and not the whole-model walk (model.ts).
import type { WasmRuntime } from "../wasm.js";
import type { ThreadPool } from "../threads/pool.js";
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
  /**
   * K-quants: where a super-block's scale comes from. "reached" (default): each group fitted as GPTQ reaches it,
   * the span run twice (docs/gptq.md); "start": every group fitted on the weights at the span's start, one run
   * (the cheaper design, kept for the comparison in docs/gptq.md)
   */
  spanScales?: "reached" | "start";
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

/** The dead columns, the diagonal (1 where dead), the quantization order and the first λ of H (n, n) (h(i, k) reads it). */
function hessianOrder(h: (i: number, k: number) => number, n: number, opts: GptqOptions) {
  const damp = opts.damp ?? GPTQ_DEFAULTS.damp;
  const actOrder = opts.actOrder ?? GPTQ_DEFAULTS.actOrder;
  if (!(damp >= 0) || !Number.isFinite(damp)) throw new Error(`dampening must be a non-negative number, got ${damp}`);
  const dead = new Uint8Array(n);
  const diag = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    diag[i] = h(i, i);
    if (diag[i] === 0) { dead[i] = 1; diag[i] = 1; }
  }
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  // a stable sort (ties keep column order), so the result never depends on the engine's sort
  if (actOrder) perm.sort((a, b) => (diag[b] - diag[a]) || (a - b));
  let mean = 0;
  for (let i = 0; i < n; i++) mean += diag[i];
  mean /= n;
  return { dead, diag, perm, actOrder, mean, lambda: damp * mean };
}

/** the (a, b) entry of H in quantization order, dampened by λ: what gets factored */
function ordered(h: (i: number, k: number) => number, o: ReturnType<typeof hessianOrder>, lambda: number, a: number, b: number): number {
  const pa = o.perm[a], pb = o.perm[b];
  if (a === b) return o.diag[pa] + lambda;
  return o.dead[pa] || o.dead[pb] ? 0 : h(pa, pb);
}

const notPositiveDefinite = (n: number, lambda: number, mean: number) =>
  new Error(`the calibration Hessian (${n}×${n}) is not positive definite even with dampening ${lambda / mean}; use more --tokens or a larger --damp`);

/**
 * Dampen, drop dead columns, order and factor H (n, n) float64, symmetric. If H + λI is not positive definite
 * (possible with few calibration tokens), λ is multiplied by 10 up to four times before giving up. Plain
 * TypeScript (linalg.ts): the specification prepareHessianWasm is tested against, bit for bit.
 */
export function prepareHessian(h: Float64Array, n: number, opts: GptqOptions = {}): PreparedHessian {
  const get = (i: number, k: number) => h[i * n + k];
  const o = hessianOrder(get, n, opts);
  let lambda = o.lambda;
  const hp = new Float64Array(n * n);
  for (let attempt = 0; attempt < 5; attempt++) {
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) hp[a * n + b] = ordered(get, o, lambda, a, b);
    const u = inverseCholeskyUpper(hp, n);
    if (u) return { n, perm: o.perm, actOrder: o.actOrder, dead: o.dead, hinv: Float32Array.from(u), lambda };
    lambda = lambda > 0 ? lambda * 10 : 1e-6 * o.mean;
  }
  throw notPositiveDefinite(n, lambda, o.mean);
}

/**
 * prepareHessian for an H (n, n) f64 already in wasm memory at hPtr (symmetric), with the factorization in the
 * wasm kernels (gptq_cholesky, gptq_trinv_lower): the same bits as prepareHessian, in O(n²) wasm memory and no
 * O(n²) JavaScript arrays but the f32 result. This is what model-size Hessians (n of several thousand) need.
 */
export function prepareHessianWasm(rt: WasmRuntime, hPtr: number, n: number, opts: GptqOptions = {}): PreparedHessian {
  const mark = rt.mark();
  try {
    const mPtr = rt.alloc(n * n * 8);
    const scratch = rt.alloc(rt.k.gptq_linalg_scratch(n));
    const f64 = () => new Float64Array(rt.memory.buffer);
    const hBase = hPtr >> 3, mBase = mPtr >> 3;
    const get = (i: number, k: number) => f64()[hBase + i * n + k];
    const o = hessianOrder(get, n, opts);
    let lambda = o.lambda;
    for (let attempt = 0; attempt < 5; attempt++) {
      // M = J (H + λI) J, lower triangle: the order reversal inverseCholeskyUpper (linalg.ts) factors
      const H = f64();
      for (let i = 0; i < n; i++) {
        const row = mBase + i * n;
        for (let k = 0; k <= i; k++) {
          const a = n - 1 - i, b = n - 1 - k;
          const pa = o.perm[a], pb = o.perm[b];
          H[row + k] = a === b ? o.diag[pa] + lambda : o.dead[pa] || o.dead[pb] ? 0 : H[hBase + pa * n + pb];
        }
        H.fill(0, row + i + 1, row + n);
      }
      if (rt.k.gptq_cholesky(mPtr, n, scratch)) {
        rt.k.gptq_trinv_lower(mPtr, n, scratch);
        const X = f64();
        const hinv = new Float32Array(n * n);
        for (let i = 0; i < n; i++) for (let k = i; k < n; k++) hinv[i * n + k] = X[mBase + (n - 1 - i) * n + (n - 1 - k)];
        return { n, perm: o.perm, actOrder: o.actOrder, dead: o.dead, hinv, lambda };
      }
      lambda = lambda > 0 ? lambda * 10 : 1e-6 * o.mean;
    }
    throw notPositiveDefinite(n, lambda, o.mean);
  } finally {
    rt.release(mark);
  }
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
 *
 * Groups: the 32-block formats share a scale over opts.group columns (a multiple of 32); K-quants over their own
 * sub-block (codec.group). A K-quant codes its groups' scales against one super-block scale (codec.span columns),
 * which needs every group's fit first, while GPTQ changes a group's weights until it reaches it. So each span is
 * run twice: once fitting each group as the loop reaches it (with its fitted scale as is), then, from the same
 * starting weights, again with the span's scale coded from those fits and each group refitted and coded against
 * it as the loop reaches it. With act-order, all scales come from the weights before any update (static groups).
 */
export function gptqMatrix(rt: WasmRuntime, w: Float32Array, rows: number, n: number, hess: PreparedHessian, codec: Codec, opts: GptqOptions = {},
                           /** worker threads over rt's memory: the rank-1 and block updates are split by rows across them */
                           pool?: ThreadPool): GptqMatrixResult {
  const bs = codec.format.blockSize;
  const G = codec.group ?? opts.group ?? GPTQ_DEFAULTS.group;
  const S = codec.span ?? G;
  if (hess.n !== n) throw new Error(`gptqMatrix: H is ${hess.n}×${hess.n} but rows have ${n} columns`);
  if (!(Number.isInteger(G) && G > 0 && (G % bs === 0 || bs % G === 0))) throw new Error(`group size ${G} is not a multiple of ${codec.format.name}'s block size ${bs}`);
  if (n % G !== 0 || n % bs !== 0) throw new Error(`group size ${G} does not divide the row length ${n}`);
  const B = S * Math.ceil((opts.blockSize ?? GPTQ_DEFAULTS.blockSize) / S);
  const nGroups = n / G;
  const { perm, hinv, dead, actOrder } = hess;
  const params = new GroupParams(rows, nGroups, codec.span ? G : 0);
  const twoPass = codec.span !== undefined;

  const work = Float32Array.from(w);
  for (let c = 0; c < n; c++) if (dead[c]) for (let r = 0; r < rows; r++) work[r * n + c] = 0;
  // static groups: every scale from the weights before any update, so act-order keeps groups of whole blocks
  if (actOrder) {
    for (let r = 0; r < rows; r++) {
      const row = work.subarray(r * n, (r + 1) * n);
      for (let g = 0; g < nGroups; g++) codec.choose(row.subarray(g * G, g * G + G), G, params, r * nGroups + g);
      if (!twoPass) continue;
      for (let g = 0; g < nGroups; g += S / G) codec.codeSpan!(params, r * nGroups + g);
      for (let g = 0; g < nGroups; g++) {
        const first = r * nGroups + g - (g % (S / G));
        codec.rechoose!(row.subarray(g * G, g * G + G), G, params, r * nGroups + g, first);
      }
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
    const wBase = wPtr >> 2, errBase = errPtr >> 2, eBase = ePtr >> 2, hBase = hPtr >> 2;
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) f[wBase + r * n + j] = work[r * n + perm[j]];
    f.set(hinv, hBase);
    const group = new Float32Array(G);
    const groupOf = (r: number, i: number) => {
      for (let j = 0; j < G; j++) group[j] = f[wBase + r * n + i + j];
      return group;
    };

    /** columns c0..c1 of the lazy block [i1, i2): set scales at group starts (step), code, feed the error back */
    const run = (c0: number, c1: number, i1: number, i2: number, step: "choose" | "rechoose") => {
      const nb = i2 - i1;
      for (let i = c0; i < c1; i++) {
        const orig = perm[i];
        const g = Math.floor(orig / G);
        if (!actOrder && i % G === 0) {
          // the group's scale from the current weights, which already carry the error of earlier columns
          for (let r = 0; r < rows; r++) {
            const at = r * nGroups + g;
            if (step === "choose") codec.choose(groupOf(r, i), G, params, at);
            else codec.rechoose!(groupOf(r, i), G, params, at, r * nGroups + Math.floor(i / S) * (S / G));
          }
        }
        const d = f[hBase + i * n + i];
        const j = orig % G;
        for (let r = 0; r < rows; r++) {
          const x = f[wBase + r * n + i];
          const at = r * nGroups + g;
          const q = codec.code(x, params, at, j);
          const v = codec.value(q, params, at);
          codes[r * n + orig] = q;
          dequantized[r * n + orig] = v;
          const e = (x - v) / d;
          f[eBase + r] = e;
          f[errBase + r * nb + (i - i1)] = e;
        }
        if (i + 1 < i2) {
          if (pool) pool.gptqRank1(wPtr, ePtr, hPtr + i * n * 4, rows, n, i + 1, i2);
          else k.gptq_rank1_update(wPtr, ePtr, hPtr + i * n * 4, rows, n, i + 1, i2);
        }
      }
    };

    const saved = twoPass && !actOrder ? new Float32Array(rows * B) : undefined;
    for (let i1 = 0; i1 < n; i1 += B) {
      const i2 = Math.min(n, i1 + B);
      if (!saved) {
        run(i1, i2, i1, i2, "choose");
      } else {
        for (let s0 = i1; s0 < i2; s0 += S) {
          if (opts.spanScales === "start") {
            for (let r = 0; r < rows; r++) {
              for (let c = s0; c < s0 + S; c += G) codec.choose(groupOf(r, c), G, params, r * nGroups + c / G);
              codec.codeSpan!(params, r * nGroups + s0 / G);
            }
            run(s0, s0 + S, i1, i2, "rechoose");
            continue;
          }
          // the span's starting weights (its columns and the rest of the block, which its rank-1 updates reach)
          const width = i2 - s0;
          for (let r = 0; r < rows; r++) saved.set(f.subarray(wBase + r * n + s0, wBase + r * n + i2), r * width);
          run(s0, s0 + S, i1, i2, "choose");
          for (let r = 0; r < rows; r++) codec.codeSpan!(params, r * nGroups + (s0 / S) * (S / G));
          for (let r = 0; r < rows; r++) f.set(saved.subarray(r * width, (r + 1) * width), wBase + r * n + s0);
          run(s0, s0 + S, i1, i2, "rechoose");
        }
      }
      if (i2 < n) {
        if (pool) pool.gptqBlock(wPtr, errPtr, hPtr, rows, n, i1, i2);
        else k.gptq_block_update(wPtr, errPtr, hPtr, rows, n, i1, i2);
      }
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
