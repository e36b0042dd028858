// GPTQ's view of the block formats it writes (Q4_0, Q4_1, Q8_0): choose a group's scale (and min) by ggml's own
// rule, round one value to an integer code with ggml's rounding, and pack codes and scales into the block layout
// of the formats table. Block geometry comes from src/quant/formats.ts; this file only knows field order.
import { formatByName, type FormatName, type QuantFormat } from "../quant/formats.js";
import { f16ToF32, f32ToF16, roundHalfAway } from "../quant/ref.js";

const fr = Math.fround;

/** Scale parameters per (row, group): what rounding uses (f32, as ggml) and what the block stores (f16). */
export class GroupParams {
  /** 1/d in f32, as ggml's _ref quantizers round with it */
  readonly id: Float32Array;
  /** Q4_1 only: the group minimum in f32, as the rounding subtracts it */
  readonly min: Float32Array;
  /** f16 bits of d and of m (Q4_1) as stored in every block of the group */
  readonly dBits: Uint16Array;
  readonly mBits: Uint16Array;
  /** the stored d and m decoded back, which dequantization multiplies by */
  readonly d: Float32Array;
  readonly m: Float32Array;

  constructor(readonly rows: number, readonly groups: number) {
    const n = rows * groups;
    this.id = new Float32Array(n); this.min = new Float32Array(n);
    this.dBits = new Uint16Array(n); this.mBits = new Uint16Array(n);
    this.d = new Float32Array(n); this.m = new Float32Array(n);
  }
}

export interface Codec {
  format: QuantFormat;
  /** bits per code */
  bits: number;
  /** set params[at] from the values x[0..len) of one row's group (ggml's rule for a block, over the group) */
  choose(x: ArrayLike<number>, len: number, p: GroupParams, at: number): void;
  /** the integer code of x under params[at] (clamped to the format's range) */
  code(x: number, p: GroupParams, at: number): number;
  /** the value a decoder reads back for code q under params[at] (f32, as the format's dequantize) */
  value(q: number, p: GroupParams, at: number): number;
  /** write one block: scale fields from params[at], then the blockSize codes from codes[from..] */
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

function q4_0(): Codec {
  const format = formatByName("Q4_0")!;
  const h = header(format, 4, 1);
  const half = format.blockSize / 2;
  return {
    format, bits: 4,
    // quantize_row_q4_0_ref: d = (the value of largest magnitude, with its sign) / -8
    choose(x, len, p, at) {
      let amax = 0, mx = 0;
      for (let j = 0; j < len; j++) if (amax < Math.abs(x[j])) { amax = Math.abs(x[j]); mx = x[j]; }
      setScale(p, at, fr(mx / -8));
    },
    code: (x, p, at) => Math.max(0, Math.min(15, Math.trunc(fr(fr(x * p.id[at]) + 8.5)))),
    value: (q, p, at) => fr((q - 8) * p.d[at]),
    pack(dst, o, codes, from, p, at) {
      dst[o] = p.dBits[at] & 0xff; dst[o + 1] = p.dBits[at] >> 8;
      packNibbles(dst, o + h, codes, from, half);
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

const CODECS: Partial<Record<FormatName, () => Codec>> = { Q4_0: q4_0, Q4_1: q4_1, Q8_0: q8_0 };

/** The formats GPTQ can write, lower-case as the CLI spells them. */
export function gptqTargets(): string[] {
  return Object.keys(CODECS).map((k) => k.toLowerCase());
}

/** The codec for a format, or a one-line error naming the ones GPTQ writes. */
export function codecFor(f: QuantFormat): Codec {
  const make = CODECS[f.name];
  if (!make) throw new Error(`GPTQ writes ${gptqTargets().join(", ")}, not ${f.name.toLowerCase()}`);
  return make();
}
