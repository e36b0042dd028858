// llama.cpp's tokenizer fixtures (../shared/models/vocab/*.inp/.out), split exactly as test-tokenizer-0.cpp does,
// and an FNV-1a hash to pin long tokenizations without storing them. Test support only.
import { readFileSync } from "node:fs";
import { sharedPath } from "./paths.js";

const SEP = "\n__ggml_vocab_test__\n";

/** The (text, expected ids) pairs of `vocabFile`'s .inp/.out (ids without BOS, special tokens not parsed). */
export function fixtureCases(vocabFile: string): { text: string; ids: number[] }[] {
  const raw = readFileSync(sharedPath("models", "vocab", vocabFile + ".inp"), "utf8");
  const inputs: string[] = [];
  let pos = 0;
  while (pos < raw.length) {
    const next = raw.indexOf(SEP, pos);
    if (next === -1) {
      inputs.push(raw.slice(pos));
      break;
    }
    inputs.push(raw.slice(pos, next));
    pos = next + SEP.length;
  }
  const outLines = readFileSync(sharedPath("models", "vocab", vocabFile + ".out"), "utf8").split("\n");
  if (outLines[outLines.length - 1] === "") outLines.pop();
  if (inputs.length !== outLines.length) throw new Error(`${vocabFile}: .inp has ${inputs.length} cases, .out ${outLines.length}`);
  return inputs.map((text, i) => ({ text, ids: outLines[i].trim() === "" ? [] : outLines[i].trim().split(" ").map(Number) }));
}

/** FNV-1a over token ids */
export function fnv1a(ids: number[]): string {
  let h = 0x811c9dc5;
  for (const id of ids) {
    h ^= id;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16);
}
