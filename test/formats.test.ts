// The reference quantizers in src/quant/ref.ts: hand-derived byte encodings, round trips measured as ggml's
// test-quantize-fns, and the dot product through each format's wasm matmul. Not a GGUF reader test.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { FORMATS, activationFormat, type QuantFormat } from "../src/quant/formats.js";
import * as ref from "../src/quant/ref.js";
import { WasmRuntime } from "../src/wasm.js";
import * as TOL from "./tolerances.js";

const hex = (a: ArrayLike<number>) => Array.from(a, (b) => b.toString(16).padStart(2, "0")).join(" ");
const fmt = (name: string) => FORMATS.find((f) => f.name === name)!;

function encode(name: string, values: number[]): Uint8Array {
  const f = fmt(name);
  const out = new Uint8Array((values.length / f.blockSize) * f.typeSize);
  f.quantize!(Float32Array.from(values), out);
  return out;
}

const le16 = (h: number) => [h & 0xff, h >> 8];

test("Q8_0: a block of 1.0 is d = f16(1/127) = 0x2008, qs all 127", () => {
  assert.is(hex(encode("Q8_0", new Array(32).fill(1))), hex([...le16(0x2008), ...new Array(32).fill(127)]));
});

test("Q8_1: a block of 1.0 is d = 0x2008, s = f16(32) = 0x5000, qs all 127", () => {
  assert.is(hex(encode("Q8_1", new Array(32).fill(1))), hex([...le16(0x2008), ...le16(0x5000), ...new Array(32).fill(127)]));
});

test("Q4_0: x = j - 16 gives d = -16/-8 = 2 (0x4000) and nibbles trunc(x/2 + 8.5)", () => {
  const x = Array.from({ length: 32 }, (_, j) => j - 16);
  // element j < 16 -> trunc(j/2 + 0.5) in the low nibble; element 16 + j -> min(15, 8 + that) in the high nibble
  const qs = [0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4, 0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8];
  assert.is(hex(encode("Q4_0", x)), hex([...le16(0x4000), ...qs]));
});

test("Q4_1: x = 3 + (j mod 16) gives d = 1 (0x3c00), m = 3 (0x4200), byte j = j | j << 4", () => {
  const x = Array.from({ length: 32 }, (_, j) => 3 + (j % 16));
  const qs = Array.from({ length: 16 }, (_, j) => j | (j << 4));
  assert.is(hex(encode("Q4_1", x)), hex([...le16(0x3c00), ...le16(0x4200), ...qs]));
});

test("F16 / BF16 / F32: known encodings, ties to even, overflow, NaN", () => {
  const f16: [number, number][] = [[1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [2 ** -24, 0x0001],
    [0.1, 0x2e66], [1 / 3, 0x3555], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [-0, 0x8000], [2 ** -26, 0]];
  for (const [v, h] of f16) assert.is(ref.f32ToF16(v), h, `f16(${v})`);
  const bf16: [number, number][] = [[1, 0x3f80], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [-1, 0xbf80],
    [3.4028234663852886e38, 0x7f80], [ref.f32FromBits(0x7fa00000), 0x7fe0]];
  for (const [v, h] of bf16) assert.is(ref.f32ToBF16(v), h, `bf16(${v})`);
  assert.is(hex(encode("F32", [1])), "00 00 80 3f");
  assert.is(hex(encode("F16", [1, -2])), "00 3c 00 c0");
  assert.is(hex(encode("BF16", [1])), "80 3f");
  for (let h = 0; h < 0x7c00; h++) assert.is(ref.f32ToF16(ref.f16ToF32(h)), h, `f16 0x${h.toString(16)} round trip`);
});

/** ggml test-quantize-fns data: 0.1 + 2cos(i + offset) */
function cosData(n: number, offset: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = 0.1 + 2 * Math.cos(i + offset);
  return a;
}

const N = 32 * 128;

function roundTrip(name: string): (typeof TOL.ROUNDTRIP)[string] {
  const t = TOL.ROUNDTRIP[name];
  if (!t) throw new Error(`tolerances.ts has no ROUNDTRIP bound for ${name}`);
  return t;
}

for (const f of FORMATS.filter((x) => x.quantize && x.dequantize)) {
  test(`${f.name}: quantize -> dequantize round trip (ggml total error)`, () => {
    const src = cosData(N, 0);
    const bytes = new Uint8Array((N / f.blockSize) * f.typeSize);
    f.quantize!(src, bytes);
    const back = new Float32Array(N);
    f.dequantize!(bytes, back);
    let s = 0;
    for (let i = 0; i < N; i++) s += (back[i] - src[i]) ** 2;
    const err = Math.sqrt(s) / N;
    assert.ok(err <= roundTrip(f.name).error.bound, `${f.name} total error ${err}`);
    // a second pass over the dequantized values is stable (same bytes)
    const again = new Uint8Array(bytes.length);
    f.quantize!(back, again);
    const back2 = new Float32Array(N);
    f.dequantize!(again, back2);
    let s2 = 0;
    for (let i = 0; i < N; i++) s2 += (back2[i] - back[i]) ** 2;
    assert.ok(Math.sqrt(s2) / N <= roundTrip(f.name).drift.bound, `${f.name} requantize drift ${Math.sqrt(s2) / N}`);
  });
}

test("every format with a matmul: dot through the wasm kernel is within ggml's dot-product error", () => {
  const rt = WasmRuntime.create();
  for (const f of FORMATS.filter((x): x is QuantFormat & Required<Pick<QuantFormat, "matmul" | "activation">> => !!x.matmul && !!x.activation)) {
    const m = rt.mark();
    const a = cosData(N, 0), b = cosData(N, 1);
    let exact = 0;
    for (let i = 0; i < N; i++) exact += a[i] * b[i];
    const act = fmt(activationFormat(f, rt.simd)!); // the layout this build's kernel takes
    const w = new Uint8Array((N / f.blockSize) * f.typeSize);
    f.quantize!(a, w);
    const x = new Uint8Array((N / act.blockSize) * act.typeSize);
    act.quantize!(b, x);
    const wp = rt.alloc(w.length), xp = rt.alloc(x.length), out = rt.alloc(4);
    rt.u8.set(w, wp);
    rt.u8.set(x, xp);
    rt.k[f.matmul](out, xp, wp, N, 1, 1, 1);
    const err = Math.abs(rt.f32[out / 4] - exact) / N;
    assert.ok(err <= (roundTrip(f.name).dot?.bound ?? -1), `${f.name} x ${act.name}: dot error ${err}`);
    rt.release(m);
  }
});

test.run();
