// Sums up an EDGEPRUNE_TOL_REPORT file per kernel (the first word of each assertClose label): the largest share
// of its tolerance any case used, and that share as an equivalent tolerance. Test support, run by hand.
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file) throw new Error("usage: node dist/test/support/tolerance-report.js REPORT.jsonl");
const worst = new Map<string, { used: number; atol: number; rtol: number; cases: number; what: string }>();
for (const line of readFileSync(file, "utf8").split("\n")) {
  if (!line) continue;
  const r = JSON.parse(line) as { what: string; used: number; atol: number; rtol: number };
  const key = r.what.split(/[\s:]/)[0]!;
  const w = worst.get(key);
  if (!w) worst.set(key, { ...r, cases: 1 });
  else {
    w.cases++;
    if (r.used > w.used) Object.assign(w, { used: r.used, atol: r.atol, rtol: r.rtol, what: r.what });
  }
}
for (const [key, w] of [...worst].sort()) {
  console.log(`${key.padEnd(24)} cases ${String(w.cases).padStart(5)}  used ${w.used.toExponential(2)} of atol ${w.atol.toExponential(1)} rtol ${w.rtol.toExponential(1)}  (worst: ${w.what})`);
}
