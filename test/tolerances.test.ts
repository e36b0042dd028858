// The tolerances themselves: each bound stays within 10× the difference it was derived from, so a bound cannot
// drift loose enough to hide a real bug (issue 12's rule). Not a numerical test of the model.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { EMBEDDING_VS_LLAMACPP, FAMILY_VS_LLAMACPP, KERNEL, ROUNDTRIP, VS_LLAMACPP, VS_LLAMACPP_KV } from "./tolerances.js";

test("every llama.cpp bound is at most 10× the measured difference or cross-backend spread, and above both", () => {
  for (const [name, t] of [...Object.entries(VS_LLAMACPP), ...Object.entries(FAMILY_VS_LLAMACPP), ...Object.entries(VS_LLAMACPP_KV)]) {
    const measured = Math.max(t.spread, t.ours);
    assert.ok(t.bound <= 10 * measured, `${name}: bound ${t.bound} is over 10× the measured ${measured}`);
    assert.ok(t.bound > measured, `${name}: bound ${t.bound} does not cover the measured ${measured}`);
  }
});

test("every kernel bound is at most 10× its measured error and above it (0 for the exact kernels)", () => {
  for (const [name, k] of Object.entries(KERNEL)) {
    if (k.measured === 0) assert.is(k.tol, 0, `${name}: an exact kernel gets an exact bound`);
    else {
      assert.ok(k.tol <= 10 * k.measured, `${name}: bound ${k.tol} is over 10× the measured ${k.measured}`);
      assert.ok(k.tol > k.measured, `${name}: bound ${k.tol} does not cover the measured ${k.measured}`);
    }
  }
});

test("every round-trip bound is at most 10× its measured figure and above it (0 where the figure is 0)", () => {
  for (const [name, t] of Object.entries(ROUNDTRIP)) {
    for (const [what, b] of Object.entries(t)) {
      if (b.measured === 0) assert.is(b.bound, 0, `${name} ${what}: an exact figure gets an exact bound`);
      else assert.ok(b.bound > b.measured && b.bound <= 10 * b.measured, `${name} ${what}: bound ${b.bound}, measured ${b.measured}`);
    }
  }
});

test("every embedding bound is at most 10× its measured difference, and above it", () => {
  for (const [name, t] of Object.entries(EMBEDDING_VS_LLAMACPP)) {
    assert.ok(t.bound <= 10 * t.measured, `${name}: bound ${t.bound} is over 10× the measured ${t.measured}`);
    assert.ok(t.bound > t.measured, `${name}: bound ${t.bound} does not cover the measured ${t.measured}`);
  }
});

test.run();
