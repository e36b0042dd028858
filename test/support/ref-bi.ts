// Independent float64 references for layer ranking, on top of ref-forward.ts: ShortGPT's Block Influence and every
// other metric `edgeprune bi` offers (angular, relmag, ppl, block, last, random), per layer and per half-layer,
// one-shot or iterative, with the conventions the README states ("Block Influence conventions"): h_l is the
// residual stream entering layer l, h_L the last layer's output before the final norm, means over every counted
// token, the first position of each window (BOS) not counted unless includeBos. Also the calibration windows of
// the CLI, rebuilt from that description. Shares no code with src/prune or src/data; tokenizing is the caller's.
import { RefLlama, refLogProb, type RefSkip } from "./ref-forward.js";

export type RefMetric = "bi" | "angular" | "relmag" | "ppl" | "block" | "last" | "random";
export type RefGranularity = "layer" | "sublayer";

/** A removable unit: a whole layer or one half of it. */
export interface RefUnit {
  layer: number;
  part: "layer" | "attn" | "ffn";
}

export interface RefStats {
  nLayers: number;
  /** counted tokens */
  tokens: number;
  /** per layer, NaN where the layer was skipped */
  bi: Float64Array;
  angular: Float64Array;
  relmag: Float64Array;
  /** mean ‖h_l‖ */
  inputNorm: Float64Array;
  attnBi: Float64Array;
  ffnBi: Float64Array;
  attnAngular: Float64Array;
  ffnAngular: Float64Array;
  attnRelmag: Float64Array;
  ffnRelmag: Float64Array;
  /** mean angular distance arccos(cos)/π between h_a and h_b, for a < b */
  boundaryAngular(a: number, b: number): number;
}

function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
  return s;
}

/** cos(a_j, b_j) of two rows, clamped to [−1, 1]. */
function cosRow(a: Float64Array, b: Float64Array, j: number, n: number): number {
  const o = j * n;
  const c = dot(a, o, b, o, n) / Math.sqrt(dot(a, o, a, o, n) * dot(b, o, b, o, n));
  return Math.max(-1, Math.min(1, c));
}

/** ‖b_j − a_j‖ / ‖b_j‖ */
function relRow(a: Float64Array, b: Float64Array, j: number, n: number): number {
  let d = 0;
  for (let i = j * n; i < (j + 1) * n; i++) d += (b[i] - a[i]) ** 2;
  return Math.sqrt(d / dot(b, j * n, b, j * n, n));
}

const angle = (c: number) => Math.acos(c) / Math.PI;

/** One pass over the windows: every statistic the metrics need, means over counted tokens. */
export function refLayerStats(model: RefLlama, windows: number[][], opts: { includeBos?: boolean; skip?: RefSkip } = {}): RefStats {
  const c = model.config, L = c.nLayers, dim = c.dim;
  const first = opts.includeBos ? 0 : 1;
  const z = () => new Float64Array(L);
  const s = { bi: z(), angular: z(), relmag: z(), inputNorm: z(), attnBi: z(), ffnBi: z(), attnAngular: z(), ffnAngular: z(), attnRelmag: z(), ffnRelmag: z() };
  const ran = new Uint8Array(L);
  const pair = new Float64Array((L + 1) * (L + 1));
  const embd = model.tensors("token_embd.weight")!;
  let tokens = 0;
  for (const w of windows) {
    const t = w.length;
    // h[b]: the stream entering layer b (after every layer before b that ran), b = 0 … L
    const h: Float64Array[] = new Array(L + 1);
    h[0] = new Float64Array(t * dim);
    w.forEach((id, j) => h[0].set(embd.data.subarray(id * dim, (id + 1) * dim), j * dim));
    const mid: Float64Array[] = new Array(L);
    model.forward(w, {
      ...opts.skip, logits: false,
      onLayer: (l, _xIn, xMid, xOut) => { ran[l] = 1; mid[l] = xMid; h[l + 1] = xOut; },
    });
    for (let b = 1; b <= L; b++) h[b] ??= h[b - 1];
    for (let l = 0; l < L; l++) {
      if (!mid[l]) continue;
      for (let j = first; j < t; j++) {
        const cl = cosRow(h[l], h[l + 1], j, dim), ca = cosRow(h[l], mid[l], j, dim), cf = cosRow(mid[l], h[l + 1], j, dim);
        s.bi[l] += 1 - cl; s.angular[l] += angle(cl); s.relmag[l] += relRow(h[l], h[l + 1], j, dim);
        s.inputNorm[l] += Math.sqrt(dot(h[l], j * dim, h[l], j * dim, dim));
        s.attnBi[l] += 1 - ca; s.attnAngular[l] += angle(ca); s.attnRelmag[l] += relRow(h[l], mid[l], j, dim);
        s.ffnBi[l] += 1 - cf; s.ffnAngular[l] += angle(cf); s.ffnRelmag[l] += relRow(mid[l], h[l + 1], j, dim);
      }
    }
    for (let a = 0; a <= L; a++) for (let b = a + 1; b <= L; b++) {
      for (let j = first; j < t; j++) pair[a * (L + 1) + b] += angle(cosRow(h[a], h[b], j, dim));
    }
    tokens += t - first;
  }
  for (const a of Object.values(s)) for (let l = 0; l < L; l++) a[l] = ran[l] ? a[l] / tokens : NaN;
  return { nLayers: L, tokens, ...s, boundaryAngular: (a, b) => pair[a * (L + 1) + b] / tokens };
}

/** Every unit at a granularity, in layer order (attention before FFN). */
export function refUnits(nLayers: number, granularity: RefGranularity): RefUnit[] {
  const out: RefUnit[] = [];
  for (let l = 0; l < nLayers; l++) {
    if (granularity === "layer") out.push({ layer: l, part: "layer" });
    else out.push({ layer: l, part: "attn" }, { layer: l, part: "ffn" });
  }
  return out;
}

function skipOf(units: RefUnit[]): RefSkip {
  const pick = (p: RefUnit["part"]) => new Set(units.filter((u) => u.part === p).map((u) => u.layer));
  return { layers: pick("layer"), attention: pick("attn"), ffn: pick("ffn") };
}

/** Mean negative log-likelihood of every window's tokens 1 … t−1, given the ones before, with units removed. */
export function refWindowsNll(model: RefLlama, windows: number[][], removed: RefUnit[] = []): number {
  const n = model.config.vocabSize;
  let nll = 0, count = 0;
  for (const w of windows) {
    const logits = model.forward(w, skipOf(removed));
    for (let j = 0; j + 1 < w.length; j++) { nll -= refLogProb(logits, j, n, w[j + 1]); count++; }
  }
  return nll / count;
}

/** mulberry32 (Tommy Ettinger's public-domain generator), written out here so the reference shares no code. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RefScoring {
  windows: number[][];
  granularity?: RefGranularity;
  includeBos?: boolean;
  seed?: number;
}

/**
 * Score every unit not yet removed; lower is removed first. For "last" and "random" the score is the position in
 * the removal order (the last unit first; a seeded Fisher–Yates shuffle of the units).
 */
export function refScores(model: RefLlama, metric: RefMetric, input: RefScoring, removed: RefUnit[] = []): { units: RefUnit[]; scores: number[] } {
  const L = model.config.nLayers;
  const gone = (u: RefUnit) => removed.some((r) => r.layer === u.layer && (r.part === "layer" || r.part === u.part));
  const units = refUnits(L, input.granularity ?? "layer").filter((u) => !gone(u));
  let scores: number[];
  if (metric === "ppl") {
    scores = units.map((u) => Math.exp(refWindowsNll(model, input.windows, [...removed, u])));
  } else if (metric === "last") {
    scores = units.map((_, i) => units.length - i);
  } else if (metric === "random") {
    const rand = mulberry32(input.seed ?? 0);
    const perm = units.map((_, i) => i);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    scores = new Array(units.length);
    perm.forEach((u, pos) => { scores[u] = pos; });
  } else {
    scores = refStatScores(refLayerStats(model, input.windows, { includeBos: input.includeBos, skip: skipOf(removed) }), metric, units);
  }
  return { units, scores };
}

/** The scores of units under a statistics metric, from one statistics pass (block scores single layers by angle). */
export function refStatScores(st: RefStats, metric: "bi" | "angular" | "relmag" | "block", units: RefUnit[]): number[] {
  const pick = { bi: [st.bi, st.attnBi, st.ffnBi], angular: [st.angular, st.attnAngular, st.ffnAngular], block: [st.angular, st.attnAngular, st.ffnAngular], relmag: [st.relmag, st.attnRelmag, st.ffnRelmag] }[metric];
  return units.map((u) => pick[u.part === "layer" ? 0 : u.part === "attn" ? 1 : 2][u.layer]);
}

/** Indices from the lowest score up; equal scores keep index order. */
export function refOrder(scores: number[]): number[] {
  return scores.map((v, i) => [v, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((e) => e[1]);
}

/** The block metric's choice for k: the start s whose h_s and h_{s+k} are closest in angle (first on ties). */
export function refBestBlock(stats: RefStats, k: number): number {
  let best = 0;
  for (let s = 1; s + k <= stats.nLayers; s++) if (stats.boundaryAngular(s, s + k) < stats.boundaryAngular(best, best + k)) best = s;
  return best;
}

/**
 * The CLI's calibration windows, from the README's description: documents are the text between `<|endoftext|>`
 * lines; the first 80% of them (rounded) are used; each is BOS + its tokens; they are concatenated and cut into
 * windows of `window` tokens whose first token is replaced by BOS; floor(nTokens / window) windows are kept.
 */
export function refCalibrationWindows(encodeWithBos: (text: string) => number[], bos: number, text: string, nTokens: number, window: number): number[][] {
  const docs = text.split(/^<\|endoftext\|>[ \t]*$/m).map((d) => d.trim()).filter((d) => d !== "");
  const calib = docs.slice(0, Math.round(docs.length * 0.8));
  const want = Math.floor(nTokens / window);
  const out: number[][] = [];
  let cur: number[] = [];
  for (const d of calib) {
    for (const id of encodeWithBos(d)) {
      cur.push(id);
      if (cur.length === window) {
        cur[0] = bos;
        out.push(cur);
        cur = [];
        if (out.length === want) return out;
      }
    }
  }
  throw new Error(`ref-bi: the calibration text holds fewer than ${want} windows of ${window}`);
}
