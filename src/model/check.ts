// The one check every command runs on a model file before it trusts it (load, info, prune, quantize, bi, ...):
// the hyperparameters (config.ts), every tensor the model needs with its shape (weights.ts), a tokenizer as large
// as the embedding, and the tensor data laid out as llama.cpp requires. Also the scan for NaN/Inf weights that
// explains non-finite scores. Portable; not the GGUF parser's structural checks (gguf/reader.ts).
import { metaArray } from "../gguf/metadata.js";
import { TENSOR } from "../gguf/names.js";
import { KEY as TOKENIZER_KEY } from "../tokenizer/vocab.js";
import type { ByteSource } from "../gguf/reader.js";
import { alignUp, type GgufFile } from "../gguf/types.js";
import { configFromGguf, type LlamaConfig } from "./config.js";
import { checkTensors } from "./weights.js";

/** Hyperparameters, tensors, vocabulary and data layout; returns the config. Errors name the file and the field. */
export function checkModelFile(file: GgufFile, name: string): LlamaConfig {
  // the layout first: a tensor whose type lies about its data makes every later check read the wrong thing
  checkDataLayout(file, name);
  const config = configFromGguf(file, name);
  checkTensors(file, config, name);
  checkVocabulary(file, config, name);
  return config;
}

/**
 * The tokenizer must have a token for every embedding row (llama.cpp refuses the model otherwise): a smaller one
 * would fail at the first generated id it cannot decode, a larger one names tokens the model cannot produce.
 */
function checkVocabulary(file: GgufFile, c: LlamaConfig, name: string): void {
  const tokens = metaArray(file.kv, TOKENIZER_KEY.tokens);
  if (tokens && tokens.items.length !== c.vocabSize) {
    throw new Error(`${name}: the tokenizer has ${tokens.items.length} tokens (${TOKENIZER_KEY.tokens}) but ${TENSOR.tokenEmbd} has ${c.vocabSize} rows; they must be equal`);
  }
}

/**
 * llama.cpp's rule (gguf.cpp): each tensor's data starts where the ones before it end, padded to the alignment, in
 * the order the header lists them; and the file ends there. A tensor whose data takes more room than its type says
 * (F32 data labelled F16, a wrong shape) breaks it.
 */
function checkDataLayout(file: GgufFile, name: string): void {
  let expected = 0;
  let prev = "";
  for (const t of file.tensors) {
    if (t.offset !== expected) {
      const hint = t.offset > expected && prev
        ? `: ${t.offset - expected} bytes more than the tensors before it need (is "${prev}" really ${file.tensors.find((x) => x.name === prev)!.format.name} of that shape?)`
        : "";
      throw new Error(`${name}: tensor "${t.name}" starts at data offset ${t.offset}, but the tensors before it end at ${expected}${hint}`);
    }
    expected += alignUp(t.byteSize, file.alignment);
    prev = t.name;
  }
  if (file.tensors.length === 0) return;
  const end = file.dataOffset + expected;
  if (file.fileSize > end) {
    const last = file.tensors[file.tensors.length - 1];
    throw new Error(`${name}: the file has ${file.fileSize - end} bytes after its last tensor "${last.name}" (${last.format.name}, ${last.byteSize} bytes); its type or shape does not match its data`);
  }
}

/** Names of tensors holding a NaN or an infinity (at most `limit`), read row by row through the formats' dequantizers. */
export function nonFiniteTensors(file: GgufFile, src: ByteSource, limit = 5): string[] {
  const found: string[] = [];
  for (const t of file.tensors) {
    const deq = t.format.dequantize;
    if (!deq) continue;
    const rowLength = t.shape[t.shape.length - 1];
    const rows = t.nElements / rowLength;
    const rowBytes = t.byteSize / rows;
    const out = new Float32Array(rowLength);
    for (let r = 0; r < rows; r++) {
      deq(src.read(file.dataOffset + t.offset + r * rowBytes, rowBytes), out);
      if (!out.every(Number.isFinite)) { found.push(t.name); break; }
    }
    if (found.length >= limit) break;
  }
  return found;
}
