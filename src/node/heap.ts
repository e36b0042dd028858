// V8 heap setting for edgeprune's own Node processes: the young generation keeps its start-up size. Node-only.
// The CLI's serve and generate commands and bench/peers-edgeprune apply it; an application that embeds
// startServer or the library keeps its own V8 settings.
import * as v8 from "node:v8";

/**
 * Keep V8's young generation (new space) at its current size for the rest of the process.
 *
 * Why: V8 doubles the young generation each time the bytes that survived young collections since its last growth
 * exceed its size, up to 2 × 16 MiB on 64-bit, and shrinks it only after the process has been idle for seconds. A
 * server always has requests in flight when a collection runs, so under steady traffic its RSS climbs in steps of
 * 4, 8 and 16 MiB. Measured with test/server-load.test.ts's request mix on stories260K: new space went from 4 to 8,
 * 16 and 32 MiB over about 1600 requests, which is most of the growth a client sees. A plain node:http server shows
 * the same. Kept at the size it has when serving starts (4 MiB), young collections run about three times as often
 * (77 instead of 26 in 1000 requests of that mix, 40 ms more in all). The server allocates little per token, because
 * the work is in wasm, so the requests took as long as before.
 *
 * How: the supported flag, --max-semi-space-size, is read only when the process starts (`node
 * --max-semi-space-size=1 bin/edgeprune.js serve …` does this from outside, and a semi-space flag given to node is
 * left alone). V8 reads --semi-space-growth-factor each time it grows new space, and raises it to 2 only at
 * start-up (Heap::ConfigureHeap). Set to 1 now, each later "growth" keeps the current size.
 */
export function keepYoungGenerationSize(): void {
  // someone who sized the young generation on the node command line meant it
  const args = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  if (args.some((a) => /^--(max|min)[-_]semi[-_]space[-_]size|^--semi[-_]space[-_]growth[-_]factor/.test(a))) return;
  v8.setFlagsFromString("--semi-space-growth-factor=1");
}
