// Round-to-nearest of many rows at once through the format's wasm quantizer when it has one (the K-quants: their
// searches are slow in JavaScript), else its scalar reference; the same bytes either way (kquant-ref.test.ts).
// What whole-model quantization and synth call. Not a quantizer of its own.
import { WasmRuntime } from "../wasm.js";
import type { QuantFormat } from "./formats.js";

let rt: WasmRuntime | undefined;
/** floats quantized per kernel call */
const CHUNK = 1 << 20;

/** dst = src quantized to f (src.length a multiple of f's block; dst holds the blocks). */
export function quantizeRows(f: QuantFormat, src: Float32Array, dst: Uint8Array): void {
  if (!f.quantizeKernel) return f.quantize!(src, dst);
  rt ??= WasmRuntime.create({ initialBytes: 8 * CHUNK });
  const mark = rt.mark();
  try {
    const xPtr = rt.alloc(CHUNK * 4), outPtr = rt.alloc((CHUNK / f.blockSize) * f.typeSize);
    const kernel = rt.k[f.quantizeKernel];
    for (let at = 0; at < src.length; at += CHUNK) {
      const n = Math.min(CHUNK, src.length - at);
      rt.f32At(xPtr, n).set(src.subarray(at, at + n));
      kernel(outPtr, xPtr, n);
      const bytes = (n / f.blockSize) * f.typeSize;
      dst.set(rt.u8At(outPtr, bytes), (at / f.blockSize) * f.typeSize);
    }
  } finally {
    rt.release(mark);
  }
}
