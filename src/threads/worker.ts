// A kernel worker: instantiates the kernel module over the shared memory it is sent, then loops forever claiming
// chunks of each job from the control block (spinning briefly for the next job, then parking in Atomics.wait).
// Runs as a Node worker_threads worker or a module Web Worker (browsers, Deno). Never touches GGUF or the model.
import type { Kernels } from "../wasm.js";
import { kernelImports } from "../wasm-imports.js"; // not wasm.js: that would load the embedded kernel builds here too
import { C, runChunks } from "./share.js";

export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  index: number;
  size: number;
  /** how long to spin for the next job before parking, in ms */
  spinMs: number;
}

function loop(init: WorkerInit): void {
  const k = new WebAssembly.Instance(init.module, kernelImports(init.memory)).exports as unknown as Kernels;
  const c = new Int32Array(init.control);
  let seen = Atomics.load(c, C.gen);
  Atomics.add(c, C.ready, 1);
  for (;;) {
    // spin (cheap wake-up between the matmuls of one token), then park (between tokens, or when idle)
    let g = Atomics.load(c, C.gen);
    if (g === seen) {
      const until = performance.now() + init.spinMs;
      for (let i = 1; ; i++) {
        g = Atomics.load(c, C.gen);
        if (g !== seen) break;
        if ((i & 255) === 0 && performance.now() > until) {
          Atomics.add(c, C.parked, 1);
          Atomics.wait(c, C.gen, seen);
          Atomics.sub(c, C.parked, 1);
        }
      }
    }
    seen = g;
    if (Atomics.load(c, C.stop)) return;
    runChunks(k, c, init.index, g);
  }
}

const isNode = typeof process !== "undefined" && !!process.versions?.node && typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "undefined";
if (isNode) {
  const { parentPort } = await import("node:worker_threads");
  parentPort?.once("message", (m: WorkerInit) => loop(m));
} else {
  (globalThis as unknown as { onmessage: (e: MessageEvent<WorkerInit>) => void }).onmessage = (e) => loop(e.data);
}
