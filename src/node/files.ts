// Node-only file-system helpers: a ByteSource over a file descriptor, and atomic writes (temp file, then
// rename) so that a failed run never leaves a half-written output. Not part of the portable core.
import * as fs from "node:fs";
import * as path from "node:path";
import type { ByteSource } from "../gguf/reader.js";
import { layoutGguf, type GgufWriteSpec } from "../gguf/writer.js";

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

/**
 * Write chunks to `target` through a temp file in the same directory, renamed into place only when every
 * chunk is written and flushed. On any error the temp file is removed and the target is untouched.
 */
export function writeFileAtomic(target: string, chunks: Iterable<Uint8Array>): number {
  const dir = path.dirname(path.resolve(target));
  if (!fs.existsSync(dir)) throw new Error(`${target}: directory ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | undefined;
  let written = 0;
  try {
    fd = fs.openSync(tmp, "wx");
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += fs.writeSync(fd, c, off, c.length - off);
      written += c.length;
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
    return written;
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** writeFileAtomic for a text (UTF-8). */
export function writeTextFileAtomic(target: string, text: string): number {
  return writeFileAtomic(target, [new TextEncoder().encode(text)]);
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
 * as they come (a temp file in the same folder, renamed by commit; nothing is left behind on abort).
 */
export function openTensorFile(target: string, spec: GgufWriteSpec): TensorFile {
  const dir = path.dirname(path.resolve(target));
  if (!fs.existsSync(dir)) throw new Error(`${target}: directory ${dir} does not exist`);
  const layout = layoutGguf(spec);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | undefined = fs.openSync(tmp, "wx");
  const written = new Float64Array(spec.tensors.length);
  const put = (bytes: Uint8Array, pos: number) => {
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
      fs.renameSync(tmp, target);
      return layout.totalSize;
    },
    abort,
  };
}
