// The relaxed-SIMD self-test: before a process trusts the relaxed kernel build, known answers for the relaxed
// instructions the build uses and, in their first (baseline-tier, Liftoff in V8) calls, every relaxed matmul kernel
// against the SIMD128 build on the same bytes. Portable (no Node built-ins). Not a kernel test (test/ does that).
import { FORMATS, activationFormat, activationRows, formatBytes, prefillActivationFormat, type QuantFormat } from "../quant/formats.js";
import { convertActivations, hasRelaxedSimd, WasmRuntime } from "../wasm.js";

export interface RelaxedSelfTest {
  /** true when the relaxed build gave every known answer */
  ok: boolean;
  /** what failed (empty when ok) */
  failures: string[];
  /**
   * i32x4.relaxed_dot_i8x16_i7x16_add_s's known answer in this engine's baseline tier: false on V8 11.3 (Node 20),
   * whose Liftoff gets it wrong (wasm-facts.md). The kernels do not use it (common.ts), so it does not fail `ok`.
   */
  i32DotAddOk: boolean;
  /** the largest difference from the SIMD128 build seen, relative to the largest output (0 when none ran) */
  worst: number;
  /** how long the test took */
  ms: number;
}

/** A wasm section: id, size, bytes (every section here is under 128 bytes). */
const section = (id: number, content: number[]) => [id, content.length, ...content];
/** v128.load from address 0 at `offset` (align 16) */
const load = (offset: number) => [0x41, 0x00, 0xfd, 0x00, 0x04, offset];
/** a function body: out at 48 = op(the operands at 0, 16, 32) */
const body = (op: number[], operands: number) => {
  const b = [0x00, 0x41, 0x30, ...[0, 16, 32].slice(0, operands).flatMap(load), ...op, 0xfd, 0x0b, 0x04, 0x00, 0x0b];
  return [b.length, ...b];
};

/**
 * A one-page module exporting memory "m" and four functions writing at 48: "a" i16x8.relaxed_dot_i8x16_i7x16_s,
 * "b" i32x4.relaxed_dot_i8x16_i7x16_add_s, "c" f32x4.relaxed_madd, "d" f32x4.relaxed_nmadd of the v128s at 0, 16, 32.
 */
function probeModule(): Uint8Array {
  const fns = [body([0xfd, 0x92, 0x02], 2), body([0xfd, 0x93, 0x02], 3), body([0xfd, 0x85, 0x02], 3), body([0xfd, 0x86, 0x02], 3)];
  const names = ["m", "a", "b", "c", "d"];
  const exports = [names.length, ...names.flatMap((s, i) => (i === 0 ? [1, s.charCodeAt(0), 0x02, 0] : [1, s.charCodeAt(0), 0x00, i - 1]))];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 0, 0]), ...section(3, [4, 0, 0, 0, 0]), ...section(5, [1, 0, 1]), ...section(7, exports),
    ...section(10, [4, ...fns.flat()])]);
}

/** The instruction probes: failures of the ones the kernels use, and whether the i32x4 "_add" dot is right. */
function probeInstructions(failures: string[]): boolean {
  const inst = new WebAssembly.Instance(new WebAssembly.Module(probeModule() as BufferSource));
  const ex = inst.exports as { m: WebAssembly.Memory; a(): void; b(): void; c(): void; d(): void };
  const buf = ex.m.buffer;
  const i8 = new Int8Array(buf, 0, 16), u8 = new Uint8Array(buf, 16, 16);
  // int8 over the whole range (-128 included) against 0..127: the operands relaxed_dot is defined on
  for (let i = 0; i < 16; i++) { i8[i] = ((i * 37) % 256) - 128; u8[i] = (i * 53) % 128; }
  ex.a();
  const d16 = new Int16Array(buf, 48, 8);
  for (let l = 0; l < 8; l++) {
    const want = i8[2 * l] * u8[2 * l] + i8[2 * l + 1] * u8[2 * l + 1];
    if (d16[l] !== want) { failures.push(`i16x8.relaxed_dot_i8x16_i7x16_s lane ${l}: ${d16[l]}, expected ${want}`); break; }
  }
  const acc = [1000, -7, 123456, 0];
  new Int32Array(buf, 32, 4).set(acc);
  ex.b();
  const d32 = new Int32Array(buf, 48, 4);
  let addOk = true;
  for (let l = 0; l < 4; l++) {
    let want = acc[l];
    for (let j = 0; j < 4; j++) want += i8[4 * l + j] * u8[4 * l + j];
    if (d32[l] !== want) addOk = false;
  }
  // a·b + c where rounding the product first loses the answer: (1 + 2^-23)(1 - 2^-23) - 1 is -2^-46 fused, 0
  // unfused; relaxed_madd may do either (so both are accepted), anything else fails. f64 holds the exact products.
  const fa = new Float32Array(buf, 0, 4), fb = new Float32Array(buf, 16, 4), fc = new Float32Array(buf, 32, 4);
  fa.set([1 + 2 ** -23, 3, -2.5, 0.1]);
  fb.set([1 - 2 ** -23, 4, 2, 10]);
  fc.set([-1, 1, 0.5, -1]);
  const fr = Math.fround;
  for (const [fn, name, sign] of [[ex.c, "f32x4.relaxed_madd", 1], [ex.d, "f32x4.relaxed_nmadd", -1]] as const) {
    fn();
    const out = new Float32Array(buf, 48, 4);
    for (let l = 0; l < 4; l++) {
      const wants = [fr(sign * fa[l] * fb[l] + fc[l]), fr(sign * fr(fa[l] * fb[l]) + fc[l])];
      if (!wants.includes(out[l])) { failures.push(`${name} lane ${l}: ${out[l]}, expected ${wants.join(" or ")}`); break; }
    }
  }
  return addOk;
}

/** A seeded xorshift: the same inputs every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** out (t, d) of `f`'s matmul kernel in `build` over weights w (d rows) and activations x (t, n f32). */
function runMatmul(rt: WasmRuntime, f: QuantFormat, wBytes: Uint8Array, x: Float32Array, n: number, d: number, t: number, prefill = false): Float32Array {
  const mark = rt.mark();
  const act = (prefill ? prefillActivationFormat(f, rt.simd) : activationFormat(f, rt.simd))!;
  const w = rt.alloc(wBytes.length);
  rt.u8.set(wBytes, w);
  const xp = rt.alloc(x.length * 4);
  rt.f32.set(x, xp >> 2);
  let a = xp;
  if (act !== "F32") {
    const af = FORMATS.find((g) => g.name === act)!;
    a = rt.alloc(activationRows(af, t) * formatBytes(af, n) + 64);
    convertActivations(rt.k, act, a, xp, n, t);
  }
  const out = rt.alloc(t * d * 4);
  rt.k[prefill ? f.prefill! : f.matmul!](out, a, w, n, d, t, d);
  const result = rt.f32At(out, t * d).slice();
  rt.release(mark);
  return result;
}

/**
 * Runs the self-test (a few ms). `forceFail` makes it report a failure (for testing the fallback path).
 * Returns ok: false without running anything when the engine has no relaxed SIMD.
 */
export function relaxedSelfTest(opts: { forceFail?: boolean } = {}): RelaxedSelfTest {
  const t0 = performance.now();
  const failures: string[] = [];
  if (!hasRelaxedSimd()) return { ok: false, failures: ["this engine has no relaxed SIMD"], i32DotAddOk: false, worst: 0, ms: 0 };
  let i32DotAddOk = false, worst = 0;
  try {
    i32DotAddOk = probeInstructions(failures);
    // every matmul kernel: t = 1 (the matrix-vector path) and t = 5 (the token-blocked path with a tail), n = 256
    // (one K-quant super-block), d = 9 rows (a tail past the 4- and 8-row runs) cycling through 3 quantized rows
    // (the JS quantizers are slow before they are compiled: this keeps the test to a few ms); integer dots are
    // exact in both builds, so the only differences are f32 summation order and fused multiply-adds (measured
    // 3.1e-7 of the largest output, so 1e-5 allows 30×); the Liftoff bug this guards against gives errors of the outputs' own size
    const n = 256, d = 9, distinct = 3;
    const r = rng(12345);
    const relaxedRt = WasmRuntime.create({ simd: "relaxed", initialBytes: 1 << 20 });
    const baseRt = WasmRuntime.create({ simd: "simd128", initialBytes: 1 << 20 });
    for (const f of FORMATS) {
      if (!f.matmul || !f.quantize) continue;
      const w = new Float32Array(n * distinct);
      for (let i = 0; i < w.length; i++) w[i] = r() * (1 + (i % 7));
      const rowB = formatBytes(f, n);
      const wBytes = new Uint8Array(rowB * d);
      if (f.quantizeKernel) {
        // the K-quants' wasm quantizers (the same bytes as the JS ones, kquant-ref.test.ts), far cheaper before JIT warm-up
        const mark = baseRt.mark();
        const xp = baseRt.alloc(w.length * 4), out = baseRt.alloc(rowB * distinct);
        baseRt.f32.set(w, xp >> 2);
        for (let row = 0; row < distinct; row++) baseRt.k[f.quantizeKernel](out + row * rowB, xp + row * n * 4, n);
        wBytes.set(baseRt.u8At(out, rowB * distinct));
        baseRt.release(mark);
      } else {
        for (let row = 0; row < distinct; row++) f.quantize(w.subarray(row * n, (row + 1) * n), wBytes.subarray(row * rowB, (row + 1) * rowB));
      }
      for (let row = distinct; row < d; row++) wBytes.copyWithin(row * rowB, (row % distinct) * rowB, (row % distinct + 1) * rowB);
      // t = 5 also through the prefill kernel (the relaxed build's has its own activation layout), against SIMD128's matmul
      for (const [t, prefill] of [[1, false], [5, false], ...(f.prefill ? [[5, true] as const] : [])] as const) {
        const x = new Float32Array(n * t);
        for (let i = 0; i < x.length; i++) x[i] = r() * 4;
        const relaxed = runMatmul(relaxedRt, f, wBytes, x, n, d, t, prefill);
        const base = runMatmul(baseRt, f, wBytes, x, n, d, t);
        let scale = 0, diff = 0;
        for (let i = 0; i < base.length; i++) { scale = Math.max(scale, Math.abs(base[i])); diff = Math.max(diff, Math.abs(relaxed[i] - base[i])); }
        if (opts.forceFail && f.name === "Q4_0" && t === 1) diff = scale;
        worst = Math.max(worst, diff / scale);
        const name = prefill ? f.prefill : f.matmul;
        if (!(diff <= 1e-5 * scale)) failures.push(`${name} (t = ${t}): differs from the SIMD128 build by ${diff.toPrecision(3)} (largest output ${scale.toPrecision(3)})`);
      }
    }
  } catch (e) {
    failures.push(`the self-test threw: ${(e as Error).message}`);
  }
  return { ok: failures.length === 0, failures, i32DotAddOk, worst, ms: performance.now() - t0 };
}
