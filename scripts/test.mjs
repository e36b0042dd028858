#!/usr/bin/env node
// `npm test`'s runner: uvu over the arguments given (dist/test, a pattern), and a failure when any test file's tests
// did not all run. uvu 0.5 counts a file whose before() hook throws as passing with none of its tests run (its
// runner returns from a `finally`, which drops the error), so a missing browser or oracle would pass silently.
//   node scripts/test.mjs dist/test '\.test\.js$'
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

// the package's own bin (its exports map does not list it)
const uvu = fileURLToPath(new URL("../node_modules/uvu/bin.js", import.meta.url));
const child = spawn(process.execPath, [uvu, ...process.argv.slice(2)], { stdio: ["inherit", "pipe", "inherit"] });
let out = "";
child.stdout.on("data", (d) => {
  process.stdout.write(d);
  out += d;
});
child.on("close", (code, signal) => {
  if (code !== 0) process.exit(code ?? 1);
  if (signal) process.exit(1);
  const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
  // per file: its name on a line of its own, then "(passed / total)"
  const short = [];
  let file = "?";
  for (const line of plain.split("\n")) {
    if (/^\S+\.js$/.test(line.trim())) file = line.trim();
    const m = /\((\d+) \/ (\d+)\)\s*$/.exec(line);
    if (m && Number(m[1]) < Number(m[2])) short.push(`${file}: ${m[1]} of ${m[2]} tests ran (a before() hook failed?)`);
  }
  const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? NaN), passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? NaN);
  if (!(passed === total) || short.length) {
    process.stderr.write(`\ntest: ${passed} of ${total} tests passed and no failure was reported:\n  ${short.join("\n  ") || "(no per-file count was found)"}\n`);
    process.exit(1);
  }
});
