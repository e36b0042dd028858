// Deno: load a GGUF with the same ESM build Node uses and stream greedy tokens. Prints one JSON line
// {"tokens": [...], "text": "..."} so the test suite can compare it with Node's. The file is read through a file
// descriptor (edgeprune/node's FileSource, on Deno's node:fs), tensor by tensor into wasm memory, never whole.
//   npx deno run --allow-read --import-map=examples/import_map.json examples/deno-generate.ts MODEL.gguf "Once upon a time" 48
import { generateStream } from "edgeprune";
import { loadModelFile } from "edgeprune/node";

const [file, prompt = "Once upon a time", n = "48"] = Deno.args;
if (!file) {
  console.error("usage: deno run --allow-read --import-map=examples/import_map.json examples/deno-generate.ts MODEL.gguf [PROMPT] [TOKENS]");
  Deno.exit(2);
}
const model = loadModelFile(file, { contextSize: 256 });
const tokens: number[] = [];
let text = "";
for await (const t of generateStream(model, prompt, { maxTokens: Number(n), temperature: 0 })) {
  if (t.id >= 0) tokens.push(t.id);
  text += t.text;
}
console.log(JSON.stringify({ tokens, text }));
