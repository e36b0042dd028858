// `edgeprune pull`: fetch a GGUF named in models/manifest.json (or given by URL) into the cache directory,
// resuming a `.part` file with an HTTP Range request and moving it into place only once its sha256 matches.
// Node-only. Not a model loader and not a registry client: the manifest is the whole catalogue.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface ManifestEntry {
  name: string;
  file: string;
  architecture: string;
  /** null when we could not establish it */
  bytes: number | null;
  /** null when we could not establish it: pull then needs --sha256 or --no-verify */
  sha256: string | null;
  /** null for files with no public copy (reach them through EDGEPRUNE_MIRROR) */
  url: string | null;
  source?: string;
  /** false: listed so that users learn why edgeprune refuses it; pull will not fetch it */
  runs?: boolean;
  reason?: string;
}

/** models/manifest.json of this package (dist/src/node/pull.js → ../../../models). */
export const MANIFEST_URL = new URL("../../../models/manifest.json", import.meta.url);

export function readManifest(file: URL | string = MANIFEST_URL): ManifestEntry[] {
  const p = file instanceof URL ? fileURLToPath(file) : file;
  let text: string;
  try {
    text = fs.readFileSync(p, "utf8");
  } catch {
    throw new Error(`the models manifest ${p} is missing`);
  }
  return (JSON.parse(text) as { models: ManifestEntry[] }).models;
}

/** $EDGEPRUNE_CACHE, else $XDG_CACHE_HOME/edgeprune, else ~/.cache/edgeprune. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EDGEPRUNE_CACHE) return path.resolve(env.EDGEPRUNE_CACHE);
  const base = env.XDG_CACHE_HOME ? env.XDG_CACHE_HOME : path.join(os.homedir(), ".cache");
  return path.join(path.resolve(base), "edgeprune");
}

export interface PullOptions {
  cacheDir?: string;
  /** a folder or base URL holding the manifest's files by name (default: $EDGEPRUNE_MIRROR) */
  mirror?: string;
  /** expected sha256, for URLs the manifest does not know (or to override it) */
  sha256?: string;
  /** store without checking a hash; only allowed when none is known */
  noVerify?: boolean;
  manifest?: ManifestEntry[];
  /** bytes done, total (0 if unknown) */
  onProgress?: (done: number, total: number) => void;
  log?: (line: string) => void;
}

export interface PullResult {
  path: string;
  bytes: number;
  sha256: string;
  verified: boolean;
  /** already in the cache; nothing was downloaded */
  cached: boolean;
  /** bytes that an earlier, interrupted pull had already fetched */
  resumedFrom: number;
}

interface Target {
  file: string;
  from: string;
  sha256: string | null;
  bytes: number | null;
}

function resolveTarget(spec: string, o: PullOptions): Target {
  const manifest = o.manifest ?? readManifest();
  const mirror = o.mirror ?? process.env.EDGEPRUNE_MIRROR;
  const isUrl = /^(https?|file):\/\//i.test(spec);
  const entry = isUrl
    ? manifest.find((m) => m.url === spec)
    : manifest.find((m) => m.name.toLowerCase() === spec.toLowerCase() || m.file === spec);
  if (!entry && !isUrl) {
    const names = manifest.filter((m) => m.runs !== false).map((m) => m.name);
    throw new Error(`unknown model "${spec}": give a URL, or one of ${names.join(", ")} (models/manifest.json)`);
  }
  if (entry && entry.runs === false) {
    throw new Error(`${entry.name} is listed only to say that edgeprune cannot run it yet: ${entry.reason ?? "unsupported"}`);
  }
  const file = entry ? entry.file : decodeURIComponent(new URL(spec).pathname.split("/").pop() ?? "");
  if (!/^[\w.+-]+$/.test(file) || file.startsWith(".")) throw new Error(`cannot derive a safe file name from ${spec}`);
  let from: string;
  if (entry && mirror) from = joinMirror(mirror, entry.file);
  else if (entry && entry.url) from = entry.url;
  else if (entry) throw new Error(`${entry.name} has no public download; set EDGEPRUNE_MIRROR to a folder or URL that holds ${entry.file}`);
  else from = spec;
  return { file, from, sha256: (o.sha256 ?? entry?.sha256 ?? null)?.toLowerCase() ?? null, bytes: entry?.bytes ?? null };
}

function joinMirror(mirror: string, file: string): string {
  if (/^https?:\/\//i.test(mirror)) return mirror.replace(/\/*$/, "/") + encodeURIComponent(file);
  const dir = mirror.startsWith("file://") ? fileURLToPath(mirror) : path.resolve(mirror);
  return pathToFileURL(path.join(dir, file)).href;
}

/** Download (or resume) `spec` into the cache and verify it. */
export async function pull(spec: string, o: PullOptions = {}): Promise<PullResult> {
  const log = o.log ?? (() => {});
  const t = resolveTarget(spec, o);
  if (o.sha256 !== undefined && !/^[0-9a-f]{64}$/i.test(o.sha256)) throw new Error(`--sha256 must be 64 hex digits, got "${o.sha256}"`);
  if (!t.sha256 && !o.noVerify) {
    throw new Error(`no sha256 is known for ${t.file} (the manifest has none we could establish): pass --sha256 <hex> to verify it against a hash you trust, or --no-verify to store it unverified`);
  }
  const dir = o.cacheDir ?? defaultCacheDir();
  fs.mkdirSync(dir, { recursive: true });
  const final = path.join(dir, t.file);
  const part = `${final}.part`;

  if (fs.existsSync(final)) {
    const have = await hashFile(final);
    if (!t.sha256 || have === t.sha256) {
      return { path: final, bytes: fs.statSync(final).size, sha256: have, verified: t.sha256 !== null, cached: true, resumedFrom: 0 };
    }
    log(`${final}: sha256 ${have} does not match the manifest's ${t.sha256}; downloading again`);
    fs.rmSync(final);
  }

  let offset = fs.existsSync(part) ? fs.statSync(part).size : 0;
  if (t.bytes !== null && offset > t.bytes) { fs.rmSync(part); offset = 0; }
  const resumedFrom = offset;
  if (!(t.bytes !== null && offset === t.bytes)) offset = await fetchInto(t.from, part, offset, t.bytes, o.onProgress, log);

  const size = fs.statSync(part).size;
  const got = await hashFile(part);
  if (t.sha256 && got !== t.sha256) {
    fs.rmSync(part, { force: true });
    throw new Error(`sha256 mismatch for ${t.file} from ${t.from}: expected ${t.sha256}, got ${got} (${size} bytes); the download was deleted`);
  }
  if (t.bytes !== null && size !== t.bytes) {
    fs.rmSync(part, { force: true });
    throw new Error(`${t.file} from ${t.from} has ${size} bytes, expected ${t.bytes}; the download was deleted`);
  }
  fs.renameSync(part, final);
  return { path: final, bytes: size, sha256: got, verified: t.sha256 !== null, cached: false, resumedFrom };
}

/** Append the bytes after `offset` to `part`; returns the new size. An interrupted transfer keeps what arrived. */
async function fetchInto(from: string, part: string, offset: number, expected: number | null, onProgress: PullOptions["onProgress"], log: (l: string) => void): Promise<number> {
  let body: AsyncIterable<Uint8Array>;
  let total = expected ?? 0;
  if (from.startsWith("file:")) {
    const p = fileURLToPath(from);
    if (!fs.existsSync(p)) throw new Error(`${p} does not exist (EDGEPRUNE_MIRROR)`);
    total = fs.statSync(p).size;
    if (offset > total) offset = 0;
    body = fs.createReadStream(p, { start: offset });
  } else {
    const res = await fetch(from, { headers: offset > 0 ? { Range: `bytes=${offset}-` } : {}, redirect: "follow" });
    if (res.status === 416 && offset > 0) {
      // nothing after our offset: the part file is already whole (the hash check decides)
      await res.body?.cancel();
      return offset;
    }
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
      if (!m || Number(m[1]) !== offset) {
        await res.body?.cancel();
        throw new Error(`${from}: the server answered the range request with "${res.headers.get("content-range")}"; delete ${part} and retry`);
      }
      if (m[3] !== "*") total = Number(m[3]);
      log(`resuming ${path.basename(part, ".part")} at byte ${offset}`);
    } else if (res.ok) {
      if (offset > 0) log(`the server does not resume downloads; starting ${path.basename(part, ".part")} again`);
      offset = 0;
      const len = Number(res.headers.get("content-length"));
      if (len > 0) total = len;
    } else {
      await res.body?.cancel();
      throw new Error(`${from}: HTTP ${res.status} ${res.statusText}`);
    }
    if (!res.body) throw new Error(`${from}: empty response`);
    body = res.body as unknown as AsyncIterable<Uint8Array>;
  }

  const fh = await fs.promises.open(part, offset > 0 ? "a" : "w");
  let done = offset;
  try {
    for await (const chunk of body) {
      await fh.write(chunk);
      done += chunk.length;
      onProgress?.(done, total);
    }
  } catch (e) {
    throw new Error(`download of ${from} stopped at byte ${done}${total ? ` of ${total}` : ""} (${(e as Error).message}); run the same pull again to resume`);
  } finally {
    await fh.close();
  }
  if (total && done < total) throw new Error(`download of ${from} stopped at byte ${done} of ${total}; run the same pull again to resume`);
  return done;
}

async function hashFile(p: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of fs.createReadStream(p, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}
