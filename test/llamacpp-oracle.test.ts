// Pins the llama.cpp oracle (test/support/llamacpp.ts) to known facts on stories260K, so a broken
// harness fails here instead of silently weakening the tests that compare against it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { disposeOracle, llamaCppGreedy, llamaCppNextTokenProbs, llamaCppTokenize } from "./support/llamacpp.js";
import { sharedPath } from "./support/paths.js";

const MODEL = sharedPath("models", "stories260K.gguf");
const PROMPT = [1, 403, 407, 261, 378]; // BOS + "Once upon a time"
// Greedy continuation from an independent float64 numpy forward pass (/work/shared/docs/peers.md).
const EXPECTED_PREFIX = [
  432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322,
  265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267,
];
const P_432 = 0.9687; // numpy reference, quoted to 4 digits
const P_TOL = 5e-4; // rounding of the quoted value plus float32 vs float64 forward

test.after(async () => {
  await disposeOracle();
});

test("oracle tokenizes 'Once upon a time' with BOS", async () => {
  assert.equal(await llamaCppTokenize(MODEL, "Once upon a time", true), PROMPT);
});

test("oracle greedy decode matches the numpy reference", async () => {
  const { tokens, probs } = await llamaCppGreedy(MODEL, PROMPT, 64);
  assert.is(tokens.length, 64);
  assert.is(probs.length, 64);
  assert.equal(tokens.slice(0, EXPECTED_PREFIX.length), EXPECTED_PREFIX);
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!;
    assert.is(p.length, 512, "one probability per vocabulary entry");
    let argmax = 0;
    for (let j = 1; j < p.length; j++) if (p[j]! > p[argmax]!) argmax = j;
    assert.is(tokens[i], argmax, `step ${i}: greedy token is the argmax of its distribution`);
  }
});

test("oracle next-token probability of 432 after the prompt", async () => {
  const p = await llamaCppNextTokenProbs(MODEL, PROMPT);
  assert.is(p.length, 512);
  const sum = p.reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - 1) < 1e-5, `probabilities sum to ${sum}`);
  assert.ok(Math.abs(p[432]! - P_432) <= P_TOL, `p(432) = ${p[432]}, expected ${P_432} ± ${P_TOL}`);
});

test.run();
