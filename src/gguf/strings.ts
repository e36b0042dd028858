// A GGUF array of strings kept as its UTF-8 bytes: one buffer plus n+1 offsets, decoded to a JS string only when
// an item is asked for. The reader returns string arrays this way so that a vocabulary (32000 to 250000 tokens,
// and as many BPE merges) costs a few hundred KiB of typed arrays instead of one heap string each, whose promotion
// also grows V8's young generation for the rest of the process. Not an index from text to id: see
// tokenizer/table.ts.

// ignoreBOM: an item may be exactly U+FEFF, which a default decoder would silently drop
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

export class GgufStringArray implements Iterable<string> {
  /** Item i is bytes[offsets[i], offsets[i + 1]); offsets starts at 0 and never decreases. */
  constructor(readonly bytes: Uint8Array, readonly offsets: Uint32Array) {
    const n = offsets.length - 1;
    if (n < 0 || offsets[0] !== 0 || offsets[n] > bytes.length) {
      throw new Error(`GgufStringArray: offsets must start at 0 and end within the ${bytes.length} bytes`);
    }
  }

  /** Encodes JS strings (as the writer and synthetic vocabularies have them). */
  static from(strings: Iterable<string>): GgufStringArray {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const s of strings) {
      const b = encoder.encode(s);
      parts.push(b);
      total += b.length;
    }
    const bytes = new Uint8Array(total);
    const offsets = new Uint32Array(parts.length + 1);
    let o = 0;
    for (let i = 0; i < parts.length; i++) {
      bytes.set(parts[i], o);
      o += parts[i].length;
      offsets[i + 1] = o;
    }
    return new GgufStringArray(bytes, offsets);
  }

  get length(): number {
    return this.offsets.length - 1;
  }

  private check(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.offsets.length - 1)) {
      throw new RangeError(`string array index ${i} is out of range (length ${this.offsets.length - 1})`);
    }
  }

  /** Item i decoded as UTF-8 (invalid sequences become U+FFFD, as the reader's strings always did). */
  get(i: number): string {
    this.check(i);
    return decoder.decode(this.bytes.subarray(this.offsets[i], this.offsets[i + 1]));
  }

  /** Item i's UTF-8 bytes: a view into the shared buffer, not to be modified. */
  bytesOf(i: number): Uint8Array {
    this.check(i);
    return this.bytes.subarray(this.offsets[i], this.offsets[i + 1]);
  }

  byteLength(i: number): number {
    this.check(i);
    return this.offsets[i + 1] - this.offsets[i];
  }

  *[Symbol.iterator](): Iterator<string> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }

  toArray(): string[] {
    return Array.from(this);
  }
}
