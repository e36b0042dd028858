// Runs the edgeprune command (bin/edgeprune.js, the compiled CLI) in a child process, as a user would.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";

export function runCli(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ["bin/edgeprune.js", ...args], { encoding: "utf8" });
}
