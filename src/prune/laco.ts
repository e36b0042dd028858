// LaCo's layer collapse (Yang et al. 2024) as a baseline that merges instead of deleting: the m layers after layer
// l are folded into it, θ_l ← θ_l + Σ_{k=1..m} (θ_{l+k} − θ_l), and then skipped. Works on F32 weights in wasm
// memory, in place, with an undo. Not LaCo's full threshold-driven search: the merge position is chosen by the
// caller (the study picks the one with the lowest calibration loss).
import type { Model } from "../model/model.js";
import type { LayerWeights, Tensor } from "../model/weights.js";

/** Merge layers l+1 … l+m into layer l in place; returns a function that restores the original weights. */
export function collapseLayers(model: Model, l: number, m: number): () => void {
  const L = model.config.nLayers;
  if (!(l >= 0 && m >= 1 && l + m < L)) throw new Error(`cannot collapse layers ${l + 1}..${l + m} into ${l}: the model has ${L} layers`);
  const target = model.weights.layers[l];
  const saved: { t: Tensor; data: Float32Array }[] = [];
  for (const key of Object.keys(target) as (keyof LayerWeights)[]) {
    const t = target[key]!;
    if (t.format.name !== "F32") throw new Error(`layer collapse needs F32 weights; ${t.name} is ${t.format.name}`);
    const n = t.byteSize / 4;
    const base = model.runtimes[t.shard ?? 0].f32At(t.ptr, n);
    saved.push({ t, data: base.slice() });
    const original = saved[saved.length - 1].data;
    for (let k = 1; k <= m; k++) {
      const other = model.weights.layers[l + k][key];
      if (!other) throw new Error(`layer ${l + k} has no ${String(key)} to merge`);
      if (other.format.name !== "F32") throw new Error(`layer collapse needs F32 weights; ${other.name} is ${other.format.name}`);
      const w = model.runtimes[other.shard ?? 0].f32At(other.ptr, n);
      for (let i = 0; i < n; i++) base[i] += w[i] - original[i];
    }
  }
  return () => {
    for (const s of saved) model.runtimes[s.t.shard ?? 0].f32At(s.t.ptr, s.data.length).set(s.data);
  };
}

/** The layers a collapse at l of m layers skips. */
export function collapsedLayers(l: number, m: number): number[] {
  return Array.from({ length: m }, (_, i) => l + 1 + i);
}
