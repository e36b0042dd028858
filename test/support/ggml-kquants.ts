// An independent re-implementation of ggml's reference K-quant quantizers (ggml-quants.c: quantize_row_q4_K_ref,
// quantize_row_q6_K_ref and their searches make_qkx2_quants, make_qx_quants) and of quantize_row_q5_0_ref, written
// from the C source for the tests, not from src/quant/ref.ts. Arithmetic is float64; `round` says where C rounds to
// float: Math.fround at every float store reproduces ggml's bytes, the identity gives the plain float64 algorithm
// (whose bytes differ on near ties: the tests count how often). Test-only.

export type Rounding = (x: number) => number;
/** ggml's float semantics: every float expression rounded to f32 */
export const F32: Rounding = Math.fround;
/** the same algorithm in float64 */
export const F64: Rounding = (x) => x;

const u32 = new Uint32Array(1);
const f32v = new Float32Array(u32.buffer);

/** C's nearest_int(float): add 1.5·2^23 in float, reinterpret, keep the low 23 bits minus 2^22 */
function nearestIntC(v: number, r: Rounding): number {
  if (r === F64) return roundHalfEven(v);
  f32v[0] = Math.fround(Math.fround(v) + 12582912);
  return (u32[0] & 0x007fffff) - 0x00400000;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** IEEE half of a number, round to nearest even (GGML_FP32_TO_FP16 on the value as given) */
function toHalf(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const s = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const v = Math.abs(x);
  if (v >= 65520) return s | 0x7c00;
  if (v < 2 ** -14) return s | roundHalfEven(v * 2 ** 24);
  let e = Math.floor(Math.log2(v));
  if (2 ** e > v) e--;
  if (2 ** (e + 1) <= v) e++;
  const m = roundHalfEven((v / 2 ** e - 1) * 1024);
  return m === 1024 ? s | ((e + 16) << 10) : s | ((e + 15) << 10) | m;
}

function fromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

function makeQkx2(n: number, nmax: number, x: Float32Array, w: number[], L: number[], r: Rounding,
                  rmin: number, rdelta: number, nstep: number, staleRange = false): [number, number] {
  let mn = x[0], mx = x[0], sw = w[0], sx = r(w[0] * x[0]);
  for (let i = 1; i < n; i++) {
    mn = Math.min(mn, x[i]);
    mx = Math.max(mx, x[i]);
    sw = r(sw + w[i]);
    sx = r(sx + r(w[i] * x[i]));
  }
  if (mn > 0) mn = 0;
  if (mx === mn) {
    for (let i = 0; i < n; i++) L[i] = 0;
    return [0, -mn];
  }
  const firstRange = r(mx - mn);
  let iscale = r(nmax / firstRange), scale = r(1 / iscale), best = 0;
  const clamp = (v: number) => (v < 0 ? 0 : v > nmax ? nmax : v);
  for (let i = 0; i < n; i++) {
    L[i] = clamp(nearestIntC(r(iscale * r(x[i] - mn)), r));
    const e = r(r(r(scale * L[i]) + mn) - x[i]);
    best = r(best + r(w[i] * r(e * e)));
  }
  const aux = new Array<number>(n);
  for (let step = 0; step <= nstep; step++) {
    // mn is the best trial's so far; staleRange keeps the first max − min, a misreading the tests guard against
    iscale = r(r(r(rmin + r(rdelta * step)) + nmax) / (staleRange ? firstRange : r(mx - mn)));
    let sl = 0, sl2 = 0, sxl = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestIntC(r(iscale * r(x[i] - mn)), r));
      aux[i] = l;
      sl = r(sl + r(w[i] * l));
      sl2 = r(sl2 + r(r(w[i] * l) * l));
      sxl = r(sxl + r(r(w[i] * l) * x[i]));
    }
    const det = r(r(sw * sl2) - r(sl * sl));
    if (det > 0) {
      let sc = r(r(r(sw * sxl) - r(sx * sl)) / det);
      let m = r(r(r(sl2 * sx) - r(sl * sxl)) / det);
      if (m > 0) { m = 0; sc = r(sxl / sl2); }
      let err = 0;
      for (let i = 0; i < n; i++) {
        const e = r(r(r(sc * aux[i]) + m) - x[i]);
        err = r(err + r(w[i] * r(e * e)));
      }
      if (err < best) {
        for (let i = 0; i < n; i++) L[i] = aux[i];
        best = err; scale = sc; mn = m;
      }
    }
  }
  return [scale, -mn];
}

function makeQx(n: number, nmax: number, x: Float32Array, L: number[], r: Rounding): number {
  let amax = 0, max = 0;
  for (let i = 0; i < n; i++) if (Math.abs(x[i]) > amax) { amax = Math.abs(x[i]); max = x[i]; }
  if (amax < Math.fround(1e-15)) {
    for (let i = 0; i < n; i++) L[i] = 0;
    return 0;
  }
  const lOf = (is: number, v: number) => Math.max(-nmax, Math.min(nmax - 1, nearestIntC(r(is * v), r)));
  const sums = (is: number) => {
    let sxl = 0, sll = 0;
    for (let i = 0; i < n; i++) {
      const l = lOf(is, x[i]), w = r(x[i] * x[i]);
      sxl = r(sxl + r(r(w * x[i]) * l));
      sll = r(sll + r(r(w * l) * l));
    }
    return [sxl, sll];
  };
  let iscale = r(-nmax / max);
  for (let i = 0; i < n; i++) L[i] = nmax + lOf(iscale, x[i]);
  let [sxl, sll] = sums(iscale);
  let scale = sll ? r(sxl / sll) : 0;
  let best = r(scale * sxl);
  for (let k = -9; k <= 9; k++) {
    if (k === 0) continue;
    iscale = r(-r(nmax + r(r(0.1) * k)) / max);
    [sxl, sll] = sums(iscale);
    if (sll > 0 && r(sxl * sxl) > r(best * sll)) {
      for (let i = 0; i < n; i++) L[i] = nmax + lOf(iscale, x[i]);
      scale = r(sxl / sll);
      best = r(scale * sxl);
    }
  }
  return scale;
}

/** quantize_row_q4_K_ref on a row of 256·k values: 144-byte blocks (staleRange: a planted misreading, for the tests) */
export function refQ4K(x: Float32Array, r: Rounding = F32, staleRange = false): Uint8Array {
  const nb = x.length / 256;
  const out = new Uint8Array(nb * 144);
  for (let b = 0; b < nb; b++) {
    const xb = x.subarray(b * 256, b * 256 + 256);
    const L = new Array<number>(256).fill(0);
    const scales: number[] = [], mins: number[] = [];
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      const xs = xb.subarray(32 * j, 32 * j + 32);
      let s2 = 0;
      for (let l = 0; l < 32; l++) s2 = r(s2 + r(xs[l] * xs[l]));
      const av = r(Math.sqrt(r(s2 / 32)));
      const w = Array.from(xs, (v) => r(av + Math.abs(v)));
      const Lj: number[] = new Array(32);
      const [sc, mn] = makeQkx2(32, 15, xs, w, Lj, r, -1, r(0.1), 20, staleRange);
      for (let l = 0; l < 32; l++) L[32 * j + l] = Lj[l];
      scales.push(sc); mins.push(mn);
      if (sc > maxScale) maxScale = sc;
      if (mn > maxMin) maxMin = mn;
    }
    const is = maxScale > 0 ? r(63 / maxScale) : 0, im = maxMin > 0 ? r(63 / maxMin) : 0;
    const o = b * 144;
    const ls: number[] = [], lm: number[] = [];
    for (let j = 0; j < 8; j++) {
      ls.push(Math.min(63, nearestIntC(r(is * scales[j]), r) & 255));
      lm.push(Math.min(63, nearestIntC(r(im * mins[j]), r) & 255));
    }
    // the 12 scale bytes: j < 4 plain 6 bits; j >= 4 split into a nibble and the top bits of bytes j-4 and j
    const sb = out.subarray(o + 4, o + 16);
    for (let j = 0; j < 4; j++) { sb[j] = ls[j]; sb[j + 4] = lm[j]; }
    for (let j = 4; j < 8; j++) {
      sb[j + 4] = (ls[j] & 15) | ((lm[j] & 15) << 4);
      sb[j - 4] |= (ls[j] >> 4) << 6;
      sb[j] |= (lm[j] >> 4) << 6;
    }
    const dh = toHalf(r(maxScale / 63)), mh = toHalf(r(maxMin / 63));
    out[o] = dh & 255; out[o + 1] = dh >> 8; out[o + 2] = mh & 255; out[o + 3] = mh >> 8;
    for (let j = 0; j < 8; j++) {
      const d = r(fromHalf(dh) * ls[j]);
      if (!d) continue;
      const dm = r(fromHalf(mh) * lm[j]);
      for (let l = 0; l < 32; l++) L[32 * j + l] = Math.max(0, Math.min(15, nearestIntC(r(r(xb[32 * j + l] + dm) / d), r)));
    }
    for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) out[o + 16 + 32 * c + l] = L[64 * c + l] | (L[64 * c + 32 + l] << 4);
  }
  return out;
}

/** quantize_row_q6_K_ref on a row of 256·k values: 210-byte blocks */
export function refQ6K(x: Float32Array, r: Rounding = F32): Uint8Array {
  const nb = x.length / 256;
  const out = new Uint8Array(nb * 210);
  for (let b = 0; b < nb; b++) {
    const xb = x.subarray(b * 256, b * 256 + 256);
    const o = b * 210;
    const L = new Array<number>(256).fill(0);
    const scales: number[] = [];
    let maxScale = 0, maxAbs = 0;
    for (let j = 0; j < 16; j++) {
      const Lj: number[] = new Array(16);
      const sc = makeQx(16, 32, xb.subarray(16 * j, 16 * j + 16), Lj, r);
      for (let l = 0; l < 16; l++) L[16 * j + l] = Lj[l];
      scales.push(sc);
      if (Math.abs(sc) > maxAbs) { maxAbs = Math.abs(sc); maxScale = sc; }
    }
    if (maxAbs < Math.fround(1e-15)) continue; // an all-zero block (d = 0 too)
    const iscale = r(-128 / maxScale);
    const dh = toHalf(r(1 / iscale));
    out[o + 208] = dh & 255; out[o + 209] = dh >> 8;
    for (let j = 0; j < 16; j++) {
      const sc = Math.min(127, nearestIntC(r(iscale * scales[j]), r));
      out[o + 192 + j] = sc & 255;
      const d = r(fromHalf(dh) * sc);
      if (!d) continue;
      for (let l = 0; l < 16; l++) L[16 * j + l] = 32 + Math.max(-32, Math.min(31, nearestIntC(r(xb[16 * j + l] / d), r)));
    }
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const q = (k: number) => L[128 * h + l + 32 * k];
        out[o + 64 * h + l] = (q(0) & 15) | ((q(2) & 15) << 4);
        out[o + 64 * h + l + 32] = (q(1) & 15) | ((q(3) & 15) << 4);
        out[o + 128 + 32 * h + l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
      }
    }
  }
  return out;
}

/** quantize_row_q5_0_ref on a row of 32·k values: 22-byte blocks */
export function refQ5_0(x: Float32Array, r: Rounding = F32): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 22);
  for (let b = 0; b < nb; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) if (amax < Math.abs(x[32 * b + j])) { amax = Math.abs(x[32 * b + j]); max = x[32 * b + j]; }
    const d = r(max / -16), id = d ? r(1 / d) : 0;
    const o = b * 22, dh = toHalf(d);
    out[o] = dh & 255; out[o + 1] = dh >> 8;
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const a = Math.min(31, Math.trunc(r(r(x[32 * b + j] * id) + 16.5)));
      const c = Math.min(31, Math.trunc(r(r(x[32 * b + j + 16] * id) + 16.5)));
      out[o + 6 + j] = (a & 15) | ((c & 15) << 4);
      qh |= ((a >> 4) << j) | ((c >> 4) << (j + 16));
    }
    new DataView(out.buffer).setUint32(o + 2, qh >>> 0, true);
  }
  return out;
}
