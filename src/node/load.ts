// Node-only: load a model from a path through a FileSource, so tensors go from disk straight into wasm memory.
import { readGgufHeader } from "../gguf/reader.js";
import type { GgufFile } from "../gguf/types.js";
import { Model, type LoadOptions } from "../model/model.js";
import { fileURLToPath } from "node:url";
import { FileSource } from "./files.js";
import { applyCpuSettings } from "./cpu.js";

applyCpuSettings(); // every model loaded through this module gets this CPU's kernel settings

/** Load a model from a path or a file: URL (Node, and Deno, which runs node:fs too). */
export function loadModelFile(file: string | URL, opts: LoadOptions = {}): Model {
  const path = typeof file === "string" ? file : fileURLToPath(file);
  const src = new FileSource(path);
  try {
    return Model.load(src, { name: path, ...opts });
  } finally {
    src.close();
  }
}

/** Parse only the header of a GGUF file. */
export function readGgufFileHeader(path: string): GgufFile {
  const src = new FileSource(path);
  try {
    return readGgufHeader(src, path);
  } finally {
    src.close();
  }
}
