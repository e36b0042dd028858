// Rotary position embedding in place, as ggml_rope_ext computes it: theta_scale = powf(base, -2/ropeDim), theta
// multiplied by it step by step in f32, divided by a per-pair frequency factor when given (Llama 3's rope_freqs,
// Phi-3's LongRoPE factors), scaled by freqScale (linear scaling), blended with the unscaled angle by YaRN's ramp
// when extFactor != 0, and cos/sin multiplied by attnFactor (mscale). rope_norm rotates interleaved pairs (2i, 2i+1),
// rope_neox rotates (i, i + ropeDim/2). Dimensions past ropeDim are left alone. Not attention.

/** YaRN's ramp for pair i: 1 below corrLow, 0 above corrHigh, linear between (ggml rope_yarn_ramp) */
// @ts-ignore: decorator
@inline function yarn_ramp(low: f32, high: f32, i: i32): f32 {
  const y = (<f32>i - low) / max(<f32>0.001, high - low);
  return <f32>1 - min(<f32>1, max(<f32>0, y));
}

// @ts-ignore: decorator
@inline function rope(x: usize, nHeads: i32, headSize: i32, ropeDim: i32, pos0: i32, t: i32, neox: bool,
                      freqBase: f32, freqScale: f32, extFactor: f32, attnFactor: f32, corrLow: f32, corrHigh: f32, factors: usize): void {
  const thetaScale = Mathf.pow(freqBase, <f32>-2.0 / <f32>ropeDim);
  const rowBytes = (<usize>nHeads * headSize) << 2;
  const headBytes = <usize>headSize << 2;
  const half = ropeDim >> 1;
  // YaRN's magnitude correction, the same for every pair
  let mscale = attnFactor;
  if (extFactor != 0) mscale *= <f32>1.0 + <f32>0.1 * Mathf.log(<f32>1.0 / freqScale);
  for (let j = 0; j < t; j++) {
    const row = x + <usize>j * rowBytes;
    let theta = <f32>(pos0 + j);
    for (let i = 0; i < half; i++) {
      // the angle is shared by every head, so cos/sin are computed once per pair index
      const extrap = factors ? theta / load<f32>(factors + (<usize>i << 2)) : theta;
      let th = freqScale * extrap;
      if (extFactor != 0) {
        const mix = yarn_ramp(corrLow, corrHigh, i) * extFactor;
        th = th * (<f32>1 - mix) + extrap * mix;
      }
      const c = Mathf.cos(th) * mscale, s = Mathf.sin(th) * mscale;
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
  rope(x, nHeads, headSize, ropeDim, pos0, t, false, freqBase, 1, 0, 1, 0, 0, 0);
}

/** x (t, nHeads*headSize), row j at position pos0+j: rotate pairs (i, i + ropeDim/2) for i < ropeDim/2. */
export function rope_neox(x: usize, nHeads: i32, headSize: i32, ropeDim: i32, pos0: i32, freqBase: f32, t: i32): void {
  rope(x, nHeads, headSize, ropeDim, pos0, t, true, freqBase, 1, 0, 1, 0, 0, 0);
}

/**
 * x (t, nHeads*headSize), row j at position pos0+j, rotated as ggml_rope_ext: neox != 0 for pairs (i, i+ropeDim/2);
 * factors (ropeDim/2 f32, or 0 for none) divide each pair's angle; freqScale, extFactor, attnFactor and the YaRN
 * correction range [corrLow, corrHigh] as llama.cpp's context computes them (1, 0, 1, 0, 0 for plain RoPE).
 */
export function rope_ext(x: usize, nHeads: i32, headSize: i32, ropeDim: i32, pos0: i32, t: i32, neox: i32,
                         freqBase: f32, freqScale: f32, extFactor: f32, attnFactor: f32, corrLow: f32, corrHigh: f32, factors: usize): void {
  if (neox) rope(x, nHeads, headSize, ropeDim, pos0, t, true, freqBase, freqScale, extFactor, attnFactor, corrLow, corrHigh, factors);
  else rope(x, nHeads, headSize, ropeDim, pos0, t, false, freqBase, freqScale, extFactor, attnFactor, corrLow, corrHigh, factors);
}
