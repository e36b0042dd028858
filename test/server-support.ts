// Test helpers for the server and pull tests: run the real CLI as a child process on an ephemeral 127.0.0.1 port,
// remember every child so that it is killed however the test ends, and expected greedy output from the library.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { generate } from "../src/generate.js";
import { Model } from "../src/model/model.js";
import { sharedPath } from "./support/paths.js";
import type { ContextOptions } from "../src/model/forward.js";

export const MODEL = sharedPath("models/stories260K.gguf");
export const CLI = path.resolve("bin/edgeprune.js");

const children = new Set<ChildProcess>();
process.on("exit", () => { for (const c of children) c.kill("SIGKILL"); });

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** everything the server wrote to stderr so far */
  log: () => string;
  /** resolves with the exit code (or signal name) */
  exited: Promise<number | string>;
  kill: () => Promise<void>;
}

/** `edgeprune serve MODEL --port 0 ...args`, resolved once it listens and /health answers 200. */
export async function serve(args: string[], env: NodeJS.ProcessEnv = {}, model = MODEL): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, "serve", model, "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  children.add(child);
  let err = "";
  child.stdout!.resume();
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, sig) => { children.delete(child); resolve(code ?? sig ?? -1); }));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve(m[1]);
    });
    exited.then((code) => reject(new Error(`server exited (${code}) before listening:\n${err}`)));
    setTimeout(() => reject(new Error(`server did not listen within 10 s:\n${err}`)), 10_000).unref();
  });
  const proc: ServerProcess = {
    child, url, port: Number(new URL(url).port), log: () => err, exited,
    kill: async () => { if (child.exitCode === null && child.signalCode === null) { child.kill("SIGKILL"); await exited; } },
  };
  // the start-up warm-up is bounded by CPU time (warmup.ts), so on a busy machine it can take several seconds of wall time
  for (const t0 = Date.now(); Date.now() - t0 < 60_000;) {
    const r = await fetch(`${url}/health`).catch(() => undefined);
    if (r?.status === 200) return proc;
    await new Promise((r) => setTimeout(r, 25));
  }
  await proc.kill();
  throw new Error(`server never became healthy:\n${err}`);
}

/**
 * Run the CLI to completion; stdout, stderr and the exit code (-1 and the signal's name in `signal` if it was
 * killed). Async, so in-process servers keep answering. With `timeoutMs`, a run still going then is killed.
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string; signal?: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  children.add(child);
  let stdout = "", stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = timeoutMs !== undefined ? setTimeout(() => child.kill("SIGKILL"), timeoutMs) : undefined;
  return new Promise((resolve) => child.on("close", (code, signal) => {
    clearTimeout(timer);
    children.delete(child);
    resolve({ code: code ?? -1, stdout, stderr, signal: signal ?? undefined });
  }));
}

let model: Model | undefined;
/** stories260K loaded in this process, for expected outputs. */
export function localModel(): Model {
  return (model ??= Model.load(new Uint8Array(readFileSync(MODEL)), { contextSize: 256 }));
}

/** The greedy continuation of BOS + text, as the library's generate() gives it. */
export function greedyText(text: string, maxTokens: number, kv: Pick<ContextOptions, "cacheTypeK" | "cacheTypeV"> = {}): { text: string; tokens: number[] } {
  const m = localModel();
  const ids = m.tokenizer.encode(text, { addBos: m.tokenizer.addBos });
  const r = generate(m.createContext({ contextSize: 256, ...kv }), m.tokenizer, ids, { maxTokens, temperature: 0 });
  return { text: r.text, tokens: r.tokens };
}

/** A value from Prometheus text. */
export function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}
