// Fast by default: on an engine that has relaxed SIMD only behind --experimental-wasm-relaxed-simd (Node 20's
// V8 11.3; NODE_OPTIONS refuses the flag), the CLI runs itself again with the flag, stdio inherited, signals
// forwarded, exit code and signal passed back; the re-run process then self-tests the relaxed kernels
// (kernels/selftest.ts) before trusting them. Node-only. Not the kernel choice itself (wasm.ts).
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { hasRelaxedSimd } from "../simd-features.js";

export const RELAXED_FLAG = "--experimental-wasm-relaxed-simd";
/** set in the re-run process: it never re-runs again (and knows to collapse a doubled Ctrl-C) */
export const RERUN_MARKER = "EDGEPRUNE_RERUN";
/** EDGEPRUNE_NO_RERUN=1: never re-run; Node 20 then uses the SIMD128 kernels */
export const RERUN_OPT_OUT = "EDGEPRUNE_NO_RERUN";

let rerunChild = false;
/**
 * In the re-run process (the marker set): remembers it and takes the marker out of the environment, so a process
 * this one starts decides for itself. Returns whether this is the re-run process.
 */
export function takeRerunMarker(): boolean {
  if (process.env[RERUN_MARKER]) rerunChild = true;
  delete process.env[RERUN_MARKER];
  return rerunChild;
}

/** Why this process does or does not re-run itself with the flag (and a note for `info` and EDGEPRUNE_DEBUG). */
export function rerunDecision(env: NodeJS.ProcessEnv = process.env): { rerun: boolean; why: string } {
  if (rerunChild || env[RERUN_MARKER]) return { rerun: false, why: `re-run with ${RELAXED_FLAG}` };
  if (hasRelaxedSimd()) return { rerun: false, why: process.execArgv.includes(RELAXED_FLAG) ? `node started with ${RELAXED_FLAG}` : "relaxed SIMD is on in this engine" };
  if (env[RERUN_OPT_OUT] && env[RERUN_OPT_OUT] !== "0") return { rerun: false, why: `${RERUN_OPT_OUT} is set` };
  if (env.EDGEPRUNE_SIMD === "simd128") return { rerun: false, why: "EDGEPRUNE_SIMD=simd128" };
  // V8 10 and 11 have relaxed SIMD behind the flag (on by default from 11.4: Node 21, 22 and later); another engine
  // might refuse the flag outright ("bad option", exit 9), so it is only passed where it is known
  const v8Major = Number(process.versions.v8?.split(".")[0]);
  if (!process.versions.node || !(v8Major === 10 || v8Major === 11)) return { rerun: false, why: "this engine has no relaxed SIMD" };
  if (process.execArgv.includes(RELAXED_FLAG)) return { rerun: false, why: `${RELAXED_FLAG} did not enable relaxed SIMD` };
  return { rerun: true, why: "" };
}

/** Signals a terminal or a supervisor sends that the re-run process must get (Ctrl-C, kill, hang-up, Ctrl-\). */
const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"] as const;

/**
 * Runs this script again under `process.execPath` with the flag (and this process's own node options), the same
 * arguments and stdio, and resolves with its exit code; a child killed by a signal makes this process die by the
 * same signal. Resolves undefined when the child could not be started (the caller then runs in this process).
 */
export function rerunWithRelaxedSimd(): Promise<number | undefined> {
  return new Promise((resolve) => {
    const args = [...process.execArgv, RELAXED_FLAG, ...process.argv.slice(1)];
    const child = spawn(process.execPath, args, { stdio: "inherit", env: { ...process.env, [RERUN_MARKER]: "1" } });
    // Ctrl-C in a terminal reaches both processes (the child shares this one's process group): this one must not
    // die of it, and it forwards it anyway (a `kill -INT` aimed at this pid alone must reach the child); the child
    // collapses the two deliveries into one (collapseDoubledSigint)
    const forward = (sig: NodeJS.Signals) => { try { child.kill(sig); } catch { /* already gone */ } };
    for (const s of FORWARDED) process.on(s, forward);
    const detach = () => { for (const s of FORWARDED) process.off(s, forward); };
    child.once("error", () => { detach(); resolve(undefined); });
    child.once("exit", (code, signal) => {
      detach();
      if (signal) {
        // die the way the child did, so a shell sees 130 for Ctrl-C (no listener is left to catch it)
        process.kill(process.pid, signal);
        // a signal whose default action does not end the process: give its number as shells do
        setTimeout(() => resolve(128 + (constants.signals[signal] ?? 0)), 100).unref();
        return;
      }
      resolve(code ?? 1);
    });
  });
}


/**
 * In the re-run process: dies (SIGKILL, as nothing can run after one) when the parent does, so that a SIGKILL of
 * the command, which cannot be forwarded, leaves no orphan still writing its output (checked every 50 ms while the
 * event loop runs; the unref'd timer never keeps the process alive).
 */
export function exitWithParent(): void {
  const parent = process.ppid;
  if (parent <= 1) return;
  watchedParent = parent;
  setInterval(exitIfParentGone, 50).unref();
}

let watchedParent = 0;

/**
 * In the re-run process: dies as a SIGKILL'd process would (no cleanup: the killed parent could not run any) once
 * the parent is gone. The timer of exitWithParent cannot fire during synchronous work (synth, a GPTQ layer), so the
 * file writers call this between chunks too.
 */
export function exitIfParentGone(): void {
  if (watchedParent > 1 && process.ppid !== watchedParent) process.kill(process.pid, "SIGKILL");
}

/**
 * In the re-run process: a SIGINT arriving within `windowMs` of the previous one is the same Ctrl-C (the terminal's
 * and the parent's forwarded copy), so `chat`'s "twice at the prompt quits" still needs two key presses. Must run
 * before any SIGINT listener is added (Node binds process.emit when the first one is).
 */
export function collapseDoubledSigint(windowMs = 150): void {
  const emit = process.emit;
  let last = -Infinity;
  process.emit = function (this: NodeJS.Process, event: string | symbol, ...rest: unknown[]) {
    if (event === "SIGINT") {
      const now = performance.now();
      if (now - last < windowMs) return false;
      last = now;
    }
    return (emit as (e: string | symbol, ...r: unknown[]) => boolean).call(this, event, ...rest);
  } as typeof process.emit;
}
