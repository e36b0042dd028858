// Does llama.cpp load a GGUF and generate what edgeprune generates? Greedy tokens from both, and the largest
// difference of the next-token probabilities over a teacher-forced prompt. For files too large for the test suite
// (docs/gptq.md: the TinyLlama-1.1B-shape GPTQ file). Run after `npm run build`:
//   node scripts/check-in-llamacpp.mjs FILE.gguf [TOKENS]
import { loadModelFile } from "../dist/src/node/load.js";
import { generate } from "../dist/src/generate.js";
import { disposeOracle, llamaCppGreedy, llamaCppTeacherForced } from "../dist/test/support/llamacpp.js";
import { ourTeacherForced } from "../dist/test/support/compare.js";

const [path, n = "16"] = process.argv.slice(2);
if (!path) {
  console.error("usage: node scripts/check-in-llamacpp.mjs FILE.gguf [TOKENS]");
  process.exit(2);
}
const model = loadModelFile(path, { contextSize: 128 });
const prompt = model.tokenizer.encode("Once upon a time there was", { addBos: true });
const ours = generate(model.createContext({ contextSize: 128 }), model.tokenizer, prompt, { maxTokens: Number(n), temperature: 0, stopAtEos: false }).tokens;
const theirs = await llamaCppGreedy(path, prompt, Number(n));
const seq = [...prompt, ...theirs.tokens].slice(0, 24);
const a = ourTeacherForced(model, seq), b = await llamaCppTeacherForced(path, seq);
let max = 0;
for (let i = 0; i < a.length; i++) for (let v = 0; v < a[i].length; v++) max = Math.max(max, Math.abs(a[i][v] - b[i][v]));
console.log(`llama.cpp loaded ${path}`);
console.log(`greedy, edgeprune: ${ours.join(" ")}`);
console.log(`greedy, llama.cpp: ${theirs.tokens.join(" ")}`);
console.log(`identical: ${ours.every((t, i) => t === theirs.tokens[i])}; max |p - p_llama.cpp| over ${a.length} teacher-forced positions: ${max.toExponential(2)}`);
await disposeOracle();
