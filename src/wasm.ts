// Runtime glue: instantiates one of the two embedded kernel builds (SIMD128 everywhere; relaxed SIMD where the
// engine validates it) over a host-created memory, hands out aligned offsets with a bump allocator and keeps
// typed-array views. Portable (no Node built-ins). Not a memory planner for a model: callers decide what to
// allocate.
import { KERNEL_BUILDS_BASE64 } from "./generated/kernels-wasm.js";
import type { FormatName } from "./quant/formats.js";
import { kernelImports } from "./wasm-imports.js";
import { hasRelaxedSimd } from "./simd-features.js";

export { kernelImports } from "./wasm-imports.js";
export { hasRelaxedSimd } from "./simd-features.js";

/** Every export of assembly/index.ts. Pointers are byte offsets; sizes are element counts. */
export interface Kernels {
  /** first byte the host may allocate: after the module's static data and its f16 -> f32 table */
  heap_base(): number;
  /** elements per quantized block (32) */
  qk(): number;
  /** out: t rows of n/32 block_q8_0 from x: t rows of n f32 */
  quantize_q8_0(out: number, x: number, n: number, t: number): void;
  /** out: t rows of Q8_0X (quant/formats.ts: f32 d[n/32], i32 sum[n/32], int8 q[n]) from x: t rows of n f32 */
  quantize_q8_0x(out: number, x: number, n: number, t: number): void;
  /** out: t rows of Q8_0W (quant/formats.ts; the SIMD128 build's Q4_0 activations) from x: t rows of n f32 */
  quantize_q8_0w(out: number, x: number, n: number, t: number): void;
  /** out: Q8_0T (quant/formats.ts; the relaxed build's Q4_0 prefill activations), whole groups of four tokens, from x: t rows of n f32 */
  quantize_q8_0t(out: number, x: number, n: number, t: number): void;
  /** fills the kernels' f16 -> f32 table (below heap_base); once per memory, before any matmul */
  init_tables(): void;
  /** runs per matrix-vector pass (2, 4 or 8; else 8) for every instance over this memory (assembly/common.ts mv_streams) */
  set_matvec_streams(s: number): void;
  /** the runs per matrix-vector pass in use */
  matvec_streams(): number;
  /** out: t rows of n/32 block_q8_1 from x: t rows of n f32 */
  quantize_q8_1(out: number, x: number, n: number, t: number): void;
  /** elements per K-quant super-block (256) */
  qk_k(): number;
  /** out: t rows of n/256 block_q8_K from x: t rows of n f32 (quantize_row_q8_K_ref) */
  quantize_q8_K(out: number, x: number, n: number, t: number): void;
  /** out: t rows of n/256 Q8_KW blocks (quant/formats.ts; the SIMD128 build's Q4_K activations) from x: t rows of n f32 */
  quantize_q8_kw(out: number, x: number, n: number, t: number): void;
  /** out: n/256 block_q4_K from x (n f32), quantize_row_q4_K_ref byte for byte (static scratch: one thread) */
  quantize_q4_K(out: number, x: number, n: number): void;
  /** out: n/256 block_q6_K from x (n f32), quantize_row_q6_K_ref byte for byte (static scratch: one thread) */
  quantize_q6_K(out: number, x: number, n: number): void;
  /** out (t, d) f32 = xq (t rows of Q8_K, or Q8_KW in the SIMD128 build) @ w (d rows of Q4_K)^T */
  matmul_q4_K(out: number, xq: number, w: number, n: number, d: number, t: number): void;
  /** out (t, d) f32 = xq (t rows of Q8_K) @ w (d rows of Q6_K)^T */
  matmul_q6_K(out: number, xq: number, w: number, n: number, d: number, t: number): void;
  /** matmul_q4_K bit for bit, for prefill (t > 1), on its activations; token j's row of d results at out + 4·ldo·j */
  matmul_q4_K_mm(out: number, xq: number, w: number, n: number, d: number, t: number, ldo: number): void;
  /** matmul_q6_K bit for bit, for prefill (t > 1), on its activations; token j's row of d results at out + 4·ldo·j */
  matmul_q6_K_mm(out: number, xq: number, w: number, n: number, d: number, t: number, ldo: number): void;
  /** out (n) f16 bits from x (n) f32 */
  convert_f16(out: number, x: number, n: number): void;
  /** out (n) bf16 bits from x (n) f32 */
  convert_bf16(out: number, x: number, n: number): void;
  /** out (t, d) = x (t, n) @ w (d, n)^T, all f32 */
  matmul_f32(out: number, x: number, w: number, n: number, d: number, t: number): void;
  /** out (t, d) f32 = x (t, n) f16 @ w (d, n) f16 ^T */
  matmul_f16(out: number, x: number, w: number, n: number, d: number, t: number): void;
  /** out (t, d) f32 = x (t, n) bf16 @ w (d, n) bf16 ^T */
  matmul_bf16(out: number, x: number, w: number, n: number, d: number, t: number): void;
  /** out (t, d) f32 = xq (t rows of Q8_0X) @ w (d rows of Q8_0)^T */
  matmul_q8_0(out: number, xq: number, w: number, n: number, d: number, t: number): void;
  /** matmul_q8_0 bit for bit, tiled for prefill (t > 1; t < 4 runs matmul_q8_0's loops); token j's d results at out + 4·ldo·j */
  matmul_q8_0_mm(out: number, xq: number, w: number, n: number, d: number, t: number, ldo: number): void;
  /** out (t, d) f32 = xq (t rows of Q8_0X) @ w (d rows of Q4_0)^T */
  matmul_q4_0(out: number, xq: number, w: number, n: number, d: number, t: number): void;
  /**
   * matmul_q4_0 bit for bit, tiled for prefill (t > 1) on prefillActivationFormat's layout: Q8_0T groups (relaxed),
   * Q8_0W rows (SIMD128; t < 4 runs matmul_q4_0's loops); token j's d results at out + 4·ldo·j
   */
  matmul_q4_0_mm(out: number, xq: number, w: number, n: number, d: number, t: number, ldo: number): void;
  /** out (t, d) f32 = xq (t rows of Q8_1) @ w (d rows of Q4_1)^T */
  matmul_q4_1(out: number, xq: number, w: number, n: number, d: number, t: number): void;
  /** out (t, d) f32 = xq (t rows of Q8_0X) @ w (d rows of Q5_0)^T */
  matmul_q5_0(out: number, xq: number, w: number, n: number, d: number, t: number): void;
  /** out (t, n) = x / sqrt(mean(x^2) + eps) * w */
  rmsnorm(out: number, x: number, w: number, n: number, eps: number, t: number): void;
  /** out (t) = ||x_j|| */
  l2norm_rows(out: number, x: number, n: number, t: number): void;
  /** out (t) = cos(a_j, b_j); 1 when both rows are zero, 0 when one is */
  cosine_rows(out: number, a: number, b: number, n: number, t: number): void;
  /** in-place RoPE, interleaved pairs (2i, 2i+1) */
  rope_norm(x: number, nHeads: number, headSize: number, ropeDim: number, pos0: number, freqBase: number, t: number): void;
  /** in-place RoPE, pairs (i, i + ropeDim/2) */
  rope_neox(x: number, nHeads: number, headSize: number, ropeDim: number, pos0: number, freqBase: number, t: number): void;
  /**
   * in-place RoPE as ggml_rope_ext: neox != 0 rotates (i, i + ropeDim/2), else (2i, 2i+1); factors (ropeDim/2 f32, 0 for
   * none) divide the angles; freqScale, extFactor, attnFactor, corrLow, corrHigh as llama.cpp's YaRN (1, 0, 1, 0, 0: plain)
   */
  rope_ext(x: number, nHeads: number, headSize: number, ropeDim: number, pos0: number, t: number, neox: number,
           freqBase: number, freqScale: number, extFactor: number, attnFactor: number, corrLow: number, corrHigh: number, factors: number): void;
  /** in-place softmax of x (n) */
  softmax(x: number, n: number): void;
  /** out (n) = silu(gate) * up */
  swiglu(out: number, gate: number, up: number, n: number): void;
  /** out (t, n) = act(gate) * up, rows `stride` floats apart in gate and up; gelu != 0: GELU (ggml's f16 table), else SiLU */
  glu(out: number, gate: number, up: number, n: number, t: number, stride: number, gelu: number): void;
  /** out (n) = x * s */
  scale(out: number, x: number, s: number, n: number): void;
  /** x (t, n) += b (n) per row */
  add_rows(x: number, b: number, n: number, t: number): void;
  /** x (n) = cap * tanh(x / cap), in place */
  softcap(x: number, cap: number, n: number): void;
  /** out (n) = a + b */
  add(out: number, a: number, b: number, n: number): void;
  /** first index of the maximum of x (n) */
  argmax(x: number, n: number): number;
  /** f32 sum of x (n), eight accumulators (a streaming-read probe for benches) */
  sum_f32(x: number, n: number): number;
  /** causal GQA over the KV cache; scores is scratch of attentionScratch(nHeads, nKvHeads, pos0 + t) bytes */
  attention(out: number, q: number, kCache: number, vCache: number, scores: number,
            nHeads: number, nKvHeads: number, headSize: number, pos0: number, t: number): void;
  /** attention for kv heads g0 <= g < g1 (and their query heads) only: one thread's share */
  attention_range(out: number, q: number, kCache: number, vCache: number, scores: number,
                  nHeads: number, nKvHeads: number, headSize: number, pos0: number, t: number, g0: number, g1: number): void;
  /**
   * attention_range with the scores' scale, a sliding window (0: none) and Gemma 2's soft-capping (0: none), over K
   * and V caches of ggml types kType and vType (0 F32, 1 F16, 8 Q8_0), q in K's type (f32, f16 bits, block_q8_0
   * rows); what llama.cpp's CPU backend computes with those cache types (attention.ts)
   */
  attention_kv(out: number, q: number, kCache: number, vCache: number, scores: number,
               nHeads: number, nKvHeads: number, headSize: number, pos0: number, t: number, g0: number, g1: number,
               scale: number, window: number, softcap: number, kType: number, vType: number): void;
  /** x (rows of n, a power of two) <- Hx in place, H the orthonormal Walsh-Hadamard matrix (ggml's fwht) */
  hadamard(x: number, n: number, rows: number): void;
  /** out (n) = exp(x), the vector polynomial softmax/swiglu/attention use (exposed for its ulp test) */
  exp_f32(out: number, x: number, n: number): void;
  /** GPTQ: H (n, n) f64, upper triangle (k ≥ i) += xᵀx for x (t, n) f32; f32 sums over t, f64 accumulation */
  gptq_accumulate_h(h: number, x: number, n: number, t: number): void;
  /** GPTQ: w (rows, n) f32, w[r][c] -= e[r] * hrow[c] for c0 ≤ c < c1 */
  gptq_rank1_update(w: number, e: number, hrow: number, rows: number, n: number, c0: number, c1: number): void;
  /** GPTQ: w (rows, n) f32, w[r][c] -= Σ_b err[r][b] * hinv[i1+b][c] for i2 ≤ c < n; err (rows, i2-i1), hinv (n, n) */
  gptq_block_update(w: number, err: number, hinv: number, rows: number, n: number, i1: number, i2: number): void;
  /** bytes of scratch gptq_cholesky / gptq_trinv_lower need for an (n, n) matrix */
  gptq_linalg_scratch(n: number): number;
  /** in place: lower Cholesky factor of a (n, n) f64 SPD (lower triangle read), upper zeroed; 0 if not positive definite */
  gptq_cholesky(a: number, n: number, scratch: number): number;
  /** in place: the inverse of a (n, n) f64 lower triangular matrix */
  gptq_trinv_lower(a: number, n: number, scratch: number): void;
}

/** Bytes of `scores` scratch one attention call needs for nPos = pos0 + t positions (per caller/thread). */
export function attentionScratch(nHeads: number, nKvHeads: number, nPos: number): number {
  return (nHeads / nKvHeads) * (Math.ceil(nPos / 4) * 4) * 4;
}

const PAGE = 65536;
const MAX_PAGES = 65536; // 4 GiB: the wasm32 address space

/** The kernel builds: "simd128" (asc --target release) and "relaxed" (asc --target relaxed: relaxed SIMD dots and FMA). */
export type SimdBuild = "simd128" | "relaxed";

const modules = new Map<string, WebAssembly.Module>();
let sharedSupported: boolean | undefined;

/**
 * Whether a shared WebAssembly.Memory can be made here (threads need one): false in a page that is not
 * cross-origin isolated, where SharedArrayBuffer is withheld.
 */
export function hasSharedMemory(): boolean {
  if (sharedSupported === undefined) {
    try {
      sharedSupported = typeof SharedArrayBuffer !== "undefined" &&
        new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
    } catch {
      sharedSupported = false;
    }
  }
  return sharedSupported;
}


/** The build create() uses unless told: EDGEPRUNE_SIMD=simd128|relaxed when a process env exists, else the best one. */
export function defaultSimdBuild(): SimdBuild {
  let env: string | undefined;
  try {
    env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.EDGEPRUNE_SIMD;
  } catch {
    // Deno without --allow-env throws on reading the environment: then there is no override
  }
  if (env === "simd128" || env === "relaxed") return env;
  return hasRelaxedSimd() ? "relaxed" : "simd128";
}

let streamsForCpu = 8;

/**
 * Sets the runs per matrix-vector pass that create() uses from now on unless EDGEPRUNE_MATVEC_STREAMS says
 * otherwise: for a host that knows its CPU (src/node/cpu.ts). 2, 4 or 8.
 */
export function setCpuMatvecStreams(s: number): void {
  streamsForCpu = s === 2 || s === 4 ? s : 8;
}

/**
 * Runs per matrix-vector pass create() sets: EDGEPRUNE_MATVEC_STREAMS=2|4|8 when a process env exists, else the
 * CPU's (setCpuMatvecStreams), else 8, the Intel Xeon's best (docs/speed.md has what each CPU measured).
 */
export function defaultMatvecStreams(): number {
  let env: string | undefined;
  try {
    env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.EDGEPRUNE_MATVEC_STREAMS;
  } catch {
    // Deno without --allow-env: no override
  }
  return env === "2" || env === "4" || env === "8" ? Number(env) : streamsForCpu;
}

/** A kernel build (over its own memory, or over a shared one for threads), decoded and compiled once per process. */
export function kernelModule(build: SimdBuild, shared = false): WebAssembly.Module {
  const key = shared ? (`${build}-shared` as const) : build;
  let m = modules.get(key);
  if (!m) {
    if (build === "relaxed" && !hasRelaxedSimd()) {
      throw new Error("the relaxed SIMD kernels need an engine with relaxed SIMD (Chrome, Deno, Node >= 22, or Node 20 with --experimental-wasm-relaxed-simd)");
    }
    // only the chosen build is materialised and decoded (each sits in its own lazily compiled function)
    const text = atob(KERNEL_BUILDS_BASE64[key]());
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    m = new WebAssembly.Module(bytes);
    modules.set(key, m);
  }
  return m;
}

/**
 * x (t rows of n f32) converted into `format`, the activation layout of a matmul kernel (quant/formats.ts
 * activationFormat), written at out; F32 needs no conversion and is refused here.
 */
export function convertActivations(k: Kernels, format: FormatName, out: number, x: number, n: number, t: number): void {
  switch (format) {
    case "Q8_0X": k.quantize_q8_0x(out, x, n, t); break;
    case "Q8_0W": k.quantize_q8_0w(out, x, n, t); break;
    case "Q8_0T": k.quantize_q8_0t(out, x, n, t); break;
    case "Q8_1": k.quantize_q8_1(out, x, n, t); break;
    case "Q8_K": k.quantize_q8_K(out, x, n, t); break;
    case "Q8_KW": k.quantize_q8_kw(out, x, n, t); break;
    case "F16": k.convert_f16(out, x, n * t); break;
    case "BF16": k.convert_bf16(out, x, n * t); break;
    default: throw new Error(`no kernel converts activations to ${format}`);
  }
}

/** One kernel instance over its own memory, plus a bump allocator and cached views of that memory. */
export class WasmRuntime {
  readonly memory: WebAssembly.Memory;
  readonly k: Kernels;
  /** which kernel build runs here */
  readonly simd: SimdBuild;
  /** the compiled module (workers instantiate it again over the same memory when it is shared) */
  readonly module: WebAssembly.Module;
  private top: number;
  private viewBuffer: ArrayBuffer | undefined;
  private views!: { u8: Uint8Array; i8: Int8Array; u16: Uint16Array; i32: Int32Array; f32: Float32Array };

  private constructor(memory: WebAssembly.Memory, k: Kernels, simd: SimdBuild, module: WebAssembly.Module) {
    this.memory = memory;
    this.k = k;
    this.simd = simd;
    this.module = module;
    this.top = k.heap_base();
  }

  /** true when the memory is a SharedArrayBuffer that worker threads can run kernels over */
  get shared(): boolean {
    return typeof SharedArrayBuffer !== "undefined" && this.memory.buffer instanceof SharedArrayBuffer;
  }

  /**
   * Instantiates the embedded kernels synchronously over a new memory with room for initialBytes above the kernels'
   * static data; `simd` picks the build (default: defaultSimdBuild()), `shared` a shared memory that threads can use
   * (see hasSharedMemory()).
   */
  static create(opts: { initialBytes?: number; simd?: SimdBuild; shared?: boolean } = {}): WasmRuntime {
    const simd = opts.simd ?? defaultSimdBuild();
    const shared = opts.shared ?? false;
    const initial = Math.max(1, Math.ceil((opts.initialBytes ?? PAGE) / PAGE));
    if (initial > MAX_PAGES) throw new Error(`WasmRuntime: ${opts.initialBytes} bytes asked for, past the 4 GiB wasm32 limit`);
    const memory = new WebAssembly.Memory({ initial, maximum: MAX_PAGES, shared });
    const module = kernelModule(simd, shared);
    const instance = new WebAssembly.Instance(module, kernelImports(memory));
    const k = instance.exports as unknown as Kernels;
    // initialBytes is what the host will allocate; the kernels' static data (f16 tables, ~260 KB) sits below it,
    // so grow once here, before any view exists, rather than on the first allocation past the plan
    const have = memory.buffer.byteLength;
    const want = k.heap_base() + (opts.initialBytes ?? 0);
    if (have < want) memory.grow(Math.ceil((want - have) / PAGE));
    k.init_tables(); // workers instantiated later over this memory read the same tables
    k.set_matvec_streams(defaultMatvecStreams()); // and the same setting (it lives in memory)
    return new WasmRuntime(memory, k, simd, module);
  }

  /** Reserves `bytes` at an `align`-aligned offset (default 64), growing memory when needed. */
  alloc(bytes: number, align = 64): number {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new Error(`WasmRuntime.alloc: bad size ${bytes}`);
    const ptr = Math.ceil(this.top / align) * align;
    const end = ptr + bytes;
    if (end > MAX_PAGES * PAGE) {
      throw new Error(
        `WasmRuntime.alloc: ${bytes} bytes asked for with ${ptr} already in use; ` +
        `${end} bytes exceed the 4 GiB wasm32 limit (${MAX_PAGES * PAGE})`);
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return ptr;
  }

  /** The current allocation top, to hand to release(). */
  mark(): number {
    return this.top;
  }

  /** Frees everything allocated after mark() returned `mark`. */
  release(mark: number): void {
    if (mark > this.top || mark < this.k.heap_base()) throw new Error(`WasmRuntime.release: bad mark ${mark}`);
    this.top = mark;
  }

  /** Bytes from offset 0 to the allocation top. */
  get bytesUsed(): number {
    return this.top;
  }

  private v() {
    const buf = this.memory.buffer;
    if (buf !== this.viewBuffer) {
      this.viewBuffer = buf;
      this.views = {
        u8: new Uint8Array(buf), i8: new Int8Array(buf), u16: new Uint16Array(buf),
        i32: new Int32Array(buf), f32: new Float32Array(buf),
      };
    }
    return this.views;
  }

  get u8(): Uint8Array { return this.v().u8; }
  get i8(): Int8Array { return this.v().i8; }
  get u16(): Uint16Array { return this.v().u16; }
  get i32(): Int32Array { return this.v().i32; }
  get f32(): Float32Array { return this.v().f32; }

  /** A Float32Array over `length` floats at byte offset ptr (4-aligned). Re-take it after memory grows. */
  f32At(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }

  /** A Uint8Array over `length` bytes at byte offset ptr. Re-take it after memory grows. */
  u8At(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }
}
