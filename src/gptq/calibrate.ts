// Calibration statistics for GPTQ: the streaming accumulation of H = Σ x xᵀ at one linear site of one layer.
// The calibration windows themselves come from data/documents.ts. Not the quantization (gptq.ts) nor the order
// of sites (model.ts).
import type { Context, LinearSite } from "../model/forward.js";
import type { WasmRuntime } from "../wasm.js";

/**
 * H (n, n) float64 = Σ x xᵀ over the inputs of `site` in `layer`, as the model's current weights produce them,
 * streamed batch by batch into f64 accumulators in wasm (gptq_accumulate_h). Layers after `layer` are not run.
 */
export function collectHessian(ctx: Context, rt: WasmRuntime, windows: number[][], layer: number, site: LinearSite, n: number): Float64Array {
  const mark = rt.mark();
  try {
    const hPtr = rt.alloc(n * n * 8);
    rt.u8.fill(0, hPtr, hPtr + n * n * 8);
    const attention = site === "attn_qkv" || site === "attn_output";
    const skipFfn = attention ? new Set([layer]) : undefined;
    for (const w of windows) {
      ctx.reset();
      ctx.eval(w, {
        logits: "none", stopAfterLayer: layer + 1, skipFfn,
        onLinearInput: (l, s, x, width, t) => {
          if (l !== layer || s !== site) return;
          if (width !== n) throw new Error(`collectHessian: ${site} of layer ${layer} has ${width} inputs, expected ${n}`);
          rt.k.gptq_accumulate_h(hPtr, x, n, t);
        },
      });
    }
    const h = new Float64Array(rt.memory.buffer, hPtr, n * n).slice();
    for (let i = 0; i < n; i++) for (let k = 0; k < i; k++) h[i * n + k] = h[k * n + i];
    return h;
  } finally {
    rt.release(mark);
  }
}
