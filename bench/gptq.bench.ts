// Held-out evaluation for the GPTQ study (docs/gptq.md): per-story perplexity of GGUF files on the last 20% of
// the TinyStories validation stories (the first 80% are what `quantize --calib` calibrates on). Each story is
// scored on its own: BOS + story, every next-token prediction counted. Not a speed benchmark.
// usage: node dist/bench/gptq.bench.js [--stories FILE] MODEL.gguf [MODEL.gguf ...]
import { readFileSync } from "node:fs";
import { calibrationSplit, splitDocuments } from "../src/data/documents.js";
import { loadModelFile } from "../src/node/load.js";
import { logSoftmaxAt } from "../src/perplexity.js";

const DEFAULT_STORIES = "../shared/data/tinystories/tinystories-validation-first1000.txt";

function storyPerplexity(path: string, stories: string[]): { ppl: number; tokens: number } {
  const model = loadModelFile(path, { contextSize: Math.min(512, 2048) });
  const ctx = model.createContext();
  const vocab = model.config.vocabSize;
  let nll = 0, count = 0;
  for (const s of stories) {
    const ids = model.tokenizer.encode(s, { addBos: true }).slice(0, ctx.contextSize);
    if (ids.length < 2) continue;
    ctx.reset();
    const logits = ctx.eval(ids, { logits: "all" });
    for (let j = 0; j + 1 < ids.length; j++) nll -= logSoftmaxAt(logits, j * vocab, vocab, ids[j + 1]);
    count += ids.length - 1;
  }
  return { ppl: Math.exp(nll / count), tokens: count };
}

const args = process.argv.slice(2);
let storiesPath = DEFAULT_STORIES;
const si = args.indexOf("--stories");
if (si >= 0) { storiesPath = args[si + 1]; args.splice(si, 2); }
if (args.length === 0) {
  console.error("usage: node dist/bench/gptq.bench.js [--stories FILE] MODEL.gguf [MODEL.gguf ...]");
  process.exit(1);
}
const held = calibrationSplit(splitDocuments(readFileSync(storiesPath, "utf8"))).eval;
console.log(`held-out stories: ${held.length} (the last 20% of ${storiesPath})`);
for (const path of args) {
  const t0 = performance.now();
  const r = storyPerplexity(path, held);
  console.log(`${r.ppl.toFixed(4)}  ${path}  (${r.tokens} tokens, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
