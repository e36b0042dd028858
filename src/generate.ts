// Text generation: prefill the prompt, then sample and decode one token at a time, streaming text pieces and
// timing both phases. Portable; the CLI and the server call it. Not the forward pass, not the sampler.
import type { Context } from "./model/forward.js";
import type { Tokenizer } from "./tokenizer/index.js";
import { Sampler, type SamplerOptions } from "./sampler.js";

export interface GenerateOptions extends SamplerOptions {
  /** tokens to generate at most */
  maxTokens: number;
  /** stop at an end-of-generation token (default true) */
  stopAtEos?: boolean;
  /** stop when the generated text contains any of these strings (the text is cut before it) */
  stop?: string[];
  /** called with each token and the text it completes (may be "" while a UTF-8 character is split); return false to stop */
  onToken?: (id: number, text: string) => boolean | void;
  /** polled before each decode step; true cancels (a client went away) */
  shouldStop?: () => boolean;
}

export interface GenerateResult {
  /** generated token ids (not the prompt) */
  tokens: number[];
  text: string;
  stopReason: "length" | "eos" | "stop" | "cancelled" | "context";
  promptTokens: number;
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
  if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 0)) throw new Error(`invalid token count ${opts.maxTokens}: expected an integer ≥ 0`);
  if (prompt.length === 0) throw new Error("the prompt has no tokens");
  const sampler = new Sampler(opts);
  const history = prompt.slice();
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  const tokens: number[] = [];
  let text = "";
  let stopReason: GenerateResult["stopReason"] = "length";

  // one logits array for the whole loop: sampling reads it before the next eval overwrites it
  const out = new Float32Array(ctx.config.vocabSize);
  const t0 = now();
  let logits = ctx.eval(prompt, { out });
  const prefillMs = now() - t0;
  const t1 = now();
  for (let i = 0; i < opts.maxTokens; i++) {
    if (opts.shouldStop?.()) { stopReason = "cancelled"; break; }
    const id = sampler.sample(logits, history);
    if ((opts.stopAtEos ?? true) && tokenizer.isEog(id)) { stopReason = "eos"; break; }
    tokens.push(id);
    history.push(id);
    let piece = decoder.decode(tokenizer.tokenBytes(id), { stream: true });
    if (opts.stop?.length) {
      const cut = firstStop(text + piece, opts.stop);
      if (cut >= 0) {
        piece = (text + piece).slice(text.length, Math.max(cut, text.length));
        text += piece;
        if (piece) { opts.onToken?.(id, piece); yield { id, text: piece }; }
        stopReason = "stop";
        break;
      }
    }
    text += piece;
    const keepGoing = opts.onToken?.(id, piece);
    yield { id, text: piece };
    if (keepGoing === false) { stopReason = "cancelled"; break; }
    if (i + 1 === opts.maxTokens) break;
    if (ctx.nPast >= ctx.contextSize) { stopReason = "context"; break; }
    logits = ctx.eval([id], { out });
  }
  const tail = decoder.decode();
  if (tail && stopReason !== "stop") { text += tail; opts.onToken?.(-1, tail); yield { id: -1, text: tail }; }
  return { tokens, text, stopReason, promptTokens: prompt.length, prefillMs, decodeMs: now() - t1 };
}

/** Generate from a prompt given as token ids, all at once. */
export function generate(ctx: Context, tokenizer: Tokenizer, prompt: number[], opts: GenerateOptions): GenerateResult {
  const steps = generateSteps(ctx, tokenizer, prompt, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

function now(): number {
  return performance.now();
}
