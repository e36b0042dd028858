// Text generation: prefill the prompt, then sample and decode one token at a time, streaming text pieces and
// timing both phases. Portable; the CLI and the server call it. Not the forward pass, not the sampler.
import type { Context } from "./model/forward.js";
import type { Tokenizer } from "./tokenizer/index.js";
import { Sequence, type SequenceOptions, type StopReason } from "./sequence.js";

export interface GenerateOptions extends SequenceOptions {
  /** called with each token and the text it completes (may be "" while a UTF-8 character is split); return false to stop */
  onToken?: (id: number, text: string) => boolean | void;
  /** polled before each decode step; true cancels (a client went away) */
  shouldStop?: () => boolean;
  /**
   * the first `cached` tokens of the prompt are already in the context's cache (ctx.nPast === cached, and at
   * least one prompt token is left to evaluate): only the rest is prefilled (prompt-cache reuse)
   */
  cached?: number;
}

export interface GenerateResult {
  /** generated token ids (not the prompt) */
  tokens: number[];
  text: string;
  stopReason: StopReason;
  promptTokens: number;
  /** prompt tokens that were already in the cache and not evaluated again */
  cachedTokens: number;
  prefillMs: number;
  decodeMs: number;
}

/** One generated token and the text it completes ("" while a UTF-8 character is still split across tokens). */
export interface GeneratedToken {
  id: number;
  text: string;
}

/**
 * Generate step by step: yields each token as it is sampled and returns the summary. Continues the context's cache
 * from its current position. Callers that must interleave other work (a server) can pause between steps.
 */
export function* generateSteps(ctx: Context, tokenizer: Tokenizer, prompt: number[], opts: GenerateOptions): Generator<GeneratedToken, GenerateResult> {
  if (prompt.length === 0) throw new Error("the prompt has no tokens");
  const cached = opts.cached ?? 0;
  if (!(Number.isInteger(cached) && cached >= 0 && cached < prompt.length && ctx.nPast === cached)) {
    throw new Error(`cached ${cached}: expected an integer below the prompt's ${prompt.length} tokens, equal to the context's ${ctx.nPast} cached tokens`);
  }
  const seq = new Sequence(tokenizer, prompt, opts);

  // one logits array for the whole loop: sampling reads it before the next eval overwrites it
  const out = new Float32Array(ctx.config.vocabSize);
  const t0 = now();
  let logits = ctx.eval(cached > 0 ? prompt.slice(cached) : prompt, { out });
  const prefillMs = now() - t0;
  const t1 = now();
  while (!seq.done) {
    if (opts.shouldStop?.()) { seq.finish("cancelled"); break; }
    const step = seq.next(logits);
    if (!step) break;
    if (step.text || seq.stopReason !== "stop") {
      const keepGoing = opts.onToken?.(step.id, step.text);
      yield { id: step.id, text: step.text };
      if (keepGoing === false) { seq.finish("cancelled"); break; }
    }
    if (seq.done) break;
    if (ctx.nPast >= ctx.contextSize) { seq.finish("context"); break; }
    logits = ctx.eval([step.id], { out });
  }
  const tail = seq.flush();
  if (tail) { opts.onToken?.(-1, tail); yield { id: -1, text: tail }; }
  return { tokens: seq.tokens, text: seq.text, stopReason: seq.stopReason!, promptTokens: prompt.length, cachedTokens: cached, prefillMs, decodeMs: now() - t1 };
}

/** Generate from a prompt given as token ids, all at once. */
export function generate(ctx: Context, tokenizer: Tokenizer, prompt: number[], opts: GenerateOptions): GenerateResult {
  const steps = generateSteps(ctx, tokenizer, prompt, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

function now(): number {
  return performance.now();
}
