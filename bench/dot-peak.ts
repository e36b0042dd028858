// The machine's peak for the integer dot instructions the prefill kernels are built on, measured with a tight loop
// of that one instruction (a hand-assembled wasm module, not the kernels): i32x4.dot_i16x8_s (SIMD128, 8 MACs) and
// i16x8.relaxed_dot_i8x16_i7x16_s (relaxed, 16 MACs). Twelve independent chains hide the latency. Bench only.

/** LEB128 of a non-negative integer */
function leb(n: number): number[] {
  const out: number[] = [];
  do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n);
  return out;
}

export const CHAINS = 12, UNROLL = 4;

/** a module exporting run(iters) -> i32 that executes CHAINS·UNROLL·iters of the instruction `op` (0xfd-prefixed) */
function dotModule(op: number): Uint8Array<ArrayBuffer> {
  const c = CHAINS; // locals 1..c accumulators, c+1 the constant operand
  const body: number[] = [0x01, c + 1, 0x7b];
  body.push(0xfd, 0x0c, ...new Array(16).fill(3), 0x21, c + 1);
  for (let k = 1; k <= c; k++) body.push(0xfd, 0x0c, ...new Array(16).fill(k), 0x21, k);
  body.push(0x02, 0x40, 0x03, 0x40, 0x20, 0x00, 0x45, 0x0d, 0x01);
  for (let u = 0; u < UNROLL; u++) for (let k = 1; k <= c; k++) body.push(0x20, k, 0x20, c + 1, 0xfd, ...leb(op), 0x21, k);
  body.push(0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00, 0x0c, 0x00, 0x0b, 0x0b);
  body.push(0x20, 1);
  for (let k = 2; k <= c; k++) body.push(0x20, k, 0xfd, 0x51);
  body.push(0xfd, 0x1b, 0x00, 0x0b); // i32x4.extract_lane 0: a v128 cannot cross to JS
  const fn = [...leb(body.length), ...body];
  const name = [...new TextEncoder().encode("run")];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f,            // type: (i32) -> i32
    0x03, 0x02, 0x01, 0x00,                                    // one function
    0x07, 2 + name.length + 2, 0x01, name.length, ...name, 0x00, 0x00, // export "run"
    0x0a, ...leb(fn.length + 1), 0x01, ...fn]);
}

export const DOT_OPS = {
  /** i32x4.dot_i16x8_s: 8 multiply-adds */
  simd128: { name: "i32x4.dot_i16x8_s", op: 0xba, macs: 8 },
  /** i16x8.relaxed_dot_i8x16_i7x16_s: 16 multiply-adds */
  relaxed: { name: "i16x8.relaxed_dot_i8x16_i7x16_s", op: 0x112, macs: 16 },
} as const;

/**
 * GOPS (2 per multiply-add, the unit of the kernels' GFLOP/s) of a tight loop of the build's dot instruction:
 * the best of `rounds` timed runs of `iters` iterations (a peak, so the best, not the median).
 */
export function dotPeakGops(build: "simd128" | "relaxed", iters = 200_000, rounds = 41): number {
  const d = DOT_OPS[build];
  const inst = new WebAssembly.Instance(new WebAssembly.Module(dotModule(d.op)));
  const run = inst.exports.run as (n: number) => unknown;
  run(iters >> 4); run(iters >> 4); // tier up
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    run(iters);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * d.macs * CHAINS * UNROLL * iters) / (best * 1e6);
}
