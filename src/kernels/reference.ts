// Plain scalar TypeScript twin of every wasm kernel in assembly/index.ts: same argument meaning, typed arrays
// instead of pointers, sums in float64. Tests compare the kernels against these; nothing runs them in a model.
import { f16ToF32, bf16ToF32, f32ToF16, f32ToBF16, roundHalfEven, quantizeQ8_K, q4kScaleMin, q6kValue, q8_0ToQ8_0X, q8_0ToQ8_0W, quantizeQ8_KW, QK_K } from "../quant/ref.js";

const QK = 32;
const fr = Math.fround;

function q8Block(x: Float32Array, off: number, out: Uint8Array, o: number, qsOff: number): { d: number; sum: number } {
  let amax = 0;
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[off + j]));
  const d = fr(amax / 127);
  const id = amax !== 0 ? fr(127 / amax) : 0;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint16(o, f32ToF16(d), true);
  let sum = 0;
  for (let j = 0; j < QK; j++) {
    const q = roundHalfEven(fr(x[off + j] * id));
    dv.setInt8(o + qsOff + j, q);
    sum += q;
  }
  return { d, sum };
}

/** quantize_q8_0 as llama.cpp's x86 path: d = amax/127, q = round-half-even(x * 127/amax). */
export function quantize_q8_0(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  const nb = (n / QK) * t;
  for (let b = 0; b < nb; b++) q8Block(x, b * QK, out, b * 34, 2);
}

/** quantize_q8_0 (the x86 path's rounding) into Q8_0X rows (quant/ref.ts q8_0ToQ8_0X: the same int8 and scales) */
export function quantize_q8_0x(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  out.set(q8_0ToQ8_0X(q8_0Rows(x, n, t), n, t));
}

/** quantize_q8_0 (the x86 path's rounding) into Q8_0W rows (quant/ref.ts q8_0ToQ8_0W: the same int8 and scales) */
export function quantize_q8_0w(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  out.set(q8_0ToQ8_0W(q8_0Rows(x, n, t), n, t));
}

/**
 * quantize_q8_0 (the x86 path's rounding) into Q8_0T (assembly/common.ts): groups of four tokens, a short last
 * group filled with zeros; per group the four tokens' d of each block, their sums, then per block eight 16-byte
 * chunks whose lane m holds token m's elements 4·((m + r) & 3) .. + 3 (chunk r < 4) or 16 + the same (chunk 4 + r).
 */
export function quantize_q8_0t(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  const nb = n / QK, groups = Math.ceil(t / 4);
  const src = new Uint8Array(nb * 40 * t);
  quantize_q8_0x(src, x, n, t);
  const sv = new DataView(src.buffer), ov = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.fill(0, 0, groups * nb * 160);
  for (let j = 0; j < t; j++) {
    const g = j >> 2, m = j & 3, base = g * nb * 160, row = j * nb * 40;
    for (let b = 0; b < nb; b++) {
      ov.setFloat32(base + b * 16 + m * 4, sv.getFloat32(row + b * 4, true), true);
      ov.setInt32(base + nb * 16 + b * 16 + m * 4, sv.getInt32(row + nb * 4 + b * 4, true), true);
      for (let e = 0; e < QK; e++) {
        const half = e >> 4, grp = (e >> 2) & 3, r = (grp - m) & 3;
        out[base + nb * 32 + b * 128 + (half * 4 + r) * 16 + m * 4 + (e & 3)] = src[row + nb * 8 + b * QK + e];
      }
    }
  }
}

/** t rows of block_q8_0 from x, for the layouts above to rearrange */
function q8_0Rows(x: Float32Array, n: number, t: number): Uint8Array {
  const blocks = new Uint8Array((n / QK) * 34 * t);
  quantize_q8_0(blocks, x, n, t);
  return blocks;
}

/** a Q8_0X row's block: [d, 0, int8] (its sums are checked by the tests, not used here) */
function q8_0xAt(a: Uint8Array, n: number) {
  const v = new DataView(a.buffer, a.byteOffset, a.byteLength);
  const nb = n / QK;
  return (r: number, b: number): [number, number, number[]] => {
    const row = r * nb * 40;
    const q: number[] = [];
    for (let k = 0; k < QK; k++) q.push(v.getInt8(row + nb * 8 + b * QK + k));
    return [v.getFloat32(row + b * 4, true), 0, q];
  };
}

/** quantize_q8_1 as llama.cpp's x86 path, with s = f16(d * sum(q)). */
export function quantize_q8_1(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  const nb = (n / QK) * t;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b < nb; b++) {
    const { d, sum } = q8Block(x, b * QK, out, b * 36, 4);
    dv.setUint16(b * 36 + 2, f32ToF16(fr(d * sum)), true);
  }
}

export function convert_f16(out: Uint16Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = f32ToF16(x[i]);
}

export function convert_bf16(out: Uint16Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = f32ToBF16(x[i]);
}

function matmulWith(out: Float32Array, n: number, d: number, t: number, wAt: (i: number, k: number) => number, xAt: (j: number, k: number) => number): void {
  for (let j = 0; j < t; j++) {
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += wAt(i, k) * xAt(j, k);
      out[j * d + i] = s;
    }
  }
}

/** out[j*d + i] = sum_k w[i*n + k] * x[j*n + k] */
export function matmul_f32(out: Float32Array, x: Float32Array, w: Float32Array, n: number, d: number, t: number): void {
  matmulWith(out, n, d, t, (i, k) => w[i * n + k], (j, k) => x[j * n + k]);
}

export function matmul_f16(out: Float32Array, x: Uint16Array, w: Uint16Array, n: number, d: number, t: number): void {
  matmulWith(out, n, d, t, (i, k) => f16ToF32(w[i * n + k]), (j, k) => f16ToF32(x[j * n + k]));
}

export function matmul_bf16(out: Float32Array, x: Uint16Array, w: Uint16Array, n: number, d: number, t: number): void {
  matmulWith(out, n, d, t, (i, k) => bf16ToF32(w[i * n + k]), (j, k) => bf16ToF32(x[j * n + k]));
}

/**
 * A block-quantized matmul: per block, sum of integer products times d_w*d_x, plus m_w*s_x for offset formats.
 * wq/xq give (d, m or s, the 32 integers) of block b of row i.
 */
function matmulBlocks(out: Float32Array, n: number, d: number, t: number,
                      wBlock: (i: number, b: number) => [number, number, number[]],
                      xBlock: (j: number, b: number) => [number, number, number[]]): void {
  const nb = n / QK;
  for (let j = 0; j < t; j++) {
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let b = 0; b < nb; b++) {
        const [dw, mw, qw] = wBlock(i, b);
        const [dx, sx, qx] = xBlock(j, b);
        let sumi = 0;
        for (let k = 0; k < QK; k++) sumi += qw[k] * qx[k];
        s += dw * dx * sumi + mw * sx;
      }
      out[j * d + i] = s;
    }
  }
}

function q8_0At(a: Uint8Array, rowBytes: number) {
  const v = new DataView(a.buffer, a.byteOffset, a.byteLength);
  return (r: number, b: number): [number, number, number[]] => {
    const o = r * rowBytes + b * 34;
    const q: number[] = [];
    for (let k = 0; k < QK; k++) q.push(v.getInt8(o + 2 + k));
    return [f16ToF32(v.getUint16(o, true)), 0, q];
  };
}

function q8_1At(a: Uint8Array, rowBytes: number) {
  const v = new DataView(a.buffer, a.byteOffset, a.byteLength);
  return (r: number, b: number): [number, number, number[]] => {
    const o = r * rowBytes + b * 36;
    const q: number[] = [];
    for (let k = 0; k < QK; k++) q.push(v.getInt8(o + 4 + k));
    return [f16ToF32(v.getUint16(o, true)), f16ToF32(v.getUint16(o + 2, true)), q];
  };
}

/** nibble k of a Q4 block: low nibbles hold elements 0..15, high nibbles 16..31 */
function nibbles(a: Uint8Array, o: number, offset: number): number[] {
  const q: number[] = [];
  for (let k = 0; k < QK; k++) q.push(k < 16 ? (a[o + k] & 15) - offset : (a[o + k - 16] >> 4) - offset);
  return q;
}

export function matmul_q8_0(out: Float32Array, xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): void {
  matmulBlocks(out, n, d, t, q8_0At(w, (n / QK) * 34), q8_0xAt(xq, n));
}

export function matmul_q4_0(out: Float32Array, xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): void {
  const wv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const wr = (n / QK) * 18;
  const wBlock = (i: number, b: number): [number, number, number[]] => {
    const o = i * wr + b * 18;
    return [f16ToF32(wv.getUint16(o, true)), 0, nibbles(w, o + 2, 8)];
  };
  matmulBlocks(out, n, d, t, wBlock, q8_0xAt(xq, n));
}

export function matmul_q4_1(out: Float32Array, xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): void {
  const wv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const wr = (n / QK) * 20;
  const wBlock = (i: number, b: number): [number, number, number[]] => {
    const o = i * wr + b * 20;
    return [f16ToF32(wv.getUint16(o, true)), f16ToF32(wv.getUint16(o + 2, true)), nibbles(w, o + 4, 0)];
  };
  matmulBlocks(out, n, d, t, wBlock, q8_1At(xq, (n / QK) * 36));
}

export function matmul_q5_0(out: Float32Array, xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): void {
  const wv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const wr = (n / QK) * 22;
  const wBlock = (i: number, b: number): [number, number, number[]] => {
    const o = i * wr + b * 22;
    const qh = wv.getUint32(o + 2, true);
    const q = nibbles(w, o + 6, 0).map((v, k) => v + 16 * ((qh >>> k) & 1) - 16);
    return [f16ToF32(wv.getUint16(o, true)), 0, q];
  };
  matmulBlocks(out, n, d, t, wBlock, q8_0xAt(xq, n));
}

/** quantize_q8_K: t rows of n/256 block_q8_K, exactly ggml's quantize_row_q8_K_ref (see quant/ref.ts) */
export function quantize_q8_K(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  quantizeQ8_K(x.subarray(0, n * t), out);
}

/** quantize_q8_K's blocks rearranged into Q8_KW (quant/ref.ts quantizeQ8_KW: the same int8, d and bsums) */
export function quantize_q8_kw(out: Uint8Array, x: Float32Array, n: number, t: number): void {
  quantizeQ8_KW(x.subarray(0, n * t), out);
}

/**
 * K-quant matmul against Q8_K activations, as ggml_vec_dot_q4_K_q8_K / q6_K_q8_K: per super-block, an exact
 * integer sum over sub-blocks, then d_w·d_x·Σ scale·Σq_w·q_x minus the offset term, accumulated in f64.
 */
function matmulK(out: Float32Array, xq: Uint8Array, n: number, d: number, t: number,
                 block: (i: number, b: number, qx: Int8Array, bsums: Int16Array, dx: number) => number): void {
  const nb = n / QK_K;
  const xv = new DataView(xq.buffer, xq.byteOffset, xq.byteLength);
  for (let j = 0; j < t; j++) {
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let b = 0; b < nb; b++) {
        const o = (j * nb + b) * 292;
        const qx = new Int8Array(xq.buffer, xq.byteOffset + o + 4, QK_K);
        const bsums = new Int16Array(16);
        for (let k = 0; k < 16; k++) bsums[k] = xv.getInt16(o + 260 + 2 * k, true);
        s += block(i, b, qx, bsums, xv.getFloat32(o, true));
      }
      out[j * d + i] = s;
    }
  }
}

export function matmul_q4_K(out: Float32Array, xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): void {
  const wv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const rb = (n / QK_K) * 144;
  matmulK(out, xq, n, d, t, (i, b, qx, bsums, dx) => {
    const o = i * rb + b * 144;
    const dw = f16ToF32(wv.getUint16(o, true)), dmin = f16ToF32(wv.getUint16(o + 2, true));
    let sumScaled = 0, sumMins = 0;
    for (let sb = 0; sb < 8; sb++) {
      const [sc, m] = q4kScaleMin(w, o + 4, sb);
      const c = sb >> 1, high = sb & 1;
      let dot = 0;
      for (let l = 0; l < 32; l++) {
        const byte = w[o + 16 + 32 * c + l];
        dot += (high ? byte >> 4 : byte & 15) * qx[32 * sb + l];
      }
      sumScaled += sc * dot;
      sumMins += m * (bsums[2 * sb] + bsums[2 * sb + 1]);
    }
    return dw * dx * sumScaled - dmin * dx * sumMins;
  });
}

export function matmul_q6_K(out: Float32Array, xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): void {
  const wv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const rb = (n / QK_K) * 210;
  matmulK(out, xq, n, d, t, (i, b, qx, _bsums, dx) => {
    const o = i * rb + b * 210;
    const dw = f16ToF32(wv.getUint16(o + 208, true));
    let sum = 0;
    for (let sb = 0; sb < 16; sb++) {
      let dot = 0;
      for (let l = 0; l < 16; l++) dot += (q6kValue(w, o, 16 * sb + l) - 32) * qx[16 * sb + l];
      sum += wv.getInt8(o + 192 + sb) * dot;
    }
    return dw * dx * sum;
  });
}

/** out = x / sqrt(mean(x^2) + eps) * w, per row */
export function rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, n: number, eps: number, t: number): void {
  for (let j = 0; j < t; j++) {
    let ss = 0;
    for (let k = 0; k < n; k++) ss += x[j * n + k] * x[j * n + k];
    const scale = 1 / Math.sqrt(ss / n + eps);
    for (let k = 0; k < n; k++) out[j * n + k] = x[j * n + k] * scale * w[k];
  }
}

/** llama.cpp's RoPE options (ggml_rope_ext); the defaults are plain RoPE */
export interface RopeOptions {
  freqScale?: number;
  extFactor?: number;
  attnFactor?: number;
  corrLow?: number;
  corrHigh?: number;
  /** per-pair divisors of the angle (rope_freqs / LongRoPE factors) */
  factors?: Float32Array;
}

function rope(x: Float32Array, nHeads: number, headSize: number, ropeDim: number, pos0: number, freqBase: number, t: number, neox: boolean, o: RopeOptions = {}): void {
  // theta follows ggml exactly (f32 powf, f32 running product) so the reference tracks llama.cpp
  const thetaScale = fr(Math.pow(freqBase, fr(-2 / ropeDim)));
  const half = ropeDim / 2;
  const freqScale = o.freqScale ?? 1, ext = o.extFactor ?? 0, low = o.corrLow ?? 0, high = o.corrHigh ?? 0;
  const mscale = (o.attnFactor ?? 1) * (ext !== 0 ? 1 + 0.1 * Math.log(1 / freqScale) : 1);
  for (let j = 0; j < t; j++) {
    let theta = fr(pos0 + j);
    for (let i = 0; i < half; i++) {
      // the angle in f32 step by step as ggml's rope_yarn (at position 300 an f64 angle is already 2e-5 away)
      const extrap = o.factors ? fr(theta / o.factors[i]) : theta;
      let th = fr(freqScale * extrap);
      if (ext !== 0) {
        const mix = fr((1 - Math.min(1, Math.max(0, (i - low) / Math.max(0.001, high - low)))) * ext);
        th = fr(fr(th * fr(1 - mix)) + fr(extrap * mix));
      }
      const c = Math.cos(th) * mscale, s = Math.sin(th) * mscale;
      for (let h = 0; h < nHeads; h++) {
        const base = (j * nHeads + h) * headSize;
        const a = base + (neox ? i : 2 * i), b = base + (neox ? i + half : 2 * i + 1);
        const x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
      }
      theta = fr(theta * thetaScale);
    }
  }
}

export function rope_norm(x: Float32Array, nHeads: number, headSize: number, ropeDim: number, pos0: number, freqBase: number, t: number): void {
  rope(x, nHeads, headSize, ropeDim, pos0, freqBase, t, false);
}

export function rope_neox(x: Float32Array, nHeads: number, headSize: number, ropeDim: number, pos0: number, freqBase: number, t: number): void {
  rope(x, nHeads, headSize, ropeDim, pos0, freqBase, t, true);
}

export function rope_ext(x: Float32Array, nHeads: number, headSize: number, ropeDim: number, pos0: number, t: number, neox: boolean, freqBase: number, o: RopeOptions): void {
  rope(x, nHeads, headSize, ropeDim, pos0, freqBase, t, neox, o);
}

/** in place over x[off .. off+n) */
export function softmax(x: Float32Array, n: number, off = 0): void {
  let m = -Infinity;
  for (let k = 0; k < n; k++) m = Math.max(m, x[off + k]);
  let sum = 0;
  const e = new Float64Array(n);
  for (let k = 0; k < n; k++) { e[k] = Math.exp(x[off + k] - m); sum += e[k]; }
  for (let k = 0; k < n; k++) x[off + k] = e[k] / sum;
}

export function swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  for (let k = 0; k < n; k++) out[k] = (gate[k] / (1 + Math.exp(-gate[k]))) * up[k];
}

export function add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  for (let k = 0; k < n; k++) out[k] = a[k] + b[k];
}

export function argmax(x: Float32Array, n: number): number {
  let best = 0;
  for (let k = 1; k < n; k++) if (x[k] > x[best]) best = k;
  return best;
}

/** attention's options: the scores' scale (default 1/sqrt(headSize)), a sliding window and Gemma 2's soft-cap */
export interface AttentionOptions {
  scale?: number;
  /** query position p sees p - window < p0 <= p (0: every earlier position) */
  window?: number;
  /** scores become softcap * tanh(score / softcap) before the scale */
  softcap?: number;
}

/** causal GQA; kCache/vCache rows are positions, kvDim = nKvHeads*headSize wide */
export function attention(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array,
                          nHeads: number, nKvHeads: number, headSize: number, pos0: number, t: number, o: AttentionOptions = {}): void {
  const kvDim = nKvHeads * headSize;
  const group = nHeads / nKvHeads;
  const scale = o.scale ?? 1 / Math.sqrt(headSize);
  const window = o.window ?? 0, cap = o.softcap ?? 0;
  for (let j = 0; j < t; j++) {
    const np = pos0 + j + 1;
    const start = window > 0 ? Math.max(0, np - window) : 0;
    for (let h = 0; h < nHeads; h++) {
      const qo = (j * nHeads + h) * headSize;
      const ko = Math.floor(h / group) * headSize;
      const s = new Float64Array(np);
      let m = -Infinity;
      for (let p = start; p < np; p++) {
        let dot = 0;
        for (let k = 0; k < headSize; k++) dot += q[qo + k] * kCache[p * kvDim + ko + k];
        s[p] = (cap > 0 ? cap * Math.tanh(dot / cap) : dot) * scale;
        m = Math.max(m, s[p]);
      }
      let sum = 0;
      for (let p = start; p < np; p++) { s[p] = Math.exp(s[p] - m); sum += s[p]; }
      for (let k = 0; k < headSize; k++) {
        let acc = 0;
        for (let p = start; p < np; p++) acc += (s[p] / sum) * vCache[p * kvDim + ko + k];
        out[qo + k] = acc;
      }
    }
  }
}

/** a KV cache type as attention_kv's reference takes it */
export type KvType = "F32" | "F16" | "Q8_0";

/** the values of n cached (or query) numbers of type ty at byte offset o of bytes */
function kvValues(ty: KvType, bytes: Uint8Array, o: number, n: number): Float64Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (ty === "F32") out[i] = dv.getFloat32(o + 4 * i, true);
    else if (ty === "F16") out[i] = f16ToF32(dv.getUint16(o + 2 * i, true));
    else {
      const b = o + Math.floor(i / QK) * 34;
      out[i] = f16ToF32(dv.getUint16(b, true)) * dv.getInt8(b + 2 + (i % QK));
    }
  }
  return out;
}

/** bytes of n values of type ty */
export function kvBytes(ty: KvType, n: number): number {
  return ty === "F32" ? 4 * n : ty === "F16" ? 2 * n : (n / QK) * 34;
}

/** n f32 values as type ty's bytes: f32, f16 round-to-nearest-even, or quantize_q8_0 (x86 rounding) */
export function toKv(ty: KvType, x: Float32Array): Uint8Array {
  const out = new Uint8Array(kvBytes(ty, x.length));
  if (ty === "F32") out.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  else if (ty === "F16") { const h = new Uint16Array(x.length); convert_f16(h, x, x.length); out.set(new Uint8Array(h.buffer)); }
  else quantize_q8_0(out, x, x.length, 1);
  return out;
}

/**
 * attention() over caches of types kType and vType (the bytes of (pos0 + t) rows of nKvHeads·headSize values),
 * as llama.cpp's CPU backend computes it: q converted to K's type first (f16, or q8_0 blocks), dots of the
 * decoded values; with an F16 V the softmax is normalized, rounded to f32 and then to f16 before it weighs V.
 * Sums in float64.
 */
export function attention_kv(out: Float32Array, q: Float32Array, kCache: Uint8Array, vCache: Uint8Array, kType: KvType, vType: KvType,
                             nHeads: number, nKvHeads: number, headSize: number, pos0: number, t: number, o: AttentionOptions = {}): void {
  const kvDim = nKvHeads * headSize, qDim = nHeads * headSize;
  const group = nHeads / nKvHeads;
  const scale = o.scale ?? 1 / Math.sqrt(headSize);
  const window = o.window ?? 0, cap = o.softcap ?? 0;
  const qc = toKv(kType, q);
  const kRow = kvBytes(kType, kvDim), vRow = kvBytes(vType, kvDim), kHead = kvBytes(kType, headSize), vHead = kvBytes(vType, headSize);
  for (let j = 0; j < t; j++) {
    const np = pos0 + j + 1;
    const start = window > 0 ? Math.max(0, np - window) : 0;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const qv = kvValues(kType, qc, kvBytes(kType, j * qDim + h * headSize), headSize);
      const s = new Float64Array(np);
      let m = -Infinity;
      for (let p = start; p < np; p++) {
        const kv = kvValues(kType, kCache, p * kRow + g * kHead, headSize);
        let dot = 0;
        for (let i = 0; i < headSize; i++) dot += qv[i] * kv[i];
        s[p] = (cap > 0 ? cap * Math.tanh(dot / cap) : dot) * scale;
        m = Math.max(m, s[p]);
      }
      let sum = 0;
      for (let p = start; p < np; p++) { s[p] = Math.exp(s[p] - m); sum += s[p]; }
      for (let p = start; p < np; p++) s[p] = vType === "F16" ? f16ToF32(f32ToF16(fr(s[p] / sum))) : s[p] / sum;
      const acc = new Float64Array(headSize);
      for (let p = start; p < np; p++) {
        const vv = kvValues(vType, vCache, p * vRow + g * vHead, headSize);
        for (let i = 0; i < headSize; i++) acc[i] += s[p] * vv[i];
      }
      for (let i = 0; i < headSize; i++) out[(j * nHeads + h) * headSize + i] = acc[i];
    }
  }
}

/** x (rows of n, a power of two) <- Hx, H the orthonormal Walsh-Hadamard matrix in Sylvester order, as a matrix product in float64 */
export function hadamard(x: Float32Array, n: number, rows: number): void {
  const h = (i: number, j: number) => { let b = i & j, s = 0; while (b) { s ^= b & 1; b >>= 1; } return s ? -1 : 1; };
  for (let r = 0; r < rows; r++) {
    const row = Float64Array.from(x.subarray(r * n, (r + 1) * n));
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc += h(i, j) * row[j];
      x[r * n + i] = acc / Math.sqrt(n);
    }
  }
}

/** gelu's tanh approximation in float64 */
export function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * x * (1 + 0.044715 * x * x)));
}

/**
 * out (t, n) = act(gate) * up with rows `stride` apart; GELU as llama.cpp's CPU backend evaluates it (input and
 * result rounded to f16, GGML_GELU_FP16; 0 below -10, identity above 10), SiLU in float64
 */
export function glu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number, t: number, stride: number, useGelu: boolean): void {
  for (let j = 0; j < t; j++) {
    for (let k = 0; k < n; k++) {
      const x = gate[j * stride + k], u = up[j * stride + k];
      let a: number;
      if (!useGelu) a = x / (1 + Math.exp(-x));
      else if (x <= -10) a = 0;
      else if (x >= 10) a = x;
      else a = f16ToF32(f32ToF16(gelu(f16ToF32(f32ToF16(x)))));
      out[j * n + k] = a * u;
    }
  }
}

export function scale(out: Float32Array, x: Float32Array, s: number, n: number): void {
  for (let k = 0; k < n; k++) out[k] = x[k] * s;
}

export function add_rows(x: Float32Array, b: Float32Array, n: number, t: number): void {
  for (let j = 0; j < t; j++) for (let k = 0; k < n; k++) x[j * n + k] += b[k];
}

export function softcap(x: Float32Array, cap: number, n: number): void {
  for (let k = 0; k < n; k++) x[k] = cap * Math.tanh(x[k] / cap);
}

/** cos of each row pair; 1 when both rows are zero, 0 when only one is */
export function cosine_rows(out: Float32Array, a: Float32Array, b: Float32Array, n: number, t: number): void {
  for (let j = 0; j < t; j++) {
    let dot = 0, aa = 0, bb = 0;
    for (let k = 0; k < n; k++) {
      const x = a[j * n + k], y = b[j * n + k];
      dot += x * y; aa += x * x; bb += y * y;
    }
    out[j] = aa === 0 || bb === 0 ? (aa === bb ? 1 : 0) : dot / Math.sqrt(aa * bb);
  }
}

export function l2norm_rows(out: Float32Array, x: Float32Array, n: number, t: number): void {
  for (let j = 0; j < t; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += x[j * n + k] * x[j * n + k];
    out[j] = Math.sqrt(s);
  }
}

export function sum_f32(x: Float32Array, n: number): number {
  let s = 0;
  for (let k = 0; k < n; k++) s += x[k];
  return s;
}
