// Runs the edgeprune CLI's main() in this one process on every crafted model file (crafted.ts) with every command
// that reads a model, and prints one JSON line per run: exit code, stdout, stderr, milliseconds, whether an output
// file appeared, and finally this process's peak RSS. test/hostile-gguf.test.ts starts it as a child process with a
// capped heap, so a file that made us allocate gigabytes or hang would fail the test, not the test runner.
// Test-only: `node dist/test/support/sweep.js DIR CALIB`.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { main } from "../../src/cli.js";
import { writeCrafted } from "./crafted.js";

export interface SweepRun {
  file: string;
  command: string;
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
  /** an output file (or a temp file) was left in the output folder */
  leftovers: string[];
}

/** The commands every crafted file goes through (OUT is the output path). */
export function sweepCommands(calib: string): Record<string, (file: string, out: string) => string[]> {
  return {
    info: (f) => ["info", f],
    generate: (f) => ["generate", f, "-p", "Once upon a time", "-n", "4", "--threads", "1"],
    quantize: (f, out) => ["quantize", f, "--type", "q8_0", "-o", out],
    prune: (f, out) => ["prune", f, "--layers", "1", "-o", out],
    "prune --remove": (f, out) => ["prune", f, "--remove", "1", "--calib", calib, "--tokens", "256", "--window", "64", "-o", out],
    bi: (f) => ["bi", f, "--calib", calib, "--tokens", "256", "--window", "64"],
  };
}

let sampledPeak = 0;

async function capture(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "", stderr = "";
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  // as a stream's write does, the callback (last argument, after an optional encoding) runs once the chunk is taken:
  // the CLI waits on it before its timing lines
  const sink = (add: (s: string) => void) => ((s: string | Uint8Array, ...rest: unknown[]) => {
    add(s.toString());
    const cb = rest[rest.length - 1];
    if (typeof cb === "function") queueMicrotask(() => (cb as () => void)());
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = sink((s) => { stdout += s; });
  process.stderr.write = sink((s) => { stderr += s; });
  try {
    const code = await main(["node", "edgeprune", ...args]);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

async function run(dir: string, calib: string): Promise<void> {
  const files = writeCrafted(join(dir, "files"));
  const outDir = join(dir, "out");
  const commands = sweepCommands(calib);
  for (const f of files) {
    for (const [command, argv] of Object.entries(commands)) {
      rmSync(outDir, { recursive: true, force: true });
      mkdirSync(outDir, { recursive: true });
      const t0 = performance.now();
      const r = await capture(argv(f.path, join(outDir, "out.gguf")));
      const ms = performance.now() - t0;
      const leftovers = existsSync(outDir) ? readdirSync(outDir) : [];
      sampledPeak = Math.max(sampledPeak, process.memoryUsage().rss);
      const line: SweepRun = { file: f.name, command, ...r, ms, leftovers };
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  }
  process.stdout.write(`${JSON.stringify({ maxRssBytes: peakRss() })}\n`);
}

/**
 * This process's peak RSS. Not resourceUsage().maxRSS: on Linux that survives exec, so a child spawned by a large
 * test runner reports the runner's size; VmHWM belongs to the process's own memory map.
 */
function peakRss(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: the sampled figure below
  }
  return sampledPeak;
}

const [dir, calib] = process.argv.slice(2);
if (!dir || !calib) {
  process.stderr.write("usage: node dist/test/support/sweep.js DIR CALIB\n");
  process.exit(2);
}
await run(dir, calib);
