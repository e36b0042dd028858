// One generated sequence as a state machine over logits: sample the next token (with an optional mask of allowed
// tokens), decode its text as UTF-8 arrives, stop at end-of-generation, a stop string or the token limit, and
// report log-probabilities. It never runs the model: the caller evaluates `pending` and hands back the logits,
// so one loop can drive many sequences (generate.ts drives one, the server's scheduler several). Portable.
import { Sampler, type SamplerOptions } from "./sampler.js";
import type { Tokenizer } from "./tokenizer/index.js";

export interface SequenceOptions extends SamplerOptions {
  /** tokens to generate at most */
  maxTokens: number;
  /** stop at an end-of-generation token (default true) */
  stopAtEos?: boolean;
  /** stop when the generated text contains any of these strings (the text is cut before it) */
  stop?: string[];
  /** also report the log-probabilities of this many most likely tokens at each step (0: only the chosen one's) */
  logprobs?: number;
}

export type StopReason = "length" | "eos" | "stop" | "cancelled" | "context";

/** A token and its log-probability under the model (log-softmax of the raw logits, before any sampling step). */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/** What one step produced: the token, the text it completes, and its log-probabilities when asked for. */
export interface SequenceStep {
  id: number;
  /** the text this token completes ("" while a UTF-8 character is split; cut before a stop string) */
  text: string;
  logprob?: number;
  /** the most likely tokens at this step, best first (SequenceOptions.logprobs of them) */
  top?: TokenLogprob[];
}

/** log-softmax of `logits` at `ids`, and the `k` most likely tokens (f64 sums; ties keep the lower id first). */
export function logprobsOf(logits: ArrayLike<number>, ids: number[], k: number): { logprobs: number[]; top: TokenLogprob[] } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const top: TokenLogprob[] = [];
  if (k > 0) {
    for (let i = 0; i < logits.length; i++) {
      if (top.length === k && !(logits[i] > top[k - 1].logprob)) continue;
      let j = top.length < k ? top.length : k - 1;
      if (top.length < k) top.push({ id: i, logprob: logits[i] });
      else top[j] = { id: i, logprob: logits[i] };
      for (; j > 0 && top[j - 1].logprob < top[j].logprob; j--) [top[j - 1], top[j]] = [top[j], top[j - 1]];
    }
    for (const t of top) t.logprob -= lse;
  }
  return { logprobs: ids.map((id) => logits[id] - lse), top };
}

export class Sequence {
  /** generated token ids (not the prompt) */
  readonly tokens: number[] = [];
  text = "";
  /** set once the sequence is finished */
  stopReason: StopReason | undefined;
  private readonly sampler: Sampler;
  private readonly history: number[];
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  private readonly stops: string[];
  private masked: Float32Array | undefined;

  constructor(private readonly tokenizer: Tokenizer, prompt: ArrayLike<number>, private readonly opts: SequenceOptions) {
    if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 0)) throw new Error(`invalid token count ${opts.maxTokens}: expected an integer ≥ 0`);
    this.sampler = new Sampler(opts);
    this.history = Array.from(prompt);
    this.stops = (opts.stop ?? []).filter((s) => s.length > 0);
    if (opts.maxTokens === 0) this.stopReason = "length";
  }

  get done(): boolean {
    return this.stopReason !== undefined;
  }

  /** The last sampled token, which the model has not seen yet (evaluate it to continue), if the sequence goes on. */
  get pending(): number | undefined {
    return this.done ? undefined : this.tokens[this.tokens.length - 1];
  }

  /** End the sequence (a cancelled request, a full context). */
  finish(reason: StopReason): void {
    this.stopReason ??= reason;
  }

  /**
   * Sample the next token from the logits of the last evaluated position. `allowed` (a bitmask over token ids, bit
   * i of word i >> 5) restricts the choice, as a grammar does. Returns the step, or undefined when the sequence
   * ends without a token (end-of-generation, or a stop string completed by no new text).
   */
  next(logits: Float32Array, allowed?: Int32Array): SequenceStep | undefined {
    if (this.done) throw new Error("the sequence is finished");
    let work = logits;
    if (allowed) {
      work = this.masked && this.masked.length === logits.length ? this.masked : (this.masked = new Float32Array(logits.length));
      for (let i = 0; i < logits.length; i++) work[i] = (allowed[i >> 5] >>> (i & 31)) & 1 ? logits[i] : -Infinity;
    }
    const id = this.sampler.sample(work, this.history);
    let lp: { logprob: number; top: TokenLogprob[] } | undefined;
    if (this.opts.logprobs !== undefined) {
      const r = logprobsOf(logits, [id], this.opts.logprobs);
      lp = { logprob: r.logprobs[0], top: r.top };
    }
    if ((this.opts.stopAtEos ?? true) && this.tokenizer.isEog(id)) {
      this.finish("eos");
      return undefined;
    }
    this.tokens.push(id);
    this.history.push(id);
    let piece = this.decoder.decode(this.tokenizer.tokenBytes(id), { stream: true });
    if (this.stops.length) {
      const cut = firstStop(this.text + piece, this.stops);
      if (cut >= 0) {
        piece = (this.text + piece).slice(this.text.length, Math.max(cut, this.text.length));
        this.text += piece;
        this.finish("stop");
        return { id, text: piece, ...lp && { logprob: lp.logprob, top: lp.top } };
      }
    }
    this.text += piece;
    if (this.tokens.length >= this.opts.maxTokens) this.finish("length");
    return { id, text: piece, ...lp && { logprob: lp.logprob, top: lp.top } };
  }

  /** The text still held by the UTF-8 decoder once the sequence is over ("" unless it ended mid-character). */
  flush(): string {
    const tail = this.decoder.decode();
    if (!tail || this.stopReason === "stop") return "";
    this.text += tail;
    return tail;
  }
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
