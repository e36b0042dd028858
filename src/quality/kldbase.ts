// llama.cpp's kl-divergence-base file (what `llama-perplexity --kl-divergence-base FILE` writes and
// `--kl-divergence` reads), so a base saved here can be compared against in llama.cpp and the other way round.
// Layout, little-endian: "_logits_", u32 n_ctx, i32 n_vocab, i32 n_chunk, i32 tokens[n_ctx·n_chunk] (the text's
// tokens, BOS not substituted), then for every chunk n_ctx−1−n_ctx/2 records of nv = 2·⌈n_vocab/2⌉ + 4 u16s: an f32
// scale and an f32 minimum log-probability, then each token's log-probability as a 16-bit step above that minimum
// over at most 16 nats below the top one (lower ones are stored as 0 and left out of the KLD). Portable: bytes in,
// bytes out. Not the statistics (kld.ts).
import type { ByteSource } from "../gguf/reader.js";
import type { BaseDistribution } from "./kld.js";

export const KLD_BASE_MAGIC = "_logits_";
const HEADER_BYTES = 8 + 4 + 4 + 4;
/** log-probabilities further than this below the top one are not stored (llama.cpp's range) */
const RANGE = 16;

/** u16s per record: two f32s, then the vocabulary padded to an even count. */
export function recordLength(nVocab: number): number {
  return 2 * Math.floor((nVocab + 1) / 2) + 4;
}

/** Positions scored per window of n tokens (n/2 … n−2). */
export function recordsPerChunk(nCtx: number): number {
  return nCtx - 1 - (nCtx >> 1);
}

export interface KldBaseHeader {
  nCtx: number;
  nVocab: number;
  nChunk: number;
  /** nCtx·nChunk token ids */
  tokens: Int32Array;
}

/** The header bytes of a base file. */
export function encodeKldBaseHeader(h: KldBaseHeader): Uint8Array {
  if (h.tokens.length !== h.nCtx * h.nChunk) throw new Error(`kl-divergence base: ${h.tokens.length} tokens, expected n_ctx·n_chunk = ${h.nCtx * h.nChunk}`);
  const out = new Uint8Array(HEADER_BYTES + 4 * h.tokens.length);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) out[i] = KLD_BASE_MAGIC.charCodeAt(i);
  dv.setUint32(8, h.nCtx, true);
  dv.setInt32(12, h.nVocab, true);
  dv.setInt32(16, h.nChunk, true);
  for (let i = 0; i < h.tokens.length; i++) dv.setInt32(HEADER_BYTES + 4 * i, h.tokens[i], true);
  return out;
}

/** float32 round-to-nearest-even to an integer, as ggml's nearest_int (the 1.5·2²³ trick) does */
function nearestInt(v: number): number {
  return Math.fround(v + 12582912) - 12582912;
}

/**
 * One position's record from the raw logits at logits[offset … offset+n), written into `out` (nv u16s, the two
 * f32s in its first 8 bytes). The arithmetic is float32 where llama.cpp's is.
 */
export function encodeRecord(logits: ArrayLike<number>, offset: number, n: number, out: Uint16Array): void {
  const fr = Math.fround;
  let max = logits[offset], min = logits[offset];
  for (let i = 1; i < n; i++) {
    const v = logits[offset + i];
    if (v > max) max = v;
    if (v < min) min = v;
  }
  min = Math.max(min, fr(max - RANGE));
  let sum = 0;
  for (let i = 0; i < n; i++) sum += fr(Math.exp(fr(logits[offset + i] - max)));
  const lse = fr(Math.log(sum));
  const minLogProb = fr(fr(min - max) - lse);
  const scale = fr(fr(max - min) / 65535);
  const head = new Float32Array(out.buffer, out.byteOffset, 2);
  head[0] = scale;
  head[1] = minLogProb;
  const q = out.subarray(4);
  if (scale) {
    const inv = fr(1 / scale);
    for (let i = 0; i < n; i++) {
      const v = logits[offset + i];
      q[i] = v > min ? nearestInt(fr(inv * fr(v - min))) : 0;
    }
  } else {
    q.fill(0, 0, n);
  }
  q.fill(0, n);
}

/** Decode a record (nv u16s) into log-probabilities; entries at the stored minimum are the floor. */
export function decodeRecord(rec: Uint16Array, n: number, out: BaseDistribution): void {
  const head = new Float32Array(rec.buffer, rec.byteOffset, 2);
  const scale = head[0], minLogProb = head[1];
  const q = rec.subarray(4);
  const lp = out.logProbs;
  let arg = 0;
  for (let i = 0; i < n; i++) {
    const v = Math.fround(scale * q[i] + minLogProb);
    lp[i] = v;
    if (v > lp[arg]) arg = i;
  }
  out.argmax = arg;
  out.floor = -RANGE;
}

/** A base file opened for reading, its size checked against its header before anything is allocated. */
export class KldBaseReader {
  readonly nCtx: number;
  readonly nVocab: number;
  readonly nChunk: number;
  readonly nv: number;
  private readonly recordBytes: number;
  private readonly dataOffset: number;

  constructor(private readonly src: ByteSource, readonly name: string) {
    const fail = (what: string): never => { throw new Error(`${name}: not a llama.cpp kl-divergence base file: ${what}`); };
    if (src.size < HEADER_BYTES) fail(`${src.size} bytes, shorter than its ${HEADER_BYTES}-byte header`);
    const head = src.read(0, HEADER_BYTES);
    const magic = String.fromCharCode(...head.subarray(0, 8));
    if (magic !== KLD_BASE_MAGIC) fail(`it starts with ${JSON.stringify(magic)}, expected "${KLD_BASE_MAGIC}"`);
    const dv = new DataView(head.buffer, head.byteOffset, HEADER_BYTES);
    this.nCtx = dv.getUint32(8, true);
    this.nVocab = dv.getInt32(12, true);
    this.nChunk = dv.getInt32(16, true);
    if (!(this.nCtx >= 4 && this.nCtx <= 1 << 20)) fail(`n_ctx = ${this.nCtx} at byte 8, expected 4 … 2^20`);
    if (!(this.nVocab >= 2 && this.nVocab <= 1 << 22)) fail(`n_vocab = ${this.nVocab} at byte 12, expected 2 … 2^22`);
    if (!(this.nChunk >= 1)) fail(`n_chunk = ${this.nChunk} at byte 16, expected at least 1`);
    this.nv = recordLength(this.nVocab);
    this.recordBytes = 2 * this.nv;
    this.dataOffset = HEADER_BYTES + 4 * this.nCtx * this.nChunk;
    const expected = this.dataOffset + this.nChunk * recordsPerChunk(this.nCtx) * this.recordBytes;
    if (src.size !== expected) fail(`${src.size} bytes, but n_ctx ${this.nCtx}, n_vocab ${this.nVocab} and n_chunk ${this.nChunk} make ${expected}`);
  }

  /** The nCtx·nChunk tokens, each checked against the vocabulary. */
  tokens(): Int32Array {
    const bytes = this.src.read(HEADER_BYTES, 4 * this.nCtx * this.nChunk);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Int32Array(this.nCtx * this.nChunk);
    for (let i = 0; i < out.length; i++) {
      const t = dv.getInt32(4 * i, true);
      if (!(t >= 0 && t < this.nVocab)) throw new Error(`${this.name}: token ${i} is ${t}, outside the vocabulary 0 … ${this.nVocab - 1}`);
      out[i] = t;
    }
    return out;
  }

  /** The records of chunk c, as one array of recordsPerChunk(nCtx) · nv u16s. */
  chunk(c: number): Uint16Array {
    const per = recordsPerChunk(this.nCtx) * this.recordBytes;
    const bytes = this.src.read(this.dataOffset + c * per, per);
    // copy when the view is not 2-byte aligned
    const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    return new Uint16Array(aligned.buffer, aligned.byteOffset, per / 2);
  }
}
