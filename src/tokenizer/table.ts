// Text -> id lookup over a GgufStringArray (UTF-8 bytes + offsets): an open-addressing hash table in one
// Int32Array instead of a Map keyed by one JS string per token (or BPE merge). A lookup takes a JS string, or a
// slice of one, hashes and compares it against the stored UTF-8 on the fly and allocates nothing. Also the
// normalisation that makes stored bytes and decoded strings agree. Not the vocabulary's attributes: vocab.ts.
import { GgufStringArray } from "../gguf/strings.js";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Whether bytes[a, b) is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): exactly
 * the sequences TextDecoder maps to themselves, so decoding then encoding gives the same bytes back.
 */
export function isWellFormedUtf8(bytes: Uint8Array, a: number, b: number): boolean {
  let i = a;
  while (i < b) {
    const c = bytes[i];
    if (c < 0x80) { i++; continue; }
    let n: number, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) { n = 2; if (c === 0xe0) lo = 0xa0; else if (c === 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; if (c === 0xf0) lo = 0x90; else if (c === 0xf4) hi = 0x8f; }
    else return false;
    if (i + n >= b) return false; // truncated: the sequence needs bytes i .. i+n
    const c1 = bytes[i + 1];
    if (c1 < lo || c1 > hi) return false;
    for (let k = 2; k <= n; k++) if ((bytes[i + k] & 0xc0) !== 0x80) return false;
    i += n + 1;
  }
  return true;
}

/**
 * The strings as JS would see them after decoding: items that are not well-formed UTF-8 are re-encoded from their
 * decoded text (U+FFFD for each bad sequence), and `rename` may replace items (e.g. empty tokens). Returns the
 * same array when nothing changes, which is the usual case.
 */
export function normalizeStrings(strings: GgufStringArray, rename?: (i: number, bytes: Uint8Array) => string | undefined): GgufStringArray {
  const { bytes, offsets } = strings;
  const n = strings.length;
  let changed: Map<number, string> | undefined;
  for (let i = 0; i < n; i++) {
    const a = offsets[i], b = offsets[i + 1];
    const r = rename?.(i, bytes.subarray(a, b));
    if (r !== undefined) (changed ??= new Map()).set(i, r);
    else if (!isWellFormedUtf8(bytes, a, b)) (changed ??= new Map()).set(i, strings.get(i));
  }
  if (!changed) return strings;
  const c = changed;
  return GgufStringArray.from({ *[Symbol.iterator]() { for (let i = 0; i < n; i++) yield c.get(i) ?? strings.get(i); } });
}

/** id by text for a GgufStringArray; item i gets id i. */
export class TextIndex {
  private readonly slots: Int32Array; // id + 1; 0 = empty
  private readonly mask: number;
  private readonly bytes: Uint8Array;
  private readonly offsets: Uint32Array;

  /**
   * `strings` should be normalizeStrings() output (lookups are by decoded text). On a repeated text the first id
   * wins, or `onDuplicate(firstId, id)` may throw; `skip(i)` leaves item i out.
   */
  constructor(readonly strings: GgufStringArray, opts: { onDuplicate?: (first: number, id: number) => void; skip?: (i: number) => boolean } = {}) {
    const n = strings.length;
    let size = 16;
    while (size < n * 2) size *= 2; // load factor at most 1/2
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    this.bytes = strings.bytes;
    this.offsets = strings.offsets;
    for (let i = 0; i < n; i++) {
      if (opts.skip?.(i)) continue;
      const a = this.offsets[i], b = this.offsets[i + 1];
      let h = FNV_OFFSET;
      for (let j = a; j < b; j++) h = Math.imul(h ^ this.bytes[j], FNV_PRIME);
      for (let s = h & this.mask; ; s = (s + 1) & this.mask) {
        const cur = this.slots[s];
        if (cur === 0) { this.slots[s] = i + 1; break; }
        if (this.sameItems(cur - 1, i)) { opts.onDuplicate?.(cur - 1, i); break; }
      }
    }
  }

  private sameItems(x: number, y: number): boolean {
    const o = this.offsets, a = o[x], la = o[x + 1] - a, b = o[y];
    if (o[y + 1] - b !== la) return false;
    for (let k = 0; k < la; k++) if (this.bytes[a + k] !== this.bytes[b + k]) return false;
    return true;
  }

  /** The id of the text s.slice(start, end), as a Map<string, number> keyed by the decoded texts would give. */
  get(s: string, start = 0, end = s.length): number | undefined {
    // hash the UTF-8 encoding of the slice, code point by code point
    let h = FNV_OFFSET;
    let nBytes = 0;
    for (let i = start; i < end; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) { h = Math.imul(h ^ c, FNV_PRIME); nBytes++; continue; }
      if (c >= 0xd800 && c <= 0xdfff) {
        // a lone surrogate is in no decoded text
        if (c > 0xdbff || i + 1 >= end) return undefined;
        const d = s.charCodeAt(i + 1);
        if ((d & 0xfc00) !== 0xdc00) return undefined;
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
        nBytes += 4;
      } else if (c < 0x800) {
        h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
        nBytes += 2;
      } else {
        h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
        nBytes += 3;
      }
    }
    for (let slot = h & this.mask; ; slot = (slot + 1) & this.mask) {
      const cur = this.slots[slot];
      if (cur === 0) return undefined;
      const id = cur - 1;
      if (this.offsets[id + 1] - this.offsets[id] === nBytes && this.equals(id, s, start, end)) return id;
    }
  }

  has(s: string): boolean {
    return this.get(s) !== undefined;
  }

  /** item id's bytes == UTF-8 of s.slice(start, end) (same byte count already checked; no lone surrogates) */
  private equals(id: number, s: string, start: number, end: number): boolean {
    const bytes = this.bytes;
    let p = this.offsets[id];
    for (let i = start; i < end; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) { if (bytes[p++] !== c) return false; continue; }
      if (c >= 0xd800 && c <= 0xdbff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
        if (bytes[p++] !== (0xf0 | (c >> 18)) || bytes[p++] !== (0x80 | ((c >> 12) & 0x3f))) return false;
      } else if (c >= 0x800) {
        if (bytes[p++] !== (0xe0 | (c >> 12))) return false;
      } else {
        if (bytes[p++] !== (0xc0 | (c >> 6))) return false;
        if (bytes[p++] !== (0x80 | (c & 0x3f))) return false;
        continue;
      }
      if (bytes[p++] !== (0x80 | ((c >> 6) & 0x3f)) || bytes[p++] !== (0x80 | (c & 0x3f))) return false;
    }
    return true;
  }
}

/** Calls f with each code point of well-formed UTF-8 bytes[a, b); returns how many there were. */
export function forEachCodePoint(bytes: Uint8Array, a: number, b: number, f?: (cp: number) => void): number {
  let n = 0;
  for (let i = a; i < b; n++) {
    const c = bytes[i];
    let cp: number;
    if (c < 0x80) { cp = c; i += 1; }
    else if (c < 0xe0) { cp = ((c & 0x1f) << 6) | (bytes[i + 1] & 0x3f); i += 2; }
    else if (c < 0xf0) { cp = ((c & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f); i += 3; }
    else { cp = ((c & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f); i += 4; }
    f?.(cp);
  }
  return n;
}
