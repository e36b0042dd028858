// Prefill throughput of a small model on 256-token windows with logits for every position: the workload of the
// pruning studies and of perplexity. Prints tokens/s; asserts nothing.
// Run: npm run build && node dist/bench/prefill.bench.js [MODEL]
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Model } from "../src/model/model.js";

const path = process.argv[2] ?? resolve(process.cwd(), "../shared/models/stories-deep-16L.gguf");
const model = Model.load(new Uint8Array(readFileSync(path)));
const text = readFileSync(resolve(process.cwd(), "../shared/data/tinystories/tinystories-validation-first1000.txt"), "utf8");
const tokens = model.tokenizer.encode(text.slice(0, 200000), { addBos: true });
const ctx = model.createContext({ contextSize: 512, batchSize: 64 });
const run = (limit: number) => {
  let n = 0;
  const t0 = performance.now();
  for (let i = 0; i + 256 <= tokens.length && n < limit; i += 256) {
    ctx.reset();
    ctx.eval(tokens.slice(i, i + 256), { logits: "all" });
    n += 256;
  }
  return { n, ms: performance.now() - t0 };
};
run(2048); // warm-up: the kernels tier up to optimized code
const { n, ms } = run(40000);
console.log(`${path.split("/").pop()}: ${n} tokens in 256-token windows, logits for all, 1 thread: ${((n / ms) * 1000).toFixed(0)} tok/s`);
