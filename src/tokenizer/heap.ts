// Binary heap of symbol-pair candidates for the SPM and BPE merge loops: larger `prio` first, then smaller
// `left` (llama.cpp's llm_bigram_spm / llm_bigram_bpe comparators). Not a general-purpose queue.

export class PairHeap {
  private prio: Float64Array;
  private left: Int32Array;
  private right: Int32Array;
  private size_: Int32Array;
  private n = 0;

  // the most recently popped entry
  popPrio = 0;
  popLeft = 0;
  popRight = 0;
  popSize = 0;

  constructor(capacity = 64) {
    this.prio = new Float64Array(capacity);
    this.left = new Int32Array(capacity);
    this.right = new Int32Array(capacity);
    this.size_ = new Int32Array(capacity);
  }

  get length(): number {
    return this.n;
  }

  clear(): void {
    this.n = 0;
  }

  private grow(): void {
    const cap = this.prio.length * 2;
    const p = new Float64Array(cap); p.set(this.prio); this.prio = p;
    const l = new Int32Array(cap); l.set(this.left); this.left = l;
    const r = new Int32Array(cap); r.set(this.right); this.right = r;
    const s = new Int32Array(cap); s.set(this.size_); this.size_ = s;
  }

  /** true if entry i should be popped before entry j */
  private before(i: number, j: number): boolean {
    const pi = this.prio[i], pj = this.prio[j];
    return pi > pj || (pi === pj && this.left[i] < this.left[j]);
  }

  private swap(i: number, j: number): void {
    let t = this.prio[i]; this.prio[i] = this.prio[j]; this.prio[j] = t;
    t = this.left[i]; this.left[i] = this.left[j]; this.left[j] = t;
    t = this.right[i]; this.right[i] = this.right[j]; this.right[j] = t;
    t = this.size_[i]; this.size_[i] = this.size_[j]; this.size_[j] = t;
  }

  push(prio: number, left: number, right: number, size: number): void {
    if (this.n === this.prio.length) this.grow();
    let i = this.n++;
    this.prio[i] = prio; this.left[i] = left; this.right[i] = right; this.size_[i] = size;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** removes the top entry into popPrio/popLeft/popRight/popSize; returns false when empty */
  pop(): boolean {
    if (this.n === 0) return false;
    this.popPrio = this.prio[0]; this.popLeft = this.left[0]; this.popRight = this.right[0]; this.popSize = this.size_[0];
    const last = --this.n;
    if (last > 0) {
      this.prio[0] = this.prio[last]; this.left[0] = this.left[last]; this.right[0] = this.right[last]; this.size_[0] = this.size_[last];
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= last) break;
        const r = l + 1;
        const c = r < last && this.before(r, l) ? r : l;
        if (!this.before(c, i)) break;
        this.swap(c, i);
        i = c;
      }
    }
    return true;
  }
}
