// Feature detection for the kernel builds, apart from wasm.ts so that a process that only decides (the CLI's
// re-run, bin/edgeprune.js) does not load the embedded kernels. Portable (no Node built-ins).

let relaxedSupported: boolean | undefined;

/**
 * Whether this engine has relaxed SIMD, by validating a 48-byte module whose one function returns
 * i16x8.relaxed_dot_i8x16_i7x16_s of two constants (on in Chrome, Deno and Node >= 22; Node 20 needs
 * --experimental-wasm-relaxed-simd).
 */
export function hasRelaxedSimd(): boolean {
  if (relaxedSupported === undefined) {
    const zeros = new Array<number>(16).fill(0);
    const body = [0x00, 0xfd, 0x0c, ...zeros, 0xfd, 0x0c, ...zeros, 0xfd, 0x92, 0x02, 0x0b];
    const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
      0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
      0x03, 0x02, 0x01, 0x00, // one function of type 0
      0x0a, body.length + 2, 0x01, body.length, ...body]);
    try { relaxedSupported = WebAssembly.validate(bytes); } catch { relaxedSupported = false; }
  }
  return relaxedSupported;
}
