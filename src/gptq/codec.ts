// GPTQ's view of the block formats it writes (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K): choose a group's scale (and
// min) by ggml's own rule, round one value to an integer code with ggml's rounding, and pack codes and scales into
// the block layout of the formats table. K-quants code their groups' scales against a super-block scale, so their
// codecs take two steps per super-block (fit, then code; gptq.ts runs the super-block twice, docs/gptq.md says why).
// Block geometry comes from src/quant/formats.ts; this file only knows field order.
import { formatByName, type FormatName, type QuantFormat } from "../quant/formats.js";
import {
  f16ToF32, f32ToF16, makeQxQuants, packQ4kCodes, packQ4kScales, packQ5_0, packQ6kCodes, q4kCode, q4kFit, q4kSixBits,
  q4kSuperScales, q6kCode, q6kScale, q6kSuperScale, QK_K, roundHalfAway, type ScaleMin,
} from "../quant/ref.js";

const fr = Math.fround;

/** Scale parameters per (row, group): what rounding uses (f32, as ggml) and what the block stores. */
export class GroupParams {
  /** 1/d in f32, as ggml's _ref quantizers round with it (Q4_0, Q4_1, Q5_0, Q8_0) */
  readonly id: Float32Array;
  /** Q4_1 only: the group minimum in f32, as the rounding subtracts it */
  readonly min: Float32Array;
  /** f16 bits of d and of m (Q4_1) as stored in every block of the group; K-quants: the super-block's, at its first group */
  readonly dBits: Uint16Array;
  readonly mBits: Uint16Array;
  /** what dequantization multiplies by (d; K-quants: d·scale of the group) and subtracts (Q4_1: −m; Q4_K: dmin·min) */
  readonly d: Float32Array;
  readonly m: Float32Array;
  /** K-quants: the group's fitted scale and min, its coded scale (Q4_K 6-bit ls, Q6_K int8) and min (Q4_K lm) */
  readonly fit: Float32Array;
  readonly fitMin: Float32Array;
  readonly sc: Int16Array;
  readonly mc: Uint8Array;
  /** K-quants: the super-block's 1/scale coding factors (Q4_K 63/max scale and 63/max min; Q6_K −128/max), at its first group */
  readonly inv: Float32Array;
  readonly invMin: Float32Array;
  /** K-quants: the fit's own codes (group values in order), which ggml keeps where d·scale is 0 */
  readonly fitCodes: Uint8Array | undefined;

  constructor(readonly rows: number, readonly groups: number, groupSize = 0) {
    const n = rows * groups;
    this.id = new Float32Array(n); this.min = new Float32Array(n);
    this.dBits = new Uint16Array(n); this.mBits = new Uint16Array(n);
    this.d = new Float32Array(n); this.m = new Float32Array(n);
    const k = groupSize > 0 ? n : 0;
    this.fit = new Float32Array(k); this.fitMin = new Float32Array(k);
    this.sc = new Int16Array(k); this.mc = new Uint8Array(k);
    this.inv = new Float32Array(k); this.invMin = new Float32Array(k);
    this.fitCodes = groupSize > 0 ? new Uint8Array(n * groupSize) : undefined;
  }
}

export interface Codec {
  format: QuantFormat;
  /** bits per code */
  bits: number;
  /** columns sharing one scale by the format itself (K-quants: 32, Q6_K 16); undefined: set by GPTQ's --group */
  group?: number;
  /**
   * columns whose group scales are coded together (the K-quant super-block, 256); such codecs fit each group with
   * choose, code the span with codeSpan, then set each group's final scale with rechoose
   */
  span?: number;
  /** set params[at] from the values x[0..len) of one row's group (ggml's rule for a block, over the group) */
  choose(x: ArrayLike<number>, len: number, p: GroupParams, at: number): void;
  /** span codecs: code the fitted scales of the span's groups at, at + 1, … of one row into the super-block's */
  codeSpan?(p: GroupParams, at: number): void;
  /** span codecs: the group's final scale from its current values x against the span's coding (span start: first) */
  rechoose?(x: ArrayLike<number>, len: number, p: GroupParams, at: number, first: number): void;
  /** the integer code of x, the j-th value of its group, under params[at] (clamped to the format's range) */
  code(x: number, p: GroupParams, at: number, j: number): number;
  /** the value a decoder reads back for code q under params[at] (f32, as the format's dequantize) */
  value(q: number, p: GroupParams, at: number): number;
  /** write one block: scale fields from params[at] (at: the block's first group), then its codes from codes[from..] */
  pack(dst: Uint8Array, o: number, codes: ArrayLike<number>, from: number, p: GroupParams, at: number): void;
}

function setScale(p: GroupParams, at: number, d: number): void {
  p.id[at] = d !== 0 ? fr(1 / d) : 0;
  p.dBits[at] = f32ToF16(d);
  p.d[at] = f16ToF32(p.dBits[at]);
}

/** Bytes of block header (the f16 fields) for a format, checked against the table so nothing else assumes it. */
function header(f: QuantFormat, bits: number, f16Fields: number): number {
  const h = f.typeSize - (f.blockSize * bits) / 8;
  if (h !== 2 * f16Fields) throw new Error(`${f.name}: table says ${f.typeSize} bytes per ${f.blockSize}-block; expected ${2 * f16Fields} bytes of f16 fields before the ${bits}-bit codes`);
  return h;
}

/** 4-bit codes, GGUF nibble order: byte j holds element j (low nibble) and element j + blockSize/2 (high). */
function packNibbles(dst: Uint8Array, o: number, codes: ArrayLike<number>, from: number, half: number): void {
  for (let j = 0; j < half; j++) dst[o + j] = codes[from + j] | (codes[from + j + half] << 4);
}

/** the value of largest magnitude, with its sign (the first one on ties), as ggml's _ref quantizers pick it */
function signedMax(x: ArrayLike<number>, len: number): number {
  let amax = 0, mx = 0;
  for (let j = 0; j < len; j++) if (amax < Math.abs(x[j])) { amax = Math.abs(x[j]); mx = x[j]; }
  return mx;
}

function q4_0(): Codec {
  const format = formatByName("Q4_0")!;
  const h = header(format, 4, 1);
  const half = format.blockSize / 2;
  return {
    format, bits: 4,
    // quantize_row_q4_0_ref: d = (the value of largest magnitude, with its sign) / -8
    choose(x, len, p, at) { setScale(p, at, fr(signedMax(x, len) / -8)); },
    code: (x, p, at) => Math.max(0, Math.min(15, Math.trunc(fr(fr(x * p.id[at]) + 8.5)))),
    value: (q, p, at) => fr((q - 8) * p.d[at]),
    pack(dst, o, codes, from, p, at) {
      dst[o] = p.dBits[at] & 0xff; dst[o + 1] = p.dBits[at] >> 8;
      packNibbles(dst, o + h, codes, from, half);
    },
  };
}

function q5_0(): Codec {
  const format = formatByName("Q5_0")!;
  header(format, 5, 1); // the fifth bits (u32 qh) and the nibbles are the 20 bytes of codes
  return {
    format, bits: 5,
    // quantize_row_q5_0_ref: d = (the value of largest magnitude, with its sign) / -16, q = trunc(x/d + 16.5)
    choose(x, len, p, at) { setScale(p, at, fr(signedMax(x, len) / -16)); },
    code: (x, p, at) => Math.max(0, Math.min(31, Math.trunc(fr(fr(x * p.id[at]) + 16.5)))),
    value: (q, p, at) => fr((q - 16) * p.d[at]),
    pack(dst, o, codes, from, p, at) {
      dst[o] = p.dBits[at] & 0xff; dst[o + 1] = p.dBits[at] >> 8;
      packQ5_0(dst, o + 2, codes, from);
    },
  };
}

function q4_1(): Codec {
  const format = formatByName("Q4_1")!;
  const h = header(format, 4, 2);
  const half = format.blockSize / 2;
  return {
    format, bits: 4,
    // quantize_row_q4_1_ref: d = (max - min) / 15, m = min
    choose(x, len, p, at) {
      let mn = Infinity, mx = -Infinity;
      for (let j = 0; j < len; j++) { if (x[j] < mn) mn = x[j]; if (x[j] > mx) mx = x[j]; }
      setScale(p, at, fr(fr(mx - mn) / 15));
      p.min[at] = mn;
      p.mBits[at] = f32ToF16(mn);
      p.m[at] = f16ToF32(p.mBits[at]);
    },
    code: (x, p, at) => Math.max(0, Math.min(15, Math.trunc(fr(fr(fr(x - p.min[at]) * p.id[at]) + 0.5)))),
    value: (q, p, at) => fr(fr(q * p.d[at]) + p.m[at]),
    pack(dst, o, codes, from, p, at) {
      dst[o] = p.dBits[at] & 0xff; dst[o + 1] = p.dBits[at] >> 8;
      dst[o + 2] = p.mBits[at] & 0xff; dst[o + 3] = p.mBits[at] >> 8;
      packNibbles(dst, o + h, codes, from, half);
    },
  };
}

function q8_0(): Codec {
  const format = formatByName("Q8_0")!;
  const h = header(format, 8, 1);
  return {
    format, bits: 8,
    // quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d); clamped to ±127 as updated weights may overshoot
    choose(x, len, p, at) {
      let amax = 0;
      for (let j = 0; j < len; j++) amax = Math.max(amax, Math.abs(x[j]));
      setScale(p, at, fr(amax / 127));
    },
    code: (x, p, at) => Math.max(-127, Math.min(127, roundHalfAway(fr(x * p.id[at])))),
    value: (q, p, at) => fr(q * p.d[at]),
    pack(dst, o, codes, from, p, at) {
      dst[o] = p.dBits[at] & 0xff; dst[o + 1] = p.dBits[at] >> 8;
      for (let j = 0; j < format.blockSize; j++) dst[o + h + j] = codes[from + j] & 0xff;
    },
  };
}

/**
 * Q4_K (quantize_row_q4_K_ref's rules, per 32-value group): choose fits the group with make_qkx2_quants (its scale
 * and min used as they are while the super-block is first run); codeSpan turns the eight fits into d = max scale/63
 * and dmin = max min/63; rechoose fits the group again on its current values and codes the scale and min in 6 bits
 * against them. Codes are nearest((x + dmin·lm)/(d·ls)), 0..15.
 */
function q4_K(): Codec {
  const format = formatByName("Q4_K")!;
  const G = 32, perSpan = QK_K / G;
  const scratch = { w: new Float32Array(G), laux: new Uint8Array(G) };
  const L = new Uint8Array(G);
  const fits: ScaleMin[] = new Array(perSpan);
  return {
    format, bits: 4, group: G, span: QK_K,
    choose(x, len, p, at) {
      const f = q4kFit(x, L, scratch);
      p.fit[at] = f.scale; p.fitMin[at] = f.min;
      p.d[at] = f.scale; p.m[at] = f.min;
      p.fitCodes!.set(L, at * G);
    },
    codeSpan(p, at) {
      for (let j = 0; j < perSpan; j++) fits[j] = { scale: p.fit[at + j], min: p.fitMin[at + j] };
      const s = q4kSuperScales(fits);
      p.dBits[at] = s.dBits; p.mBits[at] = s.mBits;
      p.inv[at] = s.invScale; p.invMin[at] = s.invMin;
    },
    rechoose(x, len, p, at, first) {
      const f = q4kFit(x, L, scratch);
      p.fitCodes!.set(L, at * G);
      const ls = q4kSixBits(p.inv[first], f.scale), lm = q4kSixBits(p.invMin[first], f.min);
      p.sc[at] = ls; p.mc[at] = lm;
      p.d[at] = fr(f16ToF32(p.dBits[first]) * ls);
      p.m[at] = fr(f16ToF32(p.mBits[first]) * lm);
    },
    // a group whose d·ls is 0 decodes to −dmin·lm whatever its codes: ggml keeps the fit's, and so do we
    code: (x, p, at, j) => (p.d[at] ? q4kCode(x, p.d[at], p.m[at]) : p.fitCodes![at * G + j]),
    value: (q, p, at) => fr(fr(p.d[at] * q) - p.m[at]),
    pack(dst, o, codes, from, p, at) {
      dst[o] = p.dBits[at] & 0xff; dst[o + 1] = p.dBits[at] >> 8;
      dst[o + 2] = p.mBits[at] & 0xff; dst[o + 3] = p.mBits[at] >> 8;
      packQ4kScales(dst, o + 4, p.sc.subarray(at, at + perSpan), p.mc.subarray(at, at + perSpan));
      packQ4kCodes(dst, o + 16, codes, from);
    },
  };
}

/**
 * Q6_K (quantize_row_q6_K_ref's rules, per 16-value group): choose fits the group's signed scale with
 * make_qx_quants; codeSpan turns the sixteen into iscale = −128/(the largest |scale|) and d = f16(1/iscale);
 * rechoose fits again and codes the scale as min(127, nearest(iscale·scale)). Codes are nearest(x/(d·sc)) + 32.
 */
function q6_K(): Codec {
  const format = formatByName("Q6_K")!;
  const G = 16, perSpan = QK_K / G;
  const L = new Uint8Array(G);
  const scales = new Float32Array(perSpan);
  return {
    format, bits: 6, group: G, span: QK_K,
    choose(x, len, p, at) {
      const s = makeQxQuants(G, 32, x, L);
      p.fit[at] = s;
      p.d[at] = s;
      p.fitCodes!.set(L, at * G);
    },
    codeSpan(p, at) {
      for (let j = 0; j < perSpan; j++) scales[j] = p.fit[at + j];
      const s = q6kSuperScale(scales);
      // all groups (near) zero: ggml writes a zero block, whose every value decodes to 0
      p.inv[at] = s ? s.iscale : 0;
      p.dBits[at] = s ? s.dBits : 0;
      p.invMin[at] = s ? 1 : 0;
    },
    rechoose(x, len, p, at, first) {
      const s = makeQxQuants(G, 32, x, L);
      const zero = p.invMin[first] === 0;
      p.fitCodes!.set(zero ? L.fill(0) : L, at * G);
      const sc = zero ? 0 : Math.max(-128, q6kScale(p.inv[first], s));
      p.sc[at] = sc;
      p.d[at] = fr(f16ToF32(p.dBits[first]) * sc);
    },
    code: (x, p, at, j) => (p.d[at] ? q6kCode(x, p.d[at]) : p.fitCodes![at * G + j]),
    value: (q, p, at) => fr(p.d[at] * (q - 32)),
    pack(dst, o, codes, from, p, at) {
      packQ6kCodes(dst, o, codes, from);
      for (let j = 0; j < perSpan; j++) dst[o + 192 + j] = p.sc[at + j] & 0xff;
      dst[o + 208] = p.dBits[at] & 0xff; dst[o + 209] = p.dBits[at] >> 8;
    },
  };
}

const CODECS: Partial<Record<FormatName, () => Codec>> = { Q4_0: q4_0, Q4_1: q4_1, Q5_0: q5_0, Q8_0: q8_0, Q4_K: q4_K, Q6_K: q6_K };

/** The formats GPTQ can write, lower-case as the CLI spells them. */
export function gptqTargets(): string[] {
  return Object.keys(CODECS).map((k) => k.toLowerCase());
}

/** Whether GPTQ can write a format. */
export function hasCodec(f: QuantFormat): boolean {
  return CODECS[f.name] !== undefined;
}

/** The codec for a format, or a one-line error naming the ones GPTQ writes. */
export function codecFor(f: QuantFormat): Codec {
  const make = CODECS[f.name];
  if (!make) throw new Error(`GPTQ writes ${gptqTargets().join(", ")}, not ${f.name.toLowerCase()}`);
  return make();
}
