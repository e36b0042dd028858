// The sampler on small hand-made logits: which candidates top-k, top-p and min-p keep (boundaries included), the
// repetition penalty, temperature as a change of the sampled frequencies, greedy ties, seeds, defaults and the
// messages for bad values. No model; the end-to-end runs are in cli.test.ts and server.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { argmax, Sampler, SAMPLER_DEFAULTS, softmax, topIndices, validateSamplerOptions, type SamplerOptions } from "../src/sampler.js";

const logits = Float32Array.from([1, 3, 3, 0, 2]);

/** the set of tokens drawn in n samples, and how often each was drawn */
function draw(opts: SamplerOptions, x: Float32Array = logits, n = 2000, history: number[] = []): { seen: number[]; freq: number[] } {
  const s = new Sampler({ temperature: 1, seed: 3, topK: 0, topP: 1, minP: 0, ...opts });
  const count = new Array(x.length).fill(0);
  for (let i = 0; i < n; i++) count[s.sample(x, history)]++;
  return { seen: count.flatMap((c, i) => (c > 0 ? [i] : [])), freq: count.map((c) => c / n) };
}

test("topIndices: the k largest, largest first, lower id first on ties; argmax takes the lowest id on ties", () => {
  assert.equal(topIndices(logits, 3), [1, 2, 4]);
  assert.equal(topIndices(logits, 1), [1]);
  assert.equal(topIndices(logits, 5), [1, 2, 4, 0, 3]);
  assert.equal(topIndices(logits, 9), [1, 2, 4, 0, 3]);
  assert.equal(topIndices(Float32Array.from([0, 5, 1, 5, 5, 2]), 4), [1, 3, 4, 5]);
  assert.equal(topIndices(Float32Array.from([-1, -3, -2]), 2), [0, 2]);
  assert.equal(topIndices(Float32Array.from([0, 5, 1, 5, 5, 2]), 6), [1, 3, 4, 5, 2, 0], "the full sort keeps tied ids in order too");
  assert.is(argmax(logits), 1);
  assert.is(argmax([2, 1, 2]), 0);
  assert.is(argmax([-5, -1, -1]), 1);
});

test("softmax: exact values, stable for large logits", () => {
  const p = softmax([0, Math.log(3)]);
  assert.ok(Math.abs(p[0] - 0.25) < 1e-15 && Math.abs(p[1] - 0.75) < 1e-15, String(p));
  const big = softmax([1000, 1000 + Math.log(4)]);
  assert.ok(Math.abs(big[0] - 0.2) < 1e-12, String(big));
  assert.equal(softmax([800, 0]), [1, Math.exp(-800)], "shifted by the largest logit, wherever it is");
});

test("greedy at temperature 0, whatever the truncation; the lowest id wins a tie", () => {
  for (const o of [{}, { topK: 2 }, { topP: 0.1 }, { minP: 0.9 }]) assert.is(new Sampler({ temperature: 0, ...o }).sample(logits), 1);
  assert.ok(new Sampler({ temperature: 0 }).greedy);
  assert.not.ok(new Sampler({ temperature: 0.01 }).greedy);
});

test("top-k, top-p and min-p keep exactly the right candidates", () => {
  assert.equal(draw({}).seen, [0, 1, 2, 3, 4]);
  assert.equal(draw({ topK: 2 }).seen, [1, 2]);
  assert.equal(draw({ topK: 1 }).seen, [1]);
  // p = softmax([1,3,3,0,2]) sorted: .3917 .3917 .1441 .0530 .0195 (cumulative .3917 .7834 .9275 .9805 1)
  assert.equal(draw({ topP: 0.9 }).seen, [1, 2, 4]);
  assert.equal(draw({ topP: 0.95 }).seen, [0, 1, 2, 4]);
  assert.equal(draw({ topP: 0.4 }).seen, [1, 2]);
  assert.equal(draw({ topP: 0.3 }).seen, [1]);
  // min-p keeps p ≥ minP × p_max: 0.3 × .3917 = .1175 keeps three; 0.37 (cut .1449) keeps two
  assert.equal(draw({ minP: 0.3 }).seen, [1, 2, 4]);
  assert.equal(draw({ minP: 0.37 }).seen, [1, 2]);
  assert.equal(draw({ minP: 1 }).seen, [1, 2], "min-p 1 keeps the tied top two");
  // exactly at the boundary: p_4 / p_1 = e^-1, so min-p e^-1 keeps token 4 (≥), a hair more drops it
  assert.equal(draw({ minP: Math.exp(-1) - 1e-12 }).seen, [1, 2, 4]);
  assert.equal(draw({ minP: Math.exp(-1) + 1e-9 }).seen, [1, 2]);
  // top-p reaching p exactly stops there: two equal logits give cumulative 0.5 after the first
  assert.equal(draw({ topP: 0.5 }, Float32Array.from([0, 0])).seen, [0]);
  // the truncations compose: top-k 3 then min-p 0.37; top-p 0.95 then min-p 0.3 (on the renormalized top-p set)
  assert.equal(draw({ topK: 3, minP: 0.37 }).seen, [1, 2]);
  assert.equal(draw({ topP: 0.95, minP: 0.3 }).seen, [1, 2, 4]);
});

test("temperature reshapes the frequencies: softmax(logits / T) over the kept candidates", () => {
  const x = Float32Array.from([0, Math.log(3)]);
  const near = (f: number[], want: number[]) => f.every((v, i) => Math.abs(v - want[i]) < 0.02);
  assert.ok(near(draw({}, x, 20000).freq, [0.25, 0.75]), String(draw({}, x, 20000).freq));
  const t2 = [1 / (1 + Math.sqrt(3)), Math.sqrt(3) / (1 + Math.sqrt(3))];
  assert.ok(near(draw({ temperature: 2 }, x, 20000).freq, t2), String(draw({ temperature: 2 }, x, 20000).freq));
  assert.ok(near(draw({ temperature: 0.5 }, x, 20000).freq, [0.1, 0.9]), String(draw({ temperature: 0.5 }, x, 20000).freq));
});

test("repetition penalty: positive logits divided, negative multiplied, only the last repeatLastN tokens, logits untouched", () => {
  const x = Float32Array.from([2, 1.9, -0.1, -0.2]);
  const greedy = (o: SamplerOptions, history: number[]) => new Sampler({ temperature: 0, ...o }).sample(x, history);
  assert.is(greedy({ repeatPenalty: 1.1 }, [0]), 1, "2 / 1.1 < 1.9");
  assert.is(greedy({ repeatPenalty: 1 }, [0]), 0, "penalty 1 is off");
  assert.is(greedy({ repeatPenalty: 1.1, repeatLastN: 1 }, [0, 3]), 0, "token 0 is outside the last 1");
  assert.is(greedy({ repeatPenalty: 1.1, repeatLastN: 0 }, [0]), 0, "repeatLastN 0 is off");
  assert.is(greedy({ repeatPenalty: 1.1 }, [0, 99, -1]), 1, "ids outside the vocabulary are ignored");
  const neg = Float32Array.from([-1, -1.05]);
  assert.is(new Sampler({ temperature: 0, repeatPenalty: 1.1 }).sample(neg, [0]), 1, "-1 × 1.1 < -1.05");
  assert.is(new Sampler({ temperature: 0, repeatPenalty: 1.1 }).sample(neg, []), 0, "no history, no penalty");
  assert.equal(Array.from(x), [2, 1.9, -0.1, -0.2].map(Math.fround), "the caller's logits are not modified");
  // sampled (not greedy) runs see the penalty too: a 100× penalty on token 1 of [0, 5] leaves token 0
  assert.equal(draw({ repeatPenalty: 100 }, Float32Array.from([0, 5]), 200, [1]).seen, [0, 1]);
  assert.ok(draw({ repeatPenalty: 100 }, Float32Array.from([0, 5]), 2000, [1]).freq[0] > 0.4);
});

test("a seed repeats the draws; another seed changes them; no seed is random", () => {
  const run = (seed?: number) => { const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed }); return Array.from({ length: 50 }, () => s.sample(logits)); };
  assert.equal(run(7), run(7));
  assert.not.equal(run(7), run(8));
  assert.not.equal(run(), run());
  assert.is(new Sampler({ seed: 7 }).options.seed, 7);
});

test("defaults are llama.cpp's; undefined options take them", () => {
  assert.equal(SAMPLER_DEFAULTS, { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, repeatLastN: 64, frequencyPenalty: 0, presencePenalty: 0 });
  const o = new Sampler({ temperature: undefined, topK: undefined, seed: 1 }).options;
  assert.is(o.temperature, 0.8);
  assert.is(o.topK, 40);
  assert.is(o.minP, 0.05);
  assert.is(new Sampler({ topK: 0, seed: 1 }).options.topK, 0);
});

test("bad values are refused with the option's name; the edges of each range are allowed", () => {
  const bad: [SamplerOptions, RegExp][] = [
    [{ temperature: -0.1 }, /invalid temperature -0.1: expected a number ≥ 0/], [{ temperature: Infinity }, /temperature/], [{ temperature: NaN }, /temperature/],
    [{ topK: -1 }, /invalid top-k -1/], [{ topK: 1.5 }, /top-k 1.5/],
    [{ topP: 0 }, /invalid top-p 0: expected a number in \(0, 1\]/], [{ topP: 1.01 }, /top-p/],
    [{ minP: -0.01 }, /invalid min-p/], [{ minP: 1.5 }, /min-p/],
    [{ repeatPenalty: 0 }, /invalid repeat penalty 0/], [{ repeatPenalty: Infinity }, /repeat penalty/],
    [{ repeatLastN: -1 }, /invalid repeat-last-n -1/], [{ repeatLastN: 2.5 }, /repeat-last-n/],
    [{ seed: 1.5 }, /invalid seed 1.5: expected an integer/],
  ];
  for (const [o, msg] of bad) {
    assert.throws(() => validateSamplerOptions(o), msg, JSON.stringify(o));
    assert.throws(() => new Sampler(o), msg);
  }
  for (const o of [{ temperature: 0 }, { topK: 0 }, { topP: 1 }, { minP: 0 }, { minP: 1 }, { repeatPenalty: 0.5 }, { repeatLastN: 0 }, { seed: -3 }]) {
    validateSamplerOptions(o);
  }
});

test.run();
