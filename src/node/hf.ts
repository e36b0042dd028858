// Opens a Hugging Face model folder for `convert`: config.json, the tokenizer files, generation_config.json and
// model.safetensors or a sharded model.safetensors.index.json, every shard's header checked (safetensors/reader.ts)
// and the index checked against what the shards hold. Node-only; the conversion itself is src/convert/.
import * as fs from "node:fs";
import * as path from "node:path";
import type { HfModel, HfTensorRef } from "../convert/convert.js";
import { readSafetensorsHeader } from "../safetensors/reader.js";
import { FileSource } from "./files.js";

type Json = Record<string, unknown>;

/** Caps on the JSON files read whole (a hostile folder must not make us read gigabytes). */
const MAX_JSON_BYTES = { small: 16 << 20, tokenizer: 512 << 20 };

function readJson(file: string, max: number, required: true): Json;
function readJson(file: string, max: number, required: false): Json | undefined;
function readJson(file: string, max: number, required: boolean): Json | undefined {
  if (!fs.existsSync(file)) {
    if (required) throw new Error(`${file}: not found`);
    return undefined;
  }
  const st = fs.statSync(file);
  if (!st.isFile()) throw new Error(`${file}: not a file`);
  if (st.size > max) throw new Error(`${file}: ${st.size} bytes is more than the ${max} a ${path.basename(file)} may have`);
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Json;
}

export interface OpenedHfModel extends HfModel {
  close(): void;
  /** the shard files */
  shards: string[];
}

/** Open `dir` for conversion; close() releases the shard files. `weights: false` (vocab-only) reads no safetensors. */
export function openHfModel(dir: string, opts: { weights?: boolean } = {}): OpenedHfModel {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a directory (expected a Hugging Face model folder)`);
  const p = (f: string) => path.join(dir, f);
  const config = readJson(p("config.json"), MAX_JSON_BYTES.small, true);
  const tokenizer = readJson(p("tokenizer.json"), MAX_JSON_BYTES.tokenizer, true);
  const tokenizerConfig = readJson(p("tokenizer_config.json"), MAX_JSON_BYTES.tokenizer, false);
  const generationConfig = readJson(p("generation_config.json"), MAX_JSON_BYTES.small, false);
  let chatTemplateFile: string | { name: string; template: string }[] | undefined;
  if (fs.existsSync(p("chat_template.jinja"))) chatTemplateFile = fs.readFileSync(p("chat_template.jinja"), "utf8");
  else {
    const ct = readJson(p("chat_template.json"), MAX_JSON_BYTES.small, false)?.chat_template;
    if (typeof ct === "string") chatTemplateFile = ct;
  }

  const index = opts.weights === false ? undefined : readJson(p("model.safetensors.index.json"), MAX_JSON_BYTES.small, false);
  let shardNames: string[];
  let weightMap: Record<string, string> | undefined;
  if (index) {
    const wm = index.weight_map;
    if (!wm || typeof wm !== "object" || Array.isArray(wm)) throw new Error(`${p("model.safetensors.index.json")}: no "weight_map" object`);
    weightMap = wm as Record<string, string>;
    for (const [t, f] of Object.entries(weightMap)) {
      if (typeof f !== "string" || f.includes("/") || f.includes("\\") || f === "." || f === "..") {
        throw new Error(`${p("model.safetensors.index.json")}: weight_map["${t}"] = ${JSON.stringify(f)} is not a file name in the folder`);
      }
    }
    shardNames = [...new Set(Object.values(weightMap))].sort();
  } else if (opts.weights === false) {
    shardNames = [];
  } else if (fs.existsSync(p("model.safetensors"))) {
    shardNames = ["model.safetensors"];
  } else {
    const parts = fs.readdirSync(dir).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();
    if (parts.length === 0) throw new Error(`${dir}: no model.safetensors, model.safetensors.index.json or model-*-of-*.safetensors`);
    shardNames = parts;
  }

  const sources: FileSource[] = [];
  const tensors = new Map<string, HfTensorRef>();
  try {
    for (const shard of shardNames) {
      const file = p(shard);
      if (!fs.existsSync(file)) throw new Error(`${file}: missing (listed in model.safetensors.index.json)`);
      const src = new FileSource(file);
      sources.push(src);
      const header = readSafetensorsHeader(src, file);
      for (const t of [...header.tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
        const prev = tensors.get(t.name);
        if (prev) throw new Error(`${file}: tensor "${t.name}" is also in ${prev.file}`);
        if (weightMap && weightMap[t.name] !== shard) {
          throw new Error(`${file}: holds tensor "${t.name}", which model.safetensors.index.json ${weightMap[t.name] ? `places in ${weightMap[t.name]}` : "does not list"}`);
        }
        tensors.set(t.name, { tensor: t, src, file });
      }
    }
    if (weightMap) {
      const missing = Object.keys(weightMap).filter((t) => !tensors.has(t));
      if (missing.length) throw new Error(`${p("model.safetensors.index.json")}: lists ${missing.length} tensor(s) no shard holds, e.g. "${missing[0]}" in ${weightMap[missing[0]]}`);
    }
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }
  const name = path.basename(path.resolve(dir));
  return {
    dir, name, config, generationConfig, tensors, shards: shardNames.map(p),
    tokenizer: { tokenizer, tokenizerConfig, config, chatTemplateFile, dir },
    close: () => { for (const s of sources) s.close(); },
  };
}
