// JSON output constrained by a JSON schema: the schema becomes a grammar, and an incremental matcher over the
// model's vocabulary says which tokens may come next (a bitmask the sampler applies). The matcher is xgrammar
// (@mlc-ai/web-xgrammar, the engine vLLM, SGLang and MLC use, compiled to WebAssembly), loaded on the first
// request that needs it. Node-only (it reads the package's file); not sampling (sequence.ts applies the mask).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import type { Tokenizer } from "../tokenizer/index.js";
import { ApiError, type ResponseFormat } from "./openai.js";

// the part of xgrammar's API used here
interface XgCompiled { dispose(): void }
interface XgMatcher {
  getNextTokenBitmask(): Promise<Int32Array>;
  acceptToken(id: number): boolean;
  isTerminated(): boolean;
  dispose(): void;
}
interface XgCompiler { compileJSONSchema(schema: string, anyWhitespace?: boolean, indent?: number, separators?: [string, string], strictMode?: boolean, maxWhitespaceCnt?: number): Promise<XgCompiled> }
interface Xgrammar {
  TokenizerInfo: { createTokenizerInfo(vocab: string[], vocabType: string, prependSpace: boolean, vocabSize: number, stopTokenIds: number[]): Promise<unknown> };
  GrammarCompiler: { createGrammarCompiler(info: unknown, cacheEnabled?: boolean): Promise<XgCompiler> };
  GrammarMatcher: { createGrammarMatcher(compiled: XgCompiled, overrideStopTokens?: number[]): Promise<XgMatcher> };
}

/**
 * The JSON's layout is fixed: one line, ", " between items and ": " after keys, no other whitespace. A grammar
 * that allows free whitespace lets a model spend its tokens on it (stories260K writes newlines until max_tokens;
 * vLLM offers --disable-any-whitespace for the same reason); the layout does not change what the JSON says.
 */
const LAYOUT = { anyWhitespace: false, indent: -1, separators: [", ", ": "] as [string, string] };

let xgrammar: Promise<Xgrammar> | undefined;

/**
 * The package's bundle is UMD (`exports`, `require`, `__filename`) inside a package marked "type": "module", so
 * Node's ESM loader cannot import it; it is evaluated here as the CommonJS module it is written as.
 */
function loadXgrammar(): Promise<Xgrammar> {
  return xgrammar ??= (async () => {
    const require = createRequire(import.meta.url);
    const file = require.resolve("@mlc-ai/web-xgrammar");
    const module = { exports: {} as Xgrammar };
    const run = new Function("exports", "module", "require", "__filename", "__dirname", readFileSync(file, "utf8"));
    run(module.exports, module, createRequire(file), file, path.dirname(file));
    return module.exports;
  })();
}

/** A matcher for one generation: the allowed-token mask before each token, then the token chosen. */
export interface TokenConstraint {
  mask(): Promise<Int32Array>;
  accept(id: number): void;
  dispose(): void;
}

/** Compiled schemas kept for reuse; the least recently used one not in use goes past this many. */
export const SCHEMA_CACHE_SIZE = 16;

/**
 * Compiles response formats for one model's vocabulary (the vocabulary is prepared once, on first use). Compiled
 * grammars are cached here, at most SCHEMA_CACHE_SIZE idle ones: xgrammar's own cache keeps every schema it was
 * ever given, so a client sending new schemas would grow the server without bound.
 */
export class JsonConstraints {
  private compiler: Promise<XgCompiler> | undefined;
  /** by schema text, least recently used first; `users` matchers hold each */
  private readonly cache = new Map<string, { compiled: Promise<XgCompiled>; users: number }>();

  /** Schemas compiled and kept (for tests). */
  get cached(): number {
    return this.cache.size;
  }

  constructor(private readonly tokenizer: Tokenizer, private readonly vocabSize: number) {}

  private compilerFor(): Promise<XgCompiler> {
    return this.compiler ??= (async () => {
      const xg = await loadXgrammar();
      const t = this.tokenizer;
      // the vocabulary as stored (SentencePiece's ▁ and <0xNN>, GPT-2's byte-to-unicode); control tokens print
      // nothing (tokenBytes is empty), so they are given as "", which xgrammar never allows in the output
      const vocab: string[] = [];
      const stops: number[] = [];
      for (let id = 0; id < this.vocabSize; id++) {
        const special = t.tokenBytes(id).length === 0;
        vocab.push(special ? "" : t.tokenText(id));
        if (t.isEog(id)) stops.push(id);
      }
      const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, t.model === "gpt2" ? "byte_level" : "byte_fallback", false, this.vocabSize, stops);
      return xg.GrammarCompiler.createGrammarCompiler(info, false);
    })();
  }

  /** A matcher for the format (undefined for plain text); an unusable schema is a 400 naming the field. */
  async constraint(format: ResponseFormat, param: string): Promise<TokenConstraint | undefined> {
    if (format.type === "text") return undefined;
    const compiler = await this.compilerFor();
    const schema = format.type === "json_object" ? { type: "object" } : format.schema;
    const key = JSON.stringify(schema);
    let entry = this.cache.get(key);
    if (entry) this.cache.delete(key); // re-inserted below as the most recently used
    else entry = { compiled: compiler.compileJSONSchema(key, LAYOUT.anyWhitespace, LAYOUT.indent, LAYOUT.separators, true), users: 0 };
    this.cache.set(key, entry);
    entry.users++;
    const e = entry;
    let compiled: XgCompiled;
    try {
      compiled = await e.compiled;
    } catch (err) {
      e.users--;
      if (this.cache.get(key) === e) this.cache.delete(key);
      throw new ApiError(400, `The JSON schema cannot be used: ${String((err as Error)?.message ?? err).slice(0, 500)}`, "invalid_request_error", param, "invalid_json_schema");
    }
    const xg = await loadXgrammar();
    let matcher: XgMatcher;
    try {
      matcher = await xg.GrammarMatcher.createGrammarMatcher(compiled);
    } catch (err) {
      this.release(key, e);
      throw err;
    }
    let disposed = false;
    return {
      mask: () => matcher.getNextTokenBitmask(),
      accept: (id) => {
        if (!matcher.acceptToken(id)) throw new Error(`the JSON matcher refused token ${id}, which its own mask allowed`);
      },
      dispose: () => {
        if (disposed) return;
        disposed = true;
        matcher.dispose();
        this.release(key, e);
      },
    };
  }

  /** A matcher is done with its grammar: evict idle grammars past the cache's size, least recently used first. */
  private release(key: string, e: { compiled: Promise<XgCompiled>; users: number }): void {
    e.users--;
    // a grammar evicted while in use is freed by its last user
    if (this.cache.get(key) !== e && e.users === 0) void e.compiled.then((c) => c.dispose(), () => {});
    for (const [k, v] of this.cache) {
      if (this.cache.size <= SCHEMA_CACHE_SIZE) break;
      if (v.users > 0) continue;
      this.cache.delete(k);
      void v.compiled.then((c) => c.dispose(), () => {});
    }
  }
}
