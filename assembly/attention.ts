// Causal grouped-query attention over one layer's KV cache (f32), for t query rows starting at position pos0.
// Scores are q.k / sqrt(headSize) (or q.k times a given scale, optionally soft-capped), softmaxed over positions
// 0..pos (or the last `window` of them); the output is the score-weighted sum of v.
// Not RoPE (applied before), not the cache write (the host copies k, v rows in).
//
// Built for small heads and long windows: scores are made four positions at a time (four dot products reduced
// by one transpose), exp is the vector polynomial of math.ts, and the weighted sum of v keeps whole output
// chunks in registers while it walks the positions. The query heads of a kv group are handled together, so the
// K rows of a block of positions are read from memory once and reused from L1 by every head of the group.
import { exp_f32x4 } from "./math";
import { fmadd } from "./common";

/** [sum a0, sum a1, sum a2, sum a3]: four horizontal sums with one 4x4 transpose */
// @ts-ignore: decorator
@inline function hsum4x4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const t0 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 4, 1, 5), v128.shuffle<f32>(a0, a1, 2, 6, 3, 7));
  const t1 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 4, 1, 5), v128.shuffle<f32>(a2, a3, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(t0, t1, 0, 1, 4, 5), v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
}

/** q . k over headSize f32 (any size), scalar tail included */
// @ts-ignore: decorator
@inline function dot_row(q: usize, k: usize, headSize: i32): f32 {
  let a = f32x4.splat(0);
  let d = 0;
  let off: usize = 0;
  for (; d + 4 <= headSize; d += 4) {
    a = fmadd(v128.load(q + off), v128.load(k + off), a);
    off += 16;
  }
  let s = (f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1)) + (f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3));
  for (; d < headSize; d++) {
    s += load<f32>(q + off) * load<f32>(k + off);
    off += 4;
  }
  return s;
}

/**
 * sc[p] = scale * q . k[p] for p < np, the group's heads at q, q + headBytes, ... writing rows sp floats apart.
 * k points at position 0 of this kv head; rows are kvRow bytes apart.
 */
// @ts-ignore: decorator
@inline function scores_group(sc: usize, sp: usize, q: usize, headBytes: usize, group: i32, k: usize, kvRow: usize,
                              headSize: i32, np: i32, scale: f32): void {
  const sv = f32x4.splat(scale);
  const hs4 = headSize & ~3;
  let p = 0;
  for (; p + 4 <= np; p += 4) {
    const k0 = k + <usize>p * kvRow, k1 = k0 + kvRow, k2 = k1 + kvRow, k3 = k2 + kvRow;
    for (let h = 0; h < group; h++) {
      const qp = q + <usize>h * headBytes;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let off: usize = 0;
      for (let d = 0; d < hs4; d += 4) {
        const qv = v128.load(qp + off);
        a0 = fmadd(qv, v128.load(k0 + off), a0);
        a1 = fmadd(qv, v128.load(k1 + off), a1);
        a2 = fmadd(qv, v128.load(k2 + off), a2);
        a3 = fmadd(qv, v128.load(k3 + off), a3);
        off += 16;
      }
      let s = hsum4x4(a0, a1, a2, a3);
      if (hs4 < headSize) {
        let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
        for (let d = hs4; d < headSize; d++) {
          const qd = load<f32>(qp + off);
          t0 += qd * load<f32>(k0 + off); t1 += qd * load<f32>(k1 + off);
          t2 += qd * load<f32>(k2 + off); t3 += qd * load<f32>(k3 + off);
          off += 4;
        }
        s = f32x4.add(s, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(t0), 1, t1), 2, t2), 3, t3));
      }
      v128.store(sc + (<usize>h * sp + <usize>p) * 4, f32x4.mul(s, sv));
    }
  }
  for (; p < np; p++) {
    const kp = k + <usize>p * kvRow;
    for (let h = 0; h < group; h++) {
      store<f32>(sc + (<usize>h * sp + <usize>p) * 4, dot_row(q + <usize>h * headBytes, kp, headSize) * scale);
    }
  }
}

/** s[0..np) <- exp(s - max s); returns the sum (f32 lanes, then f64 across vectors) */
// @ts-ignore: decorator
@inline function exp_shift_sum(s: usize, np: i32): f64 {
  const n4 = np & ~3;
  let mv = f32x4.splat(-Infinity);
  for (let p = 0; p < n4; p += 4) mv = f32x4.max(mv, v128.load(s + (<usize>p << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (let p = n4; p < np; p++) m = max(m, load<f32>(s + (<usize>p << 2)));
  const msplat = f32x4.splat(m);
  let acc = f32x4.splat(0);
  for (let p = 0; p < n4; p += 4) {
    const a = s + (<usize>p << 2);
    const e = exp_f32x4(f32x4.sub(v128.load(a), msplat));
    v128.store(a, e);
    acc = f32x4.add(acc, e);
  }
  let sum: f64 = <f64>((f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1)) + (f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3)));
  for (let p = n4; p < np; p++) {
    const a = s + (<usize>p << 2);
    const e = f32x4.extract_lane(exp_f32x4(f32x4.splat(load<f32>(a) - m)), 0);
    store<f32>(a, e);
    sum += <f64>e;
  }
  return sum;
}

/** o[0..headSize) = inv * sum_p w[p] v[p], v rows kvRow bytes apart; headSize is walked in 16/8/4/1-wide chunks */
// @ts-ignore: decorator
@inline function weighted_sum(o: usize, w: usize, v: usize, kvRow: usize, headSize: i32, np: i32, inv: f32): void {
  const iv = f32x4.splat(inv);
  let d = 0;
  // 16 floats (a cache line of v) per pass: four independent accumulators
  for (; d + 16 <= headSize; d += 16) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let vp = v + (<usize>d << 2);
    let wp = w;
    for (let p = 0; p < np; p++) {
      const ws = v128.load32_splat(wp);
      a0 = fmadd(ws, v128.load(vp, 0), a0);
      a1 = fmadd(ws, v128.load(vp, 16), a1);
      a2 = fmadd(ws, v128.load(vp, 32), a2);
      a3 = fmadd(ws, v128.load(vp, 48), a3);
      vp += kvRow; wp += 4;
    }
    const op = o + (<usize>d << 2);
    v128.store(op, f32x4.mul(a0, iv), 0);
    v128.store(op, f32x4.mul(a1, iv), 16);
    v128.store(op, f32x4.mul(a2, iv), 32);
    v128.store(op, f32x4.mul(a3, iv), 48);
  }
  // 8 floats: two positions per step so four accumulators stay independent
  for (; d + 8 <= headSize; d += 8) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
    let vp = v + (<usize>d << 2);
    let wp = w;
    let p = 0;
    for (; p + 2 <= np; p += 2) {
      const w0 = v128.load32_splat(wp), w1 = v128.load32_splat(wp, 4);
      const vq = vp + kvRow;
      a0 = fmadd(w0, v128.load(vp, 0), a0);
      a1 = fmadd(w0, v128.load(vp, 16), a1);
      b0 = fmadd(w1, v128.load(vq, 0), b0);
      b1 = fmadd(w1, v128.load(vq, 16), b1);
      vp += kvRow << 1; wp += 8;
    }
    if (p < np) {
      const w0 = v128.load32_splat(wp);
      a0 = fmadd(w0, v128.load(vp, 0), a0);
      a1 = fmadd(w0, v128.load(vp, 16), a1);
    }
    const op = o + (<usize>d << 2);
    v128.store(op, f32x4.mul(f32x4.add(a0, b0), iv), 0);
    v128.store(op, f32x4.mul(f32x4.add(a1, b1), iv), 16);
  }
  for (; d + 4 <= headSize; d += 4) {
    let a0 = f32x4.splat(0), b0 = f32x4.splat(0);
    let vp = v + (<usize>d << 2);
    let wp = w;
    let p = 0;
    for (; p + 2 <= np; p += 2) {
      a0 = fmadd(v128.load32_splat(wp), v128.load(vp), a0);
      b0 = fmadd(v128.load32_splat(wp, 4), v128.load(vp + kvRow), b0);
      vp += kvRow << 1; wp += 8;
    }
    if (p < np) a0 = fmadd(v128.load32_splat(wp), v128.load(vp), a0);
    v128.store(o + (<usize>d << 2), f32x4.mul(f32x4.add(a0, b0), iv));
  }
  for (; d < headSize; d++) {
    let a: f32 = 0;
    let vp = v + (<usize>d << 2);
    for (let p = 0; p < np; p++) {
      a += load<f32>(w + (<usize>p << 2)) * load<f32>(vp);
      vp += kvRow;
    }
    store<f32>(o + (<usize>d << 2), a * inv);
  }
}

/**
 * attention() for the kv heads g0 <= g < g1 only (and their query heads): the unit of work a thread takes.
 * scores needs (nHeads/nKvHeads) * ((pos0 + t + 3) & ~3) f32 of scratch per caller.
 */
export function attention_range(out: usize, q: usize, kCache: usize, vCache: usize, scores: usize,
                                nHeads: i32, nKvHeads: i32, headSize: i32, pos0: i32, t: i32, g0: i32, g1: i32): void {
  attention_ext(out, q, kCache, vCache, scores, nHeads, nKvHeads, headSize, pos0, t, g0, g1,
    <f32>1.0 / Mathf.sqrt(<f32>headSize), 0, 0);
}

/**
 * attention_range() with its options: scores are q.k * scale (q.k * (1/softcap), tanh, times softcap, then times
 * scale when softcap > 0: Gemma 2's capping as llama.cpp orders it), and with window > 0 query position p sees
 * only positions p - window < p0 <= p (sliding-window layers).
 */
export function attention_ext(out: usize, q: usize, kCache: usize, vCache: usize, scores: usize,
                              nHeads: i32, nKvHeads: i32, headSize: i32, pos0: i32, t: i32, g0: i32, g1: i32,
                              scale: f32, window: i32, softcap: f32): void {
  const group = nHeads / nKvHeads;
  const kvRow = (<usize>nKvHeads * headSize) << 2;
  const headBytes = <usize>headSize << 2;
  const first = softcap > 0 ? <f32>1.0 / softcap : scale;
  for (let j = 0; j < t; j++) {
    const end = pos0 + j + 1;
    const start = window > 0 && end > window ? end - window : 0;
    const np = end - start;
    const sp = <usize>((np + 3) & ~3);
    const kc = kCache + <usize>start * kvRow, vc = vCache + <usize>start * kvRow;
    for (let g = g0; g < g1; g++) {
      const kvOff = <usize>g * headBytes;
      const qg = q + (<usize>(j * nHeads + g * group)) * headBytes;
      scores_group(scores, sp, qg, headBytes, group, kc + kvOff, kvRow, headSize, np, first);
      if (softcap > 0) cap_scores(scores, sp, group, np, softcap, scale);
      for (let h = 0; h < group; h++) {
        const sc = scores + ((<usize>h * sp) << 2);
        const inv = <f32>(1.0 / exp_shift_sum(sc, np));
        weighted_sum(out + (<usize>(j * nHeads + g * group + h)) * headBytes, sc, vc + kvOff, kvRow, headSize, np, inv);
      }
    }
  }
}

/** s <- tanh(s) * cap * scale for the group's rows of scores (rows sp floats apart, np used) */
// @ts-ignore: decorator
@inline function cap_scores(scores: usize, sp: usize, group: i32, np: i32, cap: f32, scale: f32): void {
  for (let h = 0; h < group; h++) {
    const row = scores + ((<usize>h * sp) << 2);
    for (let p = 0; p < np; p++) {
      const a = row + (<usize>p << 2);
      store<f32>(a, (Mathf.tanh(load<f32>(a)) * cap) * scale);
    }
  }
}

/**
 * out, q (t, nHeads*headSize); kCache, vCache (pos0+t, nKvHeads*headSize); scores: scratch of
 * (nHeads/nKvHeads) * ((pos0 + t + 3) & ~3) f32. Query row j sits at position pos0+j and sees positions
 * 0..pos0+j; head h reads kv head h / (nHeads/nKvHeads).
 */
export function attention(out: usize, q: usize, kCache: usize, vCache: usize, scores: usize,
                          nHeads: i32, nKvHeads: i32, headSize: i32, pos0: i32, t: i32): void {
  attention_range(out, q, kCache, vCache, scores, nHeads, nKvHeads, headSize, pos0, t, 0, nKvHeads);
}
