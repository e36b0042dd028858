// Hyperparameters of a model read from GGUF metadata as llama.cpp reads them for the file's architecture (its
// descriptor in arch.ts says which switches apply), with the one legend for dimension names. Not weights
// (weights.ts) and not the forward pass (forward.ts).
import { metaArray, metaCount, metaNumber, metaString } from "../gguf/metadata.js";
import { ARCH_KEY, archKey, EDGEPRUNE_KEY, KEY, layersInTensorNames, TENSOR } from "../gguf/names.js";
import { GgufFile, GgufType } from "../gguf/types.js";
import { architectureFor, type Architecture } from "./arch.js";

/** RoPE as llama.cpp's context sets it up (llama_context's cparams and ggml_rope_ext's arguments). */
export interface RopeConfig {
  /** rope.scaling.type: none, linear, yarn or longrope (llama.cpp's default is linear with factor 1) */
  scaling: "none" | "linear" | "yarn" | "longrope";
  /** 1 / rope.scaling.factor (1 without scaling) */
  freqScale: number;
  /** YaRN's extrapolation mix: 1 for yarn, else 0 */
  extFactor: number;
  /** cos/sin multiplier: YaRN's mscale (cancelled by llama.cpp's context, re-applied in ggml) times rope.scaling.attn_factor */
  attnFactor: number;
  betaFast: number;
  betaSlow: number;
  /** rope.scaling.original_context_length (default context_length): YaRN's range and LongRoPE's long/short switch */
  origContext: number;
  /** base of sliding-window layers (rope.freq_base_swa, default 10000); their scale is 1 */
  freqBaseSwa: number;
}

export interface ModelConfig {
  architecture: string;
  /** what the family has (arch.ts) */
  arch: Architecture;
  name: string;
  /** residual stream width (embedding_length) */
  dim: number;
  /** FFN inner width (feed_forward_length) */
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** attention.key_length (= value_length), default dim / nHeads */
  headSize: number;
  /** nHeads * headSize: the width of q (not always dim: Qwen3, Gemma) */
  qDim: number;
  /** nKvHeads * headSize */
  kvDim: number;
  vocabSize: number;
  /** the context length the model was built for (context_length) */
  trainContext: number;
  /** how many leading dims of each head RoPE rotates */
  ropeDim: number;
  ropeFreqBase: number;
  /** "norm": interleaved pairs (llama); "neox": halves */
  ropeStyle: "norm" | "neox";
  rope: RopeConfig;
  rmsEps: number;
  /** the embeddings' multiplier (sqrt(dim) for Gemma, else 1) */
  embedScale: number;
  /** the attention scale (1/sqrt(headSize) unless the family says otherwise) */
  attnScale: number;
  /** q is multiplied by attnScale before attention, the scores are not (Gemma, Phi-3) */
  queryPrescale: boolean;
  /** attention scores capped at this (0: none) */
  attnSoftcap: number;
  /** logits capped at this (0: none) */
  finalSoftcap: number;
  /** sliding-window length of local layers (0: every layer is global) */
  slidingWindow: number;
  /** per layer: whether it is a sliding-window (local) layer */
  swaLayers: boolean[];
  /** which RoPE frequency factors the file gives (rope_freqs, LongRoPE's long/short pair, or none) */
  ropeFactors: "freqs" | "longrope" | "none";
  /** no output.weight: the classifier reuses token_embd.weight */
  tiedOutput: boolean;
  /** layers whose attention half was removed by sub-block pruning (recorded by edgeprune prune) */
  removedAttention: Set<number>;
  /** layers whose FFN half was removed */
  removedFfn: Set<number>;
}

/** The name the rest of the code knew this by, when only llama ran. */
export type LlamaConfig = ModelConfig;

/** f32 arithmetic as llama.cpp's C does it */
const fr = Math.fround;

/** llama.cpp's llama_context: freq_scale, ext_factor and the attention factor for a scaling type and factor. */
function ropeScaling(scaling: RopeConfig["scaling"], factor: number, attnFactorKey: number): Pick<RopeConfig, "freqScale" | "extFactor" | "attnFactor"> {
  const freqScale = scaling === "none" || factor === 0 ? 1 : fr(1 / factor);
  const extFactor = scaling === "yarn" ? 1 : 0;
  let attnFactor = 1;
  if (extFactor !== 0) {
    // get_mscale(1/freqScale, 1), then the cancellation llama.cpp applies because ggml multiplies it in again
    const f = fr(1 / freqScale);
    const lnf = fr(Math.log(f));
    attnFactor = f <= 1 ? 1 : fr(fr(0.1 * lnf) + 1);
    attnFactor = fr(attnFactor * fr(1 / fr(1 + fr(0.1 * lnf))));
  }
  return { freqScale, extFactor, attnFactor: fr(attnFactor * attnFactorKey) };
}

const SCALING_TYPES = ["none", "linear", "yarn", "longrope"] as const;

/** Read and check the hyperparameters. Errors name the file and the key. */
export function configFromGguf(file: GgufFile, fileName = "<model>"): ModelConfig {
  const kv = file.kv;
  const fail = (msg: string): never => { throw new Error(`${fileName}: ${msg}`); };
  const archName = metaString(kv, KEY.architecture, "");
  if (!archName) fail(`no "${KEY.architecture}" key: not a model file (a vocab-only GGUF?)`);
  let arch: Architecture;
  try { arch = architectureFor(archName); } catch (e) { return fail((e as Error).message); }
  const k = (key: string) => archKey(archName, key);
  const wrap = <T>(f: () => T): T => { try { return f(); } catch (e) { return fail((e as Error).message); } };
  const count = (key: string, dflt?: number) => wrap(() => metaCount(kv, k(key), dflt));
  const number = (key: string, dflt?: number) => wrap(() => metaNumber(kv, k(key), dflt));

  if (kv.has(k("expert_count")) && count("expert_count") > 0) fail(`${k("expert_count")} = ${count("expert_count")}: mixture-of-experts models are not supported`);

  const dim = count(ARCH_KEY.embeddingLength);
  const hiddenDim = count(ARCH_KEY.feedForwardLength);
  const nLayers = count(ARCH_KEY.blockCount);
  const nHeads = count(ARCH_KEY.headCount);
  const nKvHeads = count(ARCH_KEY.headCountKv, nHeads);
  const trainContext = count(ARCH_KEY.contextLength);
  const rmsEps = number(ARCH_KEY.rmsEps);
  const ropeFreqBase = number(ARCH_KEY.ropeFreqBase, 10000);

  // every layer has at least its FFN or attention tensors, so the count is bounded by the blk.N tensors present:
  // a corrupt count must not make us plan (or loop over) millions of layers (a last layer whose halves were both
  // dropped by `prune --edgeprune-only` has none; the removal records say so)
  const layersPresent = layersInTensorNames(file.tensors.map((t) => t.name));
  const trailingEmpty = (l: number) => bothHalvesRecorded(kv, l);
  let covered = layersPresent;
  while (covered < nLayers && trailingEmpty(covered)) covered++;
  if (nLayers < 1 || nLayers > covered) fail(`${k(ARCH_KEY.blockCount)} = ${nLayers}, but the file has tensors for ${layersPresent} layer${layersPresent === 1 ? "" : "s"}${layersPresent > 0 ? ` (blk.0 to blk.${layersPresent - 1})` : ""}`);
  if (nLayers < layersPresent) fail(`tensor blk.${layersPresent - 1}.* names a layer past ${k(ARCH_KEY.blockCount)} = ${nLayers}`);
  if (dim < 1 || nHeads < 1) fail(`${k(ARCH_KEY.embeddingLength)} = ${dim} and ${k(ARCH_KEY.headCount)} = ${nHeads} must be positive`);
  // without key_length the head size is dim / heads
  const keyLength = kv.has(k(ARCH_KEY.keyLength)) ? count(ARCH_KEY.keyLength) : undefined;
  if (keyLength === undefined && dim % nHeads !== 0) fail(`${k(ARCH_KEY.embeddingLength)} = ${dim} must be a positive multiple of ${k(ARCH_KEY.headCount)} = ${nHeads} (or give ${k(ARCH_KEY.keyLength)})`);
  if (nKvHeads < 1 || nHeads % nKvHeads !== 0) fail(`${k(ARCH_KEY.headCount)} = ${nHeads} must be a multiple of ${k(ARCH_KEY.headCountKv)} = ${nKvHeads}`);
  if (hiddenDim < 1) fail(`${k(ARCH_KEY.feedForwardLength)} must be positive`);
  if (trainContext < 1) fail(`${k(ARCH_KEY.contextLength)} must be positive`);
  if (!(rmsEps > 0 && rmsEps < 1)) fail(`${k(ARCH_KEY.rmsEps)} = ${rmsEps} is not a usable epsilon`);
  if (!(ropeFreqBase > 0)) fail(`${k(ARCH_KEY.ropeFreqBase)} = ${ropeFreqBase} must be positive`);
  const headSize = keyLength ?? dim / nHeads;
  const valueLength = count(ARCH_KEY.valueLength, headSize);
  if (headSize < 1 || headSize > 4096) fail(`${k(ARCH_KEY.keyLength)} = ${headSize} is not a usable head size`);
  if (valueLength !== headSize) fail(`${k(ARCH_KEY.valueLength)} = ${valueLength} differs from the key length ${headSize}; edgeprune needs them equal`);
  const ropeDim = count(ARCH_KEY.ropeDimensionCount, headSize);
  if (ropeDim > headSize || ropeDim % 2 !== 0 || ropeDim < 2) fail(`${k(ARCH_KEY.ropeDimensionCount)} = ${ropeDim} must be even and at most the head size ${headSize}`);
  if (arch.fullRotary && ropeDim !== headSize) fail(`${k(ARCH_KEY.ropeDimensionCount)} = ${ropeDim}: ${archName} rotates whole heads (${headSize}), as llama.cpp requires`);

  const scalingName = wrap(() => metaString(kv, k(ARCH_KEY.ropeScalingType), "linear"));
  if (!(SCALING_TYPES as readonly string[]).includes(scalingName)) fail(`${k(ARCH_KEY.ropeScalingType)} = "${scalingName}" is not one of ${SCALING_TYPES.join(", ")}`);
  const scaling = scalingName as RopeConfig["scaling"];
  const factor = kv.has(k(ARCH_KEY.ropeScalingFactor)) ? number(ARCH_KEY.ropeScalingFactor) : number(ARCH_KEY.ropeScaleLinear, 0);
  if (!(factor === 0 || factor >= 1e-3) || !Number.isFinite(factor)) fail(`${k(ARCH_KEY.ropeScalingFactor)} = ${factor} is not a usable factor`);
  const attnFactorKey = number(ARCH_KEY.ropeScalingAttnFactor, 1);
  if (!(attnFactorKey > 0 && attnFactorKey < 100)) fail(`${k(ARCH_KEY.ropeScalingAttnFactor)} = ${attnFactorKey} is not a usable factor`);
  const origContext = count(ARCH_KEY.ropeScalingOrigContext, trainContext) || trainContext;
  const freqBaseSwa = number(ARCH_KEY.ropeFreqBaseSwa, 10000);
  if (!(freqBaseSwa > 0)) fail(`${k(ARCH_KEY.ropeFreqBaseSwa)} = ${freqBaseSwa} must be positive`);
  if (scaling === "longrope" && arch.ropeFactors === "none") fail(`${k(ARCH_KEY.ropeScalingType)} = longrope: ${archName} reads no LongRoPE factors`);
  const rope: RopeConfig = { scaling, ...ropeScaling(scaling, factor, attnFactorKey), betaFast: 32, betaSlow: 1, origContext, freqBaseSwa };

  const { window: slidingWindow, layers: swaLayers } = wrap(() => slidingWindows(arch, kv, nLayers));

  const attnScale = fr(1 / fr(Math.sqrt(arch.scaleByDimForLayers === nLayers ? Math.floor(dim / nHeads) : headSize)));
  const attnSoftcap = arch.attnSoftcap !== undefined ? number(ARCH_KEY.attnLogitSoftcapping, arch.attnSoftcap) : 0;
  const finalSoftcap = arch.finalSoftcap !== undefined ? number(ARCH_KEY.finalLogitSoftcapping, arch.finalSoftcap) : 0;
  if (!(attnSoftcap >= 0) || !(finalSoftcap >= 0)) fail("soft-capping values must not be negative");

  const embd = file.tensors.find((t) => t.name === TENSOR.tokenEmbd);
  if (!embd) fail(`tensor "${TENSOR.tokenEmbd}" is missing`);
  const vocabSize = embd!.shape[0];
  const declaredVocab = kv.has(k(ARCH_KEY.vocabSize)) ? count(ARCH_KEY.vocabSize) : vocabSize;
  if (declaredVocab !== vocabSize) fail(`${k(ARCH_KEY.vocabSize)} = ${declaredVocab} but ${TENSOR.tokenEmbd} has ${vocabSize} rows`);

  const layerSet = (key: string): Set<number> => {
    const a = metaArray(kv, key);
    if (!a) return new Set();
    if (a.itemType !== GgufType.UINT32 && a.itemType !== GgufType.INT32) fail(`${key} must be an array of u32`);
    const s = new Set(Array.from(a.items as Uint32Array));
    for (const l of s) if (l >= nLayers) fail(`${key} names layer ${l}, but the model has ${nLayers}`);
    return s;
  };

  return {
    architecture: archName, arch,
    name: metaString(kv, KEY.name, fileName),
    dim, hiddenDim, nLayers, nHeads, nKvHeads, headSize, qDim: nHeads * headSize, kvDim: nKvHeads * headSize, vocabSize, trainContext,
    ropeDim, ropeFreqBase, ropeStyle: arch.rope, rope, rmsEps,
    embedScale: arch.embedScale ? fr(Math.sqrt(dim)) : 1,
    attnScale, queryPrescale: arch.queryPrescale, attnSoftcap, finalSoftcap, slidingWindow, swaLayers,
    ropeFactors: ropeFactorsOf(arch, scaling, new Set(file.tensors.map((t) => t.name))),
    tiedOutput: !file.tensors.some((t) => t.name === TENSOR.output),
    removedAttention: layerSet(EDGEPRUNE_KEY.removedAttention),
    removedFfn: layerSet(EDGEPRUNE_KEY.removedFfn),
  };
}

/** Whether edgeprune's removal records list both halves of layer l (an identity layer that may have no tensors). */
function bothHalvesRecorded(kv: GgufFile["kv"], l: number): boolean {
  const has = (key: string) => {
    const a = kv.get(key)?.value as { items?: ArrayLike<number> } | undefined;
    return !!a?.items && Array.prototype.includes.call(a.items, l);
  };
  return has(EDGEPRUNE_KEY.removedAttention) && has(EDGEPRUNE_KEY.removedFfn);
}

/**
 * The rope factors llama.cpp reads for the family: rope_freqs (llama, unless rope.scaling.type is longrope), or
 * LongRoPE's rope_factors_long/short (phi3; llama with longrope scaling), when the file has them.
 */
function ropeFactorsOf(arch: Architecture, scaling: RopeConfig["scaling"], names: Set<string>): ModelConfig["ropeFactors"] {
  const longrope = arch.ropeFactors === "longrope" || (arch.ropeFactors === "freqs" && scaling === "longrope");
  if (longrope) return names.has(TENSOR.ropeFactorsLong) || names.has(TENSOR.ropeFactorsShort) ? "longrope" : "none";
  return arch.ropeFactors === "freqs" && names.has(TENSOR.ropeFreqs) ? "freqs" : "none";
}

/**
 * Sliding windows as llama.cpp's per-family hparams set them: the window (0: none) and, per layer, whether it is a
 * local layer (l % pattern < pattern - 1, llama_hparams::set_swa_pattern). A renumbered (pruned) file gets the
 * pattern applied to its new indices, which is why removal checks it (prune/remove.ts).
 */
export function slidingWindows(arch: Architecture, kv: GgufFile["kv"], nLayers: number): { window: number; layers: boolean[] } {
  const k = (key: string) => archKey(arch.name, key);
  const layers = new Array<boolean>(nLayers).fill(false);
  if (!arch.swa) return { window: 0, layers };
  const window = kv.has(k(ARCH_KEY.slidingWindow)) ? metaCount(kv, k(ARCH_KEY.slidingWindow)) : arch.swa.always ? arch.swa.defaultWindow : 0;
  if (window === 0) return { window, layers };
  // llama.cpp reads the pattern as a scalar; an array is ignored (the default applies)
  const p = kv.get(k(ARCH_KEY.slidingWindowPattern));
  const pattern = p && p.type !== GgufType.ARRAY ? metaCount(kv, k(ARCH_KEY.slidingWindowPattern)) : arch.swa.defaultPattern;
  for (let l = 0; l < nLayers; l++) layers[l] = pattern === 0 || l % pattern < pattern - 1;
  return { window, layers };
}

/** A short description of the layer plan for `info`: sliding-window layers, RoPE scaling, caps. */
export function describeConfig(c: ModelConfig): string[] {
  const lines: string[] = [];
  const r = c.rope;
  const parts: string[] = [];
  if (r.freqScale !== 1 || r.extFactor !== 0) parts.push(`${r.scaling} x${(1 / r.freqScale).toPrecision(4)}${r.extFactor ? ` (YaRN from ${r.origContext} tokens)` : ""}`);
  if (c.ropeFactors === "freqs") parts.push("rope_freqs factors");
  if (c.ropeFactors === "longrope") parts.push(`LongRoPE factors (long past ${r.origContext} tokens)`);
  if (r.attnFactor !== 1) parts.push(`attention factor ${r.attnFactor.toPrecision(4)}`);
  lines.push(`rope          ${c.ropeStyle}, ${c.ropeDim} of ${c.headSize} dims, base ${c.ropeFreqBase}${parts.length ? `, ${parts.join(", ")}` : ""}`);
  if (c.slidingWindow > 0) {
    const local = c.swaLayers.filter(Boolean).length;
    lines.push(`attention     sliding window ${c.slidingWindow} on ${local} of ${c.nLayers} layers (base ${r.freqBaseSwa}); global: ${c.swaLayers.map((s, l) => (s ? -1 : l)).filter((l) => l >= 0).join(", ") || "none"}`);
  }
  const extras = [
    c.embedScale !== 1 ? `embeddings x ${c.embedScale.toPrecision(6)}` : "",
    c.queryPrescale ? `q pre-scaled by ${c.attnScale.toPrecision(6)}` : "",
    c.attnSoftcap ? `attention capped at ${c.attnSoftcap}` : "",
    c.finalSoftcap ? `logits capped at ${c.finalSoftcap}` : "",
    c.arch.activation === "gelu" ? "GeGLU" : "SwiGLU",
    c.arch.fusedGateUp ? "fused gate-up" : "",
  ].filter(Boolean);
  lines.push(`block         ${extras.join(", ")}`);
  return lines;
}
