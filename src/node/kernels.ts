// Which kernel build a CLI process runs, decided once before the first command action: the relaxed build when
// the engine has relaxed SIMD and the kernels pass their start-up self-test (kernels/selftest.ts), else SIMD128
// with one line on stderr saying why. Node-only (CLI side). Not the library's choice (wasm.ts defaultSimdBuild).
import { relaxedSelfTest, type RelaxedSelfTest } from "../kernels/selftest.js";
import { hasRelaxedSimd, type SimdBuild } from "../wasm.js";
import { rerunDecision } from "./rerun.js";

/** test-only: EDGEPRUNE_TEST_SELFTEST_FAIL=1 makes the self-test report a failure (the fallback path's tests) */
export const SELFTEST_FAIL_ENV = "EDGEPRUNE_TEST_SELFTEST_FAIL";

export interface KernelChoice {
  build: SimdBuild;
  /** how the build was reached: "re-run with --experimental-wasm-relaxed-simd", "EDGEPRUNE_SIMD=simd128", … */
  why: string;
  selfTest?: RelaxedSelfTest;
}

let choice: KernelChoice | undefined;

/**
 * Decides (once per process) and makes wasm.ts's default follow: a failed self-test sets EDGEPRUNE_SIMD=simd128
 * for this process and says so in one stderr line.
 */
export function chooseCliKernels(env: NodeJS.ProcessEnv = process.env): KernelChoice {
  if (choice) return choice;
  const forced = env.EDGEPRUNE_SIMD;
  if (forced === "simd128") return (choice = { build: "simd128", why: "EDGEPRUNE_SIMD=simd128" });
  if (forced === "relaxed") return (choice = { build: "relaxed", why: "EDGEPRUNE_SIMD=relaxed (no self-test)" });
  const why = rerunDecision(env).why;
  if (!hasRelaxedSimd()) {
    return (choice = { build: "simd128", why });
  }
  const selfTest = relaxedSelfTest({ forceFail: env[SELFTEST_FAIL_ENV] === "1" });
  if (!selfTest.ok) {
    env.EDGEPRUNE_SIMD = "simd128";
    const more = selfTest.failures.length > 1 ? ` (and ${selfTest.failures.length - 1} more)` : "";
    process.stderr.write(`edgeprune: the relaxed SIMD kernels failed their start-up self-test (${selfTest.failures[0]}${more}); using the SIMD128 kernels\n`);
    return (choice = { build: "simd128", why: `relaxed self-test failed: ${selfTest.failures.join("; ")}`, selfTest });
  }
  return (choice = { build: "relaxed", why: `${why}; self-test passed in ${selfTest.ms.toFixed(1)} ms`, selfTest });
}
