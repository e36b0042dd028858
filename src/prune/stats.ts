// One calibration pass that measures how much each layer (and each half-layer) changes the residual stream, with
// the wasm cosine and norm kernels, as windows stream through: per-token statistics are summed, hidden states are
// never kept beyond the current window. Everything ShortGPT's Block Influence and its alternatives need comes
// from here. Not the ranking of layers (metrics.ts).
import type { ByteSource } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import type { ForwardOptions } from "../model/forward.js";
import { LayerStream } from "../model/layers.js";
import type { Model } from "../model/model.js";
import { MAX_TYPED_ARRAY_BYTES, size } from "../model/budget.js";
import type { WasmRuntime } from "../wasm.js";
import type { ThreadedRuntime } from "../threads/pool.js";
import { STUDY_CACHE } from "../model/forward.js";

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

/**
 * The sums behind LayerStats, fed one window at a time: per layer, the three comparisons of the stream entering,
 * between the halves and leaving it; per pair of boundaries, cos and angular distance. Both paths below (the whole
 * model, and layer by layer) add the same per-window sums in window order, so they give the same bits.
 */
class StatsSums {
  readonly sumCos: Float64Array;
  readonly sumAng: Float64Array;
  readonly s;
  tokens = 0;
  private readonly cosOut: number;
  private readonly normA: number;
  private readonly normB: number;

  constructor(private readonly rt: WasmRuntime, readonly L: number, private readonly dim: number, windowTokens: number, private readonly first: number) {
    const B = L + 1;
    this.sumCos = new Float64Array(B * B);
    this.sumAng = new Float64Array(B * B);
    this.s = {
      relMag: new Float64Array(L), inputNorm: new Float64Array(L),
      attnCos: new Float64Array(L), ffnCos: new Float64Array(L), attnAng: new Float64Array(L), ffnAng: new Float64Array(L),
      attnRel: new Float64Array(L), ffnRel: new Float64Array(L),
    };
    this.cosOut = rt.alloc(windowTokens * 4);
    this.normA = rt.alloc(windowTokens * 4);
    this.normB = rt.alloc(windowTokens * 4);
  }

  /** Per-row cos and norms of two t×dim blocks, summed from row `first` into the accumulators. */
  private compare(a: number, b: number, t: number, onRow: (cos: number, na: number, nb: number) => void): void {
    const { rt, dim } = this;
    const k = rt.k;
    k.cosine_rows(this.cosOut, a, b, dim, t);
    k.l2norm_rows(this.normA, a, dim, t);
    k.l2norm_rows(this.normB, b, dim, t);
    const c = rt.f32At(this.cosOut, t);
    const na = rt.f32At(this.normA, t);
    const nb = rt.f32At(this.normB, t);
    for (let j = this.first; j < t; j++) onRow(clampCos(c[j]), na[j], nb[j]);
  }

  /** layer l's three comparisons for one window (streams entering, between the halves, leaving; wasm pointers) */
  layer(l: number, xIn: number, xMid: number, xOut: number, t: number): void {
    const s = this.s;
    /** ‖b − a‖ / ‖b‖ from norms and cosine, in float64 */
    const rel = (cos: number, na: number, nb: number) => (nb > 0 ? Math.sqrt(Math.max(0, na * na + nb * nb - 2 * na * nb * cos)) / nb : 0);
    this.compare(xIn, xMid, t, (cos, na, nb) => { s.attnCos[l] += cos; s.attnAng[l] += Math.acos(cos) / Math.PI; s.attnRel[l] += rel(cos, na, nb); s.inputNorm[l] += na; });
    this.compare(xMid, xOut, t, (cos, na, nb) => { s.ffnCos[l] += cos; s.ffnAng[l] += Math.acos(cos) / Math.PI; s.ffnRel[l] += rel(cos, na, nb); });
    this.compare(xIn, xOut, t, (_cos, na, nb) => { s.relMag[l] += rel(_cos, na, nb); });
  }

  /** boundaries a < b over one window (t×dim blocks at pa, pb) */
  pair(a: number, b: number, pa: number, pb: number, t: number): void {
    const { rt, dim } = this;
    rt.k.cosine_rows(this.cosOut, pa, pb, dim, t);
    const c = rt.f32At(this.cosOut, t);
    let sc = 0;
    let sa = 0;
    for (let j = this.first; j < t; j++) {
      const cj = clampCos(c[j]);
      sc += cj;
      sa += Math.acos(cj) / Math.PI;
    }
    const B = this.L + 1;
    this.sumCos[a * B + b] += sc;
    this.sumAng[a * B + b] += sa;
  }

  result(): LayerStats {
    const { tokens, s } = this;
    if (tokens === 0) throw new Error("no calibration tokens were counted (windows of one token with the BOS position excluded)");
    const mean = (a: Float64Array) => a.map((v) => v / tokens);
    return {
      nLayers: this.L, tokens,
      boundaryCos: mean(this.sumCos), boundaryAngular: mean(this.sumAng),
      relMagnitude: mean(s.relMag), inputNorm: mean(s.inputNorm),
      attnCos: mean(s.attnCos), ffnCos: mean(s.ffnCos), attnAngular: mean(s.attnAng), ffnAngular: mean(s.ffnAng),
      attnRelMagnitude: mean(s.attnRel), ffnRelMagnitude: mean(s.ffnRel),
    };
  }
}

/** Run calibration windows through the model and accumulate the statistics. */
export function collectLayerStats(model: Model, windows: number[][], opts: StatsOptions = {}): LayerStats {
  if (windows.length === 0) throw new Error("no calibration windows: the calibration text is shorter than one window");
  const L = model.config.nLayers;
  const dim = model.config.dim;
  const rt = model.rt;
  const windowTokens = Math.max(...windows.map((w) => w.length));
  const first = opts.includeBos ? 0 : 1;
  const B = L + 1;

  const mark = model.mark();
  try {
    const ctx = model.createContext({ contextSize: windowTokens, batchSize: windowTokens, ...STUDY_CACHE });
    const sums = new StatsSums(rt, L, dim, windowTokens, first);
    // scratch: every boundary's stream for the current window
    const rowBytes = windowTokens * dim * 4;
    const boundaries = rt.alloc(B * rowBytes); // (L+1, windowTokens, dim)
    const valid = new Uint8Array(B);

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
        sums.layer(l, xIn, xMid, xOut, t);
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
        for (let b = a + 1; b < B; b++) if (valid[b]) sums.pair(a, b, boundaries + a * rowBytes, boundaries + b * rowBytes, t);
      }
      sums.tokens += t - first;
      opts.onProgress?.(wi + 1, windows.length);
    });
    return sums.result();
  } finally {
    model.release(mark);
  }
}

/** collectLayerStatsStream's options: Gromov's pairs, a name for messages, a runtime with threads to run in. */
export interface StreamStatsOptions extends StatsOptions {
  pairs?: boolean;
  name?: string;
  runtime?: ThreadedRuntime;
}

/**
 * collectLayerStats one layer at a time (model/layers.ts): only one layer of the file is in wasm memory at once,
 * so it runs on models the whole-model path cannot load, with the same results bit for bit. Without `pairs` only
 * adjacent boundaries are compared (what Block Influence, angular distance and relative magnitude need); with it,
 * every earlier boundary is kept (in JS memory, planned up front) for Gromov's block distance.
 */
export function collectLayerStatsStream(src: ByteSource, file: GgufFile, windows: number[][], opts: StreamStatsOptions = {}): LayerStats {
  if (windows.length === 0) throw new Error("no calibration windows: the calibration text is shorter than one window");
  const windowTokens = Math.max(...windows.map((w) => w.length));
  const stream = LayerStream.open(src, file, {
    matrices: "file", sequences: windows, batchSize: windowTokens, name: opts.name,
    extra: [{ what: "statistics scratch", bytes: 3 * windowTokens * 4 + 2 * windowTokens * file.tensors.length }],
    advice: "use fewer calibration tokens (--tokens)", runtime: opts.runtime,
  });
  try {
    return statsOverStream(stream, windows, opts);
  } finally {
    stream.close();
  }
}

/** collectLayerStatsStream's work on an open stream */
function statsOverStream(stream: LayerStream, windows: number[][], opts: StreamStatsOptions): LayerStats {
  const windowTokens = Math.max(...windows.map((w) => w.length));
  const c = stream.config, rt = stream.rt;
  const L = c.nLayers, dim = c.dim, B = L + 1;
  const first = opts.includeBos ? 0 : 1;
  const sums = new StatsSums(rt, L, dim, windowTokens, first);
  const rowBytes = windowTokens * dim * 4;
  const spare = rt.alloc(2 * rowBytes);
  const kept = opts.pairs ? new Map<number, Float32Array>() : undefined;
  if (kept && stream.tokens * dim * 4 > MAX_TYPED_ARRAY_BYTES) {
    throw new Error(`one boundary of ${stream.tokens} tokens takes ${size(stream.tokens * dim * 4)}, past a JS typed array's ${size(MAX_TYPED_ARRAY_BYTES)}; use fewer calibration tokens (--tokens)`);
  }
  // valid[b][w]: boundary b of window w was produced (a skipped layer produces none, as in the whole-model path)
  const valid = Array.from({ length: B }, () => new Uint8Array(windows.length));
  stream.embed();
  let window = 0;
  const skipped = (l: number) => opts.skipLayers?.has(l) ?? false;
  for (let l = 0; l < L; l++) {
    if (skipped(l)) {
      // a skipped layer leaves the stream as it is: the whole-model path compares its two (equal) boundaries
      // when the layers on both sides run
      if (!kept && l > 0 && !skipped(l - 1) && l + 1 < L && !skipped(l + 1)) {
        windows.forEach((w, wi) => {
          const p = stream.x + stream.starts[wi] * dim * 4;
          sums.pair(l, l + 1, p, p, w.length);
        });
      }
      continue;
    }
    stream.loadLayer(l);
    const before = kept && !kept.has(l) ? stream.residuals().slice() : undefined;
    stream.runLayer(l, {
      writeBack: true, skipAttention: opts.skipAttention?.has(l), skipFfn: opts.skipFfn?.has(l),
      onBatch: (seq) => { window = seq; },
      onLayer: (layer, xIn, xMid, xOut, t) => {
        sums.layer(layer, xIn, xMid, xOut, t);
        valid[layer][window] = 1;
        valid[layer + 1][window] = 1;
        if (!kept) sums.pair(layer, layer + 1, xIn, xOut, t);
      },
    });
    if (kept) {
      if (before) kept.set(l, before);
      kept.set(l + 1, stream.residuals().slice());
    }
    opts.onProgress?.(l + 1, L);
  }
  if (kept) {
    // every pair, window by window in order as the whole-model path adds them
    windows.forEach((w, wi) => {
      const t = w.length, at = stream.starts[wi] * dim;
      for (let a = 0; a < B; a++) {
        if (!valid[a][wi]) continue;
        for (let b = a + 1; b < B; b++) {
          if (!valid[b][wi]) continue;
          rt.f32At(spare, t * dim).set(kept.get(a)!.subarray(at, at + t * dim));
          rt.f32At(spare + rowBytes, t * dim).set(kept.get(b)!.subarray(at, at + t * dim));
          sums.pair(a, b, spare, spare + rowBytes, t);
        }
      }
    });
  }
  for (const w of windows) sums.tokens += w.length - first;
  const r = sums.result();
  // pairs that were not compared are unknown, not 0
  if (!kept) for (let a = 0; a < B; a++) for (let b = a + 2; b < B; b++) r.boundaryCos[a * B + b] = r.boundaryAngular[a * B + b] = NaN;
  return r;
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
