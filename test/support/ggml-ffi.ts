// The tests' door to llama.cpp's own C quantizers: the ggml and llama libraries node-llama-cpp ships (the same
// binaries the llama.cpp oracle runs), called through Deno's FFI by ggml-ffi.deno.mjs, since Node 20 has no FFI.
// Batches jobs into one Deno process. Test-only.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The folder holding libggml-base and libllama for this platform (node-llama-cpp's prebuilt CPU binaries). */
export function llamaLibDir(): string {
  const id = `${process.platform}-${process.arch}`;
  const dir = resolve("node_modules/@node-llama-cpp", id, "bins", id);
  if (!existsSync(join(dir, "libggml-base.so"))) {
    throw new Error(`ggml-ffi: no ${dir}/libggml-base.so (node-llama-cpp's ${id} binaries); these tests need Linux x64 or arm64`);
  }
  return dir;
}

export type FfiJob =
  | { op: "quantize"; type: number; rowLength: number; input: Float32Array; bytes: number }
  | { op: "dequantize"; format: "q4_K" | "q6_K" | "q5_0" | "q8_0"; input: Uint8Array; values: number }
  | { op: "model"; ftype: number; input: string; output: string; pure?: boolean };

/** Runs the jobs in one Deno process; returns each job's output bytes (a model job: the path it wrote). */
export function runGgml(jobs: FfiJob[]): (Uint8Array | string)[] {
  const dir = llamaLibDir();
  const tmp = mkdtempSync(join(tmpdir(), "edgeprune-ffi-"));
  try {
    const libllama = readdirSync(dir).find((f) => /^libllama(\.v[\d.]+)?\.so$/.test(f));
    const spec = jobs.map((j, i) => {
      if (j.op === "model") return { ...j, libllama };
      const input = join(tmp, `in${i}`), output = join(tmp, `out${i}`);
      writeFileSync(input, new Uint8Array(j.input.buffer, j.input.byteOffset, j.input.byteLength));
      return { ...j, input, output };
    });
    const jobsPath = join(tmp, "jobs.json");
    writeFileSync(jobsPath, JSON.stringify(spec));
    const r = spawnSync(resolve("node_modules/.bin/deno"), ["run", "--allow-ffi", "--allow-read", "--allow-write", "test/support/ggml-ffi.deno.mjs", dir, jobsPath], { encoding: "utf8", maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`ggml-ffi: deno exited ${r.status}: ${r.stderr.slice(-2000)}`);
    return spec.map((j) => (j.op === "model" ? j.output : new Uint8Array(readFileSync(j.output))));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** ggml_type ids (ggml.h) of the formats these tests quantize */
export const GGML_TYPE = { F16: 1, Q4_0: 2, Q5_0: 6, Q8_0: 8, Q4_K: 12, Q6_K: 14 } as const;
/** llama_ftype values (llama.h) */
export const LLAMA_FTYPE = { Q4_K_M: 15, Q4_K_S: 14, Q6_K: 18 } as const;
