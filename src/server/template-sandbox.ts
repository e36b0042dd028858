// A chat template is code from whoever made the model file, so the server renders it in a child process with a
// deadline, a heap cap and an output cap (template-child.ts). Renders run one at a time; a render that misses its
// deadline kills the child, which is started again for the next one. Node-only; not the chat prompt format (chat.ts).
//
// Why a process and not a worker thread: measured on Node 20, a worker with resourceLimits still takes the whole
// server down when a template allocates past the limit in one step (`range(100000000)` in a for loop builds a
// 10^8-element array: V8's fatal out-of-memory handler aborts the process). A step-counting renderer would need a
// fork of @huggingface/jinja and still could not interrupt one such builtin call. A child process contains both.
import { fork, type ChildProcess } from "node:child_process";
import type { FromChild, ToChild } from "./template-child.js";

export interface SandboxLimits {
  /** a render (or the parse) that takes longer is stopped */
  timeoutMs: number;
  /** the renderer's V8 heap, in MiB */
  heapMb: number;
}

/** Why a template could not be rendered: the template itself failed, or it hit one of the limits. */
export class TemplateError extends Error {
  constructor(message: string, readonly reason: "template" | "timeout" | "memory" | "output" | "crashed") {
    super(message);
    this.name = "TemplateError";
  }
}

interface Job {
  context: Record<string, unknown>;
  maxChars: number;
  resolve: (text: string) => void;
  reject: (e: Error) => void;
}

const CHILD = new URL("./template-child.js", import.meta.url);
/** how long a fresh renderer process may take to start (not the template's deadline: no template code runs yet) */
const BOOT_MS = 20_000;

export class TemplateSandbox {
  private child: ChildProcess | undefined;
  private starting: Promise<ChildProcess> | undefined;
  private readonly queue: Job[] = [];
  private busy = false;
  private closed = false;
  private nextId = 1;

  private constructor(private readonly source: string, readonly limits: SandboxLimits) {}

  /** Start the renderer and parse the template in it; rejects with a TemplateError if the template does not parse. */
  static async start(source: string, limits: SandboxLimits): Promise<TemplateSandbox> {
    const s = new TemplateSandbox(source, limits);
    await s.process();
    return s;
  }

  /** Render with `context`; at most `maxChars` characters of output. */
  render(context: Record<string, unknown>, maxChars: number): Promise<string> {
    if (this.closed) return Promise.reject(new TemplateError("the template renderer is closed", "crashed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ context, maxChars, resolve, reject });
      this.pump();
    });
  }

  close(): void {
    this.closed = true;
    this.child?.kill("SIGKILL");
    this.child = undefined;
    for (const j of this.queue.splice(0)) j.reject(new TemplateError("the server is shutting down", "crashed"));
  }

  private pump(): void {
    if (this.busy || this.queue.length === 0 || this.closed) return;
    this.busy = true;
    const job = this.queue.shift()!;
    this.run(job).then(job.resolve, job.reject).finally(() => { this.busy = false; this.pump(); });
  }

  private async run(job: Job): Promise<string> {
    const child = await this.process();
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const finish = (e: Error | undefined, text?: string) => {
        clearTimeout(timer);
        child.off("message", onMessage);
        child.off("exit", onExit);
        if (e) reject(e); else resolve(text!);
      };
      const onMessage = (m: FromChild) => {
        if (m.type === "result" && m.id === id) finish(undefined, m.text);
        else if (m.type === "error" && m.id === id) finish(new TemplateError(m.message, m.output ? "output" : "template"));
      };
      const onExit = (code: number | null, signal: string | null) => { finish(this.died(code, signal)); this.respawn(); };
      const timer = setTimeout(() => {
        this.kill(child);
        finish(new TemplateError(`the template did not finish within ${this.limits.timeoutMs} ms`, "timeout"));
        this.respawn();
      }, this.limits.timeoutMs);
      child.on("message", onMessage);
      child.once("exit", onExit);
      child.send({ type: "render", id, context: job.context, maxChars: job.maxChars } satisfies ToChild);
    });
  }

  private died(code: number | null, signal: string | null): TemplateError {
    // V8 aborts (SIGABRT) when the heap limit is reached
    if (signal === "SIGABRT" || code === 134) return new TemplateError(`the template used more than its ${this.limits.heapMb} MiB of memory`, "memory");
    return new TemplateError(`the template renderer stopped (${signal ?? `exit code ${code}`})`, "crashed");
  }

  /** Start the next renderer now, so the request after a killed one does not wait for a process to boot. */
  private respawn(): void {
    if (!this.closed) this.process().catch(() => {});
  }

  private kill(child: ChildProcess): void {
    if (this.child === child) this.child = undefined;
    child.kill("SIGKILL");
  }

  /** The running renderer, started (and the template parsed in it, within the deadline) if there is none. */
  private process(): Promise<ChildProcess> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return Promise.resolve(this.child);
    return (this.starting ??= this.spawn().finally(() => { this.starting = undefined; }));
  }

  private spawn(): Promise<ChildProcess> {
    const child = fork(CHILD, [], {
      execArgv: [`--max-old-space-size=${this.limits.heapMb}`],
      // its stderr would carry V8's out-of-memory report; the exit status says enough
      stdio: ["ignore", "ignore", "ignore", "ipc"],
      serialization: "advanced",
    });
    // neither the process nor its channel keeps the server alive; a pending render holds a timer instead
    child.unref();
    child.channel?.unref();
    return new Promise<ChildProcess>((resolve, reject) => {
      let timer = setTimeout(() => fail(new TemplateError(`the template renderer did not start within ${BOOT_MS} ms`, "crashed")), BOOT_MS);
      const done = () => { clearTimeout(timer); child.off("message", onMessage); child.off("exit", onExit); child.off("error", onError); };
      const fail = (e: Error) => { done(); child.kill("SIGKILL"); reject(e); };
      const onMessage = (m: FromChild) => {
        if (m.type === "booted") {
          // the template's own code runs from here on: its parse gets the render deadline
          clearTimeout(timer);
          timer = setTimeout(() => fail(new TemplateError(`the template did not parse within ${this.limits.timeoutMs} ms`, "timeout")), this.limits.timeoutMs);
          child.send({ type: "init", source: this.source } satisfies ToChild);
        } else if (m.type === "ready") {
          done();
          if (this.closed) { child.kill("SIGKILL"); reject(new TemplateError("the template renderer is closed", "crashed")); return; }
          this.child = child;
          resolve(child);
        } else if (m.type === "parse-error") {
          fail(new TemplateError(`it does not parse: ${m.message}`, "template"));
        }
      };
      const onExit = (code: number | null, signal: string | null) => fail(this.died(code, signal));
      const onError = (e: Error) => fail(new TemplateError(`the template renderer could not start: ${e.message}`, "crashed"));
      child.on("message", onMessage);
      child.once("exit", onExit);
      child.once("error", onError);
    });
  }
}
