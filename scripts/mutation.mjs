// `npm run test:mutation [group ...]`: StrykerJS, one run per module group of stryker.config.mjs (all of them by
// default), one after another; each writes reports/mutation/<group>.{json,html} and prints its survivors. Not in CI.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { GROUPS } from "./mutation-groups.mjs";

const asked = process.argv.slice(2);
const groups = asked.length ? asked : Object.keys(GROUPS);
for (const g of groups) if (!(g in GROUPS)) { console.error(`unknown group ${g}: expected ${Object.keys(GROUPS).join(", ")}`); process.exit(2); }
// the sandbox is a copy of the repository under .stryker-tmp/, so the tests find ../shared through this variable
const shared = process.env.EDGEPRUNE_SHARED ?? path.resolve("../shared");
if (!existsSync(shared)) { console.error(`${shared} not found: run from the repository root, next to shared/`); process.exit(2); }
let failed = 0;
for (const g of groups) {
  console.log(`\n== mutation: ${g} (${GROUPS[g].mutate.join(", ")}) ==`);
  const r = spawnSync("npx", ["stryker", "run", "stryker.config.mjs"], { stdio: "inherit", env: { ...process.env, EDGEPRUNE_MUTATE: g, EDGEPRUNE_SHARED: shared } });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
