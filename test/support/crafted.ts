// Hostile model files for the hostile-input tests, generated (never committed): stories260K with one lie each in its
// metadata, tensors or data (the model-level attacks), hand-built headers for the parser-level ones, and chat
// templates that loop, recurse or grow. Run `node dist/test/support/crafted.js DIR` to write them for a look.
// Test-only; not a GGUF writer (that is src/gguf/writer.ts, which builds most of these).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { bytesSource, readGgufHeader } from "../../src/gguf/reader.js";
import { GgufStringArray, GgufType, type GgufFile, type GgufKv } from "../../src/gguf/types.js";
import { writeGgufBytes, type GgufWriteTensor } from "../../src/gguf/writer.js";
import { formatByName } from "../../src/quant/formats.js";
import { sharedPath } from "./paths.js";

export interface CraftedFile {
  name: string;
  /** what the file lies about */
  what: string;
  bytes: Uint8Array;
  /** the one-line error every command that reads the model must give */
  error: RegExp;
  /** a parser-level attack: even `info` refuses it (model-level ones are described by info as not runnable) */
  structural?: boolean;
}

const BASE = () => new Uint8Array(readFileSync(sharedPath("models/stories260K.gguf")));

interface Edit {
  kv?: (kv: Map<string, GgufKv>) => void;
  tensors?: (t: GgufWriteTensor[]) => GgufWriteTensor[];
  data?: (name: string, bytes: Uint8Array) => Uint8Array;
}

/** stories260K rewritten with an edit; tensors are packed afresh, so the layout stays valid. */
function rewrite(base: Uint8Array, e: Edit): Uint8Array {
  const file = readGgufHeader(base);
  const kv = new Map(file.kv);
  e.kv?.(kv);
  let tensors: GgufWriteTensor[] = file.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type }));
  if (e.tensors) tensors = e.tensors(tensors);
  const src = bytesSource(base);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  return writeGgufBytes({ version: file.version, kv: [...kv.values()], tensors }, (i) => {
    const t = byName.get(tensors[i].name)!;
    const data = src.read(file.dataOffset + t.offset, t.byteSize);
    return e.data ? e.data(t.name, data) : data;
  });
}

function setU32(kv: Map<string, GgufKv>, key: string, value: number): void {
  kv.set(key, { key, type: GgufType.UINT32, value });
}

function setF32(kv: Map<string, GgufKv>, key: string, value: number): void {
  kv.set(key, { key, type: GgufType.FLOAT32, value });
}

/** A file whose tensor `name` has its type field changed in place: same header length, same data bytes. */
function relabel(base: Uint8Array, name: string, type: number): Uint8Array {
  const file = readGgufHeader(base);
  const t = file.tensors.find((x) => x.name === name)!;
  const out = base.slice();
  const view = new DataView(out.buffer);
  const needle = new TextEncoder().encode(name);
  // the tensor info: u64 name length, name, u32 n_dims, n_dims × u64, u32 type
  for (let p = 0; p < file.headerSize; p++) {
    if (view.getBigUint64(p, true) !== BigInt(needle.length)) continue;
    if (!needle.every((b, i) => out[p + 8 + i] === b)) continue;
    const typeAt = p + 8 + needle.length + 4 + 8 * t.dims.length;
    if (view.getUint32(p + 8 + needle.length, true) !== t.dims.length || view.getUint32(typeAt, true) !== t.type) continue;
    view.setUint32(typeAt, type, true);
    return out;
  }
  throw new Error(`tensor info of ${name} not found`);
}

function poison(value: number, every: number) {
  return (_name: string, bytes: Uint8Array): Uint8Array => {
    const f = new Float32Array(bytes.slice().buffer);
    for (let i = 0; i < f.length; i += every) f[i] = value;
    return new Uint8Array(f.buffer);
  };
}

/** The model-level attacks: a valid GGUF each, lying about the model. */
export function craftedModels(base = BASE()): CraftedFile[] {
  const file = readGgufHeader(base);
  const vocab = file.tensors.find((t) => t.name === "token_embd.weight")!.shape[0];
  const truncateVocab = (n: number) => (kv: Map<string, GgufKv>) => {
    const tokens = kv.get("tokenizer.ggml.tokens")!.value as { items: GgufStringArray };
    kv.set("tokenizer.ggml.tokens", { key: "tokenizer.ggml.tokens", type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: GgufStringArray.from(tokens.items.toArray().slice(0, n)) } });
    for (const key of ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"]) {
      const e = kv.get(key);
      if (!e) continue;
      const a = e.value as { itemType: GgufType; items: Float32Array | Int32Array };
      kv.set(key, { key, type: GgufType.ARRAY, value: { itemType: a.itemType, items: a.items.slice(0, n) } });
    }
  };
  const mid = file.tensors.find((t) => t.name === "blk.2.attn_k.weight")!;
  const F16 = formatByName("F16")!.ggmlType;
  const last = file.tensors[file.tensors.length - 1];
  const f32Matrix = file.tensors.find((t) => t.name === "blk.1.attn_q.weight")!;
  return [
    { name: "block-count-max", what: "llama.block_count = 2^32 − 1", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.block_count", 0xffffffff) }), error: /llama\.block_count = 4294967295, but the file has tensors for 5 layers/ },
    { name: "block-count-million", what: "llama.block_count = 10^6", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.block_count", 1_000_000) }), error: /llama\.block_count = 1000000, but the file has tensors for 5 layers/ },
    { name: "block-count-short", what: "llama.block_count = 3 with tensors for 5 layers", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.block_count", 3) }), error: /tensor blk\.4\.\* names a layer past llama\.block_count = 3/ },
    { name: "block-count-zero", what: "llama.block_count = 0", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.block_count", 0) }), error: /llama\.block_count = 0/ },
    { name: "head-count", what: "8 heads claimed as 7", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.attention.head_count", 7) }), error: /embedding_length = 64 must be a positive multiple of llama\.attention\.head_count = 7/ },
    { name: "head-count-kv", what: "4 KV heads claimed as 3", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.attention.head_count_kv", 3) }), error: /head_count = 8 must be a multiple of llama\.attention\.head_count_kv = 3/ },
    { name: "rms-eps-zero", what: "RMS norm epsilon 0", bytes: rewrite(base, { kv: (kv) => setF32(kv, "llama.attention.layer_norm_rms_epsilon", 0) }), error: /layer_norm_rms_epsilon = 0 is not a usable epsilon/ },
    { name: "rope-dim-odd", what: "rope.dimension_count = 7", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.rope.dimension_count", 7) }), error: /rope\.dimension_count = 7 must be even/ },
    { name: "rope-base-negative", what: "rope.freq_base = -1", bytes: rewrite(base, { kv: (kv) => setF32(kv, "llama.rope.freq_base", -1) }), error: /rope\.freq_base = -1 must be positive/ },
    { name: "context-zero", what: "context_length = 0", bytes: rewrite(base, { kv: (kv) => setU32(kv, "llama.context_length", 0) }), error: /context_length must be positive/ },
    { name: "tokenizer-smaller", what: `a tokenizer of 400 tokens for a ${vocab}-row embedding`, bytes: rewrite(base, { kv: truncateVocab(400) }), error: new RegExp(`the tokenizer has 400 tokens \\(tokenizer\\.ggml\\.tokens\\) but token_embd\\.weight has ${vocab} rows`) },
    { name: "tensor-missing", what: "blk.2.attn_q.weight left out", bytes: rewrite(base, { tensors: (t) => t.filter((x) => x.name !== "blk.2.attn_q.weight") }), error: /tensor "blk\.2\.attn_q\.weight" is missing/ },
    { name: "tensor-shape", what: "ffn_up of layer 0 transposed", bytes: rewrite(base, { tensors: (t) => t.map((x) => (x.name === "blk.0.ffn_up.weight" ? { ...x, dims: [...x.dims].reverse() } : x)) }), error: /tensor "blk\.0\.ffn_up\.weight" has shape \[64,172\], expected \[172,64\]/ },
    { name: "f32-as-f16", what: `${mid.name}'s F32 data labelled F16`, bytes: relabel(base, mid.name, F16), error: new RegExp(`bytes more than the tensors before it need \\(is "${mid.name.replace(/\./g, "\\.")}" really F16`) },
    { name: "f32-as-f16-last", what: `the last tensor (${last.name}) labelled F16`, bytes: relabel(base, last.name, F16), error: new RegExp(`bytes after its last tensor "${last.name.replace(/\./g, "\\.")}" \\(F16`) },
    { name: "nan-weights", what: `NaN in every 97th value of ${f32Matrix.name}`, bytes: rewrite(base, { data: (n, b) => (n === f32Matrix.name ? poison(NaN, 97)(n, b) : b) }), error: /not finite.*blk\.1\.attn_q\.weight/ },
    { name: "inf-weights", what: "+Inf in blk.3.ffn_down.weight", bytes: rewrite(base, { data: (n, b) => (n === "blk.3.ffn_down.weight" ? poison(Infinity, 1013)(n, b) : b) }), error: /not finite.*blk\.3\.ffn_down\.weight/ },
  ];
}

/** GGUF files hand-built byte by byte, for the attacks on the parser itself. */
class Bytes {
  private parts: number[] = [];
  u32(v: number) { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); return this; }
  u64(v: bigint) { for (let i = 0n; i < 8n; i++) this.parts.push(Number((v >> (8n * i)) & 0xffn)); return this; }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(BigInt(b.length)); this.parts.push(...b); return this; }
  raw(n: number) { for (let i = 0; i < n; i++) this.parts.push(0); return this; }
  head(tensors: number, kvs: number) { return this.u32(0x46554747).u32(3).u64(BigInt(tensors)).u64(BigInt(kvs)); }
  /** one tensor info: name, dims (innermost first), ggml type, data offset */
  tensor(name: string, dims: bigint[], type: number, offset: bigint) {
    this.str(name).u32(dims.length);
    for (const d of dims) this.u64(d);
    return this.u32(type).u64(offset);
  }
  pad(to = 32) { while (this.parts.length % to) this.parts.push(0); return this; }
  bytes() { return new Uint8Array(this.parts); }
}

/** The parser-level attacks (the reader's checks, kept fixed here). */
export function craftedStructures(): CraftedFile[] {
  const deep = new Bytes().head(0, 1).str("deep").u32(GgufType.ARRAY);
  for (let i = 0; i < 100_000; i++) deep.u32(GgufType.ARRAY).u64(1n);
  const e = (name: string, what: string, b: Bytes, error: RegExp): CraftedFile => ({ name, what, bytes: b.bytes(), error, structural: true });
  return [
    e("string-2e64", "a key whose length is 2^64 − 1", new Bytes().head(0, 1).u64(0xffffffffffffffffn), /metadata key #0 length.*cannot fit/),
    e("arrays-1e5-deep", "arrays nested 10^5 deep", deep, /arrays nested deeper than 8/),
    e("kv-count-huge", "2^60 key-value pairs announced", new Bytes().u32(0x46554747).u32(3).u64(0n).u64(1n << 60n), /metadata_kv_count.*cannot fit/),
    e("tensor-count-huge", "2^50 tensors announced", new Bytes().u32(0x46554747).u32(3).u64(1n << 50n).u64(0n), /tensor_count.*cannot fit/),
    e("elements-overflow", "dims 2^40 × 2^40", new Bytes().head(1, 0).tensor("t", [1n << 40n, 1n << 40n], 0, 0n).pad().raw(64), /overflows/),
    e("unknown-type", "ggml type 99", new Bytes().head(1, 0).tensor("t", [32n], 99, 0n).pad().raw(128), /unknown ggml tensor type 99/),
    e("offset-out-of-range", "data offset far past the end", new Bytes().head(1, 0).tensor("t", [32n], 0, 1n << 30n).pad().raw(128), /past the end|cannot fit/),
    e("overlap", "two tensors on the same bytes", new Bytes().head(2, 0).tensor("a", [32n], 0, 0n).tensor("b", [32n], 0, 0n).pad().raw(256), /overlaps tensor "a"/),
    e("duplicate-tensor", "the same tensor name twice", new Bytes().head(2, 0).tensor("a", [32n], 0, 0n).tensor("a", [32n], 0, 128n).pad().raw(256), /duplicate tensor name "a"/),
    e("alignment-3", "general.alignment = 3", new Bytes().head(0, 1).str("general.alignment").u32(GgufType.UINT32).u32(3), /general\.alignment.*power of two/),
    e("truncated", "a file cut inside its header", new Bytes().head(1, 2).str("general.architecture"), /needs \d+ bytes but the file ends/),
    e("not-gguf", "a PNG", new Bytes().u32(0x474e5089).u32(0x0a1a0a0d).raw(64), /not a GGUF file/),
  ];
}

/** Chat templates a model file may carry: each must be refused (at start-up, or per request) without harm. */
export interface CraftedTemplate {
  name: string;
  source: string;
  /** "startup": the server refuses to serve it; "request": it renders the sample conversation, then fails on `trigger` */
  refused: "startup" | "request";
  /** the message content that sets it off (request-level ones) */
  trigger?: string;
  /** what the refusal says */
  error: RegExp;
}

const ECHO = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>";

export const CRAFTED_TEMPLATES: CraftedTemplate[] = [
  { name: "endless-loop", source: "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", refused: "startup", error: /did not finish within \d+ ms/ },
  { name: "heap-bomb", source: "{% for i in range(100000000) %}{% endfor %}", refused: "startup", error: /did not finish within|more than its \d+ MiB of memory/ },
  { name: "huge-output", source: "{% for i in range(100000) %}{% for j in range(100) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}", refused: "startup", error: /did not finish within|characters, over the limit|more than its/ },
  { name: "doubling", source: "{% set s = 'ab' %}{% for i in range(64) %}{% set s = s + s %}{% endfor %}{{ s }}", refused: "startup", error: /Invalid string length|more than its|did not finish/ },
  { name: "always-raises", source: "{{ raise_exception('no chat for you') }}", refused: "startup", error: /no chat for you/ },
  { name: "does-not-parse", source: "{% for m in messages %}{{ m.content ", refused: "startup", error: /does not parse/ },
  { name: "loops-on-trigger", source: `{% for m in messages %}{% if m.content == 'bomb' %}{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}{% endif %}{% endfor %}${ECHO}`, refused: "request", trigger: "bomb", error: /did not finish within \d+ ms/ },
  { name: "heap-on-trigger", source: `{% for m in messages %}{% if m.content == 'bomb' %}{% for i in range(100000000) %}{% endfor %}{% endif %}{% endfor %}${ECHO}`, refused: "request", trigger: "bomb", error: /did not finish within|more than its \d+ MiB of memory/ },
  { name: "grows-on-trigger", source: `{% for m in messages %}{% if m.content == 'bomb' %}{% for i in range(2000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endif %}{% endfor %}${ECHO}`, refused: "request", trigger: "bomb", error: /longer than that many tokens can hold|did not finish within/ }, // the size check, or on a loaded machine the deadline first
];

/** stories260K with `source` as its tokenizer.chat_template. */
export function withChatTemplate(source: string, base = BASE()): Uint8Array {
  return rewrite(base, { kv: (kv) => kv.set("tokenizer.chat_template", { key: "tokenizer.chat_template", type: GgufType.STRING, value: source }) });
}

/** A Hugging Face folder for `convert` with one lie in it (tinystories-656k otherwise). */
export interface CraftedFolder {
  name: string;
  what: string;
  dir: string;
  /** the one-line error convert must give */
  error: RegExp;
}

const HF_BASE = () => sharedPath("models/tinystories-656k");

/** model.safetensors of tinystories-656k as its header (parsed) and data section. */
function safetensorsParts(): { header: Record<string, unknown>; data: Uint8Array } {
  const bytes = new Uint8Array(readFileSync(join(HF_BASE(), "model.safetensors")));
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), data: bytes.subarray(8 + n) };
}

function safetensors(headerText: string, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** The hostile folders: safetensors headers that lie, an index that points outside, a config that lies. */
export function writeCraftedFolders(root: string): CraftedFolder[] {
  const { header, data } = safetensorsParts();
  const relabel = { ...header, "lm_head.weight": { ...(header["lm_head.weight"] as object), dtype: "F16" } };
  const huge = { ...header, "lm_head.weight": { dtype: "F32", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: (header["lm_head.weight"] as { data_offsets: number[] }).data_offsets } };
  const config = JSON.parse(readFileSync(join(HF_BASE(), "config.json"), "utf8")) as Record<string, unknown>;
  const cases: { name: string; what: string; error: RegExp; files: Record<string, Uint8Array | string> }[] = [
    { name: "st-length-2e60", what: "a safetensors header length of 2^60", error: /model\.safetensors: invalid safetensors \(header length\).*more than the 100000000 allowed/, files: { "model.safetensors": safetensors("{}", new Uint8Array(0), 1n << 60n) } },
    { name: "st-length-past-end", what: "a 99 MB header in a 1 KB file", error: /model\.safetensors: invalid safetensors \(header length\).*only \d+ follow/, files: { "model.safetensors": safetensors("{}", new Uint8Array(1000), 99_000_000n) } },
    { name: "st-deep-json", what: "a header nested 10^6 arrays deep", error: /model\.safetensors: invalid safetensors/, files: { "model.safetensors": safetensors(`{"a":${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}}`, new Uint8Array(0)) } },
    { name: "st-f32-as-f16", what: "lm_head.weight's F32 bytes labelled F16", error: /model\.safetensors: invalid safetensors .*lm_head\.weight.*holds 1048576 bytes, but F16 \[2048,128\] needs 524288/, files: { "model.safetensors": safetensors(JSON.stringify(relabel), data) } },
    { name: "st-elements-overflow", what: "a shape of 2^90 elements", error: /model\.safetensors: invalid safetensors .*more elements than the file has bytes/, files: { "model.safetensors": safetensors(JSON.stringify(huge), data) } },
    { name: "index-escapes", what: "a shard index naming ../../etc/passwd", error: /model\.safetensors\.index\.json: weight_map\["lm_head\.weight"\] = "\.\.\/\.\.\/etc\/passwd" is not a file name in the folder/, files: { "model.safetensors.index.json": JSON.stringify({ weight_map: { "lm_head.weight": "../../etc/passwd" } }) } },
    { name: "config-layers-lie", what: "num_hidden_layers = 10^6 over a 2-layer checkpoint", error: /config\.json says 1000000 layers \(num_hidden_layers\), but the checkpoint has tensors for 2/, files: { "config.json": JSON.stringify({ ...config, num_hidden_layers: 1_000_000 }) } },
    { name: "config-huge", what: "a 17 MiB config.json", error: /config\.json.*(larger|more than|exceeds|bytes)/, files: { "config.json": `{"pad":"${"x".repeat(17 * 2 ** 20)}"}` } },
  ];
  return cases.map((c) => {
    const dir = join(root, c.name);
    mkdirSync(dir, { recursive: true });
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"]) {
      if (!(f in c.files) && !(f === "model.safetensors" && "model.safetensors.index.json" in c.files)) writeFileSync(join(dir, f), readFileSync(join(HF_BASE(), f)));
    }
    for (const [f, content] of Object.entries(c.files)) writeFileSync(join(dir, f), content);
    return { name: c.name, what: c.what, dir, error: c.error };
  });
}

/** Every crafted model file written to `dir`; returns the cases with their paths. */
export function writeCrafted(dir: string): (CraftedFile & { path: string })[] {
  mkdirSync(dir, { recursive: true });
  return [...craftedModels(), ...craftedStructures()].map((c) => {
    const path = join(dir, `${c.name}.gguf`);
    writeFileSync(path, c.bytes);
    return { ...c, path };
  });
}

/** The header of a crafted file (for tests that check the lie is really in it). */
export function header(bytes: Uint8Array): GgufFile {
  return readGgufHeader(bytes);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const dir = process.argv[2];
  if (!dir) { process.stderr.write("usage: node dist/test/support/crafted.js DIR\n"); process.exit(2); }
  for (const c of writeCrafted(dir)) process.stdout.write(`${c.path}\t${c.what}\n`);
  CRAFTED_TEMPLATES.forEach((t) => writeFileSync(join(dir, `template-${t.name}.gguf`), withChatTemplate(t.source)));
  process.stdout.write(`${CRAFTED_TEMPLATES.length} chat-template files: ${dir}/template-*.gguf\n`);
}
