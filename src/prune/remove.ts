// Removing layers (or the attention or FFN half of a layer) from a GGUF model: which tensors go, how the rest are
// renumbered, and the metadata that records it. Every other key and tensor is kept byte for byte. Not scoring:
// which layers to remove is decided in prune/ (Block Influence and the other metrics).
import { metaCount, metaString } from "../gguf/metadata.js";
import { ARCH_KEY, archKey, EDGEPRUNE_KEY, KEY, LAYER_TENSOR, parseLayerTensorName } from "../gguf/names.js";
import type { ByteSource } from "../gguf/reader.js";
import { GgufFile, GgufKv, GgufType } from "../gguf/types.js";
import type { GgufWriteSpec } from "../gguf/writer.js";

export interface RemovalPlan {
  /** whole layers to remove (original indices) */
  layers?: Iterable<number>;
  /** layers whose attention half is removed (original indices) */
  attention?: Iterable<number>;
  /** layers whose FFN half is removed (original indices) */
  ffn?: Iterable<number>;
}

const ATTENTION_SUFFIXES = new Set<string>([LAYER_TENSOR.attnNorm, LAYER_TENSOR.attnQ, LAYER_TENSOR.attnK, LAYER_TENSOR.attnV, LAYER_TENSOR.attnOutput]);
const FFN_SUFFIXES = new Set<string>([LAYER_TENSOR.ffnNorm, LAYER_TENSOR.ffnGate, LAYER_TENSOR.ffnUp, LAYER_TENSOR.ffnDown]);

/** Check indices against the layer count; the messages are what the CLI prints. */
function checkLayers(what: string, ids: number[], nLayers: number): Set<number> {
  for (const l of ids) {
    if (!Number.isInteger(l) || l < 0 || l >= nLayers) throw new Error(`${what} index ${l} is out of range: the model has layers 0..${nLayers - 1}`);
  }
  return new Set(ids);
}

/**
 * A write spec for the model without the given layers, and a callback giving each kept tensor's bytes from the
 * source. Layers after a removed one are renumbered down; half-removals already recorded in the file are carried.
 */
export function removeLayers(file: GgufFile, src: ByteSource, plan: RemovalPlan):
  { spec: GgufWriteSpec; tensorData: (i: number) => Uint8Array; kept: number[]; nLayers: number } {
  const arch = metaString(file.kv, KEY.architecture);
  const countKey = archKey(arch, ARCH_KEY.blockCount);
  const nLayers = metaCount(file.kv, countKey);
  const drop = checkLayers("layer", [...(plan.layers ?? [])], nLayers);
  const dropAttn = checkLayers("attention layer", [...(plan.attention ?? [])], nLayers);
  const dropFfn = checkLayers("FFN layer", [...(plan.ffn ?? [])], nLayers);
  // a layer losing both halves is a whole layer
  for (const l of dropAttn) if (dropFfn.has(l)) drop.add(l);
  if (drop.size >= nLayers) throw new Error(`cannot remove ${drop.size} of ${nLayers} layers: at least one must remain`);

  const kept = Array.from({ length: nLayers }, (_, i) => i).filter((l) => !drop.has(l));
  const newIndex = new Map(kept.map((l, i) => [l, i]));

  // half-removals already in the file (earlier sub-block pruning) plus the new ones, in new numbering
  const prevAttn = readLayerList(file, EDGEPRUNE_KEY.removedAttention);
  const prevFfn = readLayerList(file, EDGEPRUNE_KEY.removedFfn);
  const removedAttn = [...new Set([...prevAttn, ...dropAttn])].filter((l) => !drop.has(l)).map((l) => newIndex.get(l)!).sort((a, b) => a - b);
  const removedFfn = [...new Set([...prevFfn, ...dropFfn])].filter((l) => !drop.has(l)).map((l) => newIndex.get(l)!).sort((a, b) => a - b);

  const kv = new Map(file.kv);
  kv.set(countKey, { key: countKey, type: file.kv.get(countKey)!.type, value: retype(file.kv.get(countKey)!, kept.length) });
  setLayerList(kv, EDGEPRUNE_KEY.removedAttention, removedAttn);
  setLayerList(kv, EDGEPRUNE_KEY.removedFfn, removedFfn);

  const tensors: GgufWriteSpec["tensors"] = [];
  const sources: number[] = [];
  file.tensors.forEach((t, i) => {
    const parsed = parseLayerTensorName(t.name);
    if (parsed) {
      if (parsed.layer >= nLayers) throw new Error(`tensor "${t.name}" names layer ${parsed.layer}, but ${countKey} = ${nLayers}`);
      if (drop.has(parsed.layer)) return;
      if (dropAttn.has(parsed.layer) && ATTENTION_SUFFIXES.has(parsed.rest)) return;
      if (dropFfn.has(parsed.layer) && FFN_SUFFIXES.has(parsed.rest)) return;
      tensors.push({ name: `blk.${newIndex.get(parsed.layer)}.${parsed.rest}`, dims: t.dims, type: t.type });
    } else {
      tensors.push({ name: t.name, dims: t.dims, type: t.type });
    }
    sources.push(i);
  });
  const tensorData = (i: number) => {
    const t = file.tensors[sources[i]];
    return src.read(file.dataOffset + t.offset, t.byteSize);
  };
  return { spec: { version: file.version, kv: [...kv.values()], tensors }, tensorData, kept, nLayers: kept.length };
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
