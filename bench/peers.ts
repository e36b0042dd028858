// bench/peers: edgeprune against native llama.cpp (node-llama-cpp) and wllama (llama.cpp in WebAssembly, headless
// Chromium) on the same synthetic GGUFs (`edgeprune synth`), one runtime after another in fresh processes:
// 128-token prefill + 128 greedy tokens, medians of several runs, at 1 and 2 threads; plus the speed-up of the
// same model with a quarter of its layers removed (`edgeprune prune --layers`). Prints a table with ratios and
// writes JSON, Markdown and an SVG chart. Not a kernel benchmark (bench/kernels.bench.ts).
//
//   npm run bench:peers                      (= node dist/bench/peers.js)
//   node dist/bench/peers.js --shapes llama-250m --types q4_0 --threads 1 --runs 3 --wllama-runs 1
// Results are saved after every runner; --resume keeps the measurements already in <out>/peers.json and runs only
// the missing ones. --wllama-threads limits which thread counts wllama runs at (it is the slowest by far).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { median, type RunnerReport } from "./peers-common.js";
import { SYNTH_SHAPES } from "../src/commands/synth.js";

interface Flags {
  shapes: string[];
  types: string[];
  threads: number[];
  runtimes: string[];
  runs: number;
  wllamaRuns: number;
  dir: string;
  out: string;
  prune: boolean;
  resume: boolean;
  wllamaThreads?: number[];
  timeoutS: number;
}

function parseFlags(argv: string[]): Flags {
  const f: Flags = {
    shapes: ["llama-250m", "tinyllama-1.1b"], types: ["q4_0", "q8_0"], threads: [1, 2],
    runtimes: ["edgeprune", "native", "wllama"], runs: 3, wllamaRuns: 1, dir: "models/synth", out: "docs/speed", prune: true,
    resume: false, timeoutS: 1800,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => argv[++i];
    if (a === "--shapes") f.shapes = v().split(",");
    else if (a === "--types") f.types = v().split(",");
    else if (a === "--threads") f.threads = v().split(",").map(Number);
    else if (a === "--runtimes") f.runtimes = v().split(",");
    else if (a === "--runs") f.runs = Number(v());
    else if (a === "--wllama-runs") f.wllamaRuns = Number(v());
    else if (a === "--dir") f.dir = v();
    else if (a === "--out") f.out = v();
    else if (a === "--no-prune") f.prune = false;
    else if (a === "--resume") f.resume = true;
    else if (a === "--wllama-threads") f.wllamaThreads = v().split(",").map(Number);
    else if (a === "--timeout-s") f.timeoutS = Number(v());
    else throw new Error(`bench/peers: unknown flag ${a}`);
  }
  return f;
}

const NODE = process.execPath;
const env = { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" };

/** the deno binary of the `deno` devDependency: edgeprune in Deno, whose V8 has relaxed SIMD on without a flag */
const DENO = path.join("node_modules", ".bin", process.platform === "win32" ? "deno.cmd" : "deno");

function sh(args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 3_600_000, command = NODE): string {
  const r = spawnSync(command, args, { env: { ...env, ...extraEnv }, encoding: "utf8", maxBuffer: 64 << 20, timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed (${r.status ?? r.signal}):\n${(r.stderr ?? "").slice(-2000)}`);
  return r.stdout;
}

let timeoutMs = 1_800_000;

function runner(kind: string, model: string, threads: number, runs: number): RunnerReport {
  const scripts: Record<string, [string[], Record<string, string>, string?]> = {
    // Node 20 needs the flag for relaxed SIMD; Chrome, Deno and Node >= 22 pick the relaxed build by themselves
    edgeprune: [["--experimental-wasm-relaxed-simd", "dist/bench/peers-edgeprune.js"], { EDGEPRUNE_SIMD: "relaxed" }],
    "edgeprune-simd128": [["dist/bench/peers-edgeprune.js"], { EDGEPRUNE_SIMD: "simd128" }],
    "edgeprune-deno": [["run", "--allow-read", "--allow-env", "--allow-sys", "dist/bench/peers-edgeprune.js"], {}, DENO],
    native: [["dist/bench/peers-native.js"], {}],
    wllama: [["dist/bench/peers-wllama.js"], {}],
  };
  const [args, extra, command] = scripts[kind];
  process.stderr.write(`  ${kind.padEnd(18)} ${path.basename(model)} ${threads}t ... `);
  const t0 = Date.now();
  let report: RunnerReport;
  try {
    const out = sh([...args, model, String(threads), String(runs)], extra, timeoutMs, command).trim().split("\n");
    report = JSON.parse(out[out.length - 1]) as RunnerReport;
  } catch (e) {
    report = { runtime: kind, model, threads, runs: [], error: (e as Error).message };
  }
  const pp = median(report.runs.map((r) => r.prefillTokS)), tg = median(report.runs.map((r) => r.decodeTokS));
  process.stderr.write(report.error ? `error: ${report.error.split("\n")[0]}\n` : `pp ${pp.toFixed(1)} tg ${tg.toFixed(1)} tok/s (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  return report;
}

function ensureModel(dir: string, shape: string, type: string): string {
  const file = path.join(dir, `${shape}-${type}.gguf`);
  if (!fs.existsSync(file)) {
    process.stderr.write(`synth ${file}\n`);
    sh(["bin/edgeprune.js", "synth", "--shape", shape, "--type", type, "-o", file]);
  }
  return file;
}

/** a quarter of the layers (rounded down), taken from the second half as depth-pruning studies remove them */
function pruneLayers(nLayers: number): number[] {
  const k = Math.floor(nLayers / 4);
  const start = nLayers - 1 - k;
  return Array.from({ length: k }, (_, i) => start + i);
}

function ensurePruned(file: string, nLayers: number): { file: string; removed: number[] } {
  const removed = pruneLayers(nLayers);
  const out = file.replace(/\.gguf$/, `-pruned${removed.length}.gguf`);
  if (!fs.existsSync(out)) {
    process.stderr.write(`prune ${out}\n`);
    sh(["bin/edgeprune.js", "prune", file, "--layers", removed.join(","), "-o", out]);
  }
  return { file: out, removed };
}

interface Row {
  shape: string;
  type: string;
  threads: number;
  reports: Record<string, RunnerReport>;
}

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "—");
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "—");
const med = (r: RunnerReport | undefined, k: "prefillTokS" | "decodeTokS") => (r && !r.error ? median(r.runs.map((x) => x[k])) : NaN);

function table(rows: Row[]): string {
  const lines = [
    "| model | type | threads | edgeprune pp / tg | native pp / tg | wllama pp / tg | tg ÷ native | tg ÷ wllama | pp ÷ wllama | edgeprune SIMD128 tg | edgeprune in Deno pp / tg (÷ native) |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const e = r.reports.edgeprune, n = r.reports.native, w = r.reports.wllama, s = r.reports["edgeprune-simd128"];
    const dn = r.reports["edgeprune-deno"];
    lines.push(`| ${r.shape} | ${r.type.toUpperCase()} | ${r.threads} | ${fmt(med(e, "prefillTokS"))} / ${fmt(med(e, "decodeTokS"))} | ` +
      `${fmt(med(n, "prefillTokS"))} / ${fmt(med(n, "decodeTokS"))} | ${fmt(med(w, "prefillTokS"), 2)} / ${fmt(med(w, "decodeTokS"), 2)} | ` +
      `${ratio(med(e, "decodeTokS"), med(n, "decodeTokS"))} | ${ratio(med(e, "decodeTokS"), med(w, "decodeTokS"))} | ` +
      `${ratio(med(e, "prefillTokS"), med(w, "prefillTokS"))} | ${fmt(med(s, "decodeTokS"))} | ` +
      (dn ? `${fmt(med(dn, "prefillTokS"))} / ${fmt(med(dn, "decodeTokS"))} (${ratio(med(dn, "decodeTokS"), med(n, "decodeTokS"))})` : "—") + " |");
  }
  return lines.join("\n");
}

/** Grouped bars of decode tok/s (log scale) per configuration and runtime. */
function svg(rows: Row[]): string {
  const kinds = [["edgeprune", "#2b6cb0"], ["native", "#718096"], ["wllama", "#dd6b20"]] as const;
  const W = 900, H = 360, left = 60, bottom = 80, top = 30;
  const groupW = (W - left - 20) / Math.max(1, rows.length), barW = Math.min(24, (groupW - 10) / kinds.length);
  const vals = rows.flatMap((r) => kinds.map(([k]) => med(r.reports[k], "decodeTokS"))).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...vals, 1)))), hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, 10))));
  const y = (v: number) => top + (H - top - bottom) * (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)));
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="18" font-size="13">decode tokens/s (log scale), 128-token prompt, 128 greedy tokens; medians</text>`];
  for (let p = lo; p <= hi; p *= 10) out.push(`<line x1="${left}" x2="${W - 10}" y1="${y(p)}" y2="${y(p)}" stroke="#ddd"/><text x="${left - 6}" y="${y(p) + 4}" text-anchor="end">${p}</text>`);
  rows.forEach((r, i) => {
    const gx = left + i * groupW + 5;
    kinds.forEach(([k, color], j) => {
      const v = med(r.reports[k], "decodeTokS");
      if (!(v > 0)) return;
      out.push(`<rect x="${gx + j * barW}" y="${y(v)}" width="${barW - 2}" height="${H - bottom - y(v)}" fill="${color}"><title>${k}: ${v.toFixed(2)}</title></rect>`);
    });
    out.push(`<text x="${gx}" y="${H - bottom + 14}" transform="rotate(30 ${gx} ${H - bottom + 14})">${r.shape} ${r.type} ${r.threads}t</text>`);
  });
  kinds.forEach(([k, color], j) => out.push(`<rect x="${W - 260 + j * 85}" y="8" width="10" height="10" fill="${color}"/><text x="${W - 246 + j * 85}" y="17">${k}</text>`));
  out.push("</svg>");
  return out.join("\n");
}

interface Saved {
  sessions: { started: string; loadavg: { before: number[]; after?: number[] } }[];
  rows: Row[];
  prunedReports: { shape: string; type: string; runtime: string; report: RunnerReport }[];
}

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  timeoutMs = f.timeoutS * 1000;
  fs.mkdirSync(f.dir, { recursive: true });
  fs.mkdirSync(f.out, { recursive: true });
  const jsonPath = path.join(f.out, "peers.json");
  const saved: Saved = f.resume && fs.existsSync(jsonPath)
    ? JSON.parse(fs.readFileSync(jsonPath, "utf8")) as Saved
    : { sessions: [], rows: [], prunedReports: [] };
  const session = { started: new Date().toISOString(), loadavg: { before: os.loadavg() } as { before: number[]; after?: number[] } };
  saved.sessions.push(session);
  const save = () => fs.writeFileSync(jsonPath, JSON.stringify({ ...saved, flags: f }, null, 1));
  for (const shape of f.shapes) for (const type of f.types) {
    const file = ensureModel(f.dir, shape, type);
    for (const threads of f.threads) {
      let row = saved.rows.find((r) => r.shape === shape && r.type === type && r.threads === threads);
      if (!row) { row = { shape, type, threads, reports: {} }; saved.rows.push(row); }
      const kinds = f.runtimes.filter((k) => k !== "wllama" || !f.wllamaThreads || f.wllamaThreads.includes(threads));
      if (threads === 1 && kinds.includes("edgeprune")) kinds.push("edgeprune-simd128", "edgeprune-deno");
      for (const k of kinds) {
        if (row.reports[k] && !row.reports[k].error) continue;
        row.reports[k] = runner(k, file, threads, k === "wllama" ? f.wllamaRuns : f.runs);
        save();
      }
    }
    if (f.prune) {
      const p = ensurePruned(file, SYNTH_SHAPES[shape].nLayers);
      for (const k of ["edgeprune", "native"].filter((x) => f.runtimes.includes(x))) {
        if (saved.prunedReports.some((x) => x.shape === shape && x.type === type && x.runtime === k && !x.report.error)) continue;
        saved.prunedReports = saved.prunedReports.filter((x) => !(x.shape === shape && x.type === type && x.runtime === k));
        saved.prunedReports.push({ shape, type, runtime: k, report: runner(k, p.file, 1, f.runs) });
        save();
      }
    }
  }
  session.loadavg.after = os.loadavg();
  save();
  const rows = saved.rows;
  const pruned = saved.prunedReports.map(({ shape, type, runtime, report }) => {
    const nLayers = SYNTH_SHAPES[shape].nLayers, removed = pruneLayers(nLayers);
    const dense = rows.find((r) => r.shape === shape && r.type === type && r.threads === 1);
    const d = med(dense?.reports[runtime], "decodeTokS"), q = med(report, "decodeTokS");
    const ideal = nLayers / (nLayers - removed.length);
    return { shape, type, runtime, nLayers, removed, denseDecodeTokS: d, prunedDecodeTokS: q, speedup: q / d, ideal, target: 0.9 * ideal };
  });
  const md = [
    `Measured on ${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}, Node ${process.version}; sessions (start, 1-minute load average before → after): ` +
      saved.sessions.map((x) => `${x.started} (${x.loadavg.before[0].toFixed(2)} → ${x.loadavg.after?.[0].toFixed(2) ?? "?"})`).join(", ") + ".",
    "pp = prefill tokens/s (128-token prompt), tg = decode tokens/s (128 greedy tokens); medians of the runs; ratios are edgeprune's figure over the peer's.",
    "edgeprune runs its relaxed-SIMD build in Node 20 (with --experimental-wasm-relaxed-simd; Chrome, Deno and Node ≥ 22 select it by themselves); the last two columns are its SIMD128 build in Node and its relaxed build in Deno (the `deno` devDependency, a newer V8), at 1 thread.",
    "", table(rows), "",
    "Pruned (a quarter of the layers removed; decode at 1 thread):", "",
    "| model | type | runtime | layers removed | dense tg | pruned tg | speed-up | L/(L−k) | target 0.9·L/(L−k) |",
    "|---|---|---|---|---|---|---|---|---|",
    ...pruned.map((p) => `| ${p.shape} | ${String(p.type).toUpperCase()} | ${p.runtime} | ${(p.removed as number[]).join(",")} | ${fmt(p.denseDecodeTokS as number)} | ${fmt(p.prunedDecodeTokS as number)} | ${fmt(p.speedup as number, 2)}× | ${fmt(p.ideal as number, 2)} | ${fmt(p.target as number, 2)} |`),
  ].join("\n");
  fs.writeFileSync(path.join(f.out, "peers.md"), md + "\n");
  fs.writeFileSync(path.join(f.out, "peers.svg"), svg(rows));
  console.log(md);
  console.log(`\nwrote ${jsonPath}, peers.md, peers.svg`);
}

await main();
