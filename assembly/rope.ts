// Rotary position embedding in place, llama.cpp style: theta_scale = powf(base, -2/ropeDim), theta multiplied by
// it step by step in f32, cos/sin of the f32 theta (so results track ggml_rope). rope_norm rotates interleaved
// pairs (2i, 2i+1), rope_neox rotates (i, i + ropeDim/2). Dimensions past ropeDim are left alone.

// @ts-ignore: decorator
@inline function rope(x: usize, nHeads: i32, headSize: i32, ropeDim: i32, pos0: i32, freqBase: f32, t: i32, neox: bool): void {
  const thetaScale = Mathf.pow(freqBase, <f32>-2.0 / <f32>ropeDim);
  const rowBytes = (<usize>nHeads * headSize) << 2;
  const headBytes = <usize>headSize << 2;
  const half = ropeDim >> 1;
  for (let j = 0; j < t; j++) {
    const row = x + <usize>j * rowBytes;
    let theta = <f32>(pos0 + j);
    for (let i = 0; i < half; i++) {
      // the angle is shared by every head, so cos/sin are computed once per pair index
      const c = Mathf.cos(theta), s = Mathf.sin(theta);
      const o0: usize = neox ? <usize>i << 2 : <usize>(2 * i) << 2;
      const o1: usize = neox ? <usize>(i + half) << 2 : <usize>(2 * i + 1) << 2;
      let p = row;
      for (let h = 0; h < nHeads; h++) {
        const x0 = load<f32>(p + o0), x1 = load<f32>(p + o1);
        store<f32>(p + o0, x0 * c - x1 * s);
        store<f32>(p + o1, x0 * s + x1 * c);
        p += headBytes;
      }
      theta *= thetaScale;
    }
  }
}

/** x (t, nHeads*headSize), row j at position pos0+j: rotate pairs (2i, 2i+1) for 2i < ropeDim. */
export function rope_norm(x: usize, nHeads: i32, headSize: i32, ropeDim: i32, pos0: i32, freqBase: f32, t: i32): void {
  rope(x, nHeads, headSize, ropeDim, pos0, freqBase, t, false);
}

/** x (t, nHeads*headSize), row j at position pos0+j: rotate pairs (i, i + ropeDim/2) for i < ropeDim/2. */
export function rope_neox(x: usize, nHeads: i32, headSize: i32, ropeDim: i32, pos0: i32, freqBase: f32, t: i32): void {
  rope(x, nHeads, headSize, ropeDim, pos0, freqBase, t, true);
}
