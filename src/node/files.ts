// Node-only file-system helpers: a ByteSource over a file descriptor, and atomic writes (temp file, then
// rename) so that a failed or interrupted run never leaves a half-written output or a stray temp file, and never
// replaces a device, a directory or its own input. Not part of the portable core.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ByteSource } from "../gguf/reader.js";
import { layoutGguf, type GgufWriteSpec } from "../gguf/writer.js";
import { exitIfParentGone } from "./rerun.js";

/** A ByteSource that reads a file on demand; close() when done. */
export class FileSource implements ByteSource {
  readonly size: number;
  private readonly fd: number;
  private closed = false;

  constructor(readonly path: string) {
    try {
      this.fd = fs.openSync(path, "r");
    } catch (e) {
      throw new Error(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const st = fs.fstatSync(this.fd);
    if (!st.isFile()) {
      fs.closeSync(this.fd);
      throw new Error(`${path}: not a regular file`);
    }
    this.size = st.size;
  }

  read(offset: number, length: number): Uint8Array {
    return this.readInto(new Uint8Array(length), offset);
  }

  /** Fill `dst` with the bytes at `offset` (used to copy tensors straight into wasm memory). */
  readInto(dst: Uint8Array, offset: number): Uint8Array {
    let done = 0;
    while (done < dst.length) {
      const n = fs.readSync(this.fd, dst, done, dst.length - done, offset + done);
      if (n === 0) throw new Error(`${this.path}: unexpected end of file at byte ${offset + done}`);
      done += n;
    }
    return dst;
  }

  close(): void {
    if (!this.closed) fs.closeSync(this.fd);
    this.closed = true;
  }
}

export interface WriteOptions {
  /**
   * Files the output must not replace: the command's inputs. Compared by device and inode, so another name for the
   * same file (a relative path, a hard link, a symbolic link) is refused too.
   */
  inputs?: readonly string[];
}

/** The temp-file suffix: a file ending in it, named after a process that no longer runs, is a leftover of ours. */
const TEMP_SUFFIX = ".edgeprune-tmp";
/** Temp files being written now, removed if SIGINT or SIGTERM arrives first. */
const active = new Set<string>();
const SIGNALS = ["SIGINT", "SIGTERM"] as const;

function onSignal(signal: NodeJS.Signals): void {
  for (const tmp of active) fs.rmSync(tmp, { force: true });
  active.clear();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  // with our listener gone the signal's default action applies again (or the program's own handler runs)
  process.kill(process.pid, signal);
}

function track(tmp: string): void {
  if (active.size === 0) for (const s of SIGNALS) process.on(s, onSignal);
  active.add(tmp);
}

function untrack(tmp: string): void {
  active.delete(tmp);
  if (active.size === 0) for (const s of SIGNALS) process.removeListener(s, onSignal);
}

function describe(st: fs.Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

function statOrUndefined(p: string, follow: boolean): fs.Stats | undefined {
  try {
    return follow ? fs.statSync(p) : fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`${p}: cannot inspect (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * Where the output really goes (a symbolic link's target: the link stays a link) and its temp file, after refusing
 * targets that are not regular files or are one of the inputs, and removing temp files left by killed runs.
 */
function prepare(target: string, o: WriteOptions): { final: string; tmp: string } {
  let final = path.resolve(target);
  const link = statOrUndefined(final, false);
  if (link?.isSymbolicLink()) {
    try {
      final = fs.realpathSync(final);
    } catch {
      throw new Error(`${target}: is a symbolic link to a file that does not exist; refusing to replace it`);
    }
  }
  const st = statOrUndefined(final, true);
  if (st && !st.isFile()) throw new Error(`${target}: is ${describe(st)}; edgeprune writes only regular files and will not replace it`);
  if (st) {
    for (const input of o.inputs ?? []) {
      const is = statOrUndefined(input, true);
      if (is && is.dev === st.dev && is.ino === st.ino) throw new Error(`${target}: is the input ${input} (the same file); write the output to another path`);
    }
  }
  const dir = path.dirname(final);
  if (!fs.existsSync(dir)) throw new Error(`${target}: directory ${dir} does not exist`);
  const base = path.basename(final);
  removeStaleTemps(dir, base);
  return { final, tmp: path.join(dir, `.${base}.${process.pid}.${randomBytes(6).toString("hex")}${TEMP_SUFFIX}`) };
}

/**
 * Temp files for `base` whose writer is gone (SIGKILL, a power cut): `.BASE.PID.HEX.edgeprune-tmp` and the older
 * `.BASE.PID.MILLIS.tmp`, when no process PID runs. A PID that a live process has reused is left alone.
 */
function removeStaleTemps(dir: string, base: string): void {
  const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(`^\\.${escaped}\\.(\\d+)\\.(?:[0-9a-f]{12}\\.edgeprune-tmp|\\d{13}\\.tmp)$`);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = re.exec(name);
    if (!m || Number(m[1]) === process.pid || processRuns(Number(m[1]))) continue;
    const p = path.join(dir, name);
    if (statOrUndefined(p, false)?.isFile()) fs.rmSync(p, { force: true });
  }
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Write chunks to `target` through a temp file in the same directory, renamed into place only when every chunk is
 * written and flushed. On any error the temp file is removed and the target is untouched; on SIGINT or SIGTERM the
 * temp file is removed before the signal takes effect (the writes are asynchronous, so the handler gets to run).
 * Refuses targets that are not regular files (devices, directories, FIFOs) and targets that are one of `inputs`.
 */
export async function writeFileAtomic(target: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<number> {
  const { final, tmp } = prepare(target, o);
  let fh: fs.promises.FileHandle | undefined;
  let written = 0;
  track(tmp);
  try {
    fh = await fs.promises.open(tmp, "wx");
    for await (const c of chunks) {
      exitIfParentGone();
      let off = 0;
      while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
      written += c.length;
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    fs.renameSync(tmp, final);
    return written;
  } catch (e) {
    if (fh !== undefined) await fh.close().catch(() => {});
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    untrack(tmp);
  }
}

/**
 * writeFileAtomic, synchronously: for small outputs (reports, test fixtures). A signal cannot interrupt synchronous
 * code, so a run killed during the write leaves its temp file; the next write to the same target removes it.
 */
export function writeFileAtomicSync(target: string, chunks: Iterable<Uint8Array>, o: WriteOptions = {}): number {
  const { final, tmp } = prepare(target, o);
  let fd: number | undefined;
  let written = 0;
  try {
    fd = fs.openSync(tmp, "wx");
    for (const c of chunks) {
      exitIfParentGone();
      let off = 0;
      while (off < c.length) off += fs.writeSync(fd, c, off, c.length - off);
      written += c.length;
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, final);
    return written;
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** writeFileAtomicSync for a text (UTF-8). */
export function writeTextFileAtomic(target: string, text: string, o: WriteOptions = {}): number {
  return writeFileAtomicSync(target, [new TextEncoder().encode(text)], o);
}

/** A GGUF being written tensor by tensor, in any order (GPTQ's output): commit() renames it into place. */
export interface TensorFile {
  write(index: number, bytes: Uint8Array, at?: number): void;
  /** checks every tensor was written in full, flushes, renames the temp file to the target */
  commit(): number;
  /** removes the temp file (after an error) */
  abort(): void;
}

/**
 * Open `target` for a GGUF of this spec: the header is written at once, each tensor's bytes land at their offset
 * as they come (a temp file in the same folder, renamed by commit; removed by abort). The same refusals as
 * writeFileAtomic (not a regular file, one of `inputs`). Its writer (GPTQ) is synchronous for hours, so no signal
 * handler is installed (one would hold SIGTERM off until the end): a killed run's temp file is removed by the
 * next write to the same target, as writeFileAtomicSync's is.
 */
export function openTensorFile(target: string, spec: GgufWriteSpec, o: WriteOptions = {}): TensorFile {
  const { final, tmp } = prepare(target, o);
  const layout = layoutGguf(spec);
  let fd: number | undefined = fs.openSync(tmp, "wx");
  const written = new Float64Array(spec.tensors.length);
  const put = (bytes: Uint8Array, pos: number) => {
    exitIfParentGone();
    let off = 0;
    while (off < bytes.length) off += fs.writeSync(fd!, bytes, off, bytes.length - off, pos + off);
  };
  const abort = () => {
    if (fd !== undefined) fs.closeSync(fd);
    fd = undefined;
    fs.rmSync(tmp, { force: true });
  };
  try {
    put(layout.header, 0);
  } catch (e) {
    abort();
    throw e;
  }
  return {
    write(i, bytes, at = 0) {
      if (fd === undefined) throw new Error(`${target}: written after commit or abort`);
      if (at + bytes.length > layout.sizes[i]) throw new Error(`tensor "${spec.tensors[i].name}": ${at + bytes.length} bytes written, its shape and type need ${layout.sizes[i]}`);
      put(bytes, layout.dataOffset + layout.offsets[i] + at);
      written[i] += bytes.length;
    },
    commit() {
      const missing = spec.tensors.findIndex((_, i) => written[i] !== layout.sizes[i]);
      if (missing >= 0) {
        abort();
        throw new Error(`${target}: tensor "${spec.tensors[missing].name}" got ${written[missing]} of ${layout.sizes[missing]} bytes; nothing written`);
      }
      fs.ftruncateSync(fd!, layout.totalSize);
      fs.fsyncSync(fd!);
      fs.closeSync(fd!);
      fd = undefined;
      fs.renameSync(tmp, final);
      return layout.totalSize;
    },
    abort,
  };
}
