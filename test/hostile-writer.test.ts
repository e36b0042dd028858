// The atomic writer (src/node/files.ts) against hostile output paths (issue 18 item 7), through the real CLI: -o
// naming a device, a directory or a FIFO is refused and left alone; -o naming the input (by any path: relative,
// hard link, symbolic link) is refused; SIGINT and SIGTERM during a write leave no temp file; a SIGKILL's leftover
// is removed by the next write of the same target. Device nodes are made in a temp folder, never /dev.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as files from "../src/node/files.js";
import { CLI, MODEL, runCli } from "./server-support.js";

const tmp = fs.mkdtempSync(path.join(tmpdir(), "edgeprune-writer-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const sha = (p: string) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");
const temps = (dir: string) => fs.readdirSync(dir).filter((n) => n.startsWith("."));

test("-o naming a device, a directory or a FIFO is refused; each is left as it was", async () => {
  const dir = fs.mkdtempSync(path.join(tmp, "special-"));
  const targets: [string, RegExp][] = [];
  // a character device like /dev/null (1,3), made here; mknod needs privileges, so it is skipped without them
  const dev = path.join(dir, "null");
  if (spawnSync("mknod", [dev, "c", "1", "3"]).status === 0) targets.push([dev, /is a device/]);
  else console.log("  (mknod not permitted here: the device case is skipped)");
  const fifo = path.join(dir, "fifo");
  spawnSync("mkfifo", [fifo]);
  targets.push([fifo, /is a FIFO/]);
  const sub = path.join(dir, "sub");
  fs.mkdirSync(sub);
  targets.push([sub, /is a directory/]);
  for (const [target, error] of targets) {
    const before = fs.lstatSync(target);
    const r = await runCli(["prune", MODEL, "--layers", "1", "-o", target]);
    assert.is(r.code, 1, `${target}: ${r.stderr}`);
    assert.match(r.stderr, error);
    assert.match(r.stderr, /will not replace it/);
    const after = fs.lstatSync(target);
    assert.is(after.ino, before.ino, `${target} is the same file`);
    assert.is(after.mode, before.mode, `${target} is the same kind of file`);
  }
  assert.equal(temps(dir), [], "no temp file left");
});

test("-o naming the input, by any path, is refused and the input is unchanged", async () => {
  const dir = fs.mkdtempSync(path.join(tmp, "same-"));
  const input = path.join(dir, "model.gguf");
  fs.copyFileSync(MODEL, input);
  fs.linkSync(input, path.join(dir, "hard.gguf"));
  fs.symlinkSync("model.gguf", path.join(dir, "soft.gguf"));
  const before = sha(input);
  for (const out of [input, path.join(dir, "..", path.basename(dir), "model.gguf"), path.join(dir, "hard.gguf"), path.join(dir, "soft.gguf")]) {
    for (const args of [["prune", input, "--layers", "1", "-o", out], ["quantize", input, "--type", "q8_0", "-o", out]]) {
      const r = await runCli(args);
      assert.is(r.code, 1, `${args[0]} -o ${out}: ${r.stderr}`);
      assert.match(r.stderr, /is the input .* \(the same file\); write the output to another path/);
    }
  }
  assert.is(sha(input), before);
  assert.ok(fs.lstatSync(path.join(dir, "soft.gguf")).isSymbolicLink());
  // a symbolic link to another file is written through: the link stays a link
  const other = path.join(dir, "other.gguf");
  fs.writeFileSync(other, "old");
  fs.symlinkSync("other.gguf", path.join(dir, "to-other.gguf"));
  const ok = await runCli(["prune", input, "--layers", "1", "-o", path.join(dir, "to-other.gguf")]);
  assert.is(ok.code, 0, ok.stderr);
  assert.ok(fs.lstatSync(path.join(dir, "to-other.gguf")).isSymbolicLink());
  assert.ok(fs.statSync(other).size > 1000);
  assert.equal(temps(dir), []);
});

/** `synth` of a ~128 MiB model (long enough to be interrupted), resolved when its temp file appears. */
async function startLongWrite(out: string): Promise<{ child: ReturnType<typeof spawn>; exited: Promise<{ code: number | null; signal: string | null }> }> {
  const child = spawn(process.execPath, [CLI, "synth", "--dim", "512", "--layers", "8", "--heads", "8", "--vocab", "8000", "--type", "f32", "-o", out], { stdio: "ignore" });
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.on("exit", (code, signal) => r({ code, signal })));
  const dir = path.dirname(out);
  for (let i = 0; i < 2000 && temps(dir).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  return { child, exited };
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  test(`${signal} during a write removes the temp file; the process ends by the signal`, async () => {
    const dir = fs.mkdtempSync(path.join(tmp, `${signal}-`));
    const out = path.join(dir, "big.gguf");
    const { child, exited } = await startLongWrite(out);
    const during = temps(dir);
    assert.is(during.length, 1, "a temp file is being written");
    child.kill(signal);
    const r = await exited;
    assert.equal(fs.readdirSync(dir), [], "no temp file and no output");
    assert.is(r.signal, signal, `ended by ${signal} (exit ${r.code})`);
    assert.match(during[0], /^\.big\.gguf\.\d+\.[0-9a-f]{12}\.edgeprune-tmp$/, "a temp file the next write can recognise");
  });
}

test("a SIGKILL's temp file stays (nothing can run), and the next write to the same target removes it", async () => {
  const dir = fs.mkdtempSync(path.join(tmp, "kill-"));
  const out = path.join(dir, "big.gguf");
  const { child, exited } = await startLongWrite(out);
  child.kill("SIGKILL");
  await exited;
  const left = temps(dir);
  assert.is(left.length, 1, "the killed run's temp file");
  // on Node 20 the writer is the CLI's relaxed-SIMD re-run, a child of the killed process: it dies with its parent
  // (as soon as its synchronous work yields or its next chunk is written), so wait for the pid the name carries
  const writer = Number(/\.(\d+)\.[0-9a-f]{12}\.edgeprune-tmp$/.exec(left[0])![1]);
  const alive = () => { try { process.kill(writer, 0); return true; } catch { return false; } };
  for (let i = 0; i < 500 && alive(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.not.ok(alive(), `the writer ${writer} outlived its killed parent by 5 s`);
  // an unrelated hidden file is never touched, nor a temp file of a process that still runs
  fs.writeFileSync(path.join(dir, ".big.gguf.notes"), "mine");
  fs.writeFileSync(path.join(dir, `.big.gguf.${process.pid}.0123456789ab.edgeprune-tmp`), "a live writer's");
  const r = await runCli(["prune", MODEL, "--layers", "1", "-o", out]);
  assert.is(r.code, 0, r.stderr);
  assert.equal(fs.readdirSync(dir).sort(), [`.big.gguf.${process.pid}.0123456789ab.edgeprune-tmp`, ".big.gguf.notes", "big.gguf"]);
});

test("a write that fails midway leaves neither the output nor a temp file (sync and async writers)", async () => {
  const dir = fs.mkdtempSync(path.join(tmp, "fail-"));
  const out = path.join(dir, "x.bin");
  function* failing() { yield new Uint8Array(1000); throw new Error("disk on fire"); }
  assert.throws(() => files.writeFileAtomicSync(out, failing()), /disk on fire/);
  await files.writeFileAtomic(out, failing()).then(() => assert.unreachable(), (e) => assert.match((e as Error).message, /disk on fire/));
  assert.equal(fs.readdirSync(dir), []);
  assert.is(await files.writeFileAtomic(out, [new Uint8Array(7)]), 7);
  assert.equal(fs.readdirSync(dir), ["x.bin"]);
});

test.run();
