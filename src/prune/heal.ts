// Training-free healing of removed layers by least squares (ReplaceMe, arXiv 2505.02819): for each contiguous run
// of removed layers, a linear map T with X·T ≈ Y over calibration tokens, where X is the FFN output of the last
// kept layer before the run and Y is the residual stream after the run minus the residual before that FFN output
// was added; T is folded into that layer's ffn_down (W ← Tᵀ·W, W being (dim, hiddenDim) row-major), so the file
// keeps its tensors and llama.cpp runs it. XᵀX and XᵀY are accumulated in float64 in one streaming pass over the
// dense model, then T = (XᵀX + λI)⁻¹ XᵀY by Cholesky. Not the choice of layers (metrics.ts) nor the file surgery
// (remove.ts), which this wraps.
import { layerTensorName } from "../gguf/names.js";
import type { ByteSource } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import type { GgufWriteSpec } from "../gguf/writer.js";
import { choleskySolve } from "../gptq/linalg.js";
import type { Model } from "../model/model.js";
import { removeLayers } from "./remove.js";
import { STUDY_CACHE } from "../model/forward.js";

export const HEAL_METHODS = ["none", "lstsq"] as const;
export type HealMethod = (typeof HEAL_METHODS)[number];

export const HEAL_DEFAULTS = { ridge: 0, includeBos: false } as const;

export interface HealOptions {
  /** λ as a fraction of the mean of diag(XᵀX) (default 0: plain least squares, as ReplaceMe's default) */
  ridge?: number;
  /** count the first position of each window (BOS, an attention sink with outsized activations); default false */
  includeBos?: boolean;
  onProgress?: (doneWindows: number, totalWindows: number) => void;
}

/** A contiguous run of removed layers [start, end) and the kept layer before it, whose ffn_down absorbs T. */
export interface RemovalRun {
  start: number;
  end: number;
  anchor: number;
}

export interface HealedRun extends RemovalRun {
  /** tokens the fit saw */
  tokens: number;
  /** ‖X − Y‖² / ‖Y‖²: how far the FFN output alone (T = I, no healing) is from what the run added */
  residualBefore: number;
  /** ‖X·T − Y‖² / ‖Y‖² with the fitted T */
  residualAfter: number;
  /** ‖X‖² / ‖Y‖² and ‖X·T‖² / ‖Y‖²: how much of the run's contribution the FFN output carries before and after */
  energyBefore: number;
  energyAfter: number;
  /** why this run was left as it is, when it was */
  skipped?: string;
}

/** The contiguous runs of a set of removed layers, in layer order. */
export function removalRuns(removed: Iterable<number>): RemovalRun[] {
  const sorted = [...new Set(removed)].sort((a, b) => a - b);
  const runs: RemovalRun[] = [];
  for (const l of sorted) {
    const last = runs[runs.length - 1];
    if (last && last.end === l) last.end = l + 1;
    else runs.push({ start: l, end: l + 1, anchor: l - 1 });
  }
  return runs;
}

/**
 * The drive of the forward pass this fit needs: every calibration window through the layers up to `until`, with
 * the residual stream entering, between the halves of, and leaving each layer. One place to change when the
 * forward pass exposes its stages directly.
 */
function streamLayers(model: Model, windows: number[][], until: number,
  onLayer: (layer: number, xMid: number, xOut: number, t: number, windowPos: number) => void,
  onWindow?: (done: number) => void): void {
  const windowTokens = Math.max(...windows.map((w) => w.length));
  // batches of at most 64 rows: the f32 partial sums of gptq_accumulate_h stay short
  const ctx = model.createContext({ contextSize: windowTokens, batchSize: Math.min(64, windowTokens), ...STUDY_CACHE });
  windows.forEach((w, wi) => {
    let pos = 0;
    ctx.reset();
    ctx.eval(w, {
      logits: "none", stopAfterLayer: until,
      onLayer: (l, _xIn, xMid, xOut, t) => {
        onLayer(l, xMid, xOut, t, pos);
        if (l === until - 1) pos += t;
      },
    });
    onWindow?.(wi + 1);
  });
}

export interface LstsqFit {
  runs: HealedRun[];
  /** anchor layer → T (dim, dim) row-major, for the runs that were healed */
  transforms: Map<number, Float64Array>;
}

/**
 * Fit T for every run of `removed` on the dense model (one streaming pass over `windows`). Runs that start at
 * layer 0 (no layer before them) or whose anchor has no FFN are skipped, with the reason.
 */
export function fitLstsq(model: Model, windows: number[][], removed: Iterable<number>, opts: HealOptions = {}): LstsqFit {
  if (windows.length === 0) throw new Error("healing needs calibration windows");
  const c = model.config;
  const d = c.dim;
  const ridge = opts.ridge ?? HEAL_DEFAULTS.ridge;
  if (!(ridge >= 0 && Number.isFinite(ridge))) throw new Error(`--heal-ridge must be a number ≥ 0, got ${ridge}`);
  // T is folded into ffn_down, so the FFN's contribution must be linear in ffn_down's output: a norm after it breaks that
  if (c.arch.layer.some((r) => r.key === "ffnPostNorm")) throw new Error(`cannot heal ${c.arch.name}: its FFN output passes through a post-FFN norm, so no map folded into ffn_down reproduces the fitted one`);
  const first = opts.includeBos ? 0 : 1;
  const runs: HealedRun[] = removalRuns(removed).map((r) => ({ ...r, tokens: 0, residualBefore: NaN, residualAfter: NaN, energyBefore: NaN, energyAfter: NaN }));
  for (const r of runs) {
    if (r.end > c.nLayers) throw new Error(`layer ${r.end - 1} is out of range: the model has layers 0..${c.nLayers - 1}`);
    if (r.anchor < 0) r.skipped = `layers ${r.start}–${r.end - 1} start at layer 0: no layer before them has an ffn_down to fold into`;
    else if (c.removedFfn.has(r.anchor)) r.skipped = `layer ${r.anchor}, before layers ${r.start}–${r.end - 1}, has no FFN (removed earlier)`;
  }
  const live = runs.filter((r) => !r.skipped);
  const transforms = new Map<number, Float64Array>();
  if (live.length === 0) return { runs, transforms };

  const rt = model.rt;
  const z = 2 * d; // one row of [X | Y]
  const mark = model.mark();
  try {
    const rowsMax = Math.min(64, Math.max(...windows.map((w) => w.length)));
    // per run: H = [X | Y]ᵀ[X | Y] (2d, 2d) f64, upper triangle; the anchor's mid stream and FFN output, and a
    // scratch block of [X | Y] rows
    const hPtr = live.map(() => { const p = rt.alloc(z * z * 8); rt.u8.fill(0, p, p + z * z * 8); return p; });
    const midPtr = live.map(() => rt.alloc(rowsMax * d * 4));
    const xPtr = live.map(() => rt.alloc(rowsMax * d * 4));
    const zPtr = rt.alloc(rowsMax * z * 4);
    const until = Math.max(...live.map((r) => r.end));
    streamLayers(model, windows, until, (l, xMid, xOut, t, pos) => {
      live.forEach((r, i) => {
        if (l === r.anchor) {
          const mid = rt.f32At(xMid, t * d), out = rt.f32At(xOut, t * d);
          rt.f32At(midPtr[i], t * d).set(mid);
          const x = rt.f32At(xPtr[i], t * d);
          for (let k = 0; k < t * d; k++) x[k] = out[k] - mid[k];
        }
        if (l === r.end - 1) {
          const skip = pos === 0 ? first : 0;
          const rows = t - skip;
          if (rows <= 0) return;
          const mid = rt.f32At(midPtr[i], t * d), x = rt.f32At(xPtr[i], t * d), out = rt.f32At(xOut, t * d);
          const zr = rt.f32At(zPtr, rows * z);
          for (let j = 0; j < rows; j++) {
            const src = (j + skip) * d;
            for (let k = 0; k < d; k++) {
              zr[j * z + k] = x[src + k];
              zr[j * z + d + k] = out[src + k] - mid[src + k];
            }
          }
          rt.k.gptq_accumulate_h(hPtr[i], zPtr, z, rows);
          r.tokens += rows;
        }
      });
    }, opts.onProgress && ((done) => opts.onProgress!(done, windows.length)));

    live.forEach((r, i) => {
      const h = new Float64Array(rt.memory.buffer, hPtr[i], z * z);
      const a = new Float64Array(d * d), b = new Float64Array(d * d);
      let trYY = 0;
      for (let p = 0; p < d; p++) {
        for (let q = p; q < d; q++) a[p * d + q] = a[q * d + p] = h[p * z + q];
        for (let q = 0; q < d; q++) b[p * d + q] = h[p * z + d + q];
        trYY += h[(d + p) * z + d + p];
      }
      if (r.tokens === 0 || trYY === 0) throw new Error(`healing layers ${r.start}–${r.end - 1}: no calibration tokens reached them`);
      const t = b.slice();
      const lhs = a.slice();
      let meanDiag = 0;
      for (let p = 0; p < d; p++) meanDiag += a[p * d + p] / d;
      for (let p = 0; p < d; p++) lhs[p * d + p] += ridge * meanDiag;
      if (!choleskySolve(lhs, d, t, d)) {
        throw new Error(`healing layers ${r.start}–${r.end - 1}: XᵀX of layer ${r.anchor}'s FFN output is not positive definite over ${r.tokens} tokens; add a ridge (--heal-ridge 1e-4) or more --tokens`);
      }
      // ‖X·T − Y‖² = tr(Tᵀ XᵀX T) − 2 tr(Tᵀ XᵀY) + tr(YᵀY); T = I gives tr(XᵀX) − 2 tr(XᵀY) + tr(YᵀY)
      let quad = 0, cross = 0, trA = 0, trB = 0;
      for (let p = 0; p < d; p++) {
        trA += a[p * d + p];
        trB += b[p * d + p];
        for (let q = 0; q < d; q++) {
          cross += t[p * d + q] * b[p * d + q];
          let at = 0;
          for (let k = 0; k < d; k++) at += a[p * d + k] * t[k * d + q];
          quad += t[p * d + q] * at;
        }
      }
      r.residualBefore = (trA - 2 * trB + trYY) / trYY;
      r.residualAfter = (quad - 2 * cross + trYY) / trYY;
      r.energyBefore = trA / trYY;
      r.energyAfter = quad / trYY;
      transforms.set(r.anchor, t);
    });
  } finally {
    model.release(mark);
  }
  return { runs, transforms };
}

/** W (dim, hiddenDim) row-major ← Tᵀ·W, in float64. */
export function foldTransform(w: Float32Array, t: Float64Array, dim: number, hidden: number): Float32Array {
  const out = new Float32Array(dim * hidden);
  const acc = new Float64Array(hidden);
  for (let i = 0; i < dim; i++) {
    acc.fill(0);
    for (let k = 0; k < dim; k++) {
      const tki = t[k * dim + i];
      if (tki === 0) continue;
      const row = k * hidden;
      for (let j = 0; j < hidden; j++) acc[j] += tki * w[row + j];
    }
    out.set(acc, i * hidden);
  }
  return out;
}

/**
 * The anchors' ffn_down tensors with T folded in, re-encoded in their own format (an F32 tensor stays exactly
 * the fold's float32; a quantized one is rounded to nearest again), by tensor name.
 */
export function healedTensors(file: GgufFile, src: ByteSource, transforms: Map<number, Float64Array>): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [anchor, t] of transforms) {
    const name = layerTensorName(anchor, "ffnDown");
    const info = file.tensors.find((x) => x.name === name);
    if (!info) throw new Error(`cannot heal: the model has no tensor ${name}`);
    const [dim, hidden] = info.shape;
    if (t.length !== dim * dim) throw new Error(`cannot heal: ${name} has ${dim} rows, the transform is for ${Math.sqrt(t.length)}`);
    const f = info.format;
    if (!f.dequantize || !f.quantize) throw new Error(`cannot heal: ${name} is ${f.name}, which we cannot decode and re-encode`);
    const raw = src.read(file.dataOffset + info.offset, info.byteSize);
    const w = new Float32Array(dim * hidden);
    const rowIn = info.byteSize / dim;
    for (let r = 0; r < dim; r++) f.dequantize(raw.subarray(r * rowIn, (r + 1) * rowIn), w.subarray(r * hidden, (r + 1) * hidden));
    const healed = foldTransform(w, t, dim, hidden);
    const bytes = new Uint8Array(info.byteSize);
    for (let r = 0; r < dim; r++) f.quantize(healed.subarray(r * hidden, (r + 1) * hidden), bytes.subarray(r * rowIn, (r + 1) * rowIn));
    out.set(name, bytes);
  }
  return out;
}

/**
 * Remove whole layers and heal every run by least squares, fitted on `model` (the same weights as `file`), as a
 * write spec like removeLayers'.
 */
export function removeAndHeal(file: GgufFile, src: ByteSource, model: Model, windows: number[][], layers: number[], opts: HealOptions = {}):
  { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; kept: number[]; nLayers: number; notes: string[]; runs: HealedRun[] } {
  const cut = removeLayers(file, src, { layers });
  const fit = fitLstsq(model, windows, layers, opts);
  const healed = healedTensors(file, src, fit.transforms);
  // the anchors are kept, so their ffn_down is renumbered with them
  const byNewName = new Map<string, Uint8Array>();
  for (const [anchor] of fit.transforms) byNewName.set(layerTensorName(cut.kept.indexOf(anchor), "ffnDown"), healed.get(layerTensorName(anchor, "ffnDown"))!);
  const tensorData = (i: number) => byNewName.get(cut.spec.tensors[i].name) ?? cut.tensorData(i);
  return { ...cut, tensorData, runs: fit.runs };
}
