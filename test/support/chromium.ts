// Headless Chromium for the browser tests: the system's /usr/bin/chromium driven by playwright-core, in a
// throw-away profile that close() removes. Test support only; playwright's own browser downloads are not used.
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as assert from "uvu/assert";
import { chromium, type BrowserContext } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

/** the flags every browser test runs with: no sandbox (containers), nothing fetched from Google, no first-run UI */
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

export interface Chromium {
  context: BrowserContext;
  /** closes the browser and removes its profile */
  close: () => Promise<void>;
}

/** Headless Chromium in a fresh profile (edgeprune-chromium-LABEL-*), with extraArgs after the usual flags. */
export async function launchChromium(label: string, extraArgs: string[] = []): Promise<Chromium> {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing`);
  const profile = fs.mkdtempSync(path.join(tmpdir(), `edgeprune-chromium-${label}-`));
  const removeProfile = () => fs.rmSync(profile, { recursive: true, force: true });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: [...ARGS, ...extraArgs] });
  } catch (e) {
    removeProfile();
    throw e;
  }
  return { context, close: async () => { await context.close(); removeProfile(); } };
}
