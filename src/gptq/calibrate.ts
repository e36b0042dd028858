// Calibration input for GPTQ: token windows from a text (its first 80% of documents, so the last 20% stays
// held out for evaluation), and the streaming accumulation of H = Σ x xᵀ at one linear site of one layer.
// Not the quantization itself (gptq.ts) nor the order of sites (model.ts).
import { calibrationSplit, splitDocuments, tokenizeDocuments, tokenWindows } from "../data/documents.js";
import type { Context, LinearSite } from "../model/forward.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { WasmRuntime } from "../wasm.js";

/** Calibration tokens when the user gives none: enough for H of a 192-wide layer to be well conditioned. */
export const DEFAULT_CALIB_TOKENS = 4096;
/**
 * Longest calibration window. Every window re-runs the layers before the one being quantized, and attention
 * over long windows dominates that cost; on stories-deep-16L windows of 128, 256 and 512 tokens gave the same
 * held-out perplexity (docs/gptq.md) at 42, 59 and 100 s.
 */
export const MAX_CALIB_WINDOW = 128;

export interface CalibrationWindows {
  windows: number[][];
  /** tokens in all windows */
  tokens: number;
  /** documents calibration drew from (the first 80%) and how many the text has */
  calibDocuments: number;
  documents: number;
}

/**
 * Windows of the first 80% of the text's documents (each document BOS + its tokens, concatenated, cut into
 * windows that start with BOS), nTokens in all, rounded down to whole windows. Throws one line when the text
 * is too short.
 */
export function calibrationWindows(tokenizer: Tokenizer, text: string, nTokens: number, contextLength: number, maxWindow = MAX_CALIB_WINDOW): CalibrationWindows {
  if (!(Number.isInteger(nTokens) && nTokens >= 2)) throw new Error(`--tokens must be an integer ≥ 2, got ${nTokens}`);
  const docs = splitDocuments(text);
  const { calib } = calibrationSplit(docs);
  const window = Math.min(nTokens, maxWindow, contextLength);
  const want = Math.floor(nTokens / window);
  const windows = tokenWindows(tokenizeDocuments(tokenizer, calib), window, want * window, tokenizer.addBos ? tokenizer.bosId : undefined);
  if (windows.length < want) {
    const have = tokenizeDocuments(tokenizer, calib).reduce((a, d) => a + d.length, 0);
    const part = docs.length > 1 ? `its first ${calib.length} of ${docs.length} documents` : "the first 80% of its single document";
    throw new Error(`calibration text too short: ${part} hold ${have} tokens, fewer than --tokens ${nTokens} (in windows of ${window})`);
  }
  return { windows, tokens: want * window, calibDocuments: calib.length, documents: docs.length };
}

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
