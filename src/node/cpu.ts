// Node and Deno only: kernel settings that depend on the CPU, chosen from what the OS says it is. Only settings
// measured on that kind of CPU (docs/speed.md); everything else keeps the kernels' defaults. Not a CPU detector for
// browsers, which keep the defaults.
import * as os from "node:os";
import { setCpuMatvecStreams } from "../wasm.js";

/**
 * Runs per matrix-vector pass for a CPU model string: 2 on AMD (the EPYC Zen 3 of docs/speed.md decodes faster with
 * two long streams than with eight), else 8 (the Intel Xeon's best).
 */
export function matvecStreamsFor(model: string): number {
  return /\bAMD\b/i.test(model) ? 2 : 8;
}

/** Applies this machine's settings to every kernel runtime created afterwards (wasm.ts). */
export function applyCpuSettings(): void {
  let model = "";
  try {
    const cpus = os.cpus();
    if (cpus.length > 0) model = cpus[0].model;
  } catch {
    // Deno without --allow-sys refuses os.cpus(): the defaults then
  }
  setCpuMatvecStreams(matvecStreamsFor(model));
}
