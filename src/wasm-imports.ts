// The imports every kernel instance gets (the memory, an abort that throws), apart from wasm.ts so that a kernel
// worker (threads/worker.ts), which is sent the compiled module, does not load the embedded base64 builds that
// wasm.ts imports: ~220 KB of source text parsed and kept per worker isolate for nothing. Portable.

/** The imports every kernel instance gets: the memory and an abort that throws. */
export function kernelImports(memory: WebAssembly.Memory): WebAssembly.Imports {
  return {
    env: {
      memory,
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`wasm kernel aborted at ${line}:${col}`);
      },
    },
  };
}
