// Who is closer to exact: our next-token probabilities and those of each llama.cpp CPU backend, teacher-forced over
// the fixed 64-token sequence on the F32 files, against the float64 reference forward (ref-forward.ts) with exact
// RoPE angles and with ggml's float32 angle recurrence. max |Δp| over every position and token, every pair.
// A measuring tool, not a test (docs/testing.md quotes it):
//
//   node dist/test/support/exactness.js [--variants zen4,haswell,sse42]
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Model } from "../../src/model/model.js";
import { compareDistributions, ourTeacherForced } from "./compare.js";
import { STORIES_16L, STORIES_260K, teacherSequence } from "./fixtures.js";
import { arrangeCpuBackend } from "./llamacpp.js";
import { RefLlama, refTeacherForced } from "./ref-forward.js";

const spread = join(fileURLToPath(new URL(".", import.meta.url)), "spread.js");

function readProbs(path: string, positions: number): Float32Array[] {
  const b = readFileSync(path);
  const all = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  const n = all.length / positions;
  return Array.from({ length: positions }, (_, i) => all.slice(i * n, (i + 1) * n));
}

function main(): void {
  const args = process.argv.slice(2);
  const i = args.indexOf("--variants");
  const variants = (i >= 0 ? args[i + 1] : "zen4,haswell,sse42").split(",");
  const dir = mkdtempSync(join(tmpdir(), "edgeprune-exactness-"));
  const files = { "stories260K-f32": STORIES_260K(), "stories16L-f32": STORIES_16L() };
  writeFileSync(join(dir, "files.json"), JSON.stringify(files));
  const loaded: string[] = [];
  for (const v of variants) {
    // spread.ts's child mode: one backend, llama.cpp's teacher-forced probabilities of every file into dir
    const r = spawnSync(process.execPath, [spread, "--child", dir], { env: { ...process.env, EDGEPRUNE_LLAMA_CPU: v }, encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim().split("\n").pop() === v) loaded.push(v);
    else console.error(`${v}: not usable here`);
  }
  delete process.env.EDGEPRUNE_LLAMA_CPU;
  arrangeCpuBackend();
  console.log(`CPU: ${cpus()[0]?.model}; max |Δp| over 64 teacher-forced positions × the vocabulary`);
  for (const [name, path] of Object.entries(files)) {
    const bytes = new Uint8Array(readFileSync(path));
    const model = Model.load(bytes);
    const seq = teacherSequence(model.tokenizer);
    const ref = RefLlama.fromGguf(bytes, "exact");
    const rows: Record<string, ArrayLike<number>[]> = {
      "f64 exact": refTeacherForced(ref, seq),
      "f64 ggml-θ": refTeacherForced(ref.withRopeAngles("ggml"), seq),
      ours: ourTeacherForced(model, seq),
    };
    for (const v of loaded) rows[`llama.cpp ${v}`] = readProbs(join(dir, `${v}-${name}.f32`), seq.length);
    const names = Object.keys(rows);
    const f32 = (a: ArrayLike<number>[]) => a.map((p) => Float32Array.from(p));
    console.log(`\n${name}\n| | ${names.join(" | ")} |\n|---|${names.map(() => "---:").join("|")}|`);
    for (const a of names) {
      const cells = names.map((b) => (a === b ? "" : compareDistributions(f32(rows[a]), f32(rows[b]), 0).maxAbs.toExponential(2)));
      console.log(`| ${a} | ${cells.join(" | ")} |`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

main();
