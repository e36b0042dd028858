// An independent float64 GPTQ for tests, from the paper (Frantar et al. 2022, Algorithm 1): dead columns, dampening,
// the upper Cholesky factor of H⁻¹ (Cholesky of H, its inverse, Cholesky of that), column-by-column quantization
// with error feedback inside lazy-batch blocks and one block update per block; optional act-order with static
// groups. Group scales follow ggml's reference quantizers for Q4_0, Q4_1 and Q8_0 (d from the group's values at
// its first column, 1/d for rounding, f16 d stored). Shares no code with src/gptq; f16 conversion and the block
// geometry come from src/quant (ref.ts, formats.ts).
//
// `follow` makes the reference take, wherever its own value lies within an epsilon of a rounding boundary, the
// decision the wasm GPTQ took (decoded from its bytes), so that one legitimate tie does not change every later
// column of the row; any other disagreement is recorded as a mismatch.
import { formatByName } from "../../src/quant/formats.js";
import { f16ToF32, f32ToF16 } from "../../src/quant/ref.js";

export type RefGptqFormat = "Q4_0" | "Q4_1" | "Q8_0";

export interface RefGptqOptions {
  format: RefGptqFormat;
  /** columns per group (a multiple of 32) */
  group: number;
  /** columns per lazy-batch block (a multiple of group) */
  blockSize: number;
  /** λ = damp · mean diag(H) */
  damp: number;
  actOrder?: boolean;
  /** false: update every later column after each column (the unbatched algorithm, same result up to rounding) */
  lazy?: boolean;
  /**
   * the decisions to take at ties, and how close to a boundary counts as one: codeEps in code units (the distance
   * of x/d + offset from the rounding boundary), scaleEps relative to d (its distance from an f16 rounding midpoint)
   */
  follow?: { codes: Int16Array; dBits: Uint16Array; mBits: Uint16Array; codeEps: number; scaleEps: number };
}

export interface RefGptqResult {
  /** (rows, n) integer codes, original column order */
  codes: Int16Array;
  /** (rows, groups) stored f16 bits of d (and of the minimum, Q4_1) */
  dBits: Uint16Array;
  mBits: Uint16Array;
  /** (rows, n) decoded weights */
  dequantized: Float64Array;
  /** codes and group scales taken from `follow` at a tie */
  ties: number;
  scaleTies: number;
  /** decisions that differ from `follow` away from any tie */
  mismatches: { row: number; col: number; what: "code" | "scale"; ours: number; theirs: number; distance: number }[];
  /** the largest distance from its boundary at which a tie was taken: the margin the comparison needed */
  worstTie: number;
  worstScaleTie: number;
}

/** In place: lower Cholesky factor of a symmetric positive definite a (n, n); throws if it is not. */
function cholesky(a: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= a[j * n + k] ** 2;
    if (!(d > 0)) throw new Error(`ref-gptq: matrix not positive definite at column ${j}`);
    const l = Math.sqrt(d);
    a[j * n + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / l;
    }
    for (let k = j + 1; k < n; k++) a[j * n + k] = 0;
  }
}

/** U upper triangular with UᵀU = H⁻¹: torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True). */
export function refHinvUpper(h: Float64Array, n: number): Float64Array {
  const l = Float64Array.from(h);
  cholesky(l, n);
  // Linv, lower triangular, by forward substitution of each unit vector
  const li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = c; k < i; k++) s -= l[i * n + k] * li[k * n + c];
      li[i * n + c] = s / l[i * n + i];
    }
  }
  // H⁻¹ = Linvᵀ Linv
  const hinv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) {
    let s = 0;
    for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
    hinv[i * n + j] = hinv[j * n + i] = s;
  }
  cholesky(hinv, n); // lower M with M Mᵀ = H⁻¹; U = Mᵀ
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = hinv[j * n + i];
  return u;
}

/** Distance from an f16 rounding midpoint, relative to d (how close d's f16 rounding is to a tie). */
function f16TieDistance(d: number): number {
  const h = f32ToF16(d);
  const v = f16ToF32(h);
  const other = f16ToF32(d > v === d > 0 ? h + 1 : h - 1);
  return Math.abs(Math.abs(d - v) - Math.abs(d - other)) / Math.abs(d || 1);
}

interface Scale { d: number; id: number; dBits: number; mBits: number; min: number; dq: number; mq: number }

/** The format's rule for a group's scale from its values (ggml's quantize_row_*_ref, over the group, in float64). */
function chooseScale(f: RefGptqFormat, x: Float64Array): Scale {
  let d: number, min = 0;
  if (f === "Q4_1") {
    let mx = -Infinity;
    min = Infinity;
    for (const v of x) { if (v < min) min = v; if (v > mx) mx = v; }
    d = (mx - min) / 15;
  } else {
    let amax = 0, signed = 0;
    for (const v of x) if (Math.abs(v) > amax) { amax = Math.abs(v); signed = v; }
    d = f === "Q4_0" ? signed / -8 : amax / 127;
  }
  const dBits = f32ToF16(d), mBits = f === "Q4_1" ? f32ToF16(min) : 0;
  return { d, id: d !== 0 ? 1 / d : 0, dBits, mBits, min, dq: f16ToF32(dBits), mq: f16ToF32(mBits) };
}

/** The unrounded code position u of x and the code the format's rounding gives; distance is |u − boundary|. */
function codeOf(f: RefGptqFormat, x: number, s: Scale): { q: number; distance: number } {
  if (f === "Q8_0") {
    const u = x * s.id;
    const q = Math.max(-127, Math.min(127, Math.sign(u) * Math.floor(Math.abs(u) + 0.5)));
    return { q, distance: Math.abs(Math.abs(u - Math.trunc(u)) - 0.5) };
  }
  const u = f === "Q4_0" ? x * s.id + 8.5 : (x - s.min) * s.id + 0.5;
  const q = Math.max(0, Math.min(15, Math.trunc(u)));
  return { q, distance: Math.abs(u - Math.round(u)) };
}

function valueOf(f: RefGptqFormat, q: number, s: Scale): number {
  return f === "Q4_0" ? (q - 8) * s.dq : f === "Q8_0" ? q * s.dq : q * s.dq + s.mq;
}

/** U for (H, order, λ), computed once per test process: the O(n³) part is the same for every format and group. */
const hinvCache = new WeakMap<Float64Array, Map<string, Float64Array>>();
function hinvOf(h: Float64Array, perm: number[], lambda: number, make: () => Float64Array): Float64Array {
  let m = hinvCache.get(h);
  if (!m) hinvCache.set(h, (m = new Map()));
  const key = `${lambda}/${perm.join(",")}`;
  let u = m.get(key);
  if (!u) m.set(key, (u = make()));
  return u;
}

/** GPTQ of w (rows, n) against H (n, n) = Σ xxᵀ, both float64, row-major. */
export function refGptq(w0: Float64Array, h0: Float64Array, rows: number, n: number, o: RefGptqOptions): RefGptqResult {
  const G = o.group, B = o.blockSize, f = o.format;
  if (n % G !== 0 || B % G !== 0) throw new Error("ref-gptq: group must divide n and the block size");
  const nGroups = n / G;
  const follow = o.follow;
  const result: RefGptqResult = {
    codes: new Int16Array(rows * n), dBits: new Uint16Array(rows * nGroups), mBits: new Uint16Array(rows * nGroups),
    dequantized: new Float64Array(rows * n), ties: 0, scaleTies: 0, mismatches: [], worstTie: 0, worstScaleTie: 0,
  };
  const h = Float64Array.from(h0);
  const w = Float64Array.from(w0);
  for (let i = 0; i < n; i++) {
    if (h[i * n + i] !== 0) continue;
    h[i * n + i] = 1;
    for (let r = 0; r < rows; r++) w[r * n + i] = 0;
  }
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  const lambda = (o.damp * mean) / n;
  const perm = Array.from({ length: n }, (_, i) => i);
  if (o.actOrder) perm.sort((a, b) => h[b * n + b] - h[a * n + a] || a - b);
  // permuted copies: column j of W and row/column j of H are original column perm[j]
  const hp = new Float64Array(n * n);
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) hp[a * n + b] = h[perm[a] * n + perm[b]] + (a === b ? lambda : 0);
  const u = hinvOf(h0, perm, lambda, () => refHinvUpper(hp, n));
  const W = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) W[r * n + j] = w[r * n + perm[j]];

  const scales: Scale[] = new Array(rows * nGroups);
  /** the scale of (row, group) from values x, or the one `follow` holds when ours sits on an f16 rounding tie */
  const setScale = (r: number, g: number, x: Float64Array, col: number) => {
    let s = chooseScale(f, x);
    if (follow) {
      const at = r * nGroups + g, fd = follow.dBits[at], fm = follow.mBits[at];
      if (s.dBits !== fd || s.mBits !== fm) {
        const distance = Math.min(s.dBits !== fd ? f16TieDistance(s.d) : Infinity, s.mBits !== fm ? f16TieDistance(s.min) : Infinity);
        if (distance < follow.scaleEps) {
          result.scaleTies++;
          result.worstScaleTie = Math.max(result.worstScaleTie, distance);
          s = { ...s, dBits: fd, mBits: fm, dq: f16ToF32(fd), mq: f16ToF32(fm) };
        } else {
          result.mismatches.push({ row: r, col, what: "scale", ours: s.dBits, theirs: fd, distance });
        }
      }
    }
    scales[r * nGroups + g] = s;
    result.dBits[r * nGroups + g] = s.dBits;
    result.mBits[r * nGroups + g] = s.mBits;
  };
  if (o.actOrder) {
    for (let r = 0; r < rows; r++) for (let g = 0; g < nGroups; g++) setScale(r, g, w.subarray(r * n + g * G, r * n + g * G + G), g * G);
  }

  const lazy = o.lazy ?? true;
  const err = new Float64Array(rows * B);
  for (let i1 = 0; i1 < n; i1 += B) {
    const i2 = Math.min(n, i1 + B);
    const end = lazy ? i2 : n;
    for (let i = i1; i < i2; i++) {
      const orig = perm[i];
      const g = Math.floor(orig / G);
      if (!o.actOrder && i % G === 0) for (let r = 0; r < rows; r++) setScale(r, g, W.subarray(r * n + i, r * n + i + G), i);
      const d = u[i * n + i];
      for (let r = 0; r < rows; r++) {
        const x = W[r * n + i];
        const s = scales[r * nGroups + g];
        let { q, distance } = codeOf(f, x, s);
        if (follow) {
          const theirs = follow.codes[r * n + orig];
          if (theirs !== q) {
            if (distance < follow.codeEps && Math.abs(theirs - q) === 1) {
              result.ties++;
              result.worstTie = Math.max(result.worstTie, distance);
              q = theirs;
            } else {
              result.mismatches.push({ row: r, col: orig, what: "code", ours: q, theirs, distance });
            }
          }
        }
        const v = valueOf(f, q, s);
        result.codes[r * n + orig] = q;
        result.dequantized[r * n + orig] = v;
        const e = (x - v) / d;
        err[r * B + (i - i1)] = e;
        for (let c = i + 1; c < end; c++) W[r * n + c] -= e * u[i * n + c];
      }
    }
    if (lazy) {
      for (let r = 0; r < rows; r++) for (let c = i2; c < n; c++) {
        let s = 0;
        for (let b = 0; b < i2 - i1; b++) s += err[r * B + b] * u[(i1 + b) * n + c];
        W[r * n + c] -= s;
      }
    }
  }
  return result;
}

/** Codes and scale bits of GGUF Q4_0 / Q4_1 / Q8_0 rows (rows, n), for `follow`; scales read at each group's first block. */
export function decodeBlocks(format: RefGptqFormat, bytes: Uint8Array, rows: number, n: number, group: number) {
  const fm = formatByName(format)!;
  const bits = format === "Q8_0" ? 8 : 4;
  const header = fm.typeSize - (fm.blockSize * bits) / 8;
  const nb = n / fm.blockSize, nGroups = n / group;
  const codes = new Int16Array(rows * n), dBits = new Uint16Array(rows * nGroups), mBits = new Uint16Array(rows * nGroups);
  for (let r = 0; r < rows; r++) for (let b = 0; b < nb; b++) {
    const o = (r * nb + b) * fm.typeSize, col = b * fm.blockSize;
    if (col % group === 0) {
      dBits[r * nGroups + col / group] = bytes[o] | (bytes[o + 1] << 8);
      if (format === "Q4_1") mBits[r * nGroups + col / group] = bytes[o + 2] | (bytes[o + 3] << 8);
    }
    for (let j = 0; j < fm.blockSize; j++) {
      codes[r * n + col + j] = bits === 8 ? (bytes[o + header + j] << 24) >> 24
        : j < fm.blockSize / 2 ? bytes[o + header + j] & 15 : bytes[o + header + j - fm.blockSize / 2] >> 4;
    }
  }
  return { codes, dBits, mBits };
}

/** Σ_r (w − ŵ)_r H (w − ŵ)_rᵀ / Σ_r w_r H w_rᵀ: the squared output error relative to the output, in float64. */
export function refRelativeError(w: ArrayLike<number>, wq: ArrayLike<number>, h: Float64Array, rows: number, n: number): number {
  let num = 0, den = 0;
  const dr = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) dr[i] = w[r * n + i] - wq[r * n + i];
    for (let i = 0; i < n; i++) {
      let a = 0, b = 0;
      for (let k = 0; k < n; k++) { a += h[i * n + k] * dr[k]; b += h[i * n + k] * w[r * n + k]; }
      num += dr[i] * a;
      den += w[r * n + i] * b;
    }
  }
  return num / den;
}
