// The chat-template renderer's own process (started by template-sandbox.ts): parses one Jinja template and renders
// it on request, over the IPC channel. It holds nothing else, so a template that loops, recurses or allocates
// without end can only hang or kill this process, never the server. Node-only; not the sandbox's policy.
import { Template } from "@huggingface/jinja";

export type ToChild =
  | { type: "init"; source: string }
  | { type: "render"; id: number; context: Record<string, unknown>; maxChars: number };

export type FromChild =
  | { type: "booted" }
  | { type: "ready" }
  | { type: "parse-error"; message: string }
  | { type: "result"; id: number; text: string }
  | { type: "error"; id: number; message: string; output?: boolean };

/** Messages from template code go back cut short: an exception's text is the template author's to choose. */
const clip = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}…` : s);

const send = (m: FromChild) => process.send!(m);
let template: Template | undefined;

process.on("message", (m: ToChild) => {
  if (m.type === "init") {
    try {
      template = new Template(m.source);
      send({ type: "ready" });
    } catch (e) {
      send({ type: "parse-error", message: clip((e as Error).message ?? String(e)) });
    }
    return;
  }
  try {
    const text = template!.render(m.context);
    if (text.length > m.maxChars) {
      send({ type: "error", id: m.id, output: true, message: `the template produced ${text.length} characters, over the limit of ${m.maxChars}` });
    } else {
      send({ type: "result", id: m.id, text });
    }
  } catch (e) {
    send({ type: "error", id: m.id, message: clip((e as Error)?.message ?? String(e)) });
  }
});
// the server went away: nothing is left to render for
process.on("disconnect", () => process.exit(0));
send({ type: "booted" });
