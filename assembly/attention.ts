// Causal grouped-query attention over one layer's KV cache (f32, or f16 / q8_0 keys and values through
// attention_kv), for t query rows starting at position pos0.
// Scores are q.k / sqrt(headSize) (or q.k times a given scale, optionally soft-capped), softmaxed over positions
// 0..pos (or the last `window` of them); the output is the score-weighted sum of v.
// Not RoPE (applied before), not the cache write (the host copies k, v rows in).
//
// Built for small heads and long windows: scores are made four positions at a time (four dot products reduced
// by one transpose), exp is the vector polynomial of math.ts, and the weighted sum of v keeps whole output
// chunks in registers while it walks the positions. The query heads of a kv group are handled together, so the
// K rows of a block of positions are read from memory once and reused from L1 by every head of the group.
import { exp_f32x4 } from "./math";
import { fmadd, f16_at, hsum_f32x4, hsum_i32x4, QK, Q8_0_BYTES, TABLE, T_ONES16, T_F16MASK, T_F16SCALE, f16x8_even, f16x8_odd } from "./common";
import { q8dot, xprep0, xprep1, xprep2, xprep3 } from "./matmul_q8";

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
  attention_f32(out, q, kCache, vCache, scores, nHeads, nKvHeads, headSize, pos0, t, g0, g1,
    <f32>1.0 / Mathf.sqrt(<f32>headSize), 0, 0);
}

/**
 * attention_range() with its options, over F32 caches (attention_kv's F32/F32 path): scores are q.k * scale
 * (q.k * (1/softcap), tanh, times softcap, then times scale when softcap > 0: Gemma 2's capping as llama.cpp orders
 * it), and with window > 0 query position p sees only positions p - window < p0 <= p (sliding-window layers).
 */
function attention_f32(out: usize, q: usize, kCache: usize, vCache: usize, scores: usize,
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

// ---- typed caches: attention_kv ----------------------------------------------------------------------------
// What llama.cpp's CPU backend computes with that cache type (ggml mul_mat and soft_max, the non-flash graph of
// build_attn_mha; a q8_0 V cache, which needs flash attention there, as flash_attn_ext_f16 does it):
// - f16 K: q arrives rounded to f16 (F16's vec_dot_type is F16, so mul_mat converts q first); products of two
//   f16 are exact in f32, summed in f32.
// - q8_0 K: q arrives quantized to q8_0 blocks (quantize_row_q8_0); ggml_vec_dot_q8_0_q8_0: integer dot per
//   block times d_k·d_q, summed in f32.
// - f16 V: the softmax is normalized and rounded to f16 before kqv's mul_mat (again F16's vec_dot_type), then
//   f16·f16 products summed in f32.
// - q8_0 V: rows dequantized to f32 (d·q), weighted by exp(s − max) in f32, divided by the sum at the end.
// The ggml type ids select the paths (0 F32, 1 F16, 8 Q8_0); q is in K's type: f32, f16 bits or block_q8_0 rows.

const T_F32: i32 = 0;
const T_F16: i32 = 1;
const T_Q8_0: i32 = 8;

/** bytes of one head's headSize values in a cache (or q) of ggml type ty */
// @ts-ignore: decorator
@inline function headBytesOf(ty: i32, headSize: i32): usize {
  return ty == T_F16 ? <usize>headSize << 1 : ty == T_Q8_0 ? <usize>(headSize / QK) * Q8_0_BYTES : <usize>headSize << 2;
}

/** f16 bits in the low half of each i32 lane -> f32, exact for normal and subnormal values (common.ts f16_to_f32) */
// @ts-ignore: decorator
@inline function f16x4_to_f32(h: v128): v128 {
  const o = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const normal = i32x4.ne(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0));
  const sub = f32x4.sub(i32x4.add(o, i32x4.splat(0x38800000)), f32x4.splat(reinterpret<f32>(0x38800000)));
  const f = v128.bitselect(i32x4.add(o, i32x4.splat(0x38000000)), sub, normal);
  // exponent 31 (Inf, NaN) re-biased is 2^16·1.m: all ones make it Inf or NaN again
  const special = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  return v128.or(v128.or(f, v128.and(special, i32x4.splat(0x7f800000))), i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/**
 * Non-negative f32 lanes rounded to the nearest f16 (ties to even), returned as f32: the softmax weights as
 * ggml's F32 -> F16 conversion leaves them (below 2^-14 f16 is subnormal: multiples of 2^-24, which adding and
 * removing 0.5 rounds to; above, the mantissa is cut to 10 bits with ties to even).
 */
// @ts-ignore: decorator
@inline function round_f16_pos(x: v128): v128 {
  const half = f32x4.splat(0.5);
  const tiny = f32x4.sub(f32x4.add(x, half), half);
  const lsb = v128.and(i32x4.shr_u(x, 13), i32x4.splat(1));
  const normal = v128.and(i32x4.add(x, i32x4.add(i32x4.splat(0x0fff), lsb)), i32x4.splat(0xffffe000));
  return v128.bitselect(tiny, normal, f32x4.lt(x, f32x4.splat(reinterpret<f32>(0x38800000))));
}

/** q . k over headSize f16 (q and k as f16 bits), products exact, summed in f32 */
// @ts-ignore: decorator
@inline function dot_f16(q: usize, k: usize, headSize: i32, mask: v128, sc: v128): f32 {
  let a = f32x4.splat(0), b = f32x4.splat(0);
  let d = 0;
  for (; d + 8 <= headSize; d += 8) {
    const qv = v128.load(q + (<usize>d << 1)), kv = v128.load(k + (<usize>d << 1));
    a = f32x4.add(a, f32x4.mul(f16x8_even(qv, mask, sc), f16x8_even(kv, mask, sc)));
    b = f32x4.add(b, f32x4.mul(f16x8_odd(qv, mask, sc), f16x8_odd(kv, mask, sc)));
  }
  let s = hsum_f32x4(f32x4.add(a, b));
  for (; d < headSize; d++) s += f16_at(q + (<usize>d << 1)) * f16_at(k + (<usize>d << 1));
  return s;
}

/** q . k over headSize/32 block_q8_0 of each (ggml_vec_dot_q8_0_q8_0) */
// @ts-ignore: decorator
@inline function dot_q8_0(q: usize, k: usize, nb: i32, ones: v128): f32 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const xq0 = v128.load(q, 2), xq1 = v128.load(q, 18);
    const r = q8dot(v128.load(k, 2), v128.load(k, 18), xprep0(xq0, xq1), xprep1(xq0, xq1), xprep2(xq0, xq1), xprep3(xq0, xq1), ones);
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.splat(f16_at(k) * f16_at(q))));
    q += Q8_0_BYTES; k += Q8_0_BYTES;
  }
  return hsum_f32x4(acc);
}

/** sc[h·sp + p] = scale · q_h . k[p] for the group's heads, K of type kType (not F32), rows kvRow bytes apart */
// @ts-ignore: decorator
@inline function scores_typed(sc: usize, sp: usize, q: usize, qHead: usize, group: i32, k: usize, kvRow: usize,
                              headSize: i32, np: i32, scale: f32, kType: i32): void {
  const mask = v128.load(TABLE + T_F16MASK), s16 = v128.load(TABLE + T_F16SCALE), ones = v128.load(TABLE + T_ONES16);
  const nb = headSize / QK;
  for (let p = 0; p < np; p++) {
    const kp = k + <usize>p * kvRow;
    for (let h = 0; h < group; h++) {
      const qh = q + <usize>h * qHead;
      const s = kType == T_F16 ? dot_f16(qh, kp, headSize, mask, s16) : dot_q8_0(qh, kp, nb, ones);
      store<f32>(sc + ((<usize>h * sp + <usize>p) << 2), s * scale);
    }
  }
}

/** o[0..headSize) = sum_p w[p] v[p] with f16 V rows (kvRow bytes apart) and weights already rounded to f16 */
// @ts-ignore: decorator
@inline function weighted_sum_f16(o: usize, w: usize, v: usize, kvRow: usize, headSize: i32, np: i32): void {
  let d = 0;
  for (; d + 8 <= headSize; d += 8) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
    let vp = v + (<usize>d << 1), wp = w;
    for (let p = 0; p < np; p++) {
      const ws = v128.load32_splat(wp);
      const hv = v128.load(vp);
      // products of two f16 are exact in f32: a multiply then an add is the same as a fused one
      a0 = f32x4.add(a0, f32x4.mul(ws, f16x4_to_f32(i32x4.extend_low_i16x8_u(hv))));
      a1 = f32x4.add(a1, f32x4.mul(ws, f16x4_to_f32(i32x4.extend_high_i16x8_u(hv))));
      vp += kvRow; wp += 4;
    }
    v128.store(o + (<usize>d << 2), a0);
    v128.store(o + (<usize>d << 2), a1, 16);
  }
  for (; d < headSize; d++) {
    let a: f32 = 0;
    let vp = v + (<usize>d << 1);
    for (let p = 0; p < np; p++) {
      a += load<f32>(w + (<usize>p << 2)) * f16_at(vp);
      vp += kvRow;
    }
    store<f32>(o + (<usize>d << 2), a);
  }
}

/** the 8 i8 at p (of a block_q8_0's 32) as two f32x4 times d */
// @ts-ignore: decorator
@inline function deq8(p: usize, dv: v128, hi: bool): v128 {
  const w = i16x8.extend_low_i8x16_s(v128.load64_zero(p));
  return f32x4.mul(f32x4.convert_i32x4_s(hi ? i32x4.extend_high_i16x8_s(w) : i32x4.extend_low_i16x8_s(w)), dv);
}

/** o[0..headSize) = inv · sum_p w[p] (d_p · q_p) with q8_0 V rows (headSize/32 blocks, rows kvRow bytes apart) */
// @ts-ignore: decorator
@inline function weighted_sum_q8_0(o: usize, w: usize, v: usize, kvRow: usize, headSize: i32, np: i32, inv: f32): void {
  const nb = headSize / QK;
  const iv = f32x4.splat(inv);
  for (let b = 0; b < nb; b++) {
    // one block (32 values) at a time in eight accumulators
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
    let vp = v + <usize>b * Q8_0_BYTES, wp = w;
    for (let p = 0; p < np; p++) {
      const ws = v128.load32_splat(wp);
      const dv = f32x4.splat(f16_at(vp));
      const qs = vp + 2;
      a0 = fmadd(ws, deq8(qs, dv, false), a0); a1 = fmadd(ws, deq8(qs, dv, true), a1);
      a2 = fmadd(ws, deq8(qs + 8, dv, false), a2); a3 = fmadd(ws, deq8(qs + 8, dv, true), a3);
      a4 = fmadd(ws, deq8(qs + 16, dv, false), a4); a5 = fmadd(ws, deq8(qs + 16, dv, true), a5);
      a6 = fmadd(ws, deq8(qs + 24, dv, false), a6); a7 = fmadd(ws, deq8(qs + 24, dv, true), a7);
      vp += kvRow; wp += 4;
    }
    const op = o + (<usize>b * QK << 2);
    v128.store(op, f32x4.mul(a0, iv), 0); v128.store(op, f32x4.mul(a1, iv), 16);
    v128.store(op, f32x4.mul(a2, iv), 32); v128.store(op, f32x4.mul(a3, iv), 48);
    v128.store(op, f32x4.mul(a4, iv), 64); v128.store(op, f32x4.mul(a5, iv), 80);
    v128.store(op, f32x4.mul(a6, iv), 96); v128.store(op, f32x4.mul(a7, iv), 112);
  }
}

/** s[0..np) <- round_f16(s · inv) in place (np rounded up to 4 lanes: the scratch rows are padded) */
// @ts-ignore: decorator
@inline function normalize_f16(s: usize, np: i32, inv: f32): void {
  const iv = f32x4.splat(inv);
  for (let p = 0; p < np; p += 4) {
    const a = s + (<usize>p << 2);
    v128.store(a, round_f16_pos(f32x4.mul(v128.load(a), iv)));
  }
}

/**
 * Causal GQA for the kv heads g0 <= g < g1 over caches of ggml types kType and vType (0 F32, 1 F16, 8 Q8_0; Q8_0
 * needs headSize % 32 == 0) with q in K's type (f32 rows, f16 bits, or block_q8_0 rows of nHeads·headSize values):
 * scores q.k * scale, soft-capped at softcap (0: none), over the last window positions (0: all), as attention_f32.
 */
export function attention_kv(out: usize, q: usize, kCache: usize, vCache: usize, scores: usize,
                             nHeads: i32, nKvHeads: i32, headSize: i32, pos0: i32, t: i32, g0: i32, g1: i32,
                             scale: f32, window: i32, softcap: f32, kType: i32, vType: i32): void {
  if (kType == T_F32 && vType == T_F32) {
    attention_f32(out, q, kCache, vCache, scores, nHeads, nKvHeads, headSize, pos0, t, g0, g1, scale, window, softcap);
    return;
  }
  const group = nHeads / nKvHeads;
  const kHead = headBytesOf(kType, headSize), vHead = headBytesOf(vType, headSize);
  const kRow = kHead * <usize>nKvHeads, vRow = vHead * <usize>nKvHeads;
  const outHead = <usize>headSize << 2;
  const first = softcap > 0 ? <f32>1.0 / softcap : scale;
  for (let j = 0; j < t; j++) {
    const end = pos0 + j + 1;
    const start = window > 0 && end > window ? end - window : 0;
    const np = end - start;
    const sp = <usize>((np + 3) & ~3);
    const kc = kCache + <usize>start * kRow, vc = vCache + <usize>start * vRow;
    for (let g = g0; g < g1; g++) {
      const qg = q + (<usize>(j * nHeads + g * group)) * kHead;
      if (kType == T_F32) scores_group(scores, sp, qg, kHead, group, kc + <usize>g * kHead, kRow, headSize, np, first);
      else scores_typed(scores, sp, qg, kHead, group, kc + <usize>g * kHead, kRow, headSize, np, first, kType);
      if (softcap > 0) cap_scores(scores, sp, group, np, softcap, scale);
      for (let h = 0; h < group; h++) {
        const sc = scores + ((<usize>h * sp) << 2);
        const o = out + (<usize>(j * nHeads + g * group + h)) * outHead;
        const vg = vc + <usize>g * vHead;
        const sum = exp_shift_sum(sc, np);
        if (vType == T_F16) {
          // ggml's soft_max scales by 1/sum in f32 (the sum itself in f64)
          for (let p = np; p < <i32>sp; p++) store<f32>(sc + (<usize>p << 2), 0);
          normalize_f16(sc, np, <f32>(1.0 / sum));
          weighted_sum_f16(o, sc, vg, vRow, headSize, np);
        } else if (vType == T_Q8_0) {
          weighted_sum_q8_0(o, sc, vg, vRow, headSize, np, <f32>(1.0 / sum));
        } else {
          weighted_sum(o, sc, vg, vRow, headSize, np, <f32>(1.0 / sum));
        }
      }
    }
  }
}
