// Byte-level BPE as llama.cpp's llm_tokenizer_bpe_session: pre-tokenize by `tokenizer.ggml.pre`, map bytes
// to GPT-2's byte characters, merge the lowest-ranked adjacent pair (ties: leftmost) until none is left.
// Not the special-token or BOS handling around it: see index.ts.
import { metaStringArray } from "../gguf/metadata.js";
import type { GgufKv } from "../gguf/types.js";
import { PairHeap } from "./heap.js";
import { normalizeStrings, TextIndex } from "./table.js";
import { preTokenizer, type Splitter } from "./pre.js";
import { byteEncode, codepoints, fromCodepoints, utf8Encoder } from "./unicode.js";
import { KEY, Vocab } from "./vocab.js";

const CACHE_LIMIT = 200_000;

export class BpeTokenizer {
  /** merge "left right" -> rank (first occurrence wins, as llama.cpp's emplace) */
  private readonly ranks: TextIndex;
  private readonly splitters: Splitter[];
  private readonly heap = new PairHeap(64);
  private readonly cache = new Map<string, number[]>();

  constructor(private readonly vocab: Vocab, kv: Map<string, GgufKv>) {
    if (!kv.has(KEY.merges)) throw new Error(`GGUF metadata key "${KEY.merges}" is missing (required for tokenizer model "gpt2")`);
    // rank = index of the merge "left right"; a merge with no space after its first character is stored by
    // llama.cpp as ("", ""), which no lookup of two non-empty pieces can hit, so it is left out
    const merges = normalizeStrings(metaStringArray(kv, KEY.merges));
    const { bytes, offsets } = merges;
    this.ranks = new TextIndex(merges, {
      skip: (i) => {
        for (let j = offsets[i] + 1; j < offsets[i + 1]; j++) if (bytes[j] === 0x20) return false;
        return true;
      },
    });
    const pre = preTokenizer(vocab.pre);
    if (!pre) throw new Error(`unsupported pre-tokenizer "${vocab.pre}" in GGUF key "${KEY.pre}"`);
    this.splitters = pre.split;
  }

  /** Tokenizes raw text (one fragment between special tokens) and appends ids to `out`. */
  tokenize(text: string, out: number[]): void {
    if (text.length === 0) return;
    const cpts = codepoints(text);
    let offsets = [cpts.length];
    for (const split of this.splitters) offsets = split(cpts, offsets);
    let s = 0;
    for (const n of offsets) {
      const word = fromCodepoints(cpts, s, s + n);
      s += n;
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.tokenizeWord(byteEncode(word));
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
  }

  /** BPE merges over one byte-encoded word (every character is one UTF-16 unit: U+0021..U+0143) */
  private tokenizeWord(word: string): number[] {
    const vocab = this.vocab;
    const out: number[] = [];
    if (vocab.ignoreMerges) {
      const id = vocab.tokenToId.get(word);
      if (id !== undefined) return [id];
    }
    const n = word.length;
    const len = new Int32Array(n).fill(1);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 === n ? -1 : i + 1;
    }
    const heap = this.heap;
    heap.clear();
    const ranks = this.ranks;
    const tryAdd = (left: number, right: number) => {
      if (left === -1 || right === -1) return;
      const rank = ranks.get(word.substr(left, len[left]) + " " + word.substr(right, len[right]));
      if (rank === undefined) return;
      heap.push(-rank, left, right, len[left] + len[right]);
    };
    for (let i = 1; i < n; i++) tryAdd(i - 1, i);
    while (heap.pop()) {
      const left = heap.popLeft;
      const right = heap.popRight;
      if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== heap.popSize) continue; // outdated pair
      len[left] += len[right];
      len[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      tryAdd(prev[left], left);
      tryAdd(left, next[left]);
    }
    for (let i = 0; i !== -1; i = next[i]) {
      const piece = word.substr(i, len[i]);
      const id = vocab.tokenToId.get(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // llama.cpp falls back to one token per UTF-8 byte of the (byte-encoded) piece, looked up as a
      // one-byte string; bytes that are not a token on their own are dropped.
      const bytes = utf8Encoder.encode(piece);
      for (let j = 0; j < bytes.length; j++) {
        if (bytes[j] >= 0x80) continue; // a lone byte >= 0x80 is not a valid vocab string
        const b = vocab.tokenToId.get(String.fromCharCode(bytes[j]));
        if (b !== undefined) out.push(b);
      }
    }
    return out;
  }
}
