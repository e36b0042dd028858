// Code blocks of a Markdown file (```lang … ```), with the line they start on and the file name their first line
// gives (`// story.mjs: …` or `<!-- index.html -->`), so that tests can run the documentation's examples as written.
import { readFileSync } from "node:fs";

export interface Snippet {
  /** the Markdown file and the line of the opening fence */
  where: string;
  lang: string;
  code: string;
  /** the file name the block's first line names, if any */
  name?: string;
}

export function snippets(file: string): Snippet[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    const code = body.join("\n") + "\n";
    const first = body[0] ?? "";
    const name = /^\/\/ ([\w.-]+\.(?:m?js|ts))\b/.exec(first)?.[1] ?? /^<!-- ([\w.-]+\.html) -->/.exec(first)?.[1];
    out.push({ where: `${file}:${start + 1}`, lang: open[1], code, name });
  }
  return out;
}
