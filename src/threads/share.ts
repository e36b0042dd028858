// The work-splitting rule the main thread and the workers share: a job written into the control block is cut
// into chunks that threads claim one at a time with a compare-and-swap on a counter tagged with the job's
// generation, so a thread that wakes late (descheduled by another process, or parked) finds nothing left or
// claims real work, never a stale job. Portable (no Node built-ins). Not the dispatcher (pool.ts) nor the worker
// loop (worker.ts).
import type { Kernels } from "../wasm.js";

/** Int32 slots of the control block (a SharedArrayBuffer of CONTROL_INTS int32). */
export const C = {
  /** job generation: bumped by the main thread once a job is written */
  gen: 0,
  /** next chunk to claim: (generation & 0x7fff) << 16 | chunk index */
  next: 1,
  /** chunks finished in the current job */
  done: 2,
  /** workers parked in Atomics.wait (the main thread notifies only when some are) */
  parked: 3,
  /** 1: workers exit */
  stop: 4,
  /** workers that have instantiated the kernels and entered their loop */
  ready: 5,
  /** set when a chunk threw */
  error: 6,
  /** job: op, chunk count, then its arguments */
  op: 8,
  chunks: 9,
  args: 10,
} as const;
export const CONTROL_INTS = 32;

export const OP = { matmul: 1, attention: 2, gptqRank1: 3, gptqBlock: 4 } as const;

/** the rows of chunk `chunk` when `rows` rows are cut into runs of `size` */
function rowRun(chunk: number, size: number, rows: number): [number, number] {
  const r0 = chunk * size;
  return [r0, Math.min(rows, r0 + size)];
}

/** Matmul kernels a job can name, by index (the index is what crosses to the workers). */
export const MATMUL_KERNELS = [
  "matmul_f32", "matmul_f16", "matmul_bf16", "matmul_q8_0", "matmul_q4_0", "matmul_q4_1", "matmul_q5_0", "matmul_q4_K", "matmul_q6_K",
  "matmul_q4_0_mm", "matmul_q8_0_mm", "matmul_q4_K_mm", "matmul_q6_K_mm",
] as const;
export type MatmulKernelName = (typeof MATMUL_KERNELS)[number];

/** a matmul kernel; ldo (f32s between tokens' output rows) is read by the prefill kernels only (formats.ts MatmulKernel) */
type MatmulFn = (out: number, x: number, w: number, n: number, d: number, t: number, ldo: number) => void;

/** the counter value that opens a job of generation `gen` at chunk 0 */
export function firstTicket(gen: number): number {
  return (gen & 0x7fff) << 16;
}

/**
 * How a matmul is cut: with few tokens (or groups of tokenGroup), into runs of `size` weight rows (a multiple of
 * 4: a matvec kernel cuts its rows into 4 or 8 equal runs and does the few left over one by one); with many, into
 * runs of `size` tokens (whole groups), each streaming the whole matrix with its activations hot.
 */
export function matmulChunks(d: number, t: number, threads: number, tokenGroup = 1): { byRows: boolean; size: number; count: number } {
  if (splitsByRows(Math.ceil(t / tokenGroup), threads)) {
    // two chunks per thread: each chunk starts the kernel's streams afresh, and the hardware prefetcher has to
    // ramp up on every one (TinyLlama-shape Q4_0 decode at 2 threads, tok/s: 31.3 with 8 chunks per thread, 32.8
    // with 4, 36.3 with 2, 35.4 with 1); two still let a thread that starts late be covered by the others
    const size = Math.max(4, Math.ceil(d / (2 * threads) / 4) * 4);
    return { byRows: true, size, count: Math.ceil(d / size) };
  }
  // runs of whole token groups when the activations are laid out in groups (formats.ts tokenGroup)
  const size = Math.ceil(Math.max(1, Math.ceil(t / (2 * threads))) / tokenGroup) * tokenGroup;
  return { byRows: false, size, count: Math.ceil(t / size) };
}

/**
 * true when matmulChunks cuts a matmul of t tokens (or groups of tokens) by rows: a run of rows then takes every
 * token in one call of a prefill kernel, or one token per call of a matrix-vector kernel
 */
export function splitsByRows(t: number, threads: number): boolean {
  return t < 2 * threads;
}

const bitsView = new DataView(new ArrayBuffer(4));
/** an f32's bits as an int32, to pass an f32 argument through the control block */
export function f32Bits(v: number): number {
  bitsView.setFloat32(0, v, true);
  return bitsView.getInt32(0, true);
}
/** the f32 whose bits an int32 slot holds */
function bitsF32(v: number): number {
  bitsView.setInt32(0, v, true);
  return bitsView.getFloat32(0, true);
}

function runChunk(k: Kernels, c: Int32Array, index: number, chunk: number): void {
  const a = C.args;
  if (c[C.op] === OP.matmul) {
    const fn = k[MATMUL_KERNELS[c[a]]] as MatmulFn;
    const out = c[a + 1], x = c[a + 2], w = c[a + 3], n = c[a + 4], d = c[a + 5], t = c[a + 6];
    const wRow = c[a + 7], xRow = c[a + 8], byRows = c[a + 9], size = c[a + 10], prefill = c[a + 11];
    if (byRows) {
      // a prefill kernel writes its rows of every token's output (ldo = d), reading each weight row once
      const d0 = chunk * size, d1 = Math.min(d, d0 + size);
      if (t === 1 || prefill) fn(out + d0 * 4, x, w + d0 * wRow, n, d1 - d0, t, d);
      else for (let j = 0; j < t; j++) fn(out + (j * d + d0) * 4, x + j * xRow, w + d0 * wRow, n, d1 - d0, 1, d);
    } else {
      const j0 = chunk * size, j1 = Math.min(t, j0 + size);
      fn(out + j0 * d * 4, x + j0 * xRow, w, n, d, j1 - j0, d);
    }
  } else if (c[C.op] === OP.attention) {
    // one kv head (and its query heads) per chunk; each thread has its own stretch of scores scratch
    k.attention_kv(c[a], c[a + 1], c[a + 2], c[a + 3], c[a + 4] + index * c[a + 5],
      c[a + 6], c[a + 7], c[a + 8], c[a + 9], c[a + 10], chunk, chunk + 1, bitsF32(c[a + 11]), c[a + 12], bitsF32(c[a + 13]), c[a + 14], c[a + 15]);
  } else if (c[C.op] === OP.gptqRank1) {
    // rows of W are independent in both GPTQ updates: a run of rows is the same arithmetic as in the whole call
    const w = c[a], e = c[a + 1], hrow = c[a + 2], rows = c[a + 3], n = c[a + 4], c0 = c[a + 5], c1 = c[a + 6];
    const [r0, r1] = rowRun(chunk, c[a + 7], rows);
    k.gptq_rank1_update(w + r0 * n * 4, e + r0 * 4, hrow, r1 - r0, n, c0, c1);
  } else if (c[C.op] === OP.gptqBlock) {
    const w = c[a], err = c[a + 1], hinv = c[a + 2], rows = c[a + 3], n = c[a + 4], i1 = c[a + 5], i2 = c[a + 6];
    const [r0, r1] = rowRun(chunk, c[a + 7], rows);
    k.gptq_block_update(w + r0 * n * 4, err + r0 * (i2 - i1) * 4, hinv, r1 - r0, n, i1, i2);
  } else {
    throw new Error(`thread job: unknown op ${c[C.op]}`);
  }
}

/** Claims and runs chunks of job `gen` until none is left (or a newer job has started). */
export function runChunks(k: Kernels, c: Int32Array, index: number, gen: number): void {
  const tag = gen & 0x7fff;
  const count = c[C.chunks];
  for (;;) {
    const v = Atomics.load(c, C.next);
    if (v >>> 16 !== tag || (v & 0xffff) >= count) return;
    if (Atomics.compareExchange(c, C.next, v, v + 1) !== v) continue;
    try {
      runChunk(k, c, index, v & 0xffff);
    } catch {
      Atomics.store(c, C.error, 1);
    }
    Atomics.add(c, C.done, 1);
  }
}
