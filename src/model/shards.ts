// The shard plan of a model too large for one wasm32 memory: the embedding, the layers in order and the classifier
// packed greedily into as few runtimes as hold them, each under a byte budget (below V8's 4 GiB per memory), every
// shard holding its layers' weights, their KV caches and its own scratch. One shard when everything fits, so a small
// model pays nothing. Portable. Not the allocator (weights.ts, forward.ts allocate what this plans).
import type { GgufFile } from "../gguf/types.js";
import { size } from "./budget.js";
import type { ModelConfig } from "./config.js";
import { kvCacheBytes, logitsBytes, workspaceBytes, type ContextOptions } from "./forward.js";
import { expectedTensors, type Placement } from "./weights.js";

/** wasm32 can address 4 GiB (65536 pages of 64 KiB), the most V8 gives one memory. */
export const WASM32_LIMIT = 4 * 1024 ** 3;

/**
 * The largest file loadModel fetches or pull downloads by default: a 13B model in F16 (26 GiB) with room to spare.
 * Shards hold any size; this only bounds what a server can make us read.
 */
export const MAX_MODEL_BYTES = 32 * 1024 ** 3;

/**
 * The most one shard is planned to hold by default: 256 MiB under the 4 GiB a memory can have, room for a few
 * more contexts than were planned (a server's slots, a tool's scratch) before a shard's memory is full.
 */
export const DEFAULT_SHARD_BYTES = WASM32_LIMIT - 256 * 1024 ** 2;

/** the kernels' static data below each runtime's heap (heap_base: 387 KiB) and alignment */
const RUNTIME_BYTES = 512 << 10;

export interface Shard {
  /** layers [start, end) that run here (may be empty: a shard of the embedding alone) */
  start: number;
  end: number;
  /** token_embd is here (embed stage) */
  embed: boolean;
  /** output_norm and the classifier are here (head stage) */
  head: boolean;
  /** bytes of weights (tensors aligned as allocated, rope factors copied into each shard) */
  weightBytes: number;
  /** bytes of the planned contexts: their KV cache rows of these layers, scratch, and logits in the head shard */
  contextBytes: number;
  /** of which KV cache */
  kvBytes: number;
  /** all that the shard's memory is planned to hold */
  bytes: number;
}

export interface ShardPlanOptions {
  contextSize?: number;
  batchSize?: number;
  /** the KV cache's types (ContextOptions'), which set its bytes per layer */
  cacheTypeK?: ContextOptions["cacheTypeK"];
  cacheTypeV?: ContextOptions["cacheTypeV"];
  /** contexts planned up front (default 1) */
  contexts?: number;
  /** most bytes one shard may hold (default DEFAULT_SHARD_BYTES; at most WASM32_LIMIT) */
  maxShardBytes?: number;
}

/**
 * The default shard budget, or EDGEPRUNE_MAX_SHARD_MIB (MiB) when a process env sets it: a way to force small shards
 * (tests, or trying a plan) without changing code.
 */
export function defaultShardBytes(): number {
  let env: string | undefined;
  try {
    env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.EDGEPRUNE_MAX_SHARD_MIB;
  } catch {
    // Deno without --allow-env: no override
  }
  if (env === undefined || env === "") return DEFAULT_SHARD_BYTES;
  const mib = Number(env);
  if (!(mib > 0) || !Number.isFinite(mib)) throw new Error(`EDGEPRUNE_MAX_SHARD_MIB must be a positive number of MiB, got "${env}"`);
  return checkShardBytes(Math.floor(mib * 1024 ** 2));
}

/** A shard budget as given, checked: positive, at most WASM32_LIMIT. */
export function checkShardBytes(bytes: number): number {
  if (!(bytes > 0) || !Number.isFinite(bytes)) throw new Error(`the shard budget must be a positive number of bytes, got ${bytes}`);
  if (bytes > WASM32_LIMIT) throw new Error(`the shard budget ${size(bytes)} is over wasm32's ${size(WASM32_LIMIT)} per memory`);
  return bytes;
}

/** One item packed into shards, in order: the embedding, a layer, the classifier. */
interface Item {
  what: string;
  weights: number;
  context: number;
  kv: number;
  layer?: number;
  embed?: boolean;
  head?: boolean;
}

/** Throws one line naming what does not fit when a single item is larger than a shard. */
export class ShardError extends Error {}

/**
 * Packs the model into shards: items in order (token_embd unless the classifier shares it, layers 0..L-1, then the
 * classifier with output_norm and, when tied, token_embd), a new shard whenever the next item would take the current
 * one past the budget.
 */
export function planShards(file: GgufFile, c: ModelConfig, opts: ShardPlanOptions = {}, name = "<model>"): Shard[] {
  const max = opts.maxShardBytes !== undefined ? checkShardBytes(opts.maxShardBytes) : defaultShardBytes();
  const contextSize = opts.contextSize ?? Math.min(c.trainContext, 2048);
  const batchSize = Math.min(opts.batchSize ?? 64, contextSize);
  const n = opts.contexts ?? 1;
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const aligned = (nm: string) => Math.ceil(byName.get(nm)!.byteSize / 64) * 64;
  const layerWeights = new Array<number>(c.nLayers).fill(0);
  let embd = 0, head = 0, rope = 0;
  for (const e of expectedTensors(c, (nm) => byName.has(nm))) {
    const b = aligned(e.name);
    if (e.layer !== undefined) layerWeights[e.layer] += b;
    else if (e.global === "tokenEmbd") embd = b;
    else if (e.global === "outputNorm" || e.global === "output" || e.global === "outputBias") head += b;
    else rope += b;
  }
  // per shard: the scratch of each context, the rope factors its layers read, the kernels' static data
  const fixed = n * workspaceBytes(c, contextSize, batchSize, opts) + rope + RUNTIME_BYTES;
  const items: Item[] = [];
  if (!c.tiedOutput) items.push({ what: "the token embeddings", weights: embd, context: 0, kv: 0, embed: true });
  for (let l = 0; l < c.nLayers; l++) {
    const kv = n * kvCacheBytes(c, contextSize, opts, [l, l + 1]);
    items.push({ what: `layer ${l}`, weights: layerWeights[l], context: kv, kv, layer: l });
  }
  items.push({
    what: c.tiedOutput ? "the classifier (tied to the token embeddings)" : "the classifier", weights: head + (c.tiedOutput ? embd : 0),
    context: n * logitsBytes(c, batchSize), kv: 0, head: true, embed: c.tiedOutput,
  });

  const shards: Shard[] = [];
  let cur: Shard | undefined;
  const open = (start: number): Shard => {
    const s: Shard = { start, end: start, embed: false, head: false, weightBytes: rope, contextBytes: n * workspaceBytes(c, contextSize, batchSize, opts), kvBytes: 0, bytes: fixed };
    shards.push(s);
    return s;
  };
  for (const it of items) {
    const need = it.weights + it.context;
    if (fixed + need > max) {
      throw new ShardError(`${name}: ${it.what} would need ${size(fixed + need)} of wasm memory by itself (with its KV cache and scratch), over the ${size(max)} one memory is given; use a smaller --ctx${max < WASM32_LIMIT ? " or a larger shard budget" : " or a smaller quantization"}`);
    }
    const nextStart = cur ? cur.end : 0;
    if (!cur || cur.bytes + need > max) cur = open(nextStart);
    cur.weightBytes += it.weights;
    cur.contextBytes += it.context;
    cur.kvBytes += it.kv;
    cur.bytes += need;
    if (it.layer !== undefined) cur.end = it.layer + 1;
    if (it.embed) cur.embed = true;
    if (it.head) cur.head = true;
  }
  // a shard that holds no layers (only the classifier, say) still starts where the previous one ended
  for (let i = 1; i < shards.length; i++) if (shards[i].end < shards[i].start) shards[i].end = shards[i].start;
  return shards;
}

/** Where weights.ts puts each tensor, from a plan. */
export function placementOf(shards: readonly Shard[]): Placement {
  return {
    layers: shards.map((s) => [s.start, s.end] as const),
    embed: Math.max(0, shards.findIndex((s) => s.embed)),
    head: Math.max(0, shards.findIndex((s) => s.head)),
  };
}

/** "3 shards: layers 0–14 (3.60 GiB), …", for info and messages. */
export function describeShards(shards: readonly Shard[]): string[] {
  return shards.map((s, i) => {
    const parts: string[] = [];
    if (s.embed) parts.push("embeddings");
    if (s.end > s.start) parts.push(s.end - s.start === 1 ? `layer ${s.start}` : `layers ${s.start}–${s.end - 1}`);
    if (s.head) parts.push("classifier");
    return `shard ${i}: ${parts.join(", ")}; ${size(s.bytes)} (weights ${size(s.weightBytes)}, KV cache ${size(s.kvBytes)}, scratch ${size(s.contextBytes - s.kvBytes + RUNTIME_BYTES)})`;
  });
}
