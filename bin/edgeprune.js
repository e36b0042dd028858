#!/usr/bin/env node
// The edgeprune command: runs the compiled CLI (npm ci / npm run build produce dist/). On Node 20, whose relaxed
// SIMD sits behind a V8 flag, it first runs itself again with the flag (dist/src/node/rerun.js says how).
import { existsSync } from "node:fs";
const dist = new URL("../dist/src/", import.meta.url);
const cli = new URL("cli.js", dist);
if (!existsSync(cli)) {
  process.stderr.write("edgeprune: error: dist/ is missing; run `npm ci` (or `npm run build`) in the edgeprune folder first\n");
  process.exit(1);
}
const rerun = await import(new URL("node/rerun.js", dist).href);
if (rerun.takeRerunMarker()) {
  rerun.collapseDoubledSigint();
  rerun.exitWithParent?.();
} else if (rerun.rerunDecision().rerun) {
  const code = await rerun.rerunWithRelaxedSimd();
  if (code !== undefined) process.exit(code);
  // the child could not be started: run here, on the SIMD128 kernels
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);
