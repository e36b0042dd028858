// Hugging Face model → GGUF as llama.cpp's converter writes it: metadata in its order, tensors renamed and
// transformed through the family table, each quantized row by row through the format table while the file is
// written, so a tensor is never held whole (a few MiB of rows at a time). Portable: tensors come from ByteSources
// (src/node/hf.ts opens the folder). Not the tokenizer metadata (vocab.ts) or the family facts (families.ts).
import type { ByteSource } from "../gguf/reader.js";
import { ARCH_KEY, KEY, layersInTensorNames } from "../gguf/names.js";
import { GgufType, type GgufKv } from "../gguf/types.js";
import { layoutGguf, type GgufLayout, type GgufWriteSpec } from "../gguf/writer.js";
import { formatByName, FORMATS, type QuantFormat } from "../quant/formats.js";
import { FILE_TYPE, QUANTIZATION_VERSION } from "../quant/quantize.js";
import { isFloatDtype, readRowsF32, type SafetensorsTensor } from "../safetensors/reader.js";
import { familyFor, hyperparameters, KvList, type Family, type FamilyContext, type TensorTransform } from "./families.js";
import { convertVocab, detectVocabStyle, type HfTokenizerFiles, type VocabStyle } from "./vocab.js";

type Json = Record<string, unknown>;

export interface HfTensorRef {
  tensor: SafetensorsTensor;
  src: ByteSource;
  /** the .safetensors file it is in, for messages */
  file: string;
}

export interface HfModel {
  dir: string;
  /** general.name (the converter falls back to the folder's name) */
  name: string;
  config: Json;
  generationConfig?: Json;
  tokenizer: HfTokenizerFiles;
  /** in the converter's order: shards sorted by file name, tensors sorted by name within each */
  tensors: Map<string, HfTensorRef>;
}

/** The output types `convert --type` takes: the converter's f32/f16/bf16/q8_0 plus our other quantizers. */
export const CONVERT_TYPES = ["auto", ...FORMATS.filter((f) => f.ggmlType >= 0 && f.quantize && (f.quantTarget || f.name === "F32" || f.name === "BF16") && FILE_TYPE[f.name] !== undefined).map((f) => f.name.toLowerCase())];

export interface ConvertOptions {
  /** "auto" (default): the converter's choice, BF16 or F16 after the first matrix's dtype */
  type?: string;
  vocabOnly?: boolean;
}

export interface OutTensor {
  name: string;
  /** row-major, outermost first */
  shape: number[];
  format: QuantFormat;
  /** fills dst with rows [r0, r1) (a 1-D tensor is one row) */
  rows: (r0: number, r1: number, dst: Float32Array) => void;
  nRows: number;
  rowLength: number;
  /** where it came from */
  source: string;
}

export interface ConvertPlan {
  family: Family;
  kv: GgufKv[];
  tensors: OutTensor[];
  spec: GgufWriteSpec;
  layout: GgufLayout;
  vocab: { style: VocabStyle; size: number; pre: string };
  notes: string[];
}

const ROW_BLOCK_VALUES = 1 << 20;

/** What the converter would pick for "auto": BF16 or F16 after the first matrix's dtype, F16 otherwise. */
function autoType(model: HfModel): QuantFormat {
  for (const { tensor } of model.tensors.values()) {
    if (tensor.shape.length < 2) continue;
    if (tensor.dtype === "BF16") return formatByName("BF16")!;
    break;
  }
  return formatByName("F16")!;
}

/** LlamaModel.permute: rows (h, half, i) → (h, i, half), i.e. each head's two rotary halves interleaved. */
function permutedRow(r: number, rows: number, heads: number): number {
  const perHead = rows / heads;
  const h = Math.floor(r / perHead);
  const w = r % perHead;
  return h * perHead + (w & 1) * (perHead / 2) + (w >> 1);
}

function sourceRows(ref: HfTensorRef, t: TensorTransform, outShape: number[]): OutTensor["rows"] {
  const { tensor, src, file } = ref;
  const rowLength = tensor.shape.length === 0 ? 1 : tensor.shape[tensor.shape.length - 1];
  const add = t.add ?? 0;
  const finish = (dst: Float32Array, n: number) => { if (add !== 0) for (let i = 0; i < n; i++) dst[i] += add; };
  if (t.permuteHeads !== undefined) {
    const heads = t.permuteHeads;
    if (tensor.shape.length === 1) {
      // a bias: the same reordering over its elements
      const n = tensor.shape[0];
      if (n % (2 * heads) !== 0) throw new Error(`${file}: tensor "${tensor.name}" has ${n} values, not a multiple of 2 × ${heads} heads`);
      return (_r0, _r1, dst) => {
        const all = readRowsF32(src, tensor, 0, 1, new Float32Array(n), file);
        for (let i = 0; i < n; i++) dst[i] = all[permutedRow(i, n, heads)];
        finish(dst, n);
      };
    }
    const rows = tensor.shape[0];
    if (rows % (2 * heads) !== 0) throw new Error(`${file}: tensor "${tensor.name}" has ${rows} rows, not a multiple of 2 × ${heads} heads`);
    return (r0, r1, dst) => {
      for (let r = r0; r < r1; r++) readRowsF32(src, tensor, permutedRow(r, rows, heads), permutedRow(r, rows, heads) + 1, dst.subarray((r - r0) * rowLength, (r - r0 + 1) * rowLength), file);
      finish(dst, (r1 - r0) * rowLength);
    };
  }
  const outRowLength = outShape[outShape.length - 1];
  if (tensor.shape.length === 1) return (_r0, _r1, dst) => { readRowsF32(src, tensor, 0, 1, dst, file); finish(dst, outRowLength); };
  return (r0, r1, dst) => { readRowsF32(src, tensor, r0, r1, dst, file); finish(dst, (r1 - r0) * rowLength); };
}

/** prepare_tensors' type rule: vectors, norms and biases stay F32; matrices get the file type, F16 when rows do not fit its blocks. */
function tensorFormat(name: string, shape: number[], target: QuantFormat, notes: string[]): QuantFormat {
  const f32 = formatByName("F32")!;
  if (shape.length <= 1 || name.endsWith("_norm.weight") || !name.endsWith(".weight")) return f32;
  const rowLength = shape[shape.length - 1];
  if (rowLength % target.blockSize !== 0) {
    notes.push(`${name}: row length ${rowLength} is not a multiple of ${target.name}'s block size ${target.blockSize}; written as F16`);
    return formatByName("F16")!;
  }
  return target;
}

/** gguf.size_label for a dense model: parameters in K/M/B/T with at least two digits. */
export function sizeLabel(params: number): string {
  const [scaled, suffix] = params > 1e12 ? [params * 1e-12, "T"] : params > 1e9 ? [params * 1e-9, "B"] : params > 1e6 ? [params * 1e-6, "M"] : [params * 1e-3, "K"];
  const digits = String(Math.round(scaled)).replace(/^0+/, "").length;
  return `${scaled.toFixed(Math.max(2 - digits, 0))}${suffix}`;
}

/** Plan the whole output: metadata and every tensor's name, shape, type and row source. Nothing is read yet but headers. */
export async function planConvert(model: HfModel, opts: ConvertOptions = {}): Promise<ConvertPlan> {
  const notes: string[] = [];
  const family = familyFor(model.config, model.dir);
  const hp = hyperparameters(family, model.config);

  // vocabulary first: Gemma trims its embedding to the vocabulary's size
  const detected = detectVocabStyle(model.tokenizer);
  const style = family.vocab(detected, model.tokenizer.tokenizerConfig);
  if (style !== "gpt2" && style !== "llama-hf" && style !== "spm") throw new Error(`${model.dir}: ${style}`);
  const vocab = await convertVocab(model.tokenizer, style);
  notes.push(...vocab.notes);

  const typeName = (opts.type ?? "auto").toLowerCase();
  if (!CONVERT_TYPES.includes(typeName)) throw new Error(`--type ${opts.type}: expected one of ${CONVERT_TYPES.join(", ")}`);
  const target = typeName === "auto" ? autoType(model) : formatByName(typeName)!;

  const ctx: FamilyContext = { hp, vocabRows: vocab.size, has: (n) => model.tensors.has(n) };
  const tensors: OutTensor[] = [];
  if (!opts.vocabOnly) {
    for (const g of family.generated?.(ctx) ?? []) {
      tensors.push({ name: g.name, shape: [g.values.length], format: formatByName("F32")!, nRows: 1, rowLength: g.values.length, source: "generated", rows: (_a, _b, dst) => dst.set(g.values) });
    }
    const seen = new Set<string>();
    for (const [hfName, ref] of model.tensors) {
      if (/\.(attention\.masked_bias|attention\.bias|rotary_emb\.inv_freq)$/.test(hfName)) continue;
      const m = family.mapTensor(hfName, ctx);
      if (!m) {
        if (hfName === "lm_head.weight" && family.arch === "gemma3") continue;
        throw new Error(`${ref.file}: cannot map tensor "${hfName}" to a ${family.arch} GGUF tensor`);
      }
      if (seen.has(m.name)) throw new Error(`${ref.file}: tensor "${hfName}" maps to ${m.name}, which another tensor already gave`);
      seen.add(m.name);
      if (!isFloatDtype(ref.tensor.dtype)) throw new Error(`${ref.file}: tensor "${hfName}" is ${ref.tensor.dtype}; convert reads F32, F16 and BF16 (quantized checkpoints are not supported)`);
      if (ref.tensor.shape.length < 1 || ref.tensor.shape.length > 2) throw new Error(`${ref.file}: tensor "${hfName}" has shape [${ref.tensor.shape}]; convert handles vectors and matrices`);
      const shape = ref.tensor.shape.slice();
      if (m.transform.rows !== undefined) {
        if (m.transform.rows > shape[0]) throw new Error(`${ref.file}: tensor "${hfName}" has ${shape[0]} rows, fewer than the ${m.transform.rows} tokens of the vocabulary`);
        shape[0] = m.transform.rows;
      }
      const rowLength = shape[shape.length - 1];
      tensors.push({
        name: m.name, shape, format: tensorFormat(m.name, shape, target, notes), rowLength, nRows: shape.length === 1 ? 1 : shape[0],
        source: `${ref.file}:${hfName}`, rows: sourceRows(ref, m.transform, shape),
      });
    }
  }

  const kv = new KvList(family.arch);
  kv.str(KEY.architecture, family.arch);
  kv.str(KEY.type, "model");
  const gen = model.generationConfig ?? {};
  if (typeof gen.top_k === "number") kv.set(KEY.samplingTopK, GgufType.INT32, gen.top_k);
  if (typeof gen.top_p === "number") kv.f32(KEY.samplingTopP, gen.top_p);
  if (typeof gen.temperature === "number") kv.f32(KEY.samplingTemp, gen.temperature);
  kv.str(KEY.name, model.name);
  const params = tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  if (params > 0) kv.str(KEY.sizeLabel, sizeLabel(params));
  family.hparams(ctx, kv);
  // the loader's rule (config.ts), checked before writing: config.json's layer count must be the tensors' (a
  // num_hidden_layers of 10^6 over a 2-layer checkpoint would otherwise make a file every loader refuses)
  const blocks = kv.map.get(kv.a(ARCH_KEY.blockCount))?.value;
  const present = layersInTensorNames(tensors.map((t) => t.name));
  if (!opts.vocabOnly && blocks !== present) {
    throw new Error(`${model.dir}: config.json says ${blocks} layers (num_hidden_layers), but the checkpoint has tensors for ${present}`);
  }
  kv.u32(KEY.fileType, FILE_TYPE[target.name]!);
  kv.u32(KEY.quantizationVersion, QUANTIZATION_VERSION);
  // LlamaModel.set_vocab: add_prefix_space from tokenizer_config.json before the vocabulary
  const tc = model.tokenizer.tokenizerConfig;
  if (family.arch === "llama" && typeof tc?.add_prefix_space === "boolean") kv.set("tokenizer.ggml.add_space_prefix", GgufType.BOOL, tc.add_prefix_space);
  for (const e of vocab.kv) kv.map.set(e.key, e);
  family.vocabExtra?.(kv);
  // granite-size vocabularies (SmolLM's 49152 among them): the llama converter turns add_bos_token off
  if (family.arch === "llama" && hp.vocab_size === 49152) kv.set("tokenizer.ggml.add_bos_token", GgufType.BOOL, false);

  const spec: GgufWriteSpec = {
    version: 3,
    kv: kv.values,
    tensors: tensors.map((t) => ({ name: t.name, dims: t.shape.slice().reverse(), type: t.format.ggmlType })),
  };
  return { family, kv: kv.values, tensors, spec, layout: layoutGguf(spec), vocab: { style: vocab.style, size: vocab.size, pre: vocab.pre }, notes };
}

/** The file as chunks: header, then each tensor a few rows at a time, quantized on the way. */
export function* convertChunks(plan: ConvertPlan, onTensor?: (index: number, t: OutTensor) => void): Generator<Uint8Array> {
  const { layout, tensors } = plan;
  yield layout.header;
  let pos = 0;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    onTensor?.(i, t);
    if (layout.offsets[i] > pos) yield new Uint8Array(layout.offsets[i] - pos);
    const outRow = (t.rowLength / t.format.blockSize) * t.format.typeSize;
    const block = Math.max(1, Math.floor(ROW_BLOCK_VALUES / t.rowLength));
    const rowsBuf = new Float32Array(Math.min(block, t.nRows) * t.rowLength);
    for (let r0 = 0; r0 < t.nRows; r0 += block) {
      const r1 = Math.min(t.nRows, r0 + block);
      const vals = rowsBuf.subarray(0, (r1 - r0) * t.rowLength);
      t.rows(r0, r1, vals);
      const out = new Uint8Array((r1 - r0) * outRow);
      for (let r = 0; r < r1 - r0; r++) {
        t.format.quantize!(vals.subarray(r * t.rowLength, (r + 1) * t.rowLength), out.subarray(r * outRow, (r + 1) * outRow));
      }
      yield out;
    }
    pos = layout.offsets[i] + layout.sizes[i];
  }
}
