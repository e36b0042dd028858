// Context.decodeBatch (the server's decode step over its active slots: one matmul over N tokens) against each
// context's own eval([token]): sequences of different lengths, at different positions, give the same logits row for
// row, and the same greedy continuations, on stories260K (GQA) and stories-deep-16L.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { Context } from "../src/model/forward.js";
import { Model } from "../src/model/model.js";
import { argmax } from "../src/sampler.js";
import { sharedPath } from "./support/paths.js";

const PROMPTS = ["Once upon a time", "The dog", "Lily and Tom went to the park to play", "One day"];

for (const file of ["stories260K.gguf", "stories-deep-16L.gguf"]) {
  test(`${file}: decodeBatch over 4 sequences equals 4 single-token evals, for 24 steps`, () => {
    const m = Model.load(new Uint8Array(readFileSync(sharedPath("models", file))), { contextSize: 128 });
    const v = m.config.vocabSize;
    const batched = PROMPTS.map(() => m.createContext({ contextSize: 128 }));
    const alone = PROMPTS.map(() => m.createContext({ contextSize: 128 }));
    const next = PROMPTS.map((p, j) => {
      const ids = m.tokenizer.encode(p, { addBos: true });
      batched[j].eval(ids);
      return argmax(alone[j].eval(ids));
    });
    const outs = PROMPTS.map(() => new Float32Array(v));
    let worst = 0;
    for (let step = 0; step < 24; step++) {
      // a different subset each step, in a different order: the lead context (whose scratch is used) changes
      const active = [0, 1, 2, 3].filter((j) => step < 4 || (step + j) % 5 !== 0);
      if (step % 2) active.reverse();
      Context.decodeBatch(active.map((j) => ({ ctx: batched[j], token: next[j], out: outs[j] })));
      for (const j of active) {
        const want = alone[j].eval([next[j]]);
        for (let i = 0; i < v; i++) worst = Math.max(worst, Math.abs(outs[j][i] - want[i]));
        assert.is(batched[j].nPast, alone[j].nPast, "one position per step");
        next[j] = argmax(want);
        assert.is(argmax(outs[j]), next[j], `sequence ${j}, step ${step}: the same greedy token`);
      }
    }
    // each row's matmul sums in the same order whatever the rows beside it: the logits are the same floats
    assert.is(worst, 0, `max |Δlogit| ${worst}`);
  });
}

test("decodeBatch refuses a full context and a repeated context, and runs nothing", () => {
  const m = Model.load(new Uint8Array(readFileSync(sharedPath("models", "stories260K.gguf"))), { contextSize: 8 });
  const a = m.createContext({ contextSize: 8 }), b = m.createContext({ contextSize: 8 });
  a.eval([1, 2, 3, 4, 5, 6, 7, 8]);
  b.eval([1]);
  const out = () => new Float32Array(m.config.vocabSize);
  assert.throws(() => Context.decodeBatch([{ ctx: b, token: 5, out: out() }, { ctx: a, token: 5, out: out() }]), /context is full/);
  assert.throws(() => Context.decodeBatch([{ ctx: b, token: 5, out: out() }, { ctx: b, token: 6, out: out() }]), /appears twice/);
  const c = m.createContext({ contextSize: 8 });
  assert.throws(() => Context.decodeBatch([{ ctx: b, token: 5, out: out() }, { ctx: c, token: 99999, out: out() }]), /outside the vocabulary/);
  assert.is(b.nPast, 1);
});

test.run();
