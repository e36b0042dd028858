// What loadModel accepts and where each kind is read from: bytes, a Blob or File, a ByteSource, an http(s) URL
// (fetch, capped), a file: URL or a path (the file system where the runtime has one: Node, Deno, Electron's main
// process; a browser resolves a path against the page and fetches it). Portable: node:fs is imported only when a
// path or file: URL is given in a runtime that has it. Not parsing (gguf/reader.ts) and not loading (model/model.ts).
import type { ByteSource } from "./gguf/reader.js";

/** Everything loadModel takes. */
export type ModelSource = ArrayBufferView | ArrayBuffer | Blob | ByteSource | string | URL;

/** Where a string or URL source points: a file on this machine, or a URL to fetch. */
export type Location = { kind: "file"; path: string | URL; name: string } | { kind: "url"; url: string; name: string };

/** Node, Deno and Electron's main process have a file system reachable through node:fs; browsers do not. */
export function hasFileSystem(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown; window?: unknown };
  if (g.Deno !== undefined) return true;
  // an Electron renderer with nodeIntegration has both process and window: it has node:fs too
  return typeof g.process?.versions?.node === "string";
}

/** A URL scheme ("https:", "file:", "blob:", "data:"), but not a Windows drive letter ("C:\models"). */
const SCHEME = /^[a-zA-Z][a-zA-Z\d+.-]+:/;

/** Where `source` (a string or URL) is to be read from, in this runtime. */
export function locate(source: string | URL): Location {
  const short = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s);
  if (source instanceof URL || SCHEME.test(source)) {
    let url: URL;
    try {
      url = source instanceof URL ? source : new URL(source);
    } catch {
      throw new TypeError(`loadModel: "${short(String(source))}" is not a valid URL`);
    }
    if (url.protocol === "file:" && hasFileSystem()) return { kind: "file", path: url, name: short(url.href) };
    return { kind: "url", url: url.href, name: short(url.href) };
  }
  if (hasFileSystem()) return { kind: "file", path: source, name: short(source) };
  // a browser: a path is relative to the page (or worker) that asks
  const base = (globalThis as { location?: { href: string } }).location?.href;
  if (!base) throw new TypeError(`loadModel: "${short(source)}" is a path, but this runtime has no file system and no page to resolve it against; pass a URL, a Blob or the bytes`);
  return { kind: "url", url: new URL(source, base).href, name: short(source) };
}

/** An object with size and read(): a ByteSource (node's FileSource, or one of your own). */
export function isByteSource(x: unknown): x is ByteSource {
  return typeof x === "object" && x !== null && typeof (x as ByteSource).read === "function" && typeof (x as ByteSource).size === "number";
}

/** A short description of a value loadModel cannot take (never the value itself: it may be megabytes of model). */
export function describeValue(source: unknown): string {
  if (source === null) return "null";
  if (Array.isArray(source)) return "an array";
  if (typeof source === "object") return `an object (${(source as object).constructor?.name ?? "no prototype"})`;
  return `a ${typeof source}`;
}
