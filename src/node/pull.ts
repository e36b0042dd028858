// `edgeprune pull`: fetch a GGUF named in models/manifest.json (or given by URL) into the cache directory,
// resuming a `.part` file with an HTTP Range request (only from the same upstream version), never past the
// expected size, and moving it into place only once its sha256 matches.
// Node-only. Not a model loader and not a registry client: the manifest is the whole catalogue.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { MAX_MODEL_BYTES } from "../model/model.js";

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

/** Download (or resume) `spec` into the cache and verify it. Nothing is ever left at the final path on failure. */
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

  const d = new Download(t, part, o.onProgress, log);
  const resumedFrom = await d.run();

  const size = fs.statSync(part).size;
  const got = await hashFile(part);
  if (t.sha256 && got !== t.sha256) {
    d.discard();
    throw new Error(`sha256 mismatch for ${t.file} from ${t.from}: expected ${t.sha256}, got ${got} (${size} bytes); the download was deleted`);
  }
  if (t.bytes !== null && size !== t.bytes) {
    d.discard();
    throw new Error(`${t.file} from ${t.from} has ${size} bytes, expected ${t.bytes}; the download was deleted`);
  }
  fs.renameSync(part, final);
  d.forgetSource();
  return { path: final, bytes: size, sha256: got, verified: t.sha256 !== null, cached: false, resumedFrom };
}

/**
 * What a .part file was fetched from, kept beside it (NAME.part.json): a resume asks the server for the rest only
 * if the file is still this one (If-Range), and checks the answer against it, so two versions are never spliced.
 */
interface PartSource {
  url: string;
  etag?: string;
  lastModified?: string;
  /** the whole file's size, as the server announced it */
  total?: number;
}

/** A failed transfer, and whether what arrived so far may be kept for a resume. */
class DownloadError extends Error {
  constructor(message: string, readonly keep: boolean) {
    super(message);
  }
}

/**
 * The one downloader: HTTP(S) or a file: mirror into `part`, never more than the expected size (the manifest's,
 * else what the server announced, else MAX_MODEL_BYTES), resumed only from the same upstream version.
 */
class Download {
  private readonly sourceFile: string;

  constructor(private readonly t: Target, private readonly part: string, private readonly onProgress: PullOptions["onProgress"], private readonly log: (l: string) => void) {
    this.sourceFile = `${part}.json`;
  }

  /** Fetch what is missing; returns the byte the download resumed at (0: from the start). */
  async run(): Promise<number> {
    let offset = fs.existsSync(this.part) ? fs.statSync(this.part).size : 0;
    const known = offset > 0 ? this.readSource() : undefined;
    if (offset > 0 && (!known || known.url !== this.t.from)) {
      this.log(`${path.basename(this.part)}: no record of where it came from; starting again`);
      offset = this.restart();
    }
    if (this.t.bytes !== null && offset > this.t.bytes) offset = this.restart();
    if (this.t.bytes !== null && offset === this.t.bytes && offset > 0) return offset; // whole already: the hash decides
    const resumedFrom = offset;
    try {
      return (await this.fetch(offset, known)) === "restarted" ? 0 : resumedFrom;
    } catch (e) {
      if (e instanceof DownloadError && !e.keep) this.discard();
      throw e;
    }
  }

  /** Delete the part file and its record. */
  discard(): void {
    fs.rmSync(this.part, { force: true });
    this.forgetSource();
  }

  forgetSource(): void {
    fs.rmSync(this.sourceFile, { force: true });
  }

  private restart(): number {
    this.discard();
    return 0;
  }

  private readSource(): PartSource | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.sourceFile, "utf8")) as PartSource;
    } catch {
      return undefined;
    }
  }

  private writeSource(s: PartSource): void {
    fs.writeFileSync(this.sourceFile, JSON.stringify(s));
  }

  /** The size the file must have: the manifest's if it has one; a server announcing another is refused. */
  private expected(announced: number | undefined, how: string): number | undefined {
    const { bytes } = this.t;
    if (bytes !== null && announced !== undefined && announced !== bytes) {
      throw new DownloadError(`${this.t.from}: the server announces ${announced} bytes (${how}), but ${this.t.file} has ${bytes} (models/manifest.json); nothing was kept`, false);
    }
    const total = bytes ?? announced;
    if (total !== undefined && total > MAX_MODEL_BYTES) {
      throw new DownloadError(`${this.t.from}: ${total} bytes (${how}) is more than the ${MAX_MODEL_BYTES} bytes pull accepts (MAX_MODEL_BYTES); nothing was kept`, false);
    }
    return total;
  }

  private async fetch(offset: number, known: PartSource | undefined): Promise<"resumed" | "restarted" | "fresh"> {
    const { from } = this.t;
    let body: AsyncIterable<Uint8Array>;
    let total: number | undefined;
    let source: PartSource = { url: from };
    let resumable: boolean;
    let outcome: "resumed" | "restarted" | "fresh" = offset > 0 ? "resumed" : "fresh";
    if (from.startsWith("file:")) {
      const p = fileURLToPath(from);
      let st: fs.Stats;
      try {
        st = fs.statSync(p);
      } catch {
        throw new DownloadError(`${p} does not exist (EDGEPRUNE_MIRROR)`, true);
      }
      if (!st.isFile()) throw new DownloadError(`${p} is not a regular file (EDGEPRUNE_MIRROR)`, true);
      source = { url: from, lastModified: st.mtime.toUTCString(), total: st.size };
      if (offset > 0 && (known?.lastModified !== source.lastModified || known?.total !== st.size)) {
        this.log(`${p} changed since the interrupted download; starting again`);
        offset = this.restart();
        outcome = "restarted";
      }
      total = this.expected(st.size, "its size");
      body = fs.createReadStream(p, { start: offset });
      resumable = true;
    } else {
      // resume only what is provably the same file: a strong ETag or a Last-Modified date (If-Range), or, without
      // either, a sha256 that will check the spliced result
      const validator = known?.etag && !known.etag.startsWith("W/") ? known.etag : known?.lastModified;
      if (offset > 0 && !validator && !this.t.sha256) {
        this.log(`${this.t.file}: the server gave no ETag or Last-Modified and no sha256 is known, so a resume could splice two versions; starting again`);
        offset = this.restart();
        outcome = "restarted";
      }
      const headers: Record<string, string> = {};
      if (offset > 0) {
        headers.Range = `bytes=${offset}-`;
        if (validator) headers["If-Range"] = validator;
      }
      const res = await fetch(from, { headers, redirect: "follow" }).catch((e: Error) => {
        throw new DownloadError(unreachable(from, this.t.file, e), true);
      });
      source = { url: from, etag: res.headers.get("etag") ?? undefined, lastModified: res.headers.get("last-modified") ?? undefined };
      if (res.status === 416 && offset > 0) {
        // nothing after our offset: the part file is already whole (the hash check decides)
        await res.body?.cancel();
        return "resumed";
      }
      if (res.status === 206 && offset > 0) {
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
        if (!m || Number(m[1]) !== offset) {
          await res.body?.cancel();
          throw new DownloadError(`${from}: the server answered the range request with "${res.headers.get("content-range")}"; the partial download was deleted, run the same pull again to start over`, false);
        }
        const announced = m[3] !== "*" ? Number(m[3]) : undefined;
        // a server that ignored If-Range: a different version under the same name must not be appended to ours
        const changed = (known?.etag && source.etag && known.etag !== source.etag) || (known?.lastModified && source.lastModified && known.lastModified !== source.lastModified) ||
          (known?.total !== undefined && announced !== undefined && known.total !== announced);
        if (changed) {
          await res.body?.cancel();
          throw new DownloadError(`${from} changed since the interrupted download (${describeChange(known!, source, announced)}); the partial download was deleted, run the same pull again to start over`, false);
        }
        source.total = announced;
        total = this.expected(announced, "Content-Range");
        this.log(`resuming ${this.t.file} at byte ${offset}`);
      } else if (res.ok) {
        if (offset > 0) {
          this.log(validator ? `${this.t.file} changed upstream since the interrupted download (or the server does not resume); starting again` : `the server does not resume downloads; starting ${this.t.file} again`);
          offset = this.restart();
          outcome = "restarted";
        }
        const len = res.headers.get("content-length");
        const announced = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
        source.total = announced;
        total = this.expected(announced, "Content-Length");
      } else {
        await res.body?.cancel();
        throw new DownloadError(`${from}: HTTP ${res.status} ${res.statusText}`, true);
      }
      if (!res.body) throw new DownloadError(`${from}: empty response`, true);
      body = res.body as unknown as AsyncIterable<Uint8Array>;
      resumable = res.status === 206 || /\bbytes\b/i.test(res.headers.get("accept-ranges") ?? "");
      resumable &&= Boolean(source.etag && !source.etag.startsWith("W/")) || Boolean(source.lastModified) || Boolean(this.t.sha256);
    }
    this.writeSource(source);
    await this.copy(body, offset, total, resumable);
    return outcome;
  }

  /** Append the body to the part file, stopping (and deleting it) at the first byte past the expected size. */
  private async copy(body: AsyncIterable<Uint8Array>, offset: number, total: number | undefined, resumable: boolean): Promise<void> {
    const { from } = this.t;
    const limit = total ?? MAX_MODEL_BYTES;
    const again = resumable ? "run the same pull again to resume" : "run the same pull again to start over (this server cannot resume it)";
    const fh = await fs.promises.open(this.part, offset > 0 ? "a" : "w");
    let done = offset;
    try {
      for await (const chunk of body) {
        if (done + chunk.length > limit) {
          throw new DownloadError(total !== undefined
            ? `${from} sent more than the ${total} bytes ${this.t.bytes !== null ? `models/manifest.json lists for ${this.t.file}` : "it announced"}; stopped at byte ${done}, the download was deleted`
            : `${from} sent more than ${limit} bytes without announcing a size, more than any model edgeprune can run; stopped, the download was deleted`, false);
        }
        await fh.write(chunk);
        done += chunk.length;
        this.onProgress?.(done, total ?? 0);
      }
    } catch (e) {
      if (e instanceof DownloadError) throw e;
      throw new DownloadError(`download of ${from} stopped at byte ${done}${total ? ` of ${total}` : ""} (${(e as Error).message}); ${again}`, resumable);
    } finally {
      await fh.close();
    }
    if (total !== undefined && done < total) {
      throw new DownloadError(`download of ${from} stopped at byte ${done} of ${total}: the server closed the transfer early; ${again}`, resumable);
    }
  }
}

function describeChange(was: PartSource, now: PartSource, total: number | undefined): string {
  if (was.etag && now.etag && was.etag !== now.etag) return `ETag ${was.etag} → ${now.etag}`;
  if (was.lastModified && now.lastModified && was.lastModified !== now.lastModified) return `Last-Modified ${was.lastModified} → ${now.lastModified}`;
  return `size ${was.total} → ${total}`;
}

async function hashFile(p: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of fs.createReadStream(p, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

/**
 * Why a server could not be reached, in words (undici says only "fetch failed" and hides the reason in `cause`),
 * and what to do offline.
 */
export function unreachable(url: string, file: string, e: Error): string {
  const cause = e.cause as (Error & { code?: string; errors?: (Error & { code?: string })[] }) | undefined;
  const code = cause?.code ?? cause?.errors?.find((x) => x.code)?.code;
  const host = (() => { try { return new URL(url).host; } catch { return url; } })();
  const why: Record<string, string> = {
    ENOTFOUND: `the name ${host} could not be resolved: no network, or no DNS`,
    EAI_AGAIN: `the name ${host} could not be resolved right now: no network, or DNS is down`,
    ECONNREFUSED: `nothing accepts connections at ${host}`,
    ECONNRESET: `${host} closed the connection`,
    ETIMEDOUT: `${host} did not answer in time`,
    ENETUNREACH: `the network is unreachable (offline?)`,
    EHOSTUNREACH: `${host} is unreachable (offline?)`,
    UND_ERR_CONNECT_TIMEOUT: `${host} did not answer in time`,
  };
  const reason = (code && why[code]) ?? `${e.message}${cause?.message ? ` (${cause.message})` : ""}`;
  return `cannot download ${url}: ${reason}${code ? ` [${code}]` : ""}. Offline, set EDGEPRUNE_MIRROR to a folder or server that has ${file} (docs/serving.md), or give the other commands the .gguf path directly`;
}
