// Helpers every CLI command shares: argument parsers that fail with the option's name, sizes for humans, file
// checks and calibration/evaluation text loading. Node-only (CLI side).
import { InvalidArgumentError } from "commander";
import * as fs from "node:fs";
import { calibrationSplit, calibrationWindows as calibrationWindowsFromText, splitDocuments, tokenizeDocuments } from "../data/documents.js";
import type { Model } from "../model/model.js";

export const int = (name: string) => (v: string): number => {
  if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} must be an integer, got "${v}"`);
  return Number(v);
};

export const num = (name: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got "${v}"`);
  return n;
};

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
