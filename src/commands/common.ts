// Helpers every CLI command shares: argument parsers that fail with the option's name, sizes for humans, file
// checks and calibration/evaluation text loading. Node-only (CLI side).
import { InvalidArgumentError, Option } from "commander";
import * as fs from "node:fs";
import { calibrationSplit, calibrationWindows as calibrationWindowsFromText, splitDocuments, tokenizeDocuments } from "../data/documents.js";
import type { Model } from "../model/model.js";
import { availableThreads } from "../threads/pool.js";
import { DEFAULT_KV_CACHE_TYPE, KV_CACHE_TYPES, type KvCacheType } from "../quant/formats.js";

/** Bounds a numeric option accepts (inclusive unless `above`: strictly greater than it). */
export interface Range {
  min?: number;
  max?: number;
  /** strictly greater than this */
  above?: number;
}

/** "at least 1", "from 0 to 1", "greater than 0": the bounds, as the error message says them. */
function rangeText(r: Range): string {
  if (r.above !== undefined) return r.max !== undefined ? `greater than ${r.above} and at most ${r.max}` : `greater than ${r.above}`;
  if (r.min !== undefined && r.max !== undefined) return `from ${r.min} to ${r.max}`;
  if (r.min !== undefined) return `at least ${r.min}`;
  return `at most ${r.max}`;
}

function checkRange(name: string, v: string, n: number, r: Range): number {
  const ok = (r.min === undefined || n >= r.min) && (r.max === undefined || n <= r.max) && (r.above === undefined || n > r.above);
  if (!ok) throw new InvalidArgumentError(`${name} must be ${rangeText(r)}, got ${v.trim()}`);
  return n;
}

/** A parser for an integer option: the option's name and its bounds are in every error (commander prints it before anything runs). */
export const int = (name: string, range: Range = {}) => (v: string): number => {
  if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} must be an integer, got "${v}"`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${name} must be an integer below 2^53, got ${v.trim()}`);
  return checkRange(name, v, n, range);
};

/** A parser for a finite number option, with bounds as int(). */
export const num = (name: string, range: Range = {}) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got "${v}"`);
  return checkRange(name, v, n, range);
};

/** A parser for a KV cache type (llama.cpp's spelling: f16, q8_0, f32); anything else names the option and the choices. */
export const kvType = (name: string) => (v: string): KvCacheType => {
  const t = v.trim().toLowerCase();
  if (!(KV_CACHE_TYPES as readonly string[]).includes(t)) throw new InvalidArgumentError(`${name} must be one of ${KV_CACHE_TYPES.join(", ")}, got "${v}"`);
  return t as KvCacheType;
};

const cacheTypeHelp = (kv: string, short: string) => `type of the KV cache's ${kv}: ${KV_CACHE_TYPES.join(", ")} (default ${DEFAULT_KV_CACHE_TYPE}, as llama.cpp; ${short})`;
/** --cache-type-k (llama.cpp's -ctk, see expandShorthands), for every command that takes --ctx */
export const cacheTypeK = () => new Option("--cache-type-k <type>", cacheTypeHelp("keys", "-ctk")).argParser(kvType("--cache-type-k"));
/** --cache-type-v (-ctv) */
export const cacheTypeV = () => new Option("--cache-type-v <type>", cacheTypeHelp("values", "-ctv")).argParser(kvType("--cache-type-v"));

/** The cache types a command's options hold, as LoadOptions / ContextOptions take them. */
export interface CacheTypeFlags { cacheTypeK?: KvCacheType; cacheTypeV?: KvCacheType }
export function cacheTypes(o: CacheTypeFlags): CacheTypeFlags {
  return { cacheTypeK: o.cacheTypeK, cacheTypeV: o.cacheTypeV };
}

/**
 * llama.cpp's shorthands -ctk and -ctv (also -ctk=TYPE) as their long names: commander's short flags are one
 * letter. Arguments after "--" are left alone.
 */
export function expandShorthands(argv: string[]): string[] {
  const end = argv.indexOf("--");
  return argv.map((a, i) => {
    if (end >= 0 && i > end) return a;
    const m = /^-ct([kv])(=.*)?$/.exec(a);
    return m ? `--cache-type-${m[1]}${m[2] ?? ""}` : a;
  });
}

/** "3,7,12" → [3, 7, 12] */
export const intList = (name: string) => (v: string): number[] => {
  if (!/^\s*\d+(\s*,\s*\d+)*\s*$/.test(v)) throw new InvalidArgumentError(`${name} must be a comma-separated list of layer indices, got "${v}"`);
  return v.split(",").map((s) => Number(s.trim()));
};

export function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(2)} MiB`;
}

/** Peak resident memory of this process so far, in bytes. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export function checkFile(path: string, what: string): void {
  if (!fs.existsSync(path)) throw new Error(`${what} ${path} does not exist`);
  if (!fs.statSync(path).isFile()) throw new Error(`${what} ${path} is not a file`);
}

export interface CalibrationArgs {
  window: number;
  tokens: number;
}

/**
 * Calibration windows from a text file (the first 80% of its documents, see data/documents.ts), --tokens in all in
 * windows of at most --window tokens. Fails with one clear line when the text is too short.
 */
export function calibrationWindows(model: Pick<Model, "tokenizer" | "config">, path: string, args: CalibrationArgs): number[][] {
  checkFile(path, "calibration file");
  if (!(args.window >= 2)) throw new Error(`--window must be at least 2 tokens, got ${args.window}`);
  if (args.window > model.config.trainContext) throw new Error(`--window ${args.window} exceeds the model's context length ${model.config.trainContext}`);
  if (!(args.tokens >= args.window)) throw new Error(`--tokens ${args.tokens} must be at least one window (--window ${args.window})`);
  try {
    return calibrationWindowsFromText(model.tokenizer, fs.readFileSync(path, "utf8"), args.tokens, model.config.trainContext, args.window).windows;
  } catch (e) {
    throw new Error(`calibration file ${path}: ${(e as Error).message}`);
  }
}

/**
 * Evaluation documents from a text file: its last 20% of documents (the held-out part), tokenized with BOS; at
 * most `limit` of them (the first ones of the held-out part) when given.
 */
export function evaluationDocuments(model: Model, path: string, limit?: number): number[][] {
  checkFile(path, "evaluation file");
  if (limit !== undefined && !(limit >= 1)) throw new Error(`--eval-docs must be at least 1, got ${limit}`);
  const docs = calibrationSplit(splitDocuments(fs.readFileSync(path, "utf8"))).eval.slice(0, limit);
  const tokens = tokenizeDocuments(model.tokenizer, docs).filter((d) => d.length >= 2);
  if (tokens.length === 0) throw new Error(`evaluation file ${path} has no held-out text (its last 20% is used)`);
  return tokens;
}

/** --threads: at least one; at most llama.cpp's own ceiling order of magnitude (more only queues work). */
export const THREADS_RANGE: Range = { min: 1, max: 256 };

/** The --threads option every command that runs kernels takes: checked (with its name) before anything runs. */
export function threadsOption(what = "threads for the kernels"): Option {
  return new Option("--threads <n>", `${what} (default: every core, os.availableParallelism())`).argParser(int("--threads", THREADS_RANGE));
}

/** --threads, or every core the OS gives this process. */
export async function threadsAsked(o: { threads?: number }): Promise<number> {
  return o.threads ?? await availableThreads();
}

/**
 * Says on stderr when fewer threads run than were asked for (the pool already said why, once), so that what a
 * command labels with a thread count is what ran. Returns `used`.
 */
export function noteThreads(asked: number, used: number): number {
  if (used < asked) process.stderr.write(`edgeprune: running on ${used} thread${used === 1 ? "" : "s"}, not the ${asked} asked for\n`);
  return used;
}

/** Starts a loaded model's threads (LoadOptions.threads = asked) and says when fewer run; returns how many run. */
export async function startThreads(m: Model, asked: number): Promise<number> {
  return noteThreads(asked, await m.startThreads());
}

/** A --ctx beyond what the model was trained for is refused (RoPE past it gives garbage), before anything is printed. */
export function checkContextOption(ctx: number | undefined, trainContext: number, option = "--ctx"): void {
  if (ctx !== undefined && ctx > trainContext) {
    throw new Error(`${option} ${ctx} is more than the model's context length ${trainContext} (the longest sequence it was trained on); use at most ${trainContext}`);
  }
}

/**
 * The prompt of -p TEXT, -p - (standard input) or -f FILE. Standard input and files lose one trailing newline, as
 * llama.cpp's -f does (the line break an editor or `echo` adds is not part of the prompt).
 */
export function readPrompt(o: { prompt?: string; file?: string }): string {
  if (o.prompt !== undefined && o.file !== undefined) throw new Error("give the prompt either with -p or with -f, not both");
  if (o.file !== undefined) {
    checkFile(o.file, "prompt file");
    return dropNewline(fs.readFileSync(o.file, "utf8"));
  }
  if (o.prompt === undefined) throw new Error("no prompt: give -p TEXT, -p - (read standard input) or -f FILE");
  if (o.prompt !== "-") return o.prompt;
  if (process.stdin.isTTY) process.stderr.write("edgeprune: reading the prompt from standard input (end it with Ctrl-D)\n");
  return dropNewline(fs.readFileSync(0, "utf8"));
}

function dropNewline(s: string): string {
  return s.endsWith("\r\n") ? s.slice(0, -2) : s.endsWith("\n") ? s.slice(0, -1) : s;
}

/** Resolves once a stream has handed everything written so far to the OS (so stderr lines cannot overtake it). */
export function drain(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => { stream.write("", () => resolve()); });
}
