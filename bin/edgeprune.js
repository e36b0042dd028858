#!/usr/bin/env node
// The edgeprune command: runs the compiled CLI (npm ci / npm run build produce dist/).
import { existsSync } from "node:fs";
const cli = new URL("../dist/src/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("edgeprune: error: dist/ is missing; run `npm ci` (or `npm run build`) in the edgeprune folder first\n");
  process.exit(1);
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);
