// Unicode helpers following llama.cpp's src/unicode.cpp: GPT-2 byte<->unicode table, llama.cpp's character
// classes, and its hand-written GPT-2 / LLaMA-3 pre-tokenizer splitters. Not a regex engine or full UCD.

export const utf8Encoder = new TextEncoder();

/**
 * llama.cpp's `\s` set (unicode_set_whitespace, the Unicode White_Space property).
 * Differs from JS `\s`: includes U+0085, excludes U+FEFF.
 */
export function isWhitespaceCpt(cpt: number): boolean {
  if (cpt <= 0x20) return cpt === 0x20 || (cpt >= 0x09 && cpt <= 0x0d);
  if (cpt < 0x85) return false;
  return (
    cpt === 0x85 || cpt === 0xa0 || cpt === 0x1680 || (cpt >= 0x2000 && cpt <= 0x200a) ||
    cpt === 0x2028 || cpt === 0x2029 || cpt === 0x202f || cpt === 0x205f || cpt === 0x3000
  );
}

const reLetter = /^\p{L}$/u;
const reNumber = /^\p{N}$/u;

// Per-codepoint category cache: bit 1 = letter, bit 2 = number, bit 4 = whitespace.
const FLAG_LETTER = 1;
const FLAG_NUMBER = 2;
const FLAG_SPACE = 4;
const asciiFlags = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  asciiFlags[c] = (reLetter.test(ch) ? FLAG_LETTER : 0) | (reNumber.test(ch) ? FLAG_NUMBER : 0) | (isWhitespaceCpt(c) ? FLAG_SPACE : 0);
}
const flagCache = new Map<number, number>();

/**
 * Inclusive codepoint ranges that are letters or numbers in Unicode 16/17 but were unassigned in
 * Unicode 15.1, the version of llama.cpp's category tables (unicode-data.cpp). JS engines with a newer
 * Unicode classify them as \p{L}/\p{N}; llama.cpp treats them as "other", so we do too. Found by
 * checking every codepoint against llama.cpp (node-llama-cpp 3.21.1): after this correction the
 * letter / number / whitespace classes agree for all of U+0000..U+10FFFF on a Unicode 17 runtime.
 */
const NOT_YET_ASSIGNED = [
  0x88F, 0x88F, 0xC5C, 0xC5C, 0xCDC, 0xCDC, 0x1C89, 0x1C8A, 0xA7CB, 0xA7CF, 0xA7D2, 0xA7D2, 0xA7D4, 0xA7D4,
  0xA7DA, 0xA7DC, 0xA7F1, 0xA7F1, 0x105C0, 0x105F3, 0x10940, 0x10959, 0x10D40, 0x10D65, 0x10D6F, 0x10D85,
  0x10EC2, 0x10EC7, 0x11380, 0x11389, 0x1138B, 0x1138B, 0x1138E, 0x1138E, 0x11390, 0x113B5, 0x113B7, 0x113B7,
  0x113D1, 0x113D1, 0x113D3, 0x113D3, 0x116D0, 0x116E3, 0x11BC0, 0x11BE0, 0x11BF0, 0x11BF9, 0x11DB0, 0x11DDB,
  0x11DE0, 0x11DE9, 0x13460, 0x143FA, 0x16100, 0x1611D, 0x16130, 0x16139, 0x16D40, 0x16D6C, 0x16D70, 0x16D79,
  0x16EA0, 0x16EB8, 0x16EBB, 0x16ED3, 0x16FF2, 0x16FF6, 0x187F8, 0x187FF, 0x18CFF, 0x18CFF, 0x18D09, 0x18D1E,
  0x18D80, 0x18DF2, 0x1CCF0, 0x1CCF9, 0x1E5D0, 0x1E5ED, 0x1E5F0, 0x1E5FA, 0x1E6C0, 0x1E6DE, 0x1E6E0, 0x1E6E2,
  0x1E6E4, 0x1E6E5, 0x1E6E7, 0x1E6ED, 0x1E6F0, 0x1E6F4, 0x1E6FE, 0x1E6FF, 0x2B73A, 0x2B73F, 0x2CEA2, 0x2CEAD,
  0x323B0, 0x33479,
];

function notYetAssigned(cpt: number): boolean {
  for (let i = 0; i < NOT_YET_ASSIGNED.length; i += 2) {
    if (cpt < NOT_YET_ASSIGNED[i]) return false;
    if (cpt <= NOT_YET_ASSIGNED[i + 1]) return true;
  }
  return false;
}

/** Category flags of a codepoint (letter / number / whitespace), as llama.cpp's unicode_cpt_flags. */
export function cptFlags(cpt: number): number {
  if (cpt < 128) return asciiFlags[cpt];
  let f = flagCache.get(cpt);
  if (f === undefined) {
    const ch = String.fromCodePoint(cpt);
    f = notYetAssigned(cpt) ? 0
      : (reLetter.test(ch) ? FLAG_LETTER : 0) | (reNumber.test(ch) ? FLAG_NUMBER : 0) | (isWhitespaceCpt(cpt) ? FLAG_SPACE : 0);
    flagCache.set(cpt, f);
  }
  return f;
}

/** Codepoints of a JS string (lone surrogates become U+FFFD, as TextEncoder / llama.cpp do). */
export function codepoints(text: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out.push(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
        i++;
        continue;
      }
    }
    out.push(c >= 0xd800 && c <= 0xdfff ? 0xfffd : c);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte-level encoding (unicode_byte_to_utf8_map / unicode_utf8_to_byte_map)

/** byte -> the single unicode character that represents it in GPT-2 vocabularies */
export const BYTE_TO_UNICODE: string[] = (() => {
  const map: (string | undefined)[] = new Array(256);
  const direct = (c: number) => (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
  for (let c = 0; c < 256; c++) if (direct(c)) map[c] = String.fromCodePoint(c);
  let n = 0;
  for (let c = 0; c < 256; c++) if (map[c] === undefined) map[c] = String.fromCodePoint(256 + n++);
  return map as string[];
})();

/** codepoint of a GPT-2 byte character -> byte; -1 if the codepoint is not one of the 256 */
export const UNICODE_TO_BYTE: Map<number, number> = (() => {
  const m = new Map<number, number>();
  for (let b = 0; b < 256; b++) m.set(BYTE_TO_UNICODE[b].codePointAt(0)!, b);
  return m;
})();

/** Byte-encode a word as llama.cpp's unicode_byte_encoding_process: each UTF-8 byte -> its GPT-2 character. */
export function byteEncode(word: string): string {
  const bytes = utf8Encoder.encode(word);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_UNICODE[bytes[i]];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer splitters. Each takes the codepoints of a text and returns the lengths
// (in codepoints) of consecutive pieces that cover it, like llama.cpp's bpe_offsets.

const OUT = -1;

/**
 * GPT-2 regex `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
 * as hand-coded in llama.cpp (unicode_regex_split_custom_gpt2), applied to each input piece.
 */
export function splitGpt2(cpts: number[], offsets: number[]): number[] {
  const res: number[] = [];
  let start = 0;
  for (const len of offsets) {
    const ini = start;
    const end = start + len;
    start = end;
    const getCpt = (p: number) => (p >= ini && p < end ? cpts[p] : OUT);
    // -1 = out of range (no flags at all); in range every codepoint has some category in llama.cpp
    const getFlags = (p: number) => (p >= ini && p < end ? cptFlags(cpts[p]) : -1);
    let prevEnd = ini;
    const addToken = (e: number): number => {
      const l = e - prevEnd;
      if (l > 0) res.push(l);
      prevEnd = e;
      return l;
    };
    for (let pos = ini; pos < end; ) {
      const cpt = getCpt(pos);
      const flags = getFlags(pos);
      if (cpt === 0x27 /* ' */ && pos + 1 < end) {
        const n1 = getCpt(pos + 1);
        if (n1 === 0x73 || n1 === 0x74 || n1 === 0x6d || n1 === 0x64) { // s t m d
          pos += addToken(pos + 2);
          continue;
        }
        if (pos + 2 < end) {
          const n2 = getCpt(pos + 2);
          if ((n1 === 0x72 && n2 === 0x65) || (n1 === 0x76 && n2 === 0x65) || (n1 === 0x6c && n2 === 0x6c)) { // re ve ll
            pos += addToken(pos + 3);
            continue;
          }
        }
      }
      let flags2 = cpt === 0x20 ? getFlags(pos + 1) : flags;
      if (flags2 > 0 && flags2 & FLAG_LETTER) { // <space>?\p{L}+
        if (cpt === 0x20) pos++;
        while (flags2 > 0 && flags2 & FLAG_LETTER) flags2 = getFlags(++pos);
        addToken(pos);
        continue;
      }
      if (flags2 > 0 && flags2 & FLAG_NUMBER) { // <space>?\p{N}+
        if (cpt === 0x20) pos++;
        while (flags2 > 0 && flags2 & FLAG_NUMBER) flags2 = getFlags(++pos);
        addToken(pos);
        continue;
      }
      if (flags2 >= 0 && !(flags2 & (FLAG_SPACE | FLAG_LETTER | FLAG_NUMBER))) { // <space>?[^\s\p{L}\p{N}]+
        if (cpt === 0x20) pos++;
        while (flags2 >= 0 && !(flags2 & (FLAG_SPACE | FLAG_LETTER | FLAG_NUMBER))) flags2 = getFlags(++pos);
        addToken(pos);
        continue;
      }
      let nws = 0;
      while (isSpaceAt(getFlags(pos + nws))) nws++;
      if (nws > 1 && getCpt(pos + nws) !== OUT) { // \s+(?!\S)
        pos += nws - 1;
        addToken(pos);
        continue;
      }
      if (nws > 0) { // \s+
        pos += nws;
        addToken(pos);
        continue;
      }
      addToken(++pos); // no match
    }
  }
  return res;
}

function isSpaceAt(flags: number): boolean {
  return flags > 0 && (flags & FLAG_SPACE) !== 0;
}

function asciiLower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 32 : c;
}

/**
 * LLaMA-3 regex `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
 * as hand-coded in llama.cpp (unicode_regex_split_custom_llama3).
 * Case-folding of the contraction letters is ASCII-only here (llama.cpp's unicode_tolower maps no
 * other codepoint to s/t/r/e/v/m/l/d).
 */
export function splitLlama3(cpts: number[], offsets: number[]): number[] {
  return splitLlama3Like(cpts, offsets, 3);
}

/**
 * Qwen2 regex: the LLaMA-3 one with `\p{N}` for `\p{N}{1,3}` (every digit its own piece), as hand-coded in
 * llama.cpp (unicode_regex_split_custom_qwen2).
 */
export function splitQwen2(cpts: number[], offsets: number[]): number[] {
  return splitLlama3Like(cpts, offsets, 1);
}

function splitLlama3Like(cpts: number[], offsets: number[], maxDigits: number): number[] {
  const res: number[] = [];
  let start = 0;
  for (const len of offsets) {
    const ini = start;
    const end = start + len;
    start = end;
    const getCpt = (p: number) => (p >= ini && p < end ? cpts[p] : OUT);
    const getFlags = (p: number) => (p >= ini && p < end ? cptFlags(cpts[p]) : -1);
    const isLetter = (f: number) => f > 0 && (f & FLAG_LETTER) !== 0;
    const isNumber = (f: number) => f > 0 && (f & FLAG_NUMBER) !== 0;
    let prevEnd = ini;
    const addToken = (e: number): number => {
      const l = e - prevEnd;
      if (l > 0) res.push(l);
      prevEnd = e;
      return l;
    };
    for (let pos = ini; pos < end; ) {
      const cpt = getCpt(pos);
      const flags = getFlags(pos);
      if (cpt === 0x27 && pos + 1 < end) {
        const n1 = asciiLower(getCpt(pos + 1));
        if (n1 === 0x73 || n1 === 0x74 || n1 === 0x6d || n1 === 0x64) {
          pos += addToken(pos + 2);
          continue;
        }
        if (pos + 2 < end) {
          const n2 = asciiLower(getCpt(pos + 2));
          if ((n1 === 0x72 && n2 === 0x65) || (n1 === 0x76 && n2 === 0x65) || (n1 === 0x6c && n2 === 0x6c)) {
            pos += addToken(pos + 3);
            continue;
          }
        }
      }
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (!(cpt === 0x0d || cpt === 0x0a || isNumber(flags))) {
        if (isLetter(flags) || isLetter(getFlags(pos + 1))) {
          pos++;
          while (isLetter(getFlags(pos))) pos++;
          addToken(pos);
          continue;
        }
      }
      // \p{N}{1,maxDigits}
      if (isNumber(flags)) {
        let i0 = pos;
        while (isNumber(getFlags(pos))) {
          if (++pos - i0 >= maxDigits) {
            addToken(pos);
            i0 = pos;
          }
        }
        addToken(pos);
        continue;
      }
      // <space>?[^\s\p{L}\p{N}]+[\r\n]*
      let flags2 = cpt === 0x20 ? getFlags(pos + 1) : flags;
      if (flags2 >= 0 && !(flags2 & (FLAG_SPACE | FLAG_LETTER | FLAG_NUMBER)) && flags >= 0) {
        if (cpt === 0x20) pos++;
        while (flags2 >= 0 && !(flags2 & (FLAG_SPACE | FLAG_LETTER | FLAG_NUMBER))) flags2 = getFlags(++pos);
        let c2 = getCpt(pos);
        while (c2 === 0x0d || c2 === 0x0a) c2 = getCpt(++pos);
        addToken(pos);
        continue;
      }
      let nws = 0;
      let lastRN = 0;
      while (isSpaceAt(getFlags(pos + nws))) {
        const c2 = getCpt(pos + nws);
        if (c2 === 0x0d || c2 === 0x0a) lastRN = pos + nws + 1;
        nws++;
      }
      if (lastRN > 0) { // \s*[\r\n]+
        pos = lastRN;
        addToken(pos);
        continue;
      }
      if (nws > 1 && getCpt(pos + nws) !== OUT) { // \s+(?!\S)
        pos += nws - 1;
        addToken(pos);
        continue;
      }
      if (nws > 0) { // \s+
        pos += nws;
        addToken(pos);
        continue;
      }
      addToken(++pos);
    }
  }
  return res;
}

/** Split each piece so that every number codepoint (llama.cpp's `\p{N}`) is a piece of its own. */
export function splitDigits(cpts: number[], offsets: number[]): number[] {
  const res: number[] = [];
  let start = 0;
  for (const len of offsets) {
    const end = start + len;
    let gap = start;
    for (let p = start; p < end; p++) {
      if ((cptFlags(cpts[p]) & FLAG_NUMBER) === 0) continue;
      if (p > gap) res.push(p - gap);
      res.push(1);
      gap = p + 1;
    }
    if (end > gap) res.push(end - gap);
    start = end;
  }
  return res;
}

/** Split each piece into maximal runs of numbers (`\p{N}+`) and the gaps between them, using llama.cpp's categories. */
export function splitNumberRuns(cpts: number[], offsets: number[]): number[] {
  const res: number[] = [];
  let start = 0;
  for (const len of offsets) {
    const end = start + len;
    let runStart = start;
    let inRun = len > 0 && (cptFlags(cpts[start]) & FLAG_NUMBER) !== 0;
    for (let p = start + 1; p <= end; p++) {
      const num = p < end && (cptFlags(cpts[p]) & FLAG_NUMBER) !== 0;
      if (p === end || num !== inRun) {
        if (p > runStart) res.push(p - runStart);
        runStart = p;
        inRun = num;
      }
    }
    start = end;
  }
  return res;
}

/**
 * Split each piece by a JS regex the way llama.cpp's std::regex fallback does: every match and every
 * gap between matches becomes its own piece. The regex must have the `g` and `u` flags.
 */
export function splitRegex(cpts: number[], offsets: number[], re: RegExp): number[] {
  const res: number[] = [];
  let start = 0;
  for (const len of offsets) {
    const piece = cpts.slice(start, start + len);
    const str = fromCodepoints(piece);
    // map UTF-16 index -> codepoint index
    const cpIndex = new Int32Array(str.length + 1);
    {
      let u = 0;
      for (let i = 0; i < piece.length; i++) {
        cpIndex[u] = i;
        u += piece[i] > 0xffff ? 2 : 1;
        if (piece[i] > 0xffff) cpIndex[u - 1] = i + 1;
      }
      cpIndex[u] = piece.length;
    }
    let last = 0;
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(str)) !== null) {
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      const ms = cpIndex[m.index];
      const me = cpIndex[m.index + m[0].length];
      if (ms > last) res.push(ms - last);
      res.push(me - ms);
      last = me;
    }
    if (last < len) res.push(len - last);
    start += len;
  }
  return res;
}

/** String from codepoints, in chunks so that huge inputs do not overflow the argument stack. */
export function fromCodepoints(a: ArrayLike<number>, from = 0, to = a.length): string {
  let s = "";
  const CH = 4096;
  for (let i = from; i < to; i += CH) {
    const n = Math.min(CH, to - i);
    const part = new Array<number>(n);
    for (let j = 0; j < n; j++) part[j] = a[i + j];
    s += String.fromCodePoint(...part);
  }
  return s;
}
