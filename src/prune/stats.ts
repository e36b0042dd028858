// One calibration pass that measures how much each layer (and each half-layer) changes the residual stream, with
// the wasm cosine and norm kernels, as windows stream through: per-token statistics are summed, hidden states are
// never kept beyond the current window. Everything ShortGPT's Block Influence and its alternatives need comes
// from here. Not the ranking of layers (metrics.ts).
import type { ForwardOptions } from "../model/forward.js";
import type { Model } from "../model/model.js";

export interface StatsOptions {
  /** count the first position of each window (BOS, an attention sink with outsized activations); default false */
  includeBos?: boolean;
  /** layers already removed (iterative scoring): they are skipped and their statistics stay empty */
  skipLayers?: ReadonlySet<number>;
  skipAttention?: ReadonlySet<number>;
  skipFfn?: ReadonlySet<number>;
  onProgress?: (doneWindows: number, totalWindows: number) => void;
}

/**
 * Boundary b is the residual stream entering layer b (b = 0 … L−1) or, for b = L, leaving the last layer before
 * the final norm. Means are over counted tokens.
 */
export interface LayerStats {
  nLayers: number;
  /** tokens counted per window sum */
  tokens: number;
  /** (L+1)×(L+1), row-major: mean cos(h_a, h_b) between boundaries a < b (upper triangle filled) */
  boundaryCos: Float64Array;
  /** same layout: mean angular distance arccos(cos)/π */
  boundaryAngular: Float64Array;
  /** per layer: mean ‖h_{l+1} − h_l‖ / ‖h_{l+1}‖, the update's size relative to the stream it produces */
  relMagnitude: Float64Array;
  /** per layer: mean ‖h_l‖ entering the layer */
  inputNorm: Float64Array;
  /** per layer: mean cos(stream before attention, after attention) */
  attnCos: Float64Array;
  /** per layer: mean cos(stream before FFN, after FFN) */
  ffnCos: Float64Array;
  attnAngular: Float64Array;
  ffnAngular: Float64Array;
  attnRelMagnitude: Float64Array;
  ffnRelMagnitude: Float64Array;
}

/** Run calibration windows through the model and accumulate the statistics. */
export function collectLayerStats(model: Model, windows: number[][], opts: StatsOptions = {}): LayerStats {
  if (windows.length === 0) throw new Error("no calibration windows: the calibration text is shorter than one window");
  const L = model.config.nLayers;
  const dim = model.config.dim;
  const rt = model.rt;
  const k = rt.k;
  const windowTokens = Math.max(...windows.map((w) => w.length));
  const first = opts.includeBos ? 0 : 1;
  const B = L + 1;
  const sumCos = new Float64Array(B * B);
  const sumAng = new Float64Array(B * B);
  const s = {
    relMag: new Float64Array(L), inputNorm: new Float64Array(L),
    attnCos: new Float64Array(L), ffnCos: new Float64Array(L), attnAng: new Float64Array(L), ffnAng: new Float64Array(L),
    attnRel: new Float64Array(L), ffnRel: new Float64Array(L),
  };
  let tokens = 0;

  const mark = rt.mark();
  try {
    const ctx = model.createContext({ contextSize: windowTokens, batchSize: windowTokens });
    // scratch: every boundary's stream for the current window, and per-row results
    const rowBytes = windowTokens * dim * 4;
    const boundaries = rt.alloc(B * rowBytes); // (L+1, windowTokens, dim)
    const cosOut = rt.alloc(windowTokens * 4);
    const normA = rt.alloc(windowTokens * 4);
    const normB = rt.alloc(windowTokens * 4);
    const valid = new Uint8Array(B);

    /** Per-row cos and norms of two t×dim blocks, summed from row `first` into the accumulators. */
    const compare = (a: number, b: number, t: number, onRow: (cos: number, na: number, nb: number) => void) => {
      k.cosine_rows(cosOut, a, b, dim, t);
      k.l2norm_rows(normA, a, dim, t);
      k.l2norm_rows(normB, b, dim, t);
      const c = rt.f32At(cosOut, t);
      const na = rt.f32At(normA, t);
      const nb = rt.f32At(normB, t);
      for (let j = first; j < t; j++) onRow(clampCos(c[j]), na[j], nb[j]);
    };
    /** ‖b − a‖ / ‖b‖ from norms and cosine, in float64 */
    const rel = (cos: number, na: number, nb: number) => (nb > 0 ? Math.sqrt(Math.max(0, na * na + nb * nb - 2 * na * nb * cos)) / nb : 0);

    const forward: ForwardOptions = {
      logits: "none",
      skipLayers: opts.skipLayers,
      skipAttention: opts.skipAttention,
      skipFfn: opts.skipFfn,
      onLayer: (l, xIn, xMid, xOut, t) => {
        rt.u8.copyWithin(boundaries + l * rowBytes, xIn, xIn + t * dim * 4);
        rt.u8.copyWithin(boundaries + (l + 1) * rowBytes, xOut, xOut + t * dim * 4);
        valid[l] = 1;
        valid[l + 1] = 1;
        compare(xIn, xMid, t, (cos, na, nb) => { s.attnCos[l] += cos; s.attnAng[l] += Math.acos(cos) / Math.PI; s.attnRel[l] += rel(cos, na, nb); s.inputNorm[l] += na; });
        compare(xMid, xOut, t, (cos, na, nb) => { s.ffnCos[l] += cos; s.ffnAng[l] += Math.acos(cos) / Math.PI; s.ffnRel[l] += rel(cos, na, nb); });
        compare(xIn, xOut, t, (_cos, na, nb) => { s.relMag[l] += rel(_cos, na, nb); });
      },
    };

    windows.forEach((w, wi) => {
      valid.fill(0);
      ctx.reset();
      ctx.eval(w, forward);
      const t = w.length;
      // every pair of boundaries: Block Influence is (l, l+1); Gromov's block distance is (l, l+n)
      for (let a = 0; a < B; a++) {
        if (!valid[a]) continue;
        for (let b = a + 1; b < B; b++) {
          if (!valid[b]) continue;
          k.cosine_rows(cosOut, boundaries + a * rowBytes, boundaries + b * rowBytes, dim, t);
          const c = rt.f32At(cosOut, t);
          let sc = 0;
          let sa = 0;
          for (let j = first; j < t; j++) {
            const cj = clampCos(c[j]);
            sc += cj;
            sa += Math.acos(cj) / Math.PI;
          }
          sumCos[a * B + b] += sc;
          sumAng[a * B + b] += sa;
        }
      }
      tokens += t - first;
      opts.onProgress?.(wi + 1, windows.length);
    });
  } finally {
    rt.release(mark);
  }
  if (tokens === 0) throw new Error("no calibration tokens were counted (windows of one token with the BOS position excluded)");
  const mean = (a: Float64Array) => a.map((v) => v / tokens);
  return {
    nLayers: L, tokens,
    boundaryCos: mean(sumCos), boundaryAngular: mean(sumAng),
    relMagnitude: mean(s.relMag), inputNorm: mean(s.inputNorm),
    attnCos: mean(s.attnCos), ffnCos: mean(s.ffnCos), attnAngular: mean(s.attnAng), ffnAngular: mean(s.ffnAng),
    attnRelMagnitude: mean(s.attnRel), ffnRelMagnitude: mean(s.ffnRel),
  };
}

/** Block Influence of layer l: 1 − mean cos(h_l, h_{l+1}). */
export function blockInfluence(stats: LayerStats): Float64Array {
  const B = stats.nLayers + 1;
  return Float64Array.from({ length: stats.nLayers }, (_, l) => 1 - stats.boundaryCos[l * B + l + 1]);
}

/** Mean angular distance between the stream entering layer `start` and leaving layer start+n−1 (Gromov et al.). */
export function blockDistance(stats: LayerStats, start: number, n: number): number {
  const B = stats.nLayers + 1;
  return stats.boundaryAngular[start * B + start + n];
}

function clampCos(c: number): number {
  return c > 1 ? 1 : c < -1 ? -1 : c;
}
