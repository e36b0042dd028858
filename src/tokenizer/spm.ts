// SentencePiece-style merging as llama.cpp's llm_tokenizer_spm_session: merge the adjacent pair that forms
// the highest-scoring vocab token (ties: leftmost) until none is left; unknown pieces become <0xNN> bytes.
// Not the space escaping, BOS or special-token handling around it: see index.ts.
import { PairHeap } from "./heap.js";
import { utf8Encoder } from "./unicode.js";
import { forEachCodePoint } from "./table.js";
import { NULL_ID, Vocab } from "./vocab.js";

const HEX = "0123456789ABCDEF";

export class SpmTokenizer {
  private readonly heap = new PairHeap(1024);
  private readonly byteIds = new Int32Array(256);
  /** codepoints that occur in some token of two or more codepoints; only these can ever be merged */
  private readonly joinable = new Set<number>();
  private start = new Int32Array(0);
  private len = new Int32Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);

  constructor(private readonly vocab: Vocab) {
    for (let b = 0; b < 256; b++) {
      let id = vocab.tokenToId.get(`<0x${HEX[b >> 4]}${HEX[b & 15]}>`);
      if (id === undefined && b < 0x80) id = vocab.tokenToId.get(String.fromCharCode(b));
      this.byteIds[b] = id ?? NULL_ID;
    }
    const { bytes, offsets } = vocab.tokens;
    const add = (cp: number) => { this.joinable.add(cp); };
    for (let i = 0; i < vocab.size; i++) {
      const a = offsets[i], b = offsets[i + 1];
      if (forEachCodePoint(bytes, a, b) >= 2) forEachCodePoint(bytes, a, b, add);
    }
  }

  /** byte_to_token; llama.cpp aborts when neither <0xNN> nor the raw byte is a token, here unk is used if there is one */
  byteToToken(b: number): number {
    const id = this.byteIds[b];
    if (id !== NULL_ID) return id;
    if (this.vocab.unk !== NULL_ID) return this.vocab.unk;
    throw new Error(`SPM vocabulary has no token for byte 0x${HEX[b >> 4]}${HEX[b & 15]} and no unknown token`);
  }

  /**
   * Tokenizes already-escaped text (spaces replaced by U+2581) and appends ids to `out`.
   * llama.cpp runs one merge queue over the whole text; here the text is first cut at characters that
   * occur in no multi-character token (for LLaMA: "\n" and most rare characters). No pair can ever
   * merge across such a character, so the pieces are independent and the result is the same, but the
   * queues stay small.
   */
  tokenize(text: string, out: number[]): void {
    const joinable = this.joinable;
    let segStart = 0;
    for (let i = 0; i < text.length; ) {
      const c = text.codePointAt(i)!;
      const l = c > 0xffff ? 2 : 1;
      if (!joinable.has(c)) {
        if (i > segStart) this.tokenizeSegment(text.slice(segStart, i), out);
        this.emitPiece(text.substr(i, l), out);
        segStart = i + l;
      }
      i += l;
    }
    if (segStart < text.length) this.tokenizeSegment(text.slice(segStart), out);
  }

  private emitPiece(piece: string, out: number[]): void {
    const id = this.vocab.tokenToId.get(piece);
    if (id !== undefined) {
      out.push(id);
    } else {
      const bytes = utf8Encoder.encode(piece);
      for (let j = 0; j < bytes.length; j++) out.push(this.byteToToken(bytes[j]));
    }
  }

  private tokenizeSegment(text: string, out: number[]): void {
    const tokenToId = this.vocab.tokenToId;
    const scores = this.vocab.scores;

    // symbols: one per codepoint, as UTF-16 offset/length into `text`
    if (this.start.length < text.length) {
      const cap = Math.max(text.length, this.start.length * 2);
      this.start = new Int32Array(cap);
      this.len = new Int32Array(cap);
      this.prev = new Int32Array(cap);
      this.next = new Int32Array(cap);
    }
    const { start, len, prev, next } = this;
    let count = 0;
    for (let i = 0; i < text.length; ) {
      const c = text.charCodeAt(i);
      const l = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
      start[count] = i;
      len[count] = l;
      prev[count] = count - 1;
      i += l;
      next[count] = i === text.length ? -1 : count + 1;
      count++;
    }

    const heap = this.heap;
    heap.clear();
    const tryAdd = (left: number, right: number) => {
      if (left === -1 || right === -1) return;
      const size = len[left] + len[right];
      const id = tokenToId.get(text, start[left], start[left] + size);
      if (id === undefined) return;
      heap.push(scores[id], left, right, size);
    };

    for (let i = 1; i < count; i++) tryAdd(i - 1, i);

    while (heap.pop()) {
      const left = heap.popLeft;
      const right = heap.popRight;
      // skip pairs where one side was merged away or has grown since the pair was queued
      if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== heap.popSize) continue;
      len[left] += len[right];
      len[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      tryAdd(prev[left], left);
      tryAdd(left, next[left]);
    }

    // Every merged piece is a vocab token (pairs are only queued when they are), so llama.cpp's
    // resegment() reduces to: the piece's token, or its bytes.
    for (let i = 0; i !== -1; i = next[i]) this.emitPiece(text.substr(start[i], len[i]), out);
  }
}
