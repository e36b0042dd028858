// The tolerances themselves: each llama.cpp bound stays within 10× the difference it was derived from, so a
// bound cannot drift loose enough to hide a real bug (issue 12's rule). Not a numerical test of the model.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { FAMILY_VS_LLAMACPP, VS_LLAMACPP, VS_LLAMACPP_KV } from "./tolerances.js";

test("every llama.cpp bound is at most 10× the measured difference or cross-backend spread, and above both", () => {
  for (const [name, t] of [...Object.entries(VS_LLAMACPP), ...Object.entries(FAMILY_VS_LLAMACPP), ...Object.entries(VS_LLAMACPP_KV)]) {
    const measured = Math.max(t.spread, t.ours);
    assert.ok(t.bound <= 10 * measured, `${name}: bound ${t.bound} is over 10× the measured ${measured}`);
    assert.ok(t.bound > measured, `${name}: bound ${t.bound} does not cover the measured ${measured}`);
  }
});

test.run();
