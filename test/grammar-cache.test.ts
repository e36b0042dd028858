// The JSON-schema compiler's cache stays bounded: xgrammar's own cache kept every schema it was given, so clients
// sending new schemas grew the server for ever. 40 distinct schemas leave at most SCHEMA_CACHE_SIZE compiled, a
// grammar in use is not freed under its matcher, and a reused schema still constrains.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { JsonConstraints, SCHEMA_CACHE_SIZE } from "../src/server/grammar.js";
import { localModel } from "./server-support.js";

test(`40 distinct schemas leave at most ${SCHEMA_CACHE_SIZE} compiled; one held by a matcher survives eviction`, async () => {
  const m = localModel();
  const json = new JsonConstraints(m.tokenizer, m.config.vocabSize);
  const schema = (i: number) => ({ type: "object", properties: { [`k${i}`]: { type: "integer" } }, required: [`k${i}`] });
  const held = (await json.constraint({ type: "json_schema", schema: schema(0) }, "response_format"))!;
  for (let i = 1; i <= 40; i++) (await json.constraint({ type: "json_schema", schema: schema(i) }, "response_format"))!.dispose();
  assert.ok(json.cached <= SCHEMA_CACHE_SIZE, `${json.cached} compiled schemas kept`);
  // the held matcher still works: '{' is the only way to start
  const mask = await held.mask();
  const allowed = [...Array(m.config.vocabSize).keys()].filter((id) => (mask[id >> 5] >>> (id & 31)) & 1);
  assert.ok(allowed.length > 0 && allowed.every((id) => m.tokenizer.decode([id]).trimStart().startsWith("{")), `allowed: ${allowed.map((id) => m.tokenizer.decode([id])).join("|")}`);
  held.dispose();
  held.dispose(); // twice is harmless (the engine and the server may both dispose a failed request's matcher)
  assert.ok(json.cached <= SCHEMA_CACHE_SIZE);
  const bad = await json.constraint({ type: "json_schema", schema: { type: "nonsense" } }, "response_format").then(() => "accepted", (e: Error) => e.message);
  assert.match(bad, /JSON schema cannot be used/);
  assert.ok(json.cached <= SCHEMA_CACHE_SIZE, "a failed compile is not kept");
});

test.run();
