// K-quant quantizers: quantize_q4_K and quantize_q6_K, ggml's quantize_row_q4_K_ref / quantize_row_q6_K_ref (their
// searches make_qkx2_quants and make_qx_quants) in f32 step for step, so the bytes are llama.cpp's, as the scalar
// specification in src/quant/ref.ts writes them (tests compare the two byte for byte). Round-to-nearest of whole
// models (`quantize --type q4_k_m`, synth) runs here: the searches try 21 scales per 32 values, slow in JavaScript.
// Scratch is static module data, so these run on one thread at a time. Not a matmul.
import { QK_K, Q4_K_BYTES, Q6_K_BYTES, f16_to_f32, f32_to_f16 } from "./common";

// scratch: codes of a super-block, the trial codes and weights of one group, group scales and mins
const L: usize = memory.data(QK_K);
const LAUX: usize = memory.data(32);
const WEIGHTS: usize = memory.data(32 * 4, 16);
const SCALES: usize = memory.data(16 * 4, 16);
const MINS: usize = memory.data(8 * 4, 16);
// make_qkx2_quants' second result (−min)
let theMin: f32 = 0;

/** ggml's nearest_int: the low 23 bits of f32(x + 1.5·2^23) minus 2^22 */
// @ts-ignore: decorator
@inline function nearest_int(x: f32): i32 {
  return (reinterpret<i32>(x + <f32>12582912.0) & 0x7fffff) - 0x400000;
}

// @ts-ignore: decorator
@inline function clampi(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

/** make_qkx2_quants(n, nmax, x, w, L, &min, Laux, rmin, rdelta, nstep, use_mad = false); returns the scale, −min in theMin */
function make_qkx2(n: i32, nmax: i32, x: usize, w: usize, l: usize, rmin: f32, rdelta: f32, nstep: i32): f32 {
  let mn = load<f32>(x), mx = mn;
  let sumW = load<f32>(w);
  let sumX = sumW * mn;
  for (let i = 1; i < n; i++) {
    const xi = load<f32>(x + (<usize>i << 2)), wi = load<f32>(w + (<usize>i << 2));
    if (xi < mn) mn = xi;
    if (xi > mx) mx = xi;
    sumW += wi;
    sumX += wi * xi;
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    memory.fill(l, 0, n);
    theMin = -mn;
    return 0;
  }
  let iscale = <f32>nmax / (mx - mn);
  let scale = <f32>1 / iscale;
  let best: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = load<f32>(x + (<usize>i << 2));
    const q = clampi(nearest_int(iscale * (xi - mn)), 0, nmax);
    store<u8>(l + i, <u8>q);
    const diff = scale * <f32>q + mn - xi;
    best += load<f32>(w + (<usize>i << 2)) * (diff * diff);
  }
  for (let is = 0; is <= nstep; is++) {
    // the current min: it moves when a trial wins
    iscale = (rmin + rdelta * <f32>is + <f32>nmax) / (mx - mn);
    let sumL: f32 = 0, sumL2: f32 = 0, sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const xi = load<f32>(x + (<usize>i << 2));
      const q = clampi(nearest_int(iscale * (xi - mn)), 0, nmax);
      store<u8>(LAUX + i, <u8>q);
      const wl = load<f32>(w + (<usize>i << 2)) * <f32>q;
      sumL += wl;
      sumL2 += wl * <f32>q;
      sumXL += wl * xi;
    }
    const D = sumW * sumL2 - sumL * sumL;
    if (!(D > 0)) continue;
    let thisScale = (sumW * sumXL - sumX * sumL) / D;
    let thisMin = (sumL2 * sumX - sumL * sumXL) / D;
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = sumXL / sumL2;
    }
    let cur: f32 = 0;
    for (let i = 0; i < n; i++) {
      const diff = thisScale * <f32>load<u8>(LAUX + i) + thisMin - load<f32>(x + (<usize>i << 2));
      cur += load<f32>(w + (<usize>i << 2)) * (diff * diff);
    }
    if (cur < best) {
      memory.copy(l, LAUX, n);
      best = cur;
      scale = thisScale;
      mn = thisMin;
    }
  }
  theMin = -mn;
  return scale;
}

/** out: n/256 block_q4_K from x (n f32), quantize_row_q4_K_ref byte for byte (n % 256 == 0) */
export function quantize_q4_K(out: usize, x: usize, n: i32): void {
  const nb = n / QK_K;
  for (let b = 0; b < nb; b++) {
    const xb = x + (<usize>(b * QK_K) << 2);
    const o = out + <usize>b * Q4_K_BYTES;
    let maxScale: f32 = 0, maxMin: f32 = 0;
    for (let j = 0; j < 8; j++) {
      const xs = xb + (<usize>(32 * j) << 2);
      let sumX2: f32 = 0;
      for (let l = 0; l < 32; l++) { const v = load<f32>(xs + (<usize>l << 2)); sumX2 += v * v; }
      const av = Mathf.sqrt(sumX2 / 32);
      for (let l = 0; l < 32; l++) store<f32>(WEIGHTS + (<usize>l << 2), av + Mathf.abs(load<f32>(xs + (<usize>l << 2))));
      const sc = make_qkx2(32, 15, xs, WEIGHTS, L + 32 * j, -1, <f32>0.1, 20);
      store<f32>(SCALES + (<usize>j << 2), sc);
      store<f32>(MINS + (<usize>j << 2), theMin);
      if (sc > maxScale) maxScale = sc;
      if (theMin > maxMin) maxMin = theMin;
    }
    const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0;
    const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
    const s = o + 4;
    memory.fill(s, 0, 12);
    for (let j = 0; j < 8; j++) {
      // (uint8_t)nearest_int(...), then at most 63
      const ls = min<u32>(63, <u32>(nearest_int(invScale * load<f32>(SCALES + (<usize>j << 2))) & 0xff));
      const lm = min<u32>(63, <u32>(nearest_int(invMin * load<f32>(MINS + (<usize>j << 2))) & 0xff));
      if (j < 4) {
        store<u8>(s + j, <u8>ls);
        store<u8>(s + j + 4, <u8>lm);
      } else {
        store<u8>(s + j + 4, <u8>((ls & 0xf) | ((lm & 0xf) << 4)));
        store<u8>(s + j - 4, load<u8>(s + j - 4) | <u8>((ls >> 4) << 6));
        store<u8>(s + j, load<u8>(s + j) | <u8>((lm >> 4) << 6));
      }
    }
    const dh = f32_to_f16(maxScale / 63), mh = f32_to_f16(maxMin / 63);
    store<u16>(o, <u16>dh);
    store<u16>(o, <u16>mh, 2);
    const d = f16_to_f32(dh), dmin = f16_to_f32(mh);
    for (let j = 0; j < 8; j++) {
      let sc: u32, m: u32;
      if (j < 4) { sc = load<u8>(s + j) & 63; m = load<u8>(s + j + 4) & 63; }
      else { sc = (load<u8>(s + j + 4) & 0xf) | ((load<u8>(s + j - 4) >> 6) << 4); m = (load<u8>(s + j + 4) >> 4) | ((load<u8>(s + j) >> 6) << 4); }
      const dj = d * <f32>sc;
      if (dj == 0) continue;
      const mj = dmin * <f32>m;
      for (let i = 0; i < 32; i++) {
        const v = load<f32>(xb + (<usize>(32 * j + i) << 2));
        store<u8>(L + 32 * j + i, <u8>clampi(nearest_int((v + mj) / dj), 0, 15));
      }
    }
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) store<u8>(o + 16 + 32 * c + l, load<u8>(L + 64 * c + l) | (load<u8>(L + 64 * c + 32 + l) << 4));
    }
  }
}

/** make_qx_quants(n, nmax, x, L, rmse_type = 1, NULL): the scale; codes + nmax in L */
function make_qx(n: i32, nmax: i32, x: usize, l: usize): f32 {
  let mx: f32 = 0, amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (Mathf.abs(v) > amax) { amax = Mathf.abs(v); mx = v; }
  }
  if (amax < <f32>1e-15) {
    memory.fill(l, 0, n);
    return 0;
  }
  let iscale = <f32>(-nmax) / mx;
  let sumLX: f32 = 0, sumL2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    const q = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
    store<u8>(l + i, <u8>(q + nmax));
    const w = v * v;
    sumLX += w * v * <f32>q;
    sumL2 += w * <f32>q * <f32>q;
  }
  let scale: f32 = sumL2 != 0 ? sumLX / sumL2 : 0;
  let best = scale * sumLX;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(<f32>nmax + <f32>0.1 * <f32>is) / mx;
    sumLX = 0; sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      const q = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
      const w = v * v;
      sumLX += w * v * <f32>q;
      sumL2 += w * <f32>q * <f32>q;
    }
    if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
      for (let i = 0; i < n; i++) store<u8>(l + i, <u8>(clampi(nearest_int(iscale * load<f32>(x + (<usize>i << 2))), -nmax, nmax - 1) + nmax));
      scale = sumLX / sumL2;
      best = scale * sumLX;
    }
  }
  return scale;
}

/** out: n/256 block_q6_K from x (n f32), quantize_row_q6_K_ref byte for byte (n % 256 == 0) */
export function quantize_q6_K(out: usize, x: usize, n: i32): void {
  const nb = n / QK_K;
  for (let b = 0; b < nb; b++) {
    const xb = x + (<usize>(b * QK_K) << 2);
    const o = out + <usize>b * Q6_K_BYTES;
    let maxScale: f32 = 0, maxAbs: f32 = 0;
    for (let j = 0; j < 16; j++) {
      const sc = make_qx(16, 32, xb + (<usize>(16 * j) << 2), L + 16 * j);
      store<f32>(SCALES + (<usize>j << 2), sc);
      if (Mathf.abs(sc) > maxAbs) { maxAbs = Mathf.abs(sc); maxScale = sc; }
    }
    memory.fill(o, 0, Q6_K_BYTES);
    if (maxAbs < <f32>1e-15) continue;
    const iscale = <f32>(-128) / maxScale;
    const dh = f32_to_f16(<f32>1 / iscale);
    store<u16>(o + 208, <u16>dh);
    const d = f16_to_f32(dh);
    for (let j = 0; j < 16; j++) {
      const sc = min<i32>(127, nearest_int(iscale * load<f32>(SCALES + (<usize>j << 2))));
      store<i8>(o + 192 + j, <i8>sc);
      const dj = d * <f32>sc;
      if (dj == 0) continue;
      for (let i = 0; i < 16; i++) {
        store<u8>(L + 16 * j + i, <u8>(clampi(nearest_int(load<f32>(xb + (<usize>(16 * j + i) << 2)) / dj), -32, 31) + 32));
      }
    }
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const q0 = load<u8>(L + 128 * h + l), q1 = load<u8>(L + 128 * h + l + 32), q2 = load<u8>(L + 128 * h + l + 64), q3 = load<u8>(L + 128 * h + l + 96);
        store<u8>(o + 64 * h + l, (q0 & 15) | ((q2 & 15) << 4));
        store<u8>(o + 64 * h + l + 32, (q1 & 15) | ((q3 & 15) << 4));
        store<u8>(o + 128 + 32 * h + l, (q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
      }
    }
  }
}
