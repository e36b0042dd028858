// Every wasm kernel against its scalar twin in src/kernels/reference.ts, on odd sizes and seeded inputs, for the
// SIMD128 build; the last test re-runs this file on the relaxed-SIMD build in a child Node with
// --experimental-wasm-relaxed-simd (EDGEPRUNE_SIMD=relaxed). Tolerances come from test/tolerances.ts.
// Not a model test: no GGUF, no layers.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { WasmRuntime, attentionScratch, convertActivations, hasRelaxedSimd } from "../src/wasm.js";
import * as R from "../src/kernels/reference.js";
import * as ref from "../src/quant/ref.js";
import { FORMATS, activationFormat, formatByName, prefillActivationFormat, rowBytes } from "../src/quant/formats.js";
import { rng, normal, uniform, assertClose, maxAbs } from "./support/util.js";
import * as TOL from "./tolerances.js";
import { matvecStreamsFor } from "../src/node/cpu.js";

const BUILD = process.env.EDGEPRUNE_SIMD === "relaxed" ? "relaxed" : "simd128";
const rt = WasmRuntime.create({ simd: BUILD });
const k = rt.k;
console.log(`    kernel build: ${BUILD}`);

type Bytes = Float32Array | Uint8Array | Uint16Array | Int8Array;

/** copies a typed array into fresh wasm memory and returns its offset */
function put(a: Bytes): number {
  const p = rt.alloc(Math.max(a.byteLength, 16));
  rt.u8.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), p);
  return p;
}
const f32Out = (n: number) => rt.alloc(Math.max(4 * n, 16));
const readF32 = (p: number, n: number) => rt.f32At(p, n).slice();
const readU8 = (p: number, n: number) => rt.u8At(p, n).slice();
const readU16 = (p: number, n: number) => new Uint16Array(rt.u8At(p, 2 * n).slice().buffer);

/** runs body with a scratch mark, releasing everything it allocated */
function scoped(body: () => void): void {
  const m = rt.mark();
  try { body(); } finally { rt.release(m); }
}

const F32_SIZES = [1, 3, 31, 33, 69];
const TOKENS = [1, 3, 7];
const BLOCK_SIZES = [32, 64, 96, 160];

test("matmul_f32 matches the reference", () => {
  const rand = rng(1);
  for (const n of F32_SIZES) for (const d of [1, 5, 33]) for (const t of TOKENS) scoped(() => {
    const x = normal(rand, n * t), w = normal(rand, n * d);
    const out = f32Out(d * t);
    k.matmul_f32(out, put(x), put(w), n, d, t);
    const e = new Float32Array(d * t);
    R.matmul_f32(e, x, w, n, d, t);
    assertClose(readF32(out, d * t), e, TOL.kernelTol("matmul_f32"), `matmul_f32 n=${n} d=${d} t=${t}`);
  });
});

test("convert_f16 / convert_bf16 give the reference bits, specials included", () => {
  const rand = rng(2);
  const specials = [0, -0, 1, -2, 65504, 65519.99, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14,
    2 ** -14 - 2 ** -25, 1e-10, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, Infinity, -Infinity, NaN,
    3.4e38, 1.1754942e-38, 1e-45];
  const bits = new Uint32Array(4096);
  for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(rand() * 2 ** 32);
  const random = new Float32Array(bits.buffer);
  for (const src of [Float32Array.from(specials), random, normal(rand, 69), uniform(rand, 33, 1e-5)]) scoped(() => {
    const n = src.length;
    const x = put(src);
    for (const [name, fn, r] of [["convert_f16", k.convert_f16, R.convert_f16], ["convert_bf16", k.convert_bf16, R.convert_bf16]] as const) {
      const out = rt.alloc(2 * n + 16);
      fn(out, x, n);
      const e = new Uint16Array(n);
      r(e, src, n);
      const got = readU16(out, n);
      for (let i = 0; i < n; i++) {
        if (got[i] !== e[i]) assert.unreachable(`${name}(${src[i]}) = 0x${got[i].toString(16)}, want 0x${e[i].toString(16)}`);
      }
    }
  });
});

test("matmul_f16 and matmul_bf16 match the reference on the same bytes", () => {
  const rand = rng(3);
  for (const n of [...F32_SIZES, 256]) for (const d of [1, 5, 33]) for (const t of TOKENS) scoped(() => {
    const xf = normal(rand, n * t), wf = normal(rand, n * d, 0.1);
    for (const [name, conv, mm, r] of [
      ["f16", R.convert_f16, k.matmul_f16, R.matmul_f16],
      ["bf16", R.convert_bf16, k.matmul_bf16, R.matmul_bf16],
    ] as const) {
      const x = new Uint16Array(n * t), w = new Uint16Array(n * d);
      conv(x, xf, n * t); conv(w, wf, n * d);
      const out = f32Out(d * t);
      mm(out, put(x), put(w), n, d, t);
      const e = new Float32Array(d * t);
      r(e, x, w, n, d, t);
      assertClose(readF32(out, d * t), e, TOL.kernelTol(`matmul_${name}` as keyof typeof TOL.KERNEL), `matmul_${name} n=${n} d=${d} t=${t}`);
    }
  });
});

test("f16 Inf and NaN stay Inf and NaN through matmul_f16 and an F16 KV cache (as ggml's table keeps them)", () => {
  for (const n of [8, 33]) scoped(() => {
    const d = 3, x = new Uint16Array(n).fill(0x3c00); // 1.0
    const w = new Uint16Array(n * d).fill(0x3c00);
    w[1] = 0x7c00; // +Inf in row 0
    w[n + 2] = 0x7e00; // NaN in row 1
    w[2 * n + 5] = 0xfc00; // -Inf in row 2
    const out = f32Out(d);
    k.matmul_f16(out, put(x), put(w), n, d, 1);
    const got = readF32(out, d);
    assert.is(got[0], Infinity, `n=${n}: +Inf weight`);
    assert.ok(Number.isNaN(got[1]), `n=${n}: NaN weight gives ${got[1]}`);
    assert.is(got[2], -Infinity, `n=${n}: -Inf weight`);
  });
  scoped(() => {
    // one head of 8, two cached positions; the second key holds a NaN: attention over an F16 cache is NaN
    const headSize = 8, kc = new Uint16Array(2 * headSize).fill(0x3c00), vc = new Uint16Array(2 * headSize).fill(0x3c00);
    kc[headSize + 3] = 0x7e00;
    const q = new Uint16Array(headSize).fill(0x3c00);
    const out = f32Out(headSize), sp = rt.alloc(attentionScratch(1, 1, 2));
    const F16 = formatByName("F16")!.ggmlType;
    k.attention_kv(out, put(q), put(kc), put(vc), sp, 1, 1, headSize, 1, 1, 0, 1, 1 / Math.sqrt(headSize), 0, 0, F16, F16);
    assert.ok(readF32(out, headSize).every(Number.isNaN), `attention over a NaN key: ${readF32(out, headSize)}`);
  });
});

/** a vector with exact .5 ties after scaling: amax = 127 makes id = 1, so 2.5 and -3.5 are ties */
function tieBlock(rand: () => number, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = i % 32 === 0 ? 127 : Math.round(rand() * 200 - 100) + (rand() < 0.5 ? 0.5 : 0);
  return x;
}

test("quantize_q8_0 / quantize_q8_1: bytes equal to the x86-path reference, within 1 unit of ggml _ref", () => {
  const rand = rng(4);
  for (const n of [...BLOCK_SIZES, 4096]) for (const t of TOKENS) for (const kind of ["normal", "ties", "zeros"]) scoped(() => {
    const src = kind === "normal" ? normal(rand, n * t) : kind === "ties" ? tieBlock(rand, n * t) : new Float32Array(n * t);
    const x = put(src);
    for (const [name, bs, qsOff, kern, r, gg] of [
      ["q8_0", 34, 2, k.quantize_q8_0, R.quantize_q8_0, ref.quantizeQ8_0],
      ["q8_1", 36, 4, k.quantize_q8_1, R.quantize_q8_1, ref.quantizeQ8_1],
    ] as const) {
      const bytes = (n / 32) * bs * t;
      const out = rt.alloc(bytes);
      kern(out, x, n, t);
      const got = readU8(out, bytes);
      const e = new Uint8Array(bytes);
      r(e, src, n, t);
      for (let i = 0; i < bytes; i++) {
        if (got[i] !== e[i]) assert.unreachable(`quantize_${name} n=${n} t=${t} ${kind}: byte ${i} = ${got[i]}, want ${e[i]}`);
      }
      const g = new Uint8Array(bytes);
      gg(src, g);
      const gv = new DataView(g.buffer), kv = new DataView(got.buffer);
      let ties = 0;
      for (let b = 0; b < bytes / bs; b++) {
        assert.is(kv.getUint16(b * bs, true), gv.getUint16(b * bs, true), `quantize_${name}: d of block ${b}`);
        for (let j = 0; j < 32; j++) {
          const diff = Math.abs(kv.getInt8(b * bs + qsOff + j) - gv.getInt8(b * bs + qsOff + j));
          if (diff > TOL.Q8_TIE_UNITS) assert.unreachable(`quantize_${name}: block ${b} q[${j}] differs by ${diff} from ggml _ref`);
          if (diff) ties++;
        }
      }
      if (kind === "ties") assert.ok(ties > 0, "the tie input should exercise half-even vs half-away rounding");
      if (kind === "normal") assert.ok(ties < (n * t) / 100, `${ties} differences from ggml _ref on random input`);
    }
  });
});

for (const [name, fmt] of [["quantize_q8_0x", "Q8_0X"], ["quantize_q8_0w", "Q8_0W"]] as const) {
  test(`${name}: the int8 and scales of quantize_q8_0, laid out as ${fmt} rows, with each block's sum`, () => {
    const rand = rng(14);
    const f = formatByName(fmt)!;
    for (const n of [...BLOCK_SIZES, 4096]) for (const t of TOKENS) for (const kind of ["normal", "ties", "zeros"]) scoped(() => {
      const src = kind === "normal" ? normal(rand, n * t) : kind === "ties" ? tieBlock(rand, n * t) : new Float32Array(n * t);
      const bytes = rowBytes(f, n) * t;
      const out = rt.alloc(bytes);
      k[name](out, put(src), n, t);
      const got = readU8(out, bytes);
      const e = new Uint8Array(bytes);
      R[name](e, src, n, t);
      for (let i = 0; i < bytes; i++) {
        if (got[i] !== e[i]) assert.unreachable(`${name} n=${n} t=${t} ${kind}: byte ${i} = ${got[i]}, want ${e[i]}`);
      }
    });
  });
}

test("quantize_q8_0t: the int8, scales and sums of quantize_q8_0x, laid out as Q8_0T groups of four tokens (a short last group zero)", () => {
  const rand = rng(22);
  for (const n of [...BLOCK_SIZES, 4096]) for (const t of [1, 3, 4, 5, 8, 13]) for (const kind of ["normal", "ties", "zeros"]) scoped(() => {
    const src = kind === "normal" ? normal(rand, n * t) : kind === "ties" ? tieBlock(rand, n * t) : new Float32Array(n * t);
    const bytes = Math.ceil(t / 4) * 4 * rowBytes(formatByName("Q8_0T")!, n);
    const out = rt.alloc(bytes);
    rt.u8.fill(0x5a, out, out + bytes); // the short group's padding must be written, not left
    k.quantize_q8_0t(out, put(src), n, t);
    const got = readU8(out, bytes);
    const e = new Uint8Array(bytes);
    R.quantize_q8_0t(e, src, n, t);
    for (let i = 0; i < bytes; i++) {
      if (got[i] !== e[i]) assert.unreachable(`quantize_q8_0t n=${n} t=${t} ${kind}: byte ${i} = ${got[i]}, want ${e[i]}`);
    }
  });
});

// the SIMD128 build's widened layouts hold the numbers of the layouts they are made from
for (const [from, to, sizes] of [["Q8_0X", "Q8_0W", [32, 96, 4096]], ["Q8_K", "Q8_KW", [256, 1024]]] as const) {
  test(`${to} holds ${from}'s numbers: both dequantize to the same floats`, () => {
    const rand = rng(to === "Q8_0W" ? 16 : 17);
    const a = formatByName(from)!, b = formatByName(to)!;
    for (const n of sizes) {
      const src = normal(rand, n);
      const x = new Uint8Array(rowBytes(a, n)), w = new Uint8Array(rowBytes(b, n));
      a.quantize!(src, x);
      b.quantize!(src, w);
      const fa = new Float32Array(n), fb = new Float32Array(n);
      a.dequantize!(x, fa);
      b.dequantize!(w, fb);
      for (let i = 0; i < n; i++) if (fa[i] !== fb[i]) assert.unreachable(`${to} n=${n} element ${i}: ${fa[i]} vs ${fb[i]}`);
    }
  });
}

/**
 * The activations of weights `fmt` as this build's kernel takes them: xq (the reference's layout, made from xf)
 * itself, or the same numbers in the SIMD128 build's own layout (Q8_0W for Q4_0, Q8_KW for Q4_K).
 */
function buildLayout(fmt: string, xf: Float32Array, n: number, t: number, xq: Uint8Array): Uint8Array {
  const own = activationFormat(formatByName(fmt)!, BUILD)!;
  const quantize = own === "Q8_0W" ? R.quantize_q8_0w : own === "Q8_KW" ? R.quantize_q8_kw : undefined;
  if (!quantize) return xq;
  const kx = new Uint8Array(rowBytes(formatByName(own)!, n) * t);
  quantize(kx, xf, n, t);
  return kx;
}

/** the activations of weights `fmt` as this build's prefill kernel takes them (formats.ts prefillActivationFormat) */
function buildPrefillLayout(fmt: string, xf: Float32Array, n: number, t: number, xq: Uint8Array): Uint8Array {
  const own = prefillActivationFormat(formatByName(fmt)!, BUILD)!;
  if (own !== "Q8_0T") return buildLayout(fmt, xf, n, t, xq);
  const kx = new Uint8Array(Math.ceil(t / 4) * 4 * rowBytes(formatByName(own)!, n));
  R.quantize_q8_0t(kx, xf, n, t);
  return kx;
}

/** quantized weights made by the reference quantizer (so every d is a sane f16) */
function quantWeights(rand: () => number, fmt: string, n: number, d: number, std = 0.05): Uint8Array {
  const f = FORMATS.find((x) => x.name === fmt)!;
  const rb = rowBytes(f, n);
  const w = new Uint8Array(rb * d);
  const src = normal(rand, n * d, std);
  for (let i = 0; i < d; i++) f.quantize!(src.subarray(i * n, (i + 1) * n), w.subarray(i * rb, (i + 1) * rb));
  return w;
}

for (const [name, fmt, act] of [
  ["matmul_q8_0", "Q8_0", "q8_0x"], ["matmul_q4_0", "Q4_0", "q8_0x"], ["matmul_q4_1", "Q4_1", "q8_1"], ["matmul_q5_0", "Q5_0", "q8_0x"],
] as const) {
  test(`${name} matches the reference on the same bytes`, () => {
    const rand = rng(5);
    const cases: [number, number, number][] = [];
    for (const n of BLOCK_SIZES) for (const d of [1, 5, 17]) for (const t of TOKENS) cases.push([n, d, t]);
    cases.push([4096, 8, 1], [4096, 8, 9], [4096, 4, 64]); // real row length; t = 64 spans two token chunks
    cases.push([5632, 6, 1], [5632, 3, 2]); // below: tiny weights and activations, so some f16 scales are subnormal
    for (const [n, d, t] of cases) scoped(() => {
      const xf = normal(rand, n * t, n === 5632 ? 1e-4 : 1);
      const xBytes = rowBytes(formatByName(act)!, n) * t;
      const xq = new Uint8Array(xBytes);
      (act === "q8_0x" ? R.quantize_q8_0x : R.quantize_q8_1)(xq, xf, n, t);
      const kx = buildLayout(fmt, xf, n, t, xq); // the reference reads xq
      const w = quantWeights(rand, fmt, n, d, n === 5632 ? 2e-4 : 0.05);
      const out = f32Out(d * t);
      (k[name] as (o: number, x: number, w: number, n: number, d: number, t: number) => void)(out, put(kx), put(w), n, d, t);
      const e = new Float32Array(d * t);
      R[name](e, xq, w, n, d, t);
      const tol = TOL.kernelTol(name, maxAbs(e));
      assertClose(readF32(out, d * t), e, tol, `${name} n=${n} d=${d} t=${t}`);
    });
  });
}

for (const [name, base, fmt] of [["matmul_q4_0_mm", "matmul_q4_0", "Q4_0"], ["matmul_q8_0_mm", "matmul_q8_0", "Q8_0"]] as const) {
  test(`${name} (prefill tiles) matches the reference and gives ${base}'s bits, on sizes off every tile`, () => {
    // rows, tokens and blocks that are not multiples of the row tile (common.ts mm_row_tile), the group of four
    // tokens, the four-block step or the token chunk (n = 4128: 50-token chunks, so t = 53 spans two)
    const rand = rng(21);
    const cases: [number, number, number][] = [];
    for (const n of [160, 1056]) for (const d of [1, 5, 37]) for (const t of [4, 5, 7, 13]) cases.push([n, d, t]);
    cases.push([4128, 3, 53], [1056, 67, 9], [32, 7, 6], [96, 2, 1], [96, 2, 3]);
    for (const [n, d, t] of cases) scoped(() => {
      const xf = normal(rand, n * t);
      const xq = new Uint8Array(rowBytes(formatByName("Q8_0X")!, n) * t);
      R.quantize_q8_0x(xq, xf, n, t);
      const kx = put(buildLayout(fmt, xf, n, t, xq));
      const w = put(quantWeights(rand, fmt, n, d));
      const out = f32Out(d * t), want = f32Out(d * t);
      k[name](out, put(buildPrefillLayout(fmt, xf, n, t, xq)), w, n, d, t, d);
      k[base](want, kx, w, n, d, t);
      const e = new Float32Array(d * t);
      R[base](e, xq, rt.u8At(w, rowBytes(formatByName(fmt)!, n) * d).slice(), n, d, t);
      const got = readF32(out, d * t), bits = readF32(want, d * t);
      assertClose(got, e, TOL.kernelTol(base, maxAbs(e)), `${name} n=${n} d=${d} t=${t}`);
      for (let i = 0; i < d * t; i++) {
        if (!Object.is(got[i], bits[i])) assert.unreachable(`${name} n=${n} d=${d} t=${t}: element ${i} = ${got[i]}, ${base} gives ${bits[i]}`);
      }
    });
  });
}

for (const [name, base, fmt] of [["matmul_q4_0_mm", "matmul_q4_0", "Q4_0"], ["matmul_q8_0_mm", "matmul_q8_0", "Q8_0"]] as const) {
  test(`${name} cut into runs of rows (ldo = d, as threads call it): ${base}'s bits for t = 2..9, odd d`, () => {
    // runs of 12 rows and a 1-row tail (share.ts matmulChunks at 2 threads on 37 rows), and runs of 5 (off the
    // four- and eight-row steps); t < 4 is the Q8_0 kernel's (and SIMD128 Q4_0's) matrix-vector fallback
    const rand = rng(22);
    for (const [n, d] of [[160, 37], [1056, 37], [96, 13]]) for (let t = 2; t <= 9; t++) for (const run of [12, 5]) scoped(() => {
      const xf = normal(rand, n * t);
      const xq = new Uint8Array(rowBytes(formatByName("Q8_0X")!, n) * t);
      R.quantize_q8_0x(xq, xf, n, t);
      const kx = put(buildLayout(fmt, xf, n, t, xq)), px = put(buildPrefillLayout(fmt, xf, n, t, xq));
      const w = put(quantWeights(rand, fmt, n, d));
      const wRow = rowBytes(formatByName(fmt)!, n);
      const want = f32Out(d * t), got = f32Out(d * t);
      k[base](want, kx, w, n, d, t);
      rt.f32At(got, d * t).fill(NaN);
      for (let d0 = 0; d0 < d; d0 += run) k[name](got + 4 * d0, px, w + wRow * d0, n, Math.min(run, d - d0), t, d);
      const a = readF32(got, d * t), b = readF32(want, d * t);
      for (let i = 0; i < d * t; i++) {
        if (!Object.is(a[i], b[i])) assert.unreachable(`${name} n=${n} d=${d} t=${t} runs of ${run}: element ${i} (token ${Math.floor(i / d)}, row ${i % d}) = ${a[i]}, ${base} gives ${b[i]}`);
      }
    });
  });

  test(`${name} writes token j's results at out + 4·ldo·j and nothing between them (ldo > d)`, () => {
    // a kernel that ignored ldo would write token j at out + 4·d·j: over the gaps and short of the later rows
    const rand = rng(23);
    const n = 160, d = 7, ldo = 11, SENTINEL = -12345.5;
    for (const t of [2, 3, 4, 5, 9]) scoped(() => {
      const xf = normal(rand, n * t);
      const xq = new Uint8Array(rowBytes(formatByName("Q8_0X")!, n) * t);
      R.quantize_q8_0x(xq, xf, n, t);
      const w = put(quantWeights(rand, fmt, n, d));
      const want = f32Out(d * t), got = f32Out(ldo * t + 1);
      k[base](want, put(buildLayout(fmt, xf, n, t, xq)), w, n, d, t);
      rt.f32At(got, ldo * t + 1).fill(SENTINEL);
      k[name](got, put(buildPrefillLayout(fmt, xf, n, t, xq)), w, n, d, t, ldo);
      const a = readF32(got, ldo * t + 1), b = readF32(want, d * t);
      for (let j = 0; j < t; j++) for (let i = 0; i < ldo; i++) {
        const v = a[j * ldo + i];
        if (i < d && !Object.is(v, b[j * d + i])) assert.unreachable(`${name} t=${t}: token ${j} row ${i} = ${v}, ${base} gives ${b[j * d + i]}`);
        if (i >= d && v !== SENTINEL) assert.unreachable(`${name} t=${t}: the gap after token ${j}'s rows was written (column ${i}: ${v})`);
      }
      assert.is(a[ldo * t], SENTINEL, `${name} t=${t}: wrote past the last token's row`);
    });
  });
}

test("every matmul: a result does not depend on how the matmul is cut into calls (bit for bit)", () => {
  // threads split a matmul by rows or by tokens; int8 activations downstream turn a last-bit difference into a
  // flipped value, so every kernel path must do the same float arithmetic for a (row, token) pair
  const rand = rng(15);
  for (const [name, fmt] of [["matmul_q4_0", "Q4_0"], ["matmul_q8_0", "Q8_0"], ["matmul_f32", "F32"], ["matmul_q4_1", "Q4_1"], ["matmul_q5_0", "Q5_0"],
    ["matmul_q4_K", "Q4_K"], ["matmul_q6_K", "Q6_K"], ["matmul_f16", "F16"], ["matmul_bf16", "BF16"]] as const) {
    for (const n of [96, 512, 1056, 1061]) scoped(() => {
      if (n % formatByName(fmt)!.blockSize !== 0) return;
      // decode paths take 8 rows at a time (quantized: rows i, i + 3, ... i + 21, then 24-26 one by one) or 4 (F32,
      // F16, BF16: rows i, i + 6, i + 12, i + 18); prefill paths four tokens at a time, then single tokens
      const d = 27, t = 9;
      const xf = normal(rand, n * t);
      const act = activationFormat(formatByName(fmt)!, BUILD)!;
      const xRow = rowBytes(formatByName(act)!, n);
      let xq: number;
      if (act === "F32") xq = put(xf);
      else { xq = rt.alloc(xRow * t); convertActivations(k, act, xq, put(xf), n, t); }
      const w = put(fmt === "F32" ? normal(rand, n * d) : quantWeights(rand, fmt, n, d));
      const wRow = rowBytes(formatByName(fmt)!, n);
      const whole = f32Out(d * t), byToken = f32Out(d * t), byRow = f32Out(d * t);
      k[name](whole, xq, w, n, d, t);
      for (let j = 0; j < t; j++) k[name](byToken + 4 * d * j, xq + xRow * j, w, n, d, 1);
      for (let j = 0; j < t; j++) for (let i = 0; i < d; i++) k[name](byRow + 4 * (d * j + i), xq + xRow * j, w + wRow * i, n, 1, 1);
      const a = readF32(whole, d * t), b = readF32(byToken, d * t), c = readF32(byRow, d * t);
      for (let i = 0; i < d * t; i++) {
        if (a[i] !== b[i] || a[i] !== c[i]) assert.unreachable(`${name} n=${n}: element ${i}: ${a[i]} (t=${t}) vs ${b[i]} (t=1) vs ${c[i]} (d=1)`);
      }
    });
  }
});

for (const [name, fmt] of [["quantize_q8_K", "Q8_K"], ["quantize_q8_kw", "Q8_KW"]] as const) {
  test(`${name}: bytes equal to ggml's quantize_row_q8_K_ref (the reference), as ${fmt} blocks`, () => {
    const rand = rng(12);
    for (const n of [256, 512, 2048]) for (const t of TOKENS) for (const kind of ["normal", "ties", "zeros", "negmax"]) scoped(() => {
      const src = kind === "normal" ? normal(rand, n * t) : kind === "ties" ? tieBlock(rand, n * t) : new Float32Array(n * t);
      if (kind === "negmax") { src.set(normal(rand, n * t)); src[3] = -50; src[7] = 50; } // first largest |x| is negative
      const bytes = rowBytes(formatByName(fmt)!, n) * t;
      const out = rt.alloc(bytes);
      k[name](out, put(src), n, t);
      const e = new Uint8Array(bytes);
      R[name](e, src, n, t);
      const got = readU8(out, bytes);
      for (let i = 0; i < bytes; i++) {
        if (got[i] !== e[i]) assert.unreachable(`${name} n=${n} t=${t} ${kind}: byte ${i} = ${got[i]}, want ${e[i]}`);
      }
    });
  });
}

for (const [name, fmt] of [["matmul_q4_K", "Q4_K"], ["matmul_q6_K", "Q6_K"]] as const) {
  test(`${name} matches the reference on the same bytes (Q8_K's numbers)`, () => {
    const rand = rng(13);
    const f = FORMATS.find((x) => x.name === fmt)!;
    const cases: [number, number, number][] = [];
    for (const n of [256, 512, 768]) for (const d of [1, 5, 17]) for (const t of TOKENS) cases.push([n, d, t]);
    cases.push([4096, 8, 1], [4096, 4, 9]);
    for (const [n, d, t] of cases) scoped(() => {
      const xf = normal(rand, n * t);
      const xq = new Uint8Array((n / 256) * 292 * t);
      R.quantize_q8_K(xq, xf, n, t);
      const wf = normal(rand, n * d, 0.05);
      for (let i = 0; i < wf.length; i += 97) wf[i] *= 8; // outliers: uneven scales and mins across sub-blocks
      const w = new Uint8Array((n / 256) * f.typeSize * d);
      f.quantize!(wf, w);
      const kx = buildLayout(fmt, xf, n, t, xq); // the reference reads xq
      const out = f32Out(d * t);
      k[name](out, put(kx), put(w), n, d, t);
      const e = new Float32Array(d * t);
      R[name](e, xq, w, n, d, t);
      const tol = TOL.kernelTol(name, maxAbs(e));
      assertClose(readF32(out, d * t), e, tol, `${name} n=${n} d=${d} t=${t}`);
    });
  });
}

for (const [name, base, fmt] of [["matmul_q4_K_mm", "matmul_q4_K", "Q4_K"], ["matmul_q6_K_mm", "matmul_q6_K", "Q6_K"]] as const) {
  test(`${name} (prefill) gives ${base}'s bits, on sizes off every tile, with ldo = d and ldo > d`, () => {
    // t = 1..9 covers one to two groups of four tokens with every remainder; n = 5632 (22 super-blocks) makes
    // token chunks of 40 (Q8_K) or 20 (Q8_KW) tokens, so t = 45 spans two or three; d = 37 and 67 are off the row
    // tile. Weights with outliers give uneven scales and mins across sub-blocks (as in the test above)
    const rand = rng(29);
    const f = formatByName(fmt)!;
    const act = formatByName(activationFormat(f, BUILD)!)!;
    const cases: [number, number, number][] = [];
    for (const n of [256, 512, 1280]) for (const d of [1, 5, 37]) for (let t = 1; t <= 9; t++) cases.push([n, d, t]);
    cases.push([5632, 3, 45], [2048, 67, 13]);
    for (const [n, d, t] of cases) scoped(() => {
      const xq = rt.alloc(rowBytes(act, n) * t);
      convertActivations(k, act.name, xq, put(normal(rand, n * t)), n, t);
      const wf = normal(rand, n * d, 0.05);
      for (let i = 0; i < wf.length; i += 97) wf[i] *= 8;
      const wb = new Uint8Array(rowBytes(f, n) * d);
      f.quantize!(wf, wb);
      const w = put(wb);
      const want = f32Out(d * t);
      k[base](want, xq, w, n, d, t);
      const bits = readF32(want, d * t);
      for (const ldo of [d, d + 3]) {
        const out = f32Out(ldo * t);
        rt.f32At(out, ldo * t).fill(-7.5); // what the kernel must not touch: the gap after each token's d results
        k[name](out, xq, w, n, d, t, ldo);
        const got = readF32(out, ldo * t);
        for (let j = 0; j < t; j++) for (let i = 0; i < ldo; i++) {
          const g = got[j * ldo + i], e = i < d ? bits[j * d + i] : -7.5;
          if (!Object.is(g, e)) assert.unreachable(`${name} n=${n} d=${d} t=${t} ldo=${ldo}: token ${j} row ${i} = ${g}, want ${e}${i < d ? ` (${base})` : " (untouched)"}`);
        }
      }
    });
  });
}

test("every matrix-vector stream setting (2, 4 or 8 runs per pass) gives the same bits; other values mean 8", () => {
  // the runs per pass depend on the CPU (common.ts mv_streams, src/node/cpu.ts) and live in memory; d = 67 leaves
  // rows past the runs of every setting, and the other tests check the default setting against the reference
  const rand = rng(23);
  const before = k.matvec_streams();
  try {
    for (const [name, fmt, sizes] of [["matmul_q4_0", "Q4_0", [96, 1056]], ["matmul_q8_0", "Q8_0", [96, 1056]],
      ["matmul_q4_K", "Q4_K", [256, 1280]], ["matmul_q6_K", "Q6_K", [256, 1280]]] as const) {
      for (const n of sizes) for (const d of [67, 16]) scoped(() => {
        const act = activationFormat(formatByName(fmt)!, BUILD)!;
        const xq = rt.alloc(rowBytes(formatByName(act)!, n));
        convertActivations(k, act, xq, put(normal(rand, n)), n, 1);
        const w = put(quantWeights(rand, fmt, n, d));
        const outs = [2, 4, 8].map((s) => {
          k.set_matvec_streams(s);
          assert.is(k.matvec_streams(), s);
          const o = f32Out(d);
          k[name](o, xq, w, n, d, 1);
          return readF32(o, d);
        });
        for (let i = 0; i < d; i++) {
          if (!Object.is(outs[0][i], outs[2][i]) || !Object.is(outs[1][i], outs[2][i])) {
            assert.unreachable(`${name} n=${n} d=${d}: row ${i}: ${outs[0][i]} (2 runs), ${outs[1][i]} (4), ${outs[2][i]} (8)`);
          }
        }
      });
    }
    for (const s of [0, 1, 3, 16]) { k.set_matvec_streams(s); assert.is(k.matvec_streams(), 8, `setting ${s}`); }
    assert.is(matvecStreamsFor("AMD EPYC"), 2);
    assert.is(matvecStreamsFor("AMD Ryzen 9 7950X 16-Core Processor"), 2);
    assert.is(matvecStreamsFor("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"), 8);
    assert.is(matvecStreamsFor(""), 8);
  } finally {
    k.set_matvec_streams(before);
  }
});

/**
 * matmul_q4_K / matmul_q6_K's float arithmetic, lane by lane, on Q8_K activations xq: per super-block four exact
 * i32 lane sums (lane l of Q4_K: sub-blocks l and 4 + l with their scales, and their mins' terms from the bsums;
 * of Q6_K: the 16-value sub-blocks 8h + 2l + l0/16 of the four (h, l0) groups, and the -32 offset, its lane l
 * Σ scale·bsum over sub-blocks 2l, 2l + 1, 8 + 2l, 9 + 2l), made f32 per lane in the kernels' order, added over
 * super-blocks per lane, then (l0 + l1) + (l2 + l3). Any kernel rewrite that keeps this keeps the bits.
 */
function kquantLanes(fmt: "Q4_K" | "Q6_K", xq: Uint8Array, w: Uint8Array, n: number, d: number, t: number): Float32Array {
  const f = Math.fround, nb = n / 256, wb = fmt === "Q4_K" ? 144 : 210;
  const xv = new DataView(xq.buffer, xq.byteOffset, xq.byteLength), wv = new DataView(w.buffer, w.byteOffset, w.byteLength);
  const out = new Float32Array(d * t);
  for (let j = 0; j < t; j++) for (let i = 0; i < d; i++) {
    const acc = [0, 0, 0, 0];
    for (let b = 0; b < nb; b++) {
      const xo = (j * nb + b) * 292, wo = (i * nb + b) * wb;
      const xs = (e: number) => xv.getInt8(xo + 4 + e), bs = (g: number) => xv.getInt16(xo + 260 + 2 * g, true);
      const dx = xv.getFloat32(xo, true);
      for (let l = 0; l < 4; l++) {
        let v: number;
        if (fmt === "Q4_K") {
          const q = (k: number) => w[wo + 4 + k];
          const sc = (s: number) => s < 4 ? q(s) & 63 : (q(s + 4) & 15) | ((q(s - 4) >> 6) << 4);
          const mn = (s: number) => s < 4 ? q(s + 4) & 63 : (q(s + 4) >> 4) | ((q(s) >> 6) << 4);
          let isum = 0, msum = 0;
          for (const s of [l, 4 + l]) {
            let dot = 0;
            for (let e = 0; e < 32; e++) dot += ((w[wo + 16 + 32 * (s >> 1) + e] >> (4 * (s & 1))) & 15) * xs(32 * s + e);
            isum += sc(s) * dot;
            msum += mn(s) * (bs(2 * s) + bs(2 * s + 1));
          }
          const dd = f(ref.f16ToF32(wv.getUint16(wo, true)) * dx), dm = f(ref.f16ToF32(wv.getUint16(wo + 2, true)) * dx);
          v = f(f(isum * dd) - f(msum * dm));
        } else {
          const sc = (s: number) => wv.getInt8(wo + 192 + s);
          let isum = 0;
          for (const h of [0, 1]) for (const l0 of [0, 16]) {
            let dot = 0;
            for (let e = l0; e < l0 + 16; e++) {
              const lo = (w[wo + 64 * h + 32 * (l & 1) + e] >> (4 * (l >> 1))) & 15, hi = (w[wo + 128 + 32 * h + e] >> (2 * l)) & 3;
              dot += (lo | (hi << 4)) * xs(128 * h + 32 * l + e);
            }
            isum += sc(8 * h + 2 * l + l0 / 16) * dot;
          }
          let off = 0;
          for (const s of [2 * l, 2 * l + 1, 8 + 2 * l, 9 + 2 * l]) off += sc(s) * bs(s);
          v = f(f(isum - 32 * off) * f(ref.f16ToF32(wv.getUint16(wo + 208, true)) * dx));
        }
        acc[l] = f(acc[l] + v);
      }
    }
    out[j * d + i] = f(f(acc[0] + acc[1]) + f(acc[2] + acc[3]));
  }
  return out;
}

for (const [name, fmt] of [["matmul_q4_K", "Q4_K"], ["matmul_q6_K", "Q6_K"]] as const) {
  test(`${name}: every stream setting's bits are kquantLanes's (the kernels' per-lane float order)`, () => {
    // the prefill kernels (matmul_k_mm.ts) must give these bits too; d = 27 leaves rows past every setting's runs,
    // t = 3 takes the token path; outliers make scales and mins differ across sub-blocks
    const rand = rng(31);
    const f = formatByName(fmt)!;
    const before = k.matvec_streams();
    try {
      for (const n of [256, 768]) for (const [d, t] of [[27, 1], [5, 3]]) scoped(() => {
        const xf = normal(rand, n * t);
        const xq = new Uint8Array((n / 256) * 292 * t);
        R.quantize_q8_K(xq, xf, n, t);
        const wf = normal(rand, n * d, 0.05);
        for (let i = 0; i < wf.length; i += 89) wf[i] *= 8;
        const w = new Uint8Array(rowBytes(f, n) * d);
        for (let i = 0; i < d; i++) f.quantize!(wf.subarray(i * n, (i + 1) * n), w.subarray(i * rowBytes(f, n), (i + 1) * rowBytes(f, n)));
        const want = kquantLanes(fmt, xq, w, n, d, t);
        const kx = put(buildLayout(fmt, xf, n, t, xq)), kw = put(w);
        for (const s of t === 1 ? [2, 4, 8] : [8]) {
          k.set_matvec_streams(s);
          const out = f32Out(d * t);
          k[name](out, kx, kw, n, d, t);
          const got = readF32(out, d * t);
          for (let i = 0; i < d * t; i++) {
            if (!Object.is(got[i], want[i])) assert.unreachable(`${name} n=${n} d=${d} t=${t} streams ${s}: element ${i} = ${got[i]}, the lane model gives ${want[i]}`);
          }
        }
      });
    } finally {
      k.set_matvec_streams(before);
    }
  });
}

test("rmsnorm matches the reference (also in place)", () => {
  const rand = rng(6);
  for (const n of F32_SIZES) for (const t of TOKENS) scoped(() => {
    const x = normal(rand, n * t, 3), w = normal(rand, n);
    const e = new Float32Array(n * t);
    R.rmsnorm(e, x, w, n, 1e-5, t);
    const out = f32Out(n * t);
    const xp = put(x);
    k.rmsnorm(out, xp, put(w), n, 1e-5, t);
    assertClose(readF32(out, n * t), e, TOL.kernelTol("rmsnorm"), `rmsnorm n=${n} t=${t}`);
    k.rmsnorm(xp, xp, put(w), n, 1e-5, t);
    assertClose(readF32(xp, n * t), e, TOL.kernelTol("rmsnorm"), `rmsnorm in place n=${n} t=${t}`);
  });
});

test("rope_norm / rope_neox match the reference", () => {
  const rand = rng(7);
  for (const [nHeads, headSize, ropeDim] of [[1, 2, 2], [3, 6, 6], [3, 64, 64], [4, 64, 32], [2, 128, 128]])
    for (const t of TOKENS) for (const pos0 of [0, 5, 100]) for (const base of [10000, 500000]) scoped(() => {
      const x = normal(rand, nHeads * headSize * t);
      for (const [name, fn, r] of [["rope_norm", k.rope_norm, R.rope_norm], ["rope_neox", k.rope_neox, R.rope_neox]] as const) {
        const p = put(x);
        fn(p, nHeads, headSize, ropeDim, pos0, base, t);
        const e = x.slice();
        r(e, nHeads, headSize, ropeDim, pos0, base, t);
        assertClose(readF32(p, x.length), e, TOL.kernelTol("rope"), `${name} heads=${nHeads} hs=${headSize} rd=${ropeDim} pos0=${pos0} t=${t}`);
      }
    });
});

test("rope_ext (frequency factors, linear scaling, YaRN, attention factor; norm and neox, partial rotary) matches the reference", () => {
  const rand = rng(71);
  const cases: [number, number, number, boolean][] = [[1, 2, 2, false], [3, 6, 6, true], [3, 64, 64, false], [4, 64, 32, true], [2, 96, 72, true], [2, 128, 128, false]];
  for (const [nHeads, headSize, ropeDim, neox] of cases) for (const t of TOKENS) for (const pos0 of [0, 17, 300]) scoped(() => {
    const x = normal(rand, nHeads * headSize * t);
    const factors = Float32Array.from({ length: ropeDim / 2 }, () => 1 + 7 * rand());
    const variants: [string, R.RopeOptions][] = [
      ["plain", {}],
      ["factors", { factors }],
      ["linear 1/4", { freqScale: 0.25 }],
      ["yarn x4", { freqScale: 0.25, extFactor: 1, attnFactor: 0.9, corrLow: 3, corrHigh: Math.max(4, ropeDim / 2 - 3) }],
      ["longrope", { factors, attnFactor: 1.19 }],
    ];
    for (const [label, o] of variants) {
      const p = put(x);
      const fp = o.factors ? put(o.factors) : 0;
      k.rope_ext(p, nHeads, headSize, ropeDim, pos0, t, neox ? 1 : 0, 10000, o.freqScale ?? 1, o.extFactor ?? 0, o.attnFactor ?? 1, o.corrLow ?? 0, o.corrHigh ?? 0, fp);
      const e = x.slice();
      R.rope_ext(e, nHeads, headSize, ropeDim, pos0, t, neox, 10000, o);
      assertClose(readF32(p, x.length), e, TOL.kernelTol("rope_ext"), `rope_ext ${label} ${neox ? "neox" : "norm"} heads=${nHeads} hs=${headSize} rd=${ropeDim} pos0=${pos0} t=${t}`);
      if (label === "plain") {
        // the plain call is rope_norm / rope_neox bit for bit (stories260K's numbers must not move)
        const q = put(x);
        (neox ? k.rope_neox : k.rope_norm)(q, nHeads, headSize, ropeDim, pos0, 10000, t);
        assert.equal(readF32(q, x.length), readF32(p, x.length), `rope_ext plain = rope_${neox ? "neox" : "norm"}`);
      }
    }
  });
});

test("glu (SwiGLU and GeGLU through ggml's f16 GELU table; separate and fused rows), scale, add_rows, softcap match the reference", () => {
  const rand = rng(72);
  for (const n of F32_SIZES) for (const t of TOKENS) scoped(() => {
    const fused = normal(rand, 2 * n * t, 4);
    fused.set([-12, -10, -9.99, 10, 10.5, 0, -0].slice(0, Math.min(7, n)), 0); // the table's edges
    const up = normal(rand, n * t);
    for (const gelu of [0, 1]) {
      // separate gate and up (stride n)
      const out = f32Out(n * t), e = new Float32Array(n * t);
      const gate = fused.subarray(0, n * t);
      k.glu(out, put(gate), put(up), n, t, n, gelu);
      R.glu(e, gate, up, n, t, n, gelu === 1);
      // GELU goes through f16: the reference evaluates gelu in float64, so the table entry may be one f16 step off
      const tol = gelu ? TOL.GELU_TABLE : TOL.kernelTol("glu_silu");
      assertClose(readF32(out, n * t), e, tol, `glu gelu=${gelu} n=${n} t=${t}`);
      // fused rows [gate | up] of 2n (Phi-3's ffn_up)
      const fp = put(fused);
      const out2 = f32Out(n * t), e2 = new Float32Array(n * t);
      k.glu(out2, fp, fp + 4 * n, n, t, 2 * n, gelu);
      R.glu(e2, fused, fused.subarray(n), n, t, 2 * n, gelu === 1);
      assertClose(readF32(out2, n * t), e2, tol, `glu fused gelu=${gelu} n=${n} t=${t}`);
    }
    const x = normal(rand, n * t, 30), b = normal(rand, n);
    const xp = put(x);
    k.add_rows(xp, put(b), n, t);
    const e3 = x.slice();
    R.add_rows(e3, b, n, t);
    assertClose(readF32(xp, n * t), e3, TOL.kernelTol("add_rows"), `add_rows n=${n} t=${t}`);
    const sp = put(x), so = f32Out(n * t), e4 = new Float32Array(n * t);
    k.scale(so, sp, 33.94, n * t);
    R.scale(e4, x, 33.94, n * t);
    assertClose(readF32(so, n * t), e4, TOL.kernelTol("scale"), `scale n=${n * t}`);
    const cp = put(x), e5 = x.slice();
    k.softcap(cp, 30, n * t);
    R.softcap(e5, 30, n * t);
    assertClose(readF32(cp, n * t), e5, TOL.kernelTol("softcap"), `softcap n=${n * t}`);
  });
});

test("softmax, swiglu, add, argmax, sum_f32 match the reference", () => {
  const rand = rng(8);
  for (const n of [...F32_SIZES, 32000]) scoped(() => {
    const a = normal(rand, n, 4), b = normal(rand, n);
    if (n === 32000) a.set([-200, 200, -90, 90, -1e-7, 60, -60], 100); // silu's exp over- and underflow
    const p = put(a);
    k.softmax(p, n);
    const e = a.slice();
    R.softmax(e, n);
    assertClose(readF32(p, n), e, TOL.kernelTol("softmax"), `softmax n=${n}`);

    const out = f32Out(n), e2 = new Float32Array(n);
    k.swiglu(out, put(a), put(b), n);
    R.swiglu(e2, a, b, n);
    assertClose(readF32(out, n), e2, TOL.kernelTol("swiglu"), `swiglu n=${n}`);

    k.add(out, put(a), put(b), n);
    R.add(e2, a, b, n);
    assertClose(readF32(out, n), e2, TOL.kernelTol("add"), `add n=${n}`);

    assert.is(k.argmax(put(a), n), R.argmax(a, n), `argmax n=${n}`);
    assertClose([k.sum_f32(put(b), n)], [R.sum_f32(b, n)], TOL.kernelTol("sum_f32", Math.sqrt(n)), `sum_f32 n=${n}`);
  });
  scoped(() => {
    const ties = Float32Array.from([1, 5, 2, 5, 5]);
    assert.is(k.argmax(put(ties), 5), 1, "argmax returns the first maximum");
  });
});

test("attention matches the reference (causal, grouped-query), also split by kv-head ranges", () => {
  const rand = rng(9);
  const shapes: [number, number, number, number, number][] = [];
  for (const [nHeads, nKvHeads] of [[1, 1], [4, 4], [4, 2], [6, 1]]) for (const headSize of [1, 3, 31, 33, 69])
    for (const [pos0, t] of [[0, 1], [0, 3], [5, 1], [9, 7]]) shapes.push([nHeads, nKvHeads, headSize, pos0, t]);
  // the shapes the fast paths are for: small heads, long windows, groups of 2 and 8, 16/8/4-wide chunks
  shapes.push([8, 8, 8, 0, 37], [8, 4, 8, 250, 6], [32, 4, 64, 130, 3], [4, 2, 24, 61, 2], [2, 1, 128, 17, 5], [8, 8, 8, 1000, 1]);
  for (const [nHeads, nKvHeads, headSize, pos0, t] of shapes) scoped(() => {
    const kvDim = nKvHeads * headSize, np = pos0 + t;
    const q = normal(rand, t * nHeads * headSize), kc = normal(rand, np * kvDim), vc = normal(rand, np * kvDim);
    const out = f32Out(t * nHeads * headSize);
    const qp = put(q), kp = put(kc), vp = put(vc), sp = rt.alloc(attentionScratch(nHeads, nKvHeads, np));
    k.attention(out, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t);
    const e = new Float32Array(t * nHeads * headSize);
    R.attention(e, q, kc, vc, nHeads, nKvHeads, headSize, pos0, t);
    const label = `attention h=${nHeads}/${nKvHeads} hs=${headSize} pos0=${pos0} t=${t}`;
    assertClose(readF32(out, e.length), e, TOL.kernelTol("attention"), label);
    if (nKvHeads > 1) {
      const out2 = f32Out(t * nHeads * headSize);
      const mid = nKvHeads >> 1;
      k.attention_range(out2, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t, 0, mid);
      k.attention_range(out2, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t, mid, nKvHeads);
      assert.equal(readF32(out2, e.length), readF32(out, e.length), `${label}: two kv-head ranges equal one call`);
    }
  });
});

test("attention_kv over F32 caches: a given scale, sliding windows and soft-capping match the reference; the defaults are attention()", () => {
  const rand = rng(73);
  const shapes: [number, number, number, number, number][] = [
    [1, 1, 3, 0, 7], [4, 2, 31, 9, 7], [6, 1, 33, 40, 3], [8, 4, 8, 250, 6], [2, 1, 69, 17, 5], [4, 4, 16, 0, 37],
  ];
  for (const [nHeads, nKvHeads, headSize, pos0, t] of shapes) for (const [scale, window, cap] of [[0.0625, 0, 0], [0.125, 4, 0], [0.2, 1, 0], [1, 0, 50], [0.3, 9, 5], [1 / Math.sqrt(headSize), 0, 0]]) scoped(() => {
    const kvDim = nKvHeads * headSize, np = pos0 + t;
    const q = normal(rand, t * nHeads * headSize, 2), kc = normal(rand, np * kvDim, 2), vc = normal(rand, np * kvDim);
    const out = f32Out(t * nHeads * headSize);
    const qp = put(q), kp = put(kc), vp = put(vc), sp = rt.alloc(attentionScratch(nHeads, nKvHeads, np));
    k.attention_kv(out, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t, 0, nKvHeads, scale, window, cap, 0, 0);
    const e = new Float32Array(t * nHeads * headSize);
    R.attention(e, q, kc, vc, nHeads, nKvHeads, headSize, pos0, t, { scale, window, softcap: cap });
    const label = `attention_kv_f32 h=${nHeads}/${nKvHeads} hs=${headSize} pos0=${pos0} t=${t} scale=${scale} window=${window} cap=${cap}`;
    assertClose(readF32(out, e.length), e, TOL.kernelTol("attention_kv_f32"), label);
    if (window === 0 && cap === 0 && scale === 1 / Math.sqrt(headSize)) {
      const out2 = f32Out(e.length);
      k.attention(out2, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t);
      assertClose(readF32(out2, e.length), readF32(out, e.length), { atol: 0, rtol: 1e-7 }, `${label}: attention() is attention_kv with F32 caches and 1/sqrt(headSize)`);
    }
  });
});

test("attention_kv: f16 and q8_0 K and V caches (every pairing) match the reference; split by kv heads", () => {
  const rand = rng(74);
  const TYPES: [R.KvType, number][] = [["F32", 0], ["F16", 1], ["Q8_0", 8]];
  // odd head counts, positions and windows; q8_0 needs whole blocks per head (32, 64, 96)
  const shapes: [number, number, number, number, number][] = [
    [1, 1, 32, 0, 1], [3, 1, 32, 6, 5], [4, 2, 64, 37, 3], [6, 3, 96, 9, 7], [8, 4, 32, 130, 2],
  ];
  const oddF16: [number, number, number, number, number][] = [[1, 1, 3, 0, 7], [4, 2, 31, 9, 7], [6, 1, 33, 40, 3], [8, 4, 8, 250, 6], [2, 1, 69, 17, 5]];
  let heads = 0, flipped = 0;
  for (const [kt, kid] of TYPES) for (const [vt, vid] of TYPES) {
    const all = kt === "Q8_0" || vt === "Q8_0" ? shapes : [...shapes, ...oddF16];
    for (const [nHeads, nKvHeads, headSize, pos0, t] of all) for (const [scale, window, cap] of [[1 / Math.sqrt(headSize), 0, 0], [0.3, 9, 5]]) scoped(() => {
      const kvDim = nKvHeads * headSize, qDim = nHeads * headSize, np = pos0 + t;
      const q = normal(rand, t * qDim, 2), kf = normal(rand, np * kvDim, 2), vf = normal(rand, np * kvDim);
      const kc = R.toKv(kt, kf), vc = R.toKv(vt, vf);
      // q in K's type, converted by the kernels the forward pass uses (their bytes are tested against the reference above)
      const qf = put(q);
      let qp = qf;
      if (kt === "F16") { qp = rt.alloc(2 * t * qDim); k.convert_f16(qp, qf, t * qDim); }
      if (kt === "Q8_0") { qp = rt.alloc(R.kvBytes("Q8_0", t * qDim)); k.quantize_q8_0(qp, qf, qDim, t); }
      const kp = put(kc), vp = put(vc), sp = rt.alloc(attentionScratch(nHeads, nKvHeads, np));
      const out = f32Out(t * qDim);
      k.attention_kv(out, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t, 0, nKvHeads, scale, window, cap, kid, vid);
      const e = new Float32Array(t * qDim);
      R.attention_kv(e, q, kc, vc, kt, vt, nHeads, nKvHeads, headSize, pos0, t, { scale, window, softcap: cap });
      const label = `attention_kv K=${kt} V=${vt} h=${nHeads}/${nKvHeads} hs=${headSize} pos0=${pos0} t=${t} scale=${scale.toFixed(3)} window=${window} cap=${cap}`;
      const got = readF32(out, e.length);
      if (vt !== "F16") assertClose(got, e, TOL.kernelTol("attention_kv"), label);
      else {
        // an F16 V weighs it by the softmax rounded to f16: where our f32 softmax and the float64 one straddle an
        // f16 rounding midpoint (a few f32 ulp apart), one weight moves by an f16 ulp (<= 2^-11) in that head
        heads += t * nHeads;
        for (let h = 0; h < t * nHeads; h++) {
          const a = got.subarray(h * headSize, (h + 1) * headSize), b = e.subarray(h * headSize, (h + 1) * headSize);
          const d = maxAbs(a.map((x, i) => x - b[i]));
          if (d <= TOL.KERNEL.attention_kv.tol * (1 + maxAbs(b))) continue;
          flipped++;
          assert.ok(d <= 2 ** -11 * maxAbs(vf), `${label}: head row ${h} is ${d} away, more than one f16 step of one weight`);
        }
      }
      if (nKvHeads > 1) {
        const out2 = f32Out(e.length), mid = nKvHeads >> 1;
        k.attention_kv(out2, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t, 0, mid, scale, window, cap, kid, vid);
        k.attention_kv(out2, qp, kp, vp, sp, nHeads, nKvHeads, headSize, pos0, t, mid, nKvHeads, scale, window, cap, kid, vid);
        assert.equal(readF32(out2, e.length), readF32(out, e.length), `${label}: two kv-head ranges equal one call`);
      }
    });
  }
  console.log(`    attention_kv, F16 V: ${flipped} of ${heads} head rows off by an f16 step of a weight`);
  assert.ok(flipped <= TOL.F16_V_WEIGHT_FLIPS * heads, `${flipped} of ${heads} head rows differ by an f16 step: more than rounding near midpoints explains`);
});

test("hadamard: the orthonormal Walsh-Hadamard rotation of rows (as ggml's fwht) matches the matrix product; twice is the identity", () => {
  const rand = rng(75);
  for (const n of [1, 2, 4, 8, 64, 128, 256]) for (const rows of [1, 3, 7]) scoped(() => {
    const x = normal(rand, n * rows);
    const p = put(x);
    k.hadamard(p, n, rows);
    const e = x.slice();
    R.hadamard(e, n, rows);
    assertClose(readF32(p, n * rows), e, TOL.kernelTol("hadamard"), `hadamard n=${n} rows=${rows}`);
    k.hadamard(p, n, rows);
    assertClose(readF32(p, n * rows), x, TOL.kernelTol("hadamard"), `hadamard twice n=${n} rows=${rows}`);
  });
});

test("exp_f32 (the vector exp of softmax, swiglu and attention) is within 2 ulp of exp, specials included", () => {
  const rand = rng(11);
  const n = 200003;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = -110 + 200 * rand();
  x.set([0, -0, 1, -1, 88.7, 88.8, -87.3, -103.9, -104, -150, 1e-8, -1e-8, Infinity, -Infinity, NaN], 0);
  scoped(() => {
    const p = put(x);
    const out = f32Out(n);
    k.exp_f32(out, p, n);
    const got = readF32(out, n);
    const bits = new Int32Array(got.buffer);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) want[i] = Math.exp(x[i]);
    const wbits = new Int32Array(want.buffer);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(want[i])) { assert.ok(Number.isNaN(got[i]), `exp(NaN) = ${got[i]}`); continue; }
      if (want[i] < 2 ** -126) { assert.ok(got[i] <= 2 ** -125, `exp(${x[i]}) = ${got[i]}, want ${want[i]} (subnormal range)`); continue; }
      const ulp = Math.abs(bits[i] - wbits[i]);
      if (!(ulp <= TOL.EXP_ULP)) assert.unreachable(`exp(${x[i]}) = ${got[i]}, want ${want[i]}: ${ulp} ulp`);
      worst = Math.max(worst, ulp);
    }
    console.log(`    exp_f32: worst ${worst} ulp over ${n} inputs in [-110, 90]`);
  });
});

test("cosine_rows and l2norm_rows match the reference, zero rows included", () => {
  const rand = rng(10);
  for (const n of F32_SIZES) for (const t of TOKENS) scoped(() => {
    const a = normal(rand, n * t), b = normal(rand, n * t);
    a.fill(0, 0, n); // row 0 of a is zero: cos = 0 against a non-zero row
    if (t > 1) { a.fill(0, n, 2 * n); b.fill(0, n, 2 * n); } // row 1 zero in both: cos = 1
    if (t > 2) b.set(a.subarray(2 * n, 3 * n), 2 * n); // identical rows: cos = 1
    const out = f32Out(t), e = new Float32Array(t);
    k.cosine_rows(out, put(a), put(b), n, t);
    R.cosine_rows(e, a, b, n, t);
    assertClose(readF32(out, t), e, TOL.kernelTol("cosine_rows"), `cosine_rows n=${n} t=${t}`);
    assert.is(e[0], 0);
    if (t > 1) assert.is(e[1], 1);
    k.l2norm_rows(out, put(b), n, t);
    R.l2norm_rows(e, b, n, t);
    assertClose(readF32(out, t), e, TOL.kernelTol("l2norm_rows"), `l2norm_rows n=${n} t=${t}`);
  });
});

test("runtime: alloc aligns, grows memory, mark/release, views follow growth", () => {
  const r = WasmRuntime.create();
  const base = r.bytesUsed;
  assert.is(base, r.k.heap_base());
  const m = r.mark();
  const a = r.alloc(10);
  assert.is(a % 64, 0);
  const b = r.alloc(3, 16);
  assert.is(b % 16, 0);
  assert.ok(b >= a + 10);
  const before = r.f32;
  const big = r.alloc(8 << 20);
  r.f32[big / 4 + (2 << 20) - 1] = 7;
  assert.ok(r.f32 !== before, "views are re-taken after growth");
  assert.is(r.f32At(big, 2 << 20)[(2 << 20) - 1], 7);
  r.release(m);
  assert.is(r.bytesUsed, base);
  assert.throws(() => r.alloc(5 * 2 ** 30), /4 GiB/);
});

test("every format with a matmul kernel has that wasm export with the ABI's parameters, and QK matches the table", () => {
  const exports = k as unknown as Record<string, unknown>;
  for (const f of FORMATS) {
    if (f.matmul) assert.type(exports[f.matmul], "function", `${f.name}: export ${f.matmul}`);
    if (f.prefill) assert.type(exports[f.prefill], "function", `${f.name}: export ${f.prefill}`);
    // a wasm export's length is its parameter count: (out, x, w, n, d, t), prefill kernels then ldo (formats.ts MatmulKernel)
    if (f.matmul) assert.is((exports[f.matmul] as () => void).length, 6, `${f.name}: ${f.matmul}'s parameters`);
    if (f.prefill) assert.is((exports[f.prefill] as () => void).length, 7, `${f.name}: ${f.prefill}'s parameters`);
    if (f.blockSize > 1 && f.matmul) assert.is(f.blockSize === 256 ? k.qk_k() : k.qk(), f.blockSize, `${f.name} block size`);
  }
});

if (BUILD === "simd128") {
  test("the relaxed-SIMD build passes every test above (child Node, Liftoff and TurboFan tiers)", () => {
    assert.is(hasRelaxedSimd(), false, "Node 20 has no relaxed SIMD without the flag (if this changes, run both builds here)");
    const uvu = join(dirname(createRequire(import.meta.url).resolve("uvu")), "..", "bin.js");
    for (const tier of [[], ["--no-liftoff"]]) {
      const r = spawnSync(process.execPath, ["--experimental-wasm-relaxed-simd", ...tier, uvu, "dist/test", "kernels\\.test\\.js$"],
        { env: { ...process.env, EDGEPRUNE_SIMD: "relaxed" }, encoding: "utf8" });
      const out = `${r.stdout}${r.stderr}`;
      assert.ok(r.status === 0 && /kernel build: relaxed/.test(out), `relaxed build ${tier.join(" ") || "(default tiers)"} failed:\n${out.slice(-3000)}`);
      const m = /Passed:\s*\S*?(\d+)/.exec(out);
      console.log(`    relaxed build ${tier.join(" ") || "(Liftoff then TurboFan)"}: ${m ? m[1] : "?"} tests passed`);
    }
  });
}

test.run();
