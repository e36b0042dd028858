// bench/peers: edgeprune against native llama.cpp (node-llama-cpp) and wllama (llama.cpp in WebAssembly, headless
// Chromium) on the same synthetic GGUFs (`edgeprune synth`): 128-token prefill + 128 greedy tokens, at 1 and 2
// threads, plus the same model with a quarter of its layers removed (`edgeprune prune --layers`). Runtimes are
// interleaved round by round (each round runs every runtime once per configuration, in a rotated order, each in a
// fresh process), so a ratio compares figures taken minutes apart, not hours; the table reports medians over the
// rounds of one session, the threads each runtime says it ran on, and refuses runs that did not process exactly
// 128 + 128 tokens. It records the CPU (model, SIMD flags, llama.cpp's CPU backend) and the load around each
// round. Writes JSON, Markdown and an SVG chart. Not a kernel benchmark (bench/kernels.bench.ts).
//
//   npm run bench:peers                      (= node dist/bench/peers.js)
//   node dist/bench/peers.js --shapes llama-250m --types q4_0 --threads 1 --rounds 3
//   node dist/bench/peers.js --shapes llama-2-7b --types q4_0 --threads 1 --runtimes edgeprune,native \
//     --no-other-builds --prune-layers 21,22,23,24,25,26,27,28,29      (ShortGPT's nine layers of Llama-2-7B)
// Results are saved after every run. --resume continues the newest session of <out>/peers.json if it started less
// than 3 hours ago (never mixing sessions); rows of configurations not re-measured keep their own session's date.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { GEN_TOKENS, median, PROMPT_TOKENS, type RunnerReport, type RunResult } from "./peers-common.js";
import { SYNTH_SHAPES } from "../src/commands/synth.js";

interface Flags {
  shapes: string[];
  types: string[];
  threads: number[];
  runtimes: string[];
  rounds: number;
  dir: string;
  out: string;
  prune: boolean;
  resume: boolean;
  wllamaThreads?: number[];
  timeoutS: number;
  /** the layers the pruned variant removes (default: a quarter, from the second half) */
  pruneLayers?: number[];
  /** at 1 thread, also the SIMD128 build in Node and the relaxed build in Deno */
  otherBuilds: boolean;
}

function parseFlags(argv: string[]): Flags {
  const f: Flags = {
    shapes: ["llama-250m", "tinyllama-1.1b"], types: ["q4_0", "q8_0"], threads: [1, 2],
    runtimes: ["edgeprune", "native", "wllama"], rounds: 3, dir: "models/synth", out: "docs/speed", prune: true,
    resume: false, timeoutS: 1800, otherBuilds: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => argv[++i];
    if (a === "--shapes") f.shapes = v().split(",");
    else if (a === "--types") f.types = v().split(",");
    else if (a === "--threads") f.threads = v().split(",").map(Number);
    else if (a === "--runtimes") f.runtimes = v().split(",");
    else if (a === "--rounds" || a === "--runs") f.rounds = Number(v());
    else if (a === "--dir") f.dir = v();
    else if (a === "--out") f.out = v();
    else if (a === "--no-prune") f.prune = false;
    else if (a === "--prune-layers") f.pruneLayers = v().split(",").map(Number);
    else if (a === "--no-other-builds") f.otherBuilds = false;
    else if (a === "--resume") f.resume = true;
    else if (a === "--wllama-threads") f.wllamaThreads = v().split(",").map(Number);
    else if (a === "--timeout-s") f.timeoutS = Number(v());
    else throw new Error(`bench/peers: unknown flag ${a}`);
  }
  if (!(f.rounds >= 1)) throw new Error(`bench/peers: --rounds must be at least 1`);
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

/** The CPU as the kernel reports it: model name and the SIMD flags that decide which code paths run. */
function cpuInfo(): { model: string; vendor: string; cores: number; simd: string[] } {
  let flags: string[] = [], vendor = "?";
  try {
    const info = fs.readFileSync("/proc/cpuinfo", "utf8");
    flags = (/^flags\s*:(.*)$/m.exec(info)?.[1] ?? "").trim().split(/\s+/);
    vendor = /^vendor_id\s*:\s*(.*)$/m.exec(info)?.[1] ?? "?";
  } catch { /* not Linux */ }
  const simd = flags.filter((x) => /^(sse4_2|avx|avx2|fma|f16c|avx512\w*|avx_vnni|amx\w*)$/.test(x));
  return { model: os.cpus()[0]?.model ?? "?", vendor, cores: os.cpus().length, simd };
}

/** One measured run of one runtime, in a fresh process (its own warm-up first). */
function runOnce(kind: string, model: string, threads: number): RunnerReport {
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
    const out = sh([...args, model, String(threads), "1"], extra, timeoutMs, command).trim().split("\n");
    report = JSON.parse(out[out.length - 1]) as RunnerReport;
  } catch (e) {
    report = { runtime: kind, model, threads, runs: [], error: (e as Error).message };
  }
  const bad = report.runs.find((r) => r.promptTokens !== PROMPT_TOKENS || r.genTokens !== GEN_TOKENS);
  if (!report.error && bad) report.error = `processed ${bad.promptTokens} prompt and ${bad.genTokens} generated tokens, not ${PROMPT_TOKENS} + ${GEN_TOKENS}`;
  if (!report.error && report.runs.length === 0) report.error = "no run reported";
  const r = report.runs[0];
  process.stderr.write(report.error ? `error: ${report.error.split("\n")[0]}\n` : `pp ${r.prefillTokS.toFixed(1)} tg ${r.decodeTokS.toFixed(1)} tok/s on ${report.threads}t (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
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

function ensurePruned(file: string, nLayers: number, layers?: number[]): { file: string; removed: number[] } {
  const removed = layers ?? pruneLayers(nLayers);
  const out = file.replace(/\.gguf$/, `-pruned${removed.length}.gguf`);
  if (!fs.existsSync(out)) {
    process.stderr.write(`prune ${out}\n`);
    sh(["bin/edgeprune.js", "prune", file, "--layers", removed.join(","), "-o", out]);
  }
  return { file: out, removed };
}

/** The runs of one runtime on one configuration in one session, with when each was taken and the load then. */
interface Series {
  runtime: string;
  /** the label of the runner (its build, etc.) and what it reported besides the runs */
  label?: string;
  threadsUsed: number[];
  runs: (RunResult & { round: number; at: string; load1: number })[];
  notes?: Record<string, unknown>[];
  peakRssBytes?: number[];
  errors: string[];
}

interface Row {
  shape: string;
  type: string;
  threads: number;
  /** "" for the model itself, "pruned" for a quarter of its layers removed */
  variant: "" | "pruned";
  /** the pruned variant's removed layers */
  removed?: number[];
  session: string;
  series: Record<string, Series>;
}

const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "—");
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "—");
const med = (s: Series | undefined, k: "prefillTokS" | "decodeTokS") => (s && s.runs.length ? median(s.runs.map((x) => x[k])) : NaN);
/** the thread count a series ran on, marked when it is not what the row asked for */
const threadsOf = (s: Series | undefined, asked: number) => {
  if (!s || s.threadsUsed.length === 0) return "";
  const used = [...new Set(s.threadsUsed)];
  return used.length === 1 && used[0] === asked ? "" : ` ⚠ ran on ${used.join("/")}t`;
};

function table(rows: Row[]): string {
  const lines = [
    "| model | type | threads | edgeprune pp / tg | native pp / tg | wllama pp / tg | tg ÷ native | pp ÷ native | tg ÷ wllama | pp ÷ wllama | edgeprune SIMD128 pp / tg (÷ native) | edgeprune in Deno pp / tg (÷ native) | rounds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows.filter((x) => x.variant === "")) {
    const e = r.series.edgeprune, n = r.series.native, w = r.series.wllama, s = r.series["edgeprune-simd128"], dn = r.series["edgeprune-deno"];
    const pair = (x: Series | undefined, d = 1) => x ? `${fmt(med(x, "prefillTokS"), d)} / ${fmt(med(x, "decodeTokS"), d)}${threadsOf(x, r.threads)}` : "—";
    const vsNative = (x: Series | undefined) => x ? `${pair(x)} (${ratio(med(x, "prefillTokS"), med(n, "prefillTokS"))} / ${ratio(med(x, "decodeTokS"), med(n, "decodeTokS"))})` : "—";
    const rounds = Math.max(0, ...Object.values(r.series).map((x) => x.runs.length));
    lines.push(`| ${r.shape} | ${r.type.toUpperCase()} | ${r.threads} | ${pair(e)} | ${pair(n)} | ${pair(w, 2)} | ` +
      `${ratio(med(e, "decodeTokS"), med(n, "decodeTokS"))} | ${ratio(med(e, "prefillTokS"), med(n, "prefillTokS"))} | ` +
      `${ratio(med(e, "decodeTokS"), med(w, "decodeTokS"))} | ${ratio(med(e, "prefillTokS"), med(w, "prefillTokS"))} | ` +
      `${vsNative(s)} | ${vsNative(dn)} | ${rounds} |`);
  }
  return lines.join("\n");
}

/** Grouped bars of decode tok/s (log scale) per configuration and runtime. */
function svg(allRows: Row[]): string {
  const rows = allRows.filter((r) => r.variant === "");
  const kinds = [["edgeprune", "#2b6cb0"], ["native", "#718096"], ["wllama", "#dd6b20"]] as const;
  const W = 900, H = 360, left = 60, bottom = 80, top = 30;
  const groupW = (W - left - 20) / Math.max(1, rows.length), barW = Math.min(24, (groupW - 10) / kinds.length);
  const vals = rows.flatMap((r) => kinds.map(([k]) => med(r.series[k], "decodeTokS"))).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...vals, 1)))), hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...vals, 10))));
  const y = (v: number) => top + (H - top - bottom) * (1 - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)));
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="18" font-size="13">decode tokens/s (log scale), 128-token prompt, 128 greedy tokens; medians</text>`];
  for (let p = lo; p <= hi; p *= 10) out.push(`<line x1="${left}" x2="${W - 10}" y1="${y(p)}" y2="${y(p)}" stroke="#ddd"/><text x="${left - 6}" y="${y(p) + 4}" text-anchor="end">${p}</text>`);
  rows.forEach((r, i) => {
    const gx = left + i * groupW + 5;
    kinds.forEach(([k, color], j) => {
      const v = med(r.series[k], "decodeTokS");
      if (!(v > 0)) return;
      out.push(`<rect x="${gx + j * barW}" y="${y(v)}" width="${barW - 2}" height="${H - bottom - y(v)}" fill="${color}"><title>${k}: ${v.toFixed(2)}</title></rect>`);
    });
    out.push(`<text x="${gx}" y="${H - bottom + 14}" transform="rotate(30 ${gx} ${H - bottom + 14})">${r.shape} ${r.type} ${r.threads}t</text>`);
  });
  kinds.forEach(([k, color], j) => out.push(`<rect x="${W - 260 + j * 85}" y="8" width="10" height="10" fill="${color}"/><text x="${W - 246 + j * 85}" y="17">${k}</text>`));
  out.push("</svg>");
  return out.join("\n");
}

interface Session {
  id: string;
  started: string;
  finished?: string;
  cpu: ReturnType<typeof cpuInfo>;
  node: string;
  flags: Flags;
  /** 1-minute load average before and after each round */
  rounds: { round: number; before: number[]; after?: number[] }[];
}

interface Saved {
  sessions: Session[];
  rows: Row[];
}

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  timeoutMs = f.timeoutS * 1000;
  fs.mkdirSync(f.dir, { recursive: true });
  fs.mkdirSync(f.out, { recursive: true });
  const jsonPath = path.join(f.out, "peers.json");
  const old = fs.existsSync(jsonPath) ? JSON.parse(fs.readFileSync(jsonPath, "utf8")) as Partial<Saved> : {};
  const saved: Saved = { sessions: Array.isArray(old.sessions) && old.sessions.every((x) => "id" in x) ? old.sessions : [], rows: Array.isArray(old.rows) && old.rows.every((x) => "series" in x) ? old.rows : [] };
  let session: Session;
  const last = saved.sessions[saved.sessions.length - 1];
  if (f.resume) {
    if (!last) throw new Error("bench/peers: --resume: no earlier session in peers.json");
    const age = Date.now() - Date.parse(last.started);
    if (age > 3 * 3600_000) throw new Error(`bench/peers: --resume: the newest session started ${(age / 3600_000).toFixed(1)} h ago; resuming would mix measurements from different hours (start a new session instead)`);
    session = last;
  } else {
    session = { id: new Date().toISOString(), started: new Date().toISOString(), cpu: cpuInfo(), node: process.version, flags: f, rounds: [] };
    saved.sessions.push(session);
  }
  const save = () => fs.writeFileSync(jsonPath, JSON.stringify(saved, null, 1));

  // the configurations and the runtimes each gets; a row of this session is kept, one of an older one replaced
  const jobs: { row: Row; file: string; kinds: string[] }[] = [];
  const rowFor = (shape: string, type: string, threads: number, variant: Row["variant"]) => {
    let row = saved.rows.find((r) => r.shape === shape && r.type === type && r.threads === threads && r.variant === variant);
    if (row && row.session !== session.id) { saved.rows.splice(saved.rows.indexOf(row), 1); row = undefined; }
    if (!row) { row = { shape, type, threads, variant, session: session.id, series: {} }; saved.rows.push(row); }
    return row;
  };
  for (const shape of f.shapes) for (const type of f.types) {
    const file = ensureModel(f.dir, shape, type);
    for (const threads of f.threads) {
      const kinds = f.runtimes.filter((k) => k !== "wllama" || !f.wllamaThreads || f.wllamaThreads.includes(threads));
      if (threads === 1 && f.otherBuilds && kinds.includes("edgeprune")) kinds.push("edgeprune-simd128", "edgeprune-deno");
      jobs.push({ row: rowFor(shape, type, threads, ""), file, kinds });
    }
    if (f.prune) {
      const p = ensurePruned(file, SYNTH_SHAPES[shape].nLayers, f.pruneLayers);
      const row = rowFor(shape, type, 1, "pruned");
      row.removed = p.removed;
      jobs.push({ row, file: p.file, kinds: ["edgeprune", "native"].filter((x) => f.runtimes.includes(x)) });
    }
  }
  save();
  for (let round = 1; round <= f.rounds; round++) {
    let rec = session.rounds.find((x) => x.round === round);
    if (!rec) { rec = { round, before: os.loadavg() }; session.rounds.push(rec); }
    process.stderr.write(`round ${round} of ${f.rounds} (load ${os.loadavg()[0].toFixed(2)})\n`);
    for (const job of jobs) {
      // rotate the order each round, so no runtime always runs first (or right after the heaviest one)
      const order = job.kinds.map((_, i) => job.kinds[(i + round - 1) % job.kinds.length]);
      for (const k of order) {
        const s = job.row.series[k] ??= { runtime: k, threadsUsed: [], runs: [], errors: [] };
        if (s.runs.some((x) => x.round === round)) continue;
        const load1 = os.loadavg()[0];
        const rep = runOnce(k, job.file, job.row.threads);
        s.label = rep.runtime;
        if (rep.error) s.errors.push(`round ${round}: ${rep.error}`);
        else {
          s.runs.push({ ...rep.runs[0], round, at: new Date().toISOString(), load1 });
          s.threadsUsed.push(rep.threads);
          if (rep.notes) (s.notes ??= []).push(rep.notes);
          if (rep.peakRssBytes) (s.peakRssBytes ??= []).push(rep.peakRssBytes);
        }
        save();
      }
    }
    rec.after = os.loadavg();
    save();
  }
  session.finished = new Date().toISOString();
  save();

  const rows = saved.rows;
  const sessionOf = (id: string) => saved.sessions.find((x) => x.id === id);
  const pruned = rows.filter((r) => r.variant === "pruned").flatMap((p) => Object.keys(p.series).map((runtime) => {
    const nLayers = SYNTH_SHAPES[p.shape].nLayers, removed = p.removed ?? pruneLayers(nLayers);
    // the dense figure from the same session's rounds only
    const dense = rows.find((r) => r.shape === p.shape && r.type === p.type && r.threads === 1 && r.variant === "" && r.session === p.session);
    const d = med(dense?.series[runtime], "decodeTokS"), q = med(p.series[runtime], "decodeTokS");
    const ideal = nLayers / (nLayers - removed.length);
    return { shape: p.shape, type: p.type, runtime, removed, d, q, speedup: q / d, ideal, target: 0.9 * ideal };
  }));
  const sessions = [...new Set(rows.map((r) => r.session))].map(sessionOf).filter((x): x is Session => !!x);
  const cpus = [...new Set(sessions.map((x) => `${x.cpu.cores} × ${x.cpu.model} (${x.cpu.vendor}; ${x.cpu.simd.join(" ")})`))];
  const backends = [...new Set(rows.flatMap((r) => (r.series.native?.notes ?? []).map((n) => String(n.cpuBackend))))];
  const md = [
    `Measured on ${cpus.join("; ")}, Node ${process.version}; llama.cpp's ggml CPU backend: ${backends.join(", ") || "?"}. ` +
      `Sessions (start → end, 1-minute load average around each round): ` +
      sessions.map((x) => `${x.started} → ${x.finished ?? "unfinished"} (${x.rounds.map((r) => `${r.before[0].toFixed(2)}→${r.after?.[0].toFixed(2) ?? "?"}`).join(", ")})`).join("; ") + ".",
    "pp = prefill tokens/s (128-token prompt), tg = decode tokens/s (128 greedy tokens); medians over interleaved rounds (each runtime once per round, rotated order, a fresh process each); ratios are edgeprune's figure over the peer's, from the same rounds. Threads are as each runtime reports them (⚠ where that differs from the row's).",
    "edgeprune runs its relaxed-SIMD build in Node 20 (with --experimental-wasm-relaxed-simd; Chrome, Deno and Node ≥ 22 select it by themselves); two columns are its SIMD128 build in Node and its relaxed build in Deno (the `deno` devDependency, a newer V8), at 1 thread.",
    "", table(rows), "",
    "Pruned (a quarter of the layers removed unless --prune-layers names them; decode at 1 thread; dense and pruned from the same rounds):", "",
    "| model | type | runtime | layers removed | dense tg | pruned tg | speed-up | L/(L−k) | target 0.9·L/(L−k) |",
    "|---|---|---|---|---|---|---|---|---|",
    ...pruned.map((p) => `| ${p.shape} | ${p.type.toUpperCase()} | ${p.runtime} | ${p.removed.join(",")} | ${fmt(p.d)} | ${fmt(p.q)} | ${fmt(p.speedup, 2)}× | ${fmt(p.ideal, 2)} | ${fmt(p.target, 2)} |`),
    "", ...rows.flatMap((r) => Object.values(r.series).flatMap((s) => s.errors.map((e) => `- ${r.shape} ${r.type} ${r.threads}t ${r.variant} ${s.runtime}: ${e.split("\n")[0]}`))),
  ].join("\n");
  fs.writeFileSync(path.join(f.out, "peers.md"), md + "\n");
  fs.writeFileSync(path.join(f.out, "peers.svg"), svg(rows));
  console.log(md);
  console.log(`\nwrote ${jsonPath}, peers.md, peers.svg`);
}

await main();
