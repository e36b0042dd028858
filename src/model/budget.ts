// Limits stated before work starts: a plan of what a command will put in wasm memory (or a JS typed array), part by
// part, checked against the limit up front, so a model that does not fit gets one line naming what it needs and
// what to change, never a RangeError halfway. Portable. Not the allocator (wasm.ts).

/** one part of a memory plan: what it is, in words, and its bytes */
export interface MemoryPart {
  what: string;
  bytes: number;
}

/** "1.25 GiB" / "312.5 MiB" / "64.0 KiB" */
export function size(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  return bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** The parts, largest first, as "a 1.20 GiB + b 30.0 MiB + …" (parts under 1% of the total are summed as "other"). */
export function describe(parts: MemoryPart[]): string {
  const total = parts.reduce((a, p) => a + p.bytes, 0);
  const big = parts.filter((p) => p.bytes >= 0.01 * total).sort((a, b) => b.bytes - a.bytes);
  const rest = total - big.reduce((a, p) => a + p.bytes, 0);
  const items = big.map((p) => `${p.what} ${size(p.bytes)}`);
  if (rest > 0) items.push(`other ${size(rest)}`);
  return items.join(" + ");
}

/** The error to throw when the parts exceed the limit (undefined when they fit). */
export function overLimit(what: string, parts: MemoryPart[], limit: number, advice: string): Error | undefined {
  const total = parts.reduce((a, p) => a + p.bytes, 0);
  if (total <= limit) return undefined;
  return new Error(`${what} needs ${size(total)} of wasm memory (${describe(parts)}), over wasm32's ${size(limit)} limit; ${advice}`);
}

/** Throws overLimit's one-line error when the parts do not fit. */
export function fitsOrExplain(what: string, parts: MemoryPart[], limit: number, advice: string): void {
  const e = overLimit(what, parts, limit, advice);
  if (e) throw e;
}

/** V8's largest typed array (2^32 − 1 elements of any width in Node 20, so 4 GiB of bytes; 2^53 − 1 in later V8). */
export const MAX_TYPED_ARRAY_BYTES = 2 ** 32 - 1;
