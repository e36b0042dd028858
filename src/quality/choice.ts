// Multiple-choice tasks scored by log-likelihood, as lm-evaluation-harness and `llama-perplexity --hellaswag`
// score them: every ending is appended to the context and the model's log-probability of the ending's tokens is
// summed. Four rankings: acc (the sum), acc_norm (the sum divided by the ending's length in characters, the
// harness's `len(choice)` normalisation), acc_token (the mean per token, llama.cpp's HellaSwag score) and acc_mi
// (the sum minus the ending's log-probability after BOS alone, the harness's acc_mutual_info, which cancels how
// likely an ending is on its own). Reads our JSONL layout and HellaSwag's as is. Portable: text in, numbers out. Not the file system (the CLI reads).
import type { ForwardOptions } from "../model/forward.js";
import type { Model } from "../model/model.js";
import { logSoftmaxAt } from "../perplexity.js";
import { wilsonInterval } from "./stats.js";

/** One task: a context, its candidate endings, the index of the true one. */
export interface ChoiceTask {
  context: string;
  endings: string[];
  label: number;
  /** text between the context and each ending (lm-evaluation-harness's target_delimiter) */
  delimiter: string;
}

/** Most endings a task may have; more is a malformed file, not a task. */
const MAX_ENDINGS = 64;

/**
 * HellaSwag's text clean-up as lm-evaluation-harness applies it (tasks/hellaswag/utils.py): trim, " [title]" to
 * ". ", drop other [bracketed] markers, collapse double spaces.
 */
export function hellaswagPreprocess(text: string): string {
  return text.trim().replace(/ \[title\]/g, ". ").replace(/\[.*?\]/g, "").replace(/ {2}/g, " ");
}

/**
 * Tasks from a JSONL text, one object per line (blank lines skipped). Our layout:
 * `{"context": "…", "endings": ["…", "…"], "label": 0}` with an optional `"delimiter"` (default " ").
 * HellaSwag's (`ctx_a`, `ctx_b`, `activity_label`, `endings`, `label`) is recognised and turned into the
 * harness's query "activity_label: ctx_a Ctx_b". Errors name the file, the line and the field.
 */
export function parseTasks(text: string, name: string): ChoiceTask[] {
  const tasks: ChoiceTask[] = [];
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const where = `${name} line ${i + 1}`;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: invalid JSON (${(e as Error).message})`);
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw new Error(`${where}: expected a JSON object`);
    const hellaswag = "ctx_a" in o && "activity_label" in o;
    const endings = o.endings;
    if (!Array.isArray(endings) || endings.length < 2 || endings.length > MAX_ENDINGS || !endings.every((e) => typeof e === "string" && e.length > 0)) {
      throw new Error(`${where}: "endings" must be an array of 2 … ${MAX_ENDINGS} non-empty strings`);
    }
    const label = typeof o.label === "string" && /^\d+$/.test(o.label) ? Number(o.label) : o.label;
    if (!(typeof label === "number" && Number.isInteger(label) && label >= 0 && label < endings.length)) {
      throw new Error(`${where}: "label" must be the index of the true ending, 0 … ${endings.length - 1}, got ${JSON.stringify(o.label)}`);
    }
    if (hellaswag) {
      for (const k of ["ctx_a", "ctx_b", "activity_label"]) if (typeof o[k] !== "string") throw new Error(`${where}: HellaSwag field "${k}" must be a string`);
      const ctxB = o.ctx_b as string;
      const ctx = `${o.ctx_a} ${ctxB.charAt(0).toUpperCase()}${ctxB.slice(1)}`;
      tasks.push({ context: hellaswagPreprocess(`${o.activity_label}: ${ctx}`), endings: (endings as string[]).map(hellaswagPreprocess), label, delimiter: " " });
      return;
    }
    if (typeof o.context !== "string" || o.context.length === 0) throw new Error(`${where}: "context" must be a non-empty string`);
    if (o.delimiter !== undefined && typeof o.delimiter !== "string") throw new Error(`${where}: "delimiter" must be a string`);
    tasks.push({ context: o.context, endings: endings as string[], label, delimiter: (o.delimiter as string | undefined) ?? " " });
  });
  if (tasks.length === 0) throw new Error(`${name}: no tasks (expected one JSON object per line)`);
  return tasks;
}

/** One task's scores for every ending. */
export interface TaskScore {
  /** sum of log p of each ending's tokens */
  logLikelihood: number[];
  /** sum of log p of each ending's tokens after BOS alone, without the context */
  unconditional: number[];
  tokens: number[];
  /** the ending's length in characters (Unicode code points, as Python's len) */
  chars: number[];
  pred: number;
  predNorm: number;
  predToken: number;
  predMi: number;
  /** context tokens dropped from the front to fit the window */
  truncated: number;
}

export interface Accuracy {
  correct: number;
  value: number;
  /** 95% Wilson score interval */
  low: number;
  high: number;
}

export interface ChoiceResult {
  tasks: number;
  /** mean of 1/(number of endings): what guessing scores */
  chance: number;
  acc: Accuracy;
  accNorm: Accuracy;
  accToken: Accuracy;
  accMi: Accuracy;
  /** tasks whose context was cut from the front to fit */
  truncatedTasks: number;
  scores: TaskScore[];
}

function argmaxFirst(v: number[]): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function accuracy(correct: number, n: number): Accuracy {
  const w = wilsonInterval(correct, n);
  return { correct, value: correct / n, low: w.low, high: w.high };
}

/**
 * Score every task. Each ending is tokenized as lm-evaluation-harness does it: the whole text context+delimiter+
 * ending with BOS, the context alone with BOS, and the ending's tokens are the whole's tokens past the context's
 * count. The tokens the endings share are evaluated once; each ending then continues from there.
 */
export function scoreTasks(model: Model, tasks: ChoiceTask[], opts: {
  contextSize?: number;
  forward?: Pick<ForwardOptions, "skipLayers" | "skipAttention" | "skipFfn">;
  onProgress?: (done: number, total: number) => void;
} = {}): ChoiceResult {
  const n = opts.contextSize ?? Math.min(512, model.config.trainContext);
  if (n > model.config.trainContext) throw new Error(`context size ${n} exceeds the model's context length ${model.config.trainContext}`);
  const tok = model.tokenizer;
  const addBos = tok.addBos;
  const vocab = model.config.vocabSize;
  // the unconditional score's only context; models without a BOS token still have its id
  const bos = tok.bosId;
  const ctx = model.createContext({ contextSize: n });
  const scores: TaskScore[] = [];
  // an ending's score without the context depends only on its text: tasks that share endings (a true ending is
  // another task's distractor) compute it once
  const alone = new Map<string, number>();
  let truncatedTasks = 0;
  tasks.forEach((task, ti) => {
    const contextIds = tok.encode(task.context, { addBos });
    let wholes = task.endings.map((e) => tok.encode(task.context + task.delimiter + e, { addBos }));
    let ctxLen = contextIds.length;
    wholes.forEach((w, ei) => {
      if (w.length <= ctxLen) throw new Error(`task ${ti + 1}, ending ${ei + 1}: the ending adds no tokens after the context`);
    });
    // keep the last n tokens (BOS first when the model wants one), as the harness keeps the last max_length
    const longest = Math.max(...wholes.map((w) => w.length));
    let truncated = 0;
    if (longest > n) {
      truncated = longest - n;
      const keepFrom = (addBos ? 1 : 0) + truncated;
      if (keepFrom >= ctxLen) throw new Error(`task ${ti + 1}: an ending is longer than the ${n}-token window; use a larger --ctx`);
      wholes = wholes.map((w) => (addBos ? [w[0], ...w.slice(keepFrom)] : w.slice(keepFrom)));
      ctxLen -= truncated;
      truncatedTasks++;
    }
    // shared prefix of every whole, up to the context (the first ending token's logits come from position ctxLen−1)
    let shared = 0;
    while (shared < ctxLen && wholes.every((w) => w[shared] === wholes[0][shared])) shared++;
    ctx.reset();
    const warm = Math.max(0, shared - 1);
    if (warm > 0) ctx.eval(wholes[0].slice(0, warm), { ...opts.forward, logits: "none" });
    const ll: number[] = [], counts: number[] = [];
    for (const w of wholes) {
      ctx.truncate(warm);
      const logits = ctx.eval(w.slice(warm), { ...opts.forward, logits: "all" });
      let sum = 0;
      for (let j = ctxLen; j < w.length; j++) {
        const row = j - 1 - warm;
        sum += logSoftmaxAt(logits, row * vocab, vocab, w[j]);
      }
      ll.push(sum);
      counts.push(w.length - ctxLen);
    }
    const unconditional = task.endings.map((e) => {
      let sum = alone.get(e);
      if (sum !== undefined) return sum;
      const ids = [bos, ...tok.encode(e, { addBos: false })].slice(0, n);
      ctx.reset();
      const logits = ctx.eval(ids, { ...opts.forward, logits: "all" });
      sum = 0;
      for (let j = 1; j < ids.length; j++) sum += logSoftmaxAt(logits, (j - 1) * vocab, vocab, ids[j]);
      alone.set(e, sum);
      return sum;
    });
    const chars = task.endings.map((e) => [...e].length);
    scores.push({
      logLikelihood: ll, unconditional, tokens: counts, chars, truncated,
      pred: argmaxFirst(ll), predNorm: argmaxFirst(ll.map((v, i) => v / chars[i])), predToken: argmaxFirst(ll.map((v, i) => v / counts[i])),
      predMi: argmaxFirst(ll.map((v, i) => v - unconditional[i])),
    });
    opts.onProgress?.(ti + 1, tasks.length);
  });
  const count = (pick: (s: TaskScore) => number) => scores.filter((s, i) => pick(s) === tasks[i].label).length;
  const N = tasks.length;
  return {
    tasks: N,
    chance: tasks.reduce((a, t) => a + 1 / t.endings.length, 0) / N,
    acc: accuracy(count((s) => s.pred), N),
    accNorm: accuracy(count((s) => s.predNorm), N),
    accToken: accuracy(count((s) => s.predToken), N),
    accMi: accuracy(count((s) => s.predMi), N),
    truncatedTasks,
    scores,
  };
}
