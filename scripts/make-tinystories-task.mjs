#!/usr/bin/env node
// Writes tasks/tinystories-endings.jsonl, the multiple-choice task `edgeprune eval` ships with: for each of the 200
// held-out TinyStories stories (801-1000 of ../shared/data/tinystories, the part calibration never reads) with at
// least four sentences, the context is the story without its last two sentences, and the choices are those two
// sentences against the last two sentences of three other held-out stories, in a seeded random order. Random
// chance is 25%. Run after `npm run build` (it uses the library's document split and PRNG):
//   node scripts/make-tinystories-task.mjs [../shared/data/tinystories/tinystories-validation-first1000.txt] [tasks/tinystories-endings.jsonl]
import { readFileSync, writeFileSync } from "node:fs";
import { calibrationSplit, splitDocuments } from "../dist/src/data/documents.js";
import { mulberry32 } from "../dist/src/random.js";

const SEED = 16; // issue 16
const ENDING_SENTENCES = 2;
const DISTRACTORS = 3;

const input = process.argv[2] ?? "../shared/data/tinystories/tinystories-validation-first1000.txt";
const output = process.argv[3] ?? "tasks/tinystories-endings.jsonl";

/** Sentences of a story: a run of text ending in . ! or ? (and a closing quote), followed by whitespace or the end. */
function sentences(text) {
  const out = [];
  const re = /[.!?]+["”’']?(?=\s|$)/g;
  let start = 0;
  for (let m; (m = re.exec(text)); ) {
    const end = m.index + m[0].length;
    const s = text.slice(start, end).trim();
    if (s) out.push({ text: s, start, end });
    start = end;
  }
  const rest = text.slice(start).trim();
  if (rest) out.push({ text: rest, start, end: text.length });
  return out;
}

const oneLine = (s) => s.replace(/\s+/g, " ").trim();

const stories = calibrationSplit(splitDocuments(readFileSync(input, "utf8"))).eval;
if (stories.length !== 200) throw new Error(`expected the 200 held-out stories of the 1000-story file, got ${stories.length}`);
const items = stories.map((story, i) => {
  const s = sentences(story);
  if (s.length < ENDING_SENTENCES + 2) return undefined;
  const cut = s[s.length - ENDING_SENTENCES].start;
  return { id: `tinystories-${801 + i}`, context: story.slice(0, cut).trim(), ending: oneLine(s.slice(-ENDING_SENTENCES).map((x) => x.text).join(" ")) };
}).filter(Boolean);

const rand = mulberry32(SEED);
const pick = (n) => Math.floor(rand() * n);
const lines = items.map((item, i) => {
  const endings = [item.ending];
  while (endings.length < 1 + DISTRACTORS) {
    const j = pick(items.length);
    if (j !== i && !endings.includes(items[j].ending)) endings.push(items[j].ending);
  }
  // the true ending moves to a random place
  const label = pick(endings.length);
  [endings[0], endings[label]] = [endings[label], endings[0]];
  return JSON.stringify({ id: item.id, context: item.context, endings, label });
});
writeFileSync(output, lines.join("\n") + "\n");
process.stderr.write(`wrote ${output}: ${lines.length} tasks from ${stories.length} held-out stories (${stories.length - items.length} too short), ${1 + DISTRACTORS} endings each, seed ${SEED}\n`);
