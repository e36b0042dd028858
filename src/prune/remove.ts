// Removing layers (or the attention or FFN half of a layer) from a GGUF model: which tensors go, how the rest are
// renumbered, and the metadata that records it; which tensors make up each half comes from the architecture
// descriptor. llama.cpp needs every tensor of every layer it counts, so a removed half is by default kept as an
// identity (its output projection zeroed: llama.cpp computes it and adds nothing, edgeprune skips it and never
// loads it); `halves: "drop"` (the CLI's --edgeprune-only) drops its tensors instead, a smaller file only edgeprune
// runs. Whole layers of a family with an interleaved sliding-window pattern (Gemma 2/3) are dropped only where the
// renumbering keeps every remaining layer's local/global type; otherwise they too become identities. Every other
// key and tensor is kept byte for byte. Not scoring: which layers to remove is decided in prune/ (metrics.ts).
import { metaCount, metaString } from "../gguf/metadata.js";
import { ARCH_KEY, archKey, EDGEPRUNE_KEY, KEY, LAYER_TENSOR, parseLayerTensorName, type LayerTensorKey } from "../gguf/names.js";
import type { ByteSource } from "../gguf/reader.js";
import { GgufFile, GgufKv, GgufType } from "../gguf/types.js";
import type { GgufWriteSpec } from "../gguf/writer.js";
import { architectureFor, HALF_OUTPUT, type Half } from "../model/arch.js";
import { slidingWindows } from "../model/config.js";

export interface RemovalPlan {
  /** whole layers to remove (original indices) */
  layers?: Iterable<number>;
  /** layers whose attention half is removed (original indices) */
  attention?: Iterable<number>;
  /** layers whose FFN half is removed (original indices) */
  ffn?: Iterable<number>;
  /**
   * how removed halves are written: "identity" (default; tensors kept, output projection zeroed: llama.cpp runs
   * the file with the same results) or "drop" (tensors left out: smaller, but llama.cpp refuses the file)
   */
  halves?: "identity" | "drop";
}

export interface RemovalResult {
  spec: GgufWriteSpec;
  tensorData: (i: number) => Uint8Array;
  /** original indices of the layers the new file has */
  kept: number[];
  nLayers: number;
  /** what the user should know about how the removal was written */
  notes: string[];
}

/** Check indices against the layer count; the messages are what the CLI prints. */
function checkLayers(what: string, ids: number[], nLayers: number): Set<number> {
  for (const l of ids) {
    if (!Number.isInteger(l) || l < 0 || l >= nLayers) throw new Error(`${what} index ${l} is out of range: the model has layers 0..${nLayers - 1}`);
  }
  return new Set(ids);
}

/** suffix (attn_q.weight) -> role key */
const KEY_OF_SUFFIX = new Map<string, LayerTensorKey>(Object.entries(LAYER_TENSOR).map(([k, v]) => [v, k as LayerTensorKey]));

/**
 * A write spec for the model without the given layers, and a callback giving each kept tensor's bytes from the
 * source. Layers after a removed one are renumbered down; half-removals already recorded in the file are carried.
 */
export function removeLayers(file: GgufFile, src: ByteSource, plan: RemovalPlan): RemovalResult {
  const archName = metaString(file.kv, KEY.architecture);
  const arch = architectureFor(archName);
  const countKey = archKey(archName, ARCH_KEY.blockCount);
  const nLayers = metaCount(file.kv, countKey);
  const drop = checkLayers("layer", [...(plan.layers ?? [])], nLayers);
  const dropAttn = checkLayers("attention layer", [...(plan.attention ?? [])], nLayers);
  const dropFfn = checkLayers("FFN layer", [...(plan.ffn ?? [])], nLayers);
  const halves = plan.halves ?? "identity";
  const notes: string[] = [];
  // half-removals already in the file (earlier sub-block pruning), in the file's numbering
  const prevAttn = readLayerList(file, EDGEPRUNE_KEY.removedAttention);
  const prevFfn = readLayerList(file, EDGEPRUNE_KEY.removedFfn);
  // a layer losing both halves is a whole layer
  for (const l of dropAttn) if (dropFfn.has(l) || prevFfn.includes(l)) drop.add(l);
  for (const l of dropFfn) if (prevAttn.includes(l)) drop.add(l);
  if (drop.size >= nLayers) throw new Error(`cannot remove ${drop.size} of ${nLayers} layers: at least one must remain`);

  // renumbering re-applies a sliding-window pattern to the new indices: drop only if no kept layer changes type
  const swa = slidingWindows(arch, file.kv, nLayers).layers;
  const keptIf = Array.from({ length: nLayers }, (_, i) => i).filter((l) => !drop.has(l));
  const shifted = slidingWindows(arch, file.kv, keptIf.length).layers;
  if (drop.size > 0 && keptIf.some((l, i) => shifted[i] !== swa[l])) {
    notes.push(`layers ${[...drop].sort((a, b) => a - b).join(", ")} are kept as identity layers, not dropped: ${archName}'s sliding-window pattern is fixed by layer index, and renumbering would turn remaining local layers global (or back)`);
    for (const l of drop) { dropAttn.add(l); dropFfn.add(l); }
    drop.clear();
  }

  const kept = Array.from({ length: nLayers }, (_, i) => i).filter((l) => !drop.has(l));
  const newIndex = new Map(kept.map((l, i) => [l, i]));
  const removedAttn = [...new Set([...prevAttn, ...dropAttn])].filter((l) => !drop.has(l)).map((l) => newIndex.get(l)!).sort((a, b) => a - b);
  const removedFfn = [...new Set([...prevFfn, ...dropFfn])].filter((l) => !drop.has(l)).map((l) => newIndex.get(l)!).sort((a, b) => a - b);
  const removedIn = (half: Half) => new Set((half === "attention" ? removedAttn : removedFfn));

  const kv = new Map(file.kv);
  kv.set(countKey, { key: countKey, type: file.kv.get(countKey)!.type, value: retype(file.kv.get(countKey)!, kept.length) });
  setLayerList(kv, EDGEPRUNE_KEY.removedAttention, removedAttn);
  setLayerList(kv, EDGEPRUNE_KEY.removedFfn, removedFfn);

  const halfOf = new Map(arch.layer.map((r) => [r.key, r.half]));
  const gone = { attention: removedIn("attention"), ffn: removedIn("ffn") };
  const tensors: GgufWriteSpec["tensors"] = [];
  /** per written tensor: its index in the source, or -1 - index for one written as zeros */
  const sources: number[] = [];
  file.tensors.forEach((t, i) => {
    const parsed = parseLayerTensorName(t.name);
    if (!parsed) {
      tensors.push({ name: t.name, dims: t.dims, type: t.type });
      sources.push(i);
      return;
    }
    if (parsed.layer >= nLayers) throw new Error(`tensor "${t.name}" names layer ${parsed.layer}, but ${countKey} = ${nLayers}`);
    if (drop.has(parsed.layer)) return;
    const layer = newIndex.get(parsed.layer)!;
    const key = KEY_OF_SUFFIX.get(parsed.rest);
    const half = key && halfOf.get(key);
    let zero = false;
    if (half && gone[half].has(layer)) {
      if (halves === "drop") return;
      zero = HALF_OUTPUT[half] === key;
    }
    tensors.push({ name: `blk.${layer}.${parsed.rest}`, dims: t.dims, type: t.type });
    sources.push(zero ? -1 - i : i);
  });
  if (halves === "identity" && (removedAttn.length || removedFfn.length)) {
    notes.push("removed halves are written as identities (attn_output / ffn_down zeroed) so llama.cpp runs the file with the same results; llama.cpp still computes them, edgeprune skips them; --edgeprune-only drops their tensors (a smaller file that only edgeprune runs)");
  }
  const tensorData = (i: number) => {
    const s = sources[i];
    // every ggml format decodes all-zero bytes to zeros (scales are 0)
    if (s < 0) return new Uint8Array(file.tensors[-1 - s].byteSize);
    const t = file.tensors[s];
    return src.read(file.dataOffset + t.offset, t.byteSize);
  };
  return { spec: { version: file.version, kv: [...kv.values()], tensors }, tensorData, kept, nLayers: kept.length, notes };
}

function retype(e: GgufKv, v: number): number | bigint {
  return e.type === GgufType.UINT64 || e.type === GgufType.INT64 ? BigInt(v) : v;
}

function readLayerList(file: GgufFile, key: string): number[] {
  const e = file.kv.get(key);
  if (!e) return [];
  const a = e.value as { items: ArrayLike<number> };
  return Array.from(a.items);
}

function setLayerList(kv: Map<string, GgufKv>, key: string, layers: number[]): void {
  if (layers.length === 0) { kv.delete(key); return; }
  kv.set(key, { key, type: GgufType.ARRAY, value: { itemType: GgufType.UINT32, items: Uint32Array.from(layers) } });
}
