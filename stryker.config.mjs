// StrykerJS over the numerical core, one module group per run (`npm run test:mutation [group ...]`, driven by
// scripts/mutation.mjs, which sets EDGEPRUNE_MUTATE). The tests run from dist/, so the sandbox builds TypeScript
// once after Stryker instruments it (every mutant is in the build, switched on by Stryker's environment variable),
// then each mutant runs only the few fast test files that judge its module. Results: docs/testing.md.
import { GROUPS } from "./scripts/mutation-groups.mjs";

const group = GROUPS[process.env.EDGEPRUNE_MUTATE ?? ""];
if (!group) throw new Error(`set EDGEPRUNE_MUTATE to one of ${Object.keys(GROUPS).join(", ")} (npm run test:mutation does)`);
const name = process.env.EDGEPRUNE_MUTATE;
const run = (t) => { const [env, file] = t.includes(" ") ? t.split(" ") : ["", t]; return `${env} node dist/test/${file}.test.js`.trim(); };

export default {
  testRunner: "command",
  commandRunner: { command: group.tests.map(run).join(" && ") },
  buildCommand: "npx tsc -p tsconfig.json",
  mutate: group.mutate,
  // error-message texts are not behaviour the numbers depend on
  mutator: { excludedMutations: ["StringLiteral"] },
  ignorePatterns: ["dist", "reports", "docs", "examples", ".stryker-tmp", ".ci"],
  concurrency: Number(process.env.EDGEPRUNE_MUTATE_CONCURRENCY ?? 2),
  timeoutMS: 20000,
  tempDirName: ".stryker-tmp",
  reporters: ["clear-text", "progress-append-only", "json", "html"],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
  disableTypeChecks: "src/**/*.ts",
  cleanTempDir: true,
};
