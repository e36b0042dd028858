// Locates files in the shared workspace (models, docs) that sits next to this repository.
// It only resolves paths; it does not download or create anything.
import { existsSync } from "node:fs";
import path from "node:path";

/**
 * Absolute path of `../shared/<segments>` relative to the working directory (or under $EDGEPRUNE_SHARED, which the
 * mutation runs set: their sandbox copies of the repository do not sit next to shared/); throws if it is missing.
 */
export function sharedPath(...segments: string[]): string {
  const p = path.resolve(process.env.EDGEPRUNE_SHARED ?? path.resolve(process.cwd(), "../shared"), ...segments);
  if (!existsSync(p)) {
    throw new Error(`shared file not found: ${p} (tests expect ../shared next to the repository root; run them from the repository root)`);
  }
  return p;
}
