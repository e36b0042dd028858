// Hyperparameters of a LLaMA-family model read from GGUF metadata, with the one legend for dimension names.
// Not weights (weights.ts) and not the forward pass (forward.ts).
import { metaArray, metaCount, metaNumber, metaString } from "../gguf/metadata.js";
import { ARCH_KEY, archKey, EDGEPRUNE_KEY, KEY, layersInTensorNames, TENSOR } from "../gguf/names.js";
import { GgufFile, GgufType } from "../gguf/types.js";

export interface LlamaConfig {
  architecture: string;
  name: string;
  /** residual stream width (embedding_length) */
  dim: number;
  /** FFN inner width (feed_forward_length) */
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headSize: number;
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
  rmsEps: number;
  /** no output.weight: the classifier reuses token_embd.weight */
  tiedOutput: boolean;
  /** layers whose attention half was removed by sub-block pruning (recorded by edgeprune prune) */
  removedAttention: Set<number>;
  /** layers whose FFN half was removed */
  removedFfn: Set<number>;
}

/** Architectures we run, and the rope style llama.cpp uses for each. */
const SUPPORTED: Record<string, "norm" | "neox"> = { llama: "norm" };

/** Why a known-but-unsupported architecture is refused, so users are not left guessing. */
const REFUSED: Record<string, string> = {
  qwen2: "Qwen2 needs q/k/v biases, which edgeprune does not implement yet",
  qwen3: "Qwen3 needs q/k norms, which edgeprune does not implement yet",
  gemma: "Gemma's embedding scaling and GeGLU are not implemented",
  gemma2: "Gemma 2's soft-capping and sliding windows are not implemented",
  phi3: "Phi-3's fused QKV tensors are not implemented",
};

/** Read and check the hyperparameters. Errors name the file and the key. */
export function configFromGguf(file: GgufFile, fileName = "<model>"): LlamaConfig {
  const kv = file.kv;
  const fail = (msg: string): never => { throw new Error(`${fileName}: ${msg}`); };
  const arch = metaString(kv, KEY.architecture, "");
  if (!arch) fail(`no "${KEY.architecture}" key: not a model file (a vocab-only GGUF?)`);
  if (!(arch in SUPPORTED)) {
    fail(`architecture "${arch}" is not supported${REFUSED[arch] ? `: ${REFUSED[arch]}` : ""} (edgeprune runs: ${Object.keys(SUPPORTED).join(", ")})`);
  }
  const k = (key: string) => archKey(arch, key);
  const wrap = <T>(f: () => T): T => { try { return f(); } catch (e) { return fail((e as Error).message); } };

  const scaling = wrap(() => metaString(kv, k(ARCH_KEY.ropeScalingType), "none"));
  if (scaling !== "none") fail(`rope scaling "${scaling}" (${k(ARCH_KEY.ropeScalingType)}) is not supported yet`);
  if (kv.has(`${arch}.rope.freqs.weight`) || file.tensors.some((t) => t.name === "rope_freqs.weight")) {
    fail("per-dimension rope frequencies (rope_freqs.weight, Llama 3.1-style scaling) are not supported yet");
  }

  const dim = wrap(() => metaCount(kv, k(ARCH_KEY.embeddingLength)));
  const hiddenDim = wrap(() => metaCount(kv, k(ARCH_KEY.feedForwardLength)));
  const nLayers = wrap(() => metaCount(kv, k(ARCH_KEY.blockCount)));
  const nHeads = wrap(() => metaCount(kv, k(ARCH_KEY.headCount)));
  const nKvHeads = wrap(() => metaCount(kv, k(ARCH_KEY.headCountKv), nHeads));
  const trainContext = wrap(() => metaCount(kv, k(ARCH_KEY.contextLength)));
  const rmsEps = wrap(() => metaNumber(kv, k(ARCH_KEY.rmsEps)));
  const ropeFreqBase = wrap(() => metaNumber(kv, k(ARCH_KEY.ropeFreqBase), 10000));

  // every layer has at least its FFN or attention tensors, so the count is bounded by the blk.N tensors present:
  // a corrupt count must not make us plan (or loop over) millions of layers
  const layersPresent = layersInTensorNames(file.tensors.map((t) => t.name));
  if (nLayers < 1 || nLayers > layersPresent) fail(`${k(ARCH_KEY.blockCount)} = ${nLayers}, but the file has tensors for ${layersPresent} layer${layersPresent === 1 ? "" : "s"}${layersPresent > 0 ? ` (blk.0 to blk.${layersPresent - 1})` : ""}`);
  if (nLayers < layersPresent) fail(`tensor blk.${layersPresent - 1}.* names a layer past ${k(ARCH_KEY.blockCount)} = ${nLayers}`);
  if (dim < 1 || nHeads < 1 || dim % nHeads !== 0) fail(`${k(ARCH_KEY.embeddingLength)} = ${dim} must be a positive multiple of ${k(ARCH_KEY.headCount)} = ${nHeads}`);
  if (nKvHeads < 1 || nHeads % nKvHeads !== 0) fail(`${k(ARCH_KEY.headCount)} = ${nHeads} must be a multiple of ${k(ARCH_KEY.headCountKv)} = ${nKvHeads}`);
  if (hiddenDim < 1) fail(`${k(ARCH_KEY.feedForwardLength)} must be positive`);
  if (trainContext < 1) fail(`${k(ARCH_KEY.contextLength)} must be positive`);
  if (!(rmsEps > 0 && rmsEps < 1)) fail(`${k(ARCH_KEY.rmsEps)} = ${rmsEps} is not a usable epsilon`);
  if (!(ropeFreqBase > 0)) fail(`${k(ARCH_KEY.ropeFreqBase)} = ${ropeFreqBase} must be positive`);
  const headSize = dim / nHeads;
  const ropeDim = wrap(() => metaCount(kv, k(ARCH_KEY.ropeDimensionCount), headSize));
  if (ropeDim > headSize || ropeDim % 2 !== 0) fail(`${k(ARCH_KEY.ropeDimensionCount)} = ${ropeDim} must be even and at most the head size ${headSize}`);

  const embd = file.tensors.find((t) => t.name === TENSOR.tokenEmbd);
  if (!embd) fail(`tensor "${TENSOR.tokenEmbd}" is missing`);
  const vocabSize = embd!.shape[0];
  const declaredVocab = kv.has(k(ARCH_KEY.vocabSize)) ? wrap(() => metaCount(kv, k(ARCH_KEY.vocabSize))) : vocabSize;
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
    architecture: arch,
    name: metaString(kv, KEY.name, fileName),
    dim, hiddenDim, nLayers, nHeads, nKvHeads, headSize, kvDim: nKvHeads * headSize, vocabSize, trainContext,
    ropeDim, ropeFreqBase, ropeStyle: SUPPORTED[arch], rmsEps,
    tiedOutput: !file.tensors.some((t) => t.name === TENSOR.output),
    removedAttention: layerSet(EDGEPRUNE_KEY.removedAttention),
    removedFfn: layerSet(EDGEPRUNE_KEY.removedFfn),
  };
}
