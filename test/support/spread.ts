// How much llama.cpp's own CPU backends disagree with each other, and with us, on the files the tests compare:
// teacher-forced next-token probabilities over the fixed 64-token sequence, one child process per ggml CPU
// variant (EDGEPRUNE_LLAMA_CPU), max |p_a - p_b| over every position and token. test/tolerances.ts quotes it.
// A measuring tool, not a test:
//
//   node dist/test/support/spread.js [--variants zen4,haswell,skylakex,sse42] [--families | --kv-files]
//     [--kv f32|f16|q8_0] [--only name,name] [--out spread.json]
//
// --families measures the per-family synthetic files (test/support/families.ts) instead of the default set;
// --kv-files the KV-cache comparison files; --kv sets the KV cache type on both sides (default f32); --only
// keeps the named files.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Model } from "../../src/model/model.js";
import { comparisonFiles, kvComparisonFiles, teacherSequence } from "./fixtures.js";
import { familyComparisonFiles } from "./families.js";
import { compareDistributions, ourTeacherForced } from "./compare.js";
import { arrangeCpuBackend, disposeOracle, llamaCppBackend, llamaCppTeacherForced } from "./llamacpp.js";

const self = fileURLToPath(import.meta.url);

function writeProbs(path: string, probs: Float32Array[]): void {
  const n = probs[0].length;
  const out = new Float32Array(probs.length * n);
  probs.forEach((p, i) => out.set(p, i * n));
  writeFileSync(path, new Uint8Array(out.buffer));
}

function readProbs(path: string, positions: number): Float32Array[] {
  const b = readFileSync(path);
  const all = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  const n = all.length / positions;
  return Array.from({ length: positions }, (_, i) => all.slice(i * n, (i + 1) * n));
}

type Kv = "f32" | "f16" | "q8_0";

/** child mode: one backend, every file, probabilities to <dir>/<variant>-<name>.f32 */
async function child(dir: string, files: Record<string, string>, kv: Kv): Promise<void> {
  for (const [name, path] of Object.entries(files)) {
    const model = Model.load(new Uint8Array(readFileSync(path)));
    const probs = await llamaCppTeacherForced(path, teacherSequence(model.tokenizer), { kvType: kv.toUpperCase() as "F32" | "F16" | "Q8_0" });
    writeProbs(join(dir, `${process.env.EDGEPRUNE_LLAMA_CPU ?? "auto"}-${name}.f32`), probs);
  }
  console.log(llamaCppBackend());
  await disposeOracle();
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (flag: string, dflt: string) => { const i = args.indexOf(flag); return i >= 0 ? args[i + 1] : dflt; };
  const kv = opt("--kv", "f32") as Kv;
  if (args[0] === "--child") {
    const dir = args[1];
    await child(dir, JSON.parse(readFileSync(join(dir, "files.json"), "utf8")), kv);
    return;
  }
  const variants = opt("--variants", "zen4,icelake,skylakex,haswell,sse42").split(",");
  const dir = mkdtempSync(join(tmpdir(), "edgeprune-spread-"));
  let files = args.includes("--families") ? familyComparisonFiles(dir) : args.includes("--kv-files") ? kvComparisonFiles(dir) : comparisonFiles(dir);
  const only = opt("--only", "");
  if (only) files = Object.fromEntries(Object.entries(files).filter(([n]) => only.split(",").includes(n)));
  writeFileSync(join(dir, "files.json"), JSON.stringify(files));
  const loaded: string[] = [];
  for (const v of variants) {
    const r = spawnSync(process.execPath, [self, "--child", dir, "--kv", kv], { env: { ...process.env, EDGEPRUNE_LLAMA_CPU: v }, encoding: "utf8" });
    if (r.status !== 0) { console.error(`${v}: not usable here (${(r.stderr || "").trim().split("\n").pop()})`); continue; }
    const got = r.stdout.trim().split("\n").pop();
    if (got !== v) { console.error(`${v}: llama.cpp loaded ${got} instead; skipped`); continue; }
    loaded.push(v);
  }
  // the forced folder must not outlive the measurement
  delete process.env.EDGEPRUNE_LLAMA_CPU;
  arrangeCpuBackend();
  const report: Record<string, { backends: Record<string, number>; ours: Record<string, number> }> = {};
  console.log(`CPU: ${cpus()[0]?.model}; backends: ${loaded.join(", ")}; KV cache ${kv}`);
  console.log("file | max |Δp| between backends (pair) | ours vs each backend");
  for (const [name, path] of Object.entries(files)) {
    const model = Model.load(new Uint8Array(readFileSync(path)));
    const seq = teacherSequence(model.tokenizer);
    const ours = ourTeacherForced(model, seq, 0, undefined, { cacheTypeK: kv, cacheTypeV: kv });
    const probs = Object.fromEntries(loaded.map((v) => [v, readProbs(join(dir, `${v}-${name}.f32`), seq.length)]));
    const backends: Record<string, number> = {}, vsOurs: Record<string, number> = {};
    for (let i = 0; i < loaded.length; i++) {
      vsOurs[loaded[i]] = compareDistributions(ours, probs[loaded[i]], 0).maxAbs;
      for (let j = i + 1; j < loaded.length; j++) backends[`${loaded[i]}/${loaded[j]}`] = compareDistributions(probs[loaded[i]], probs[loaded[j]], 0).maxAbs;
    }
    report[name] = { backends, ours: vsOurs };
    const fmt = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ");
    console.log(`${name} | ${fmt(backends)} | ${fmt(vsOurs)}`);
  }
  const out = opt("--out", "");
  if (out) writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, backends: loaded, report }, null, 2));
  rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => { console.error(e); process.exit(1); });
