// Causal grouped-query attention over one layer's KV cache (f32), for t query rows starting at position pos0.
// Scores are q.k / sqrt(headSize), softmaxed over positions 0..pos; the output is the score-weighted sum of v.
// Not RoPE (applied before), not the cache write (the host copies k, v rows in).
import { dot_f32 } from "./matmul_f32";
import { softmax_inplace } from "./elementwise";

/**
 * out, q (t, nHeads*headSize); kCache, vCache (pos0+t, nKvHeads*headSize); scores: scratch of >= pos0+t f32.
 * Query row j sits at position pos0+j and sees positions 0..pos0+j; head h reads kv head h / (nHeads/nKvHeads).
 */
export function attention(out: usize, q: usize, kCache: usize, vCache: usize, scores: usize,
                          nHeads: i32, nKvHeads: i32, headSize: i32, pos0: i32, t: i32): void {
  const group = nHeads / nKvHeads;
  const kvRow = (<usize>nKvHeads * headSize) << 2;
  const headBytes = <usize>headSize << 2;
  const scale: f32 = <f32>1.0 / Mathf.sqrt(<f32>headSize);
  const sv = f32x4.splat(0);
  for (let j = 0; j < t; j++) {
    const np = pos0 + j + 1;
    for (let h = 0; h < nHeads; h++) {
      const qp = q + (<usize>(j * nHeads + h)) * headBytes;
      const kvOff = <usize>(h / group) * headBytes;
      for (let p = 0; p < np; p++) {
        store<f32>(scores + (<usize>p << 2), dot_f32(qp, kCache + <usize>p * kvRow + kvOff, headSize) * scale);
      }
      softmax_inplace(scores, np);
      const op = out + (<usize>(j * nHeads + h)) * headBytes;
      let k = 0;
      for (; k + 4 <= headSize; k += 4) v128.store(op + (<usize>k << 2), sv);
      for (; k < headSize; k++) store<f32>(op + (<usize>k << 2), 0);
      for (let p = 0; p < np; p++) {
        const a = load<f32>(scores + (<usize>p << 2));
        const av = f32x4.splat(a);
        const vp = vCache + <usize>p * kvRow + kvOff;
        k = 0;
        for (; k + 4 <= headSize; k += 4) {
          const o = <usize>k << 2;
          v128.store(op + o, f32x4.add(v128.load(op + o), f32x4.mul(av, v128.load(vp + o))));
        }
        for (; k < headSize; k++) {
          const o = <usize>k << 2;
          store<f32>(op + o, load<f32>(op + o) + a * load<f32>(vp + o));
        }
      }
    }
  }
}
