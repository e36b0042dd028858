// TinyStories-style text split into stories (each followed by a line `<|endoftext|>`), and the one fixed split
// into calibration and held-out evaluation stories that GPTQ and pruning share. Portable; no file reading here.

/** The line that ends each story in the TinyStories text files. */
export const STORY_END = "<|endoftext|>";

/** The stories of a text, in order, trimmed; empty pieces (e.g. after the last marker) are dropped. */
export function splitStories(text: string): string[] {
  return text.split(STORY_END).map((s) => s.trim()).filter((s) => s.length > 0);
}

/** First 80% of the stories for calibration, the last 20% held out for evaluation; the two never overlap. */
export function calibrationSplit(stories: string[]): { calib: string[]; eval: string[] } {
  const nCalib = Math.round(stories.length * 0.8);
  return { calib: stories.slice(0, nCalib), eval: stories.slice(nCalib) };
}
