// Architecture family gemma3 against llama.cpp: the tests every family gets (test/support/family-suite.ts), and
// removal under its sliding-window pattern (layer 2 global, 0, 1 and 3 local): a removal that would renumber a
// local layer into the global slot keeps the layer as an identity instead.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { assertGreedyAgree, familySuite, greedy, load } from "./support/family-suite.js";
import { teacherSequence } from "./support/fixtures.js";
import { llamaCppGreedy } from "./support/llamacpp.js";
import { runCli } from "./support/cli.js";
import { familyF32Bound } from "./tolerances.js";

familySuite("gemma3", (file, tmp) => {
  test("gemma3: removing layer 1 would make global layer 2 local: it is kept as an identity layer, which llama.cpp runs with our greedy tokens", async () => {
    const out = join(tmp, "minus1.gguf");
    const r = runCli("prune", file("f32"), "--layers", "1", "-o", out);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stderr, /kept as identity layers/);
    const dense = load(file("f32")), pruned = load(out);
    assert.is(pruned.config.nLayers, 4);
    assert.equal(pruned.config.swaLayers, [true, true, false, true], "every layer keeps its type");
    assert.equal([...pruned.config.removedAttention], [1]);
    assert.equal([...pruned.config.removedFfn], [1]);
    const prompt = teacherSequence(dense.tokenizer).slice(0, 8);
    assert.equal(Array.from(pruned.createContext().eval(prompt)), Array.from(dense.createContext().eval(prompt, { skipLayers: new Set([1]) })));
    const ref = await llamaCppGreedy(out, prompt, 64);
    console.log(`    gemma3 minus layer 1: greedy vs llama.cpp: ${assertGreedyAgree(greedy(pruned, prompt), ref, familyF32Bound("gemma3"), "gemma3 minus 1")}`);
    // removing layers 2 and 3 leaves 0 and 1, both local as before: they are dropped
    const out2 = join(tmp, "minus23.gguf");
    assert.is(runCli("prune", file("f32"), "--layers", "2,3", "-o", out2).status, 0);
    assert.is(load(out2).config.nLayers, 2);
  });
});
