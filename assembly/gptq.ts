// GPTQ's heavy loops (Frantar et al. 2022): the calibration Hessian H += XᵀX, the rank-1 error feedback inside a
// column block and the lazy update of the columns after it. Not the Cholesky inverse, the scale choice or the
// rounding: the host does those (src/gptq/), and src/gptq/reference.ts is the scalar spec of these loops.

/**
 * H (n, n) f64 += Xᵀ X for x (t, n) f32, upper triangle only: H[i][k] for k ≥ i is updated, entries below the
 * diagonal are left alone (the host mirrors them). The t products of one entry are summed in f32 (t is one
 * forward batch, ≤ 64 rows), then added to H in f64, so thousands of calibration tokens do not drift.
 */
export function gptq_accumulate_h(h: usize, x: usize, n: i32, t: i32): void {
  const rowBytes = <usize>n << 2;
  for (let i = 0; i < n; i++) {
    const hi = h + ((<usize>i * <usize>n) << 3);
    const xi = x + (<usize>i << 2);
    let k = i;
    for (; k + 8 <= n; k += 8) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      let xk = x + (<usize>k << 2);
      let xs = xi;
      for (let j = 0; j < t; j++) {
        const s = f32x4.splat(load<f32>(xs));
        a0 = f32x4.add(a0, f32x4.mul(s, v128.load(xk)));
        a1 = f32x4.add(a1, f32x4.mul(s, v128.load(xk, 16)));
        xk += rowBytes;
        xs += rowBytes;
      }
      const hp = hi + (<usize>k << 3);
      v128.store(hp, f64x2.add(v128.load(hp), f64x2.promote_low_f32x4(a0)));
      v128.store(hp, f64x2.add(v128.load(hp, 16), f64x2.promote_low_f32x4(i32x4.shuffle(a0, a0, 2, 3, 0, 1))), 16);
      v128.store(hp, f64x2.add(v128.load(hp, 32), f64x2.promote_low_f32x4(a1)), 32);
      v128.store(hp, f64x2.add(v128.load(hp, 48), f64x2.promote_low_f32x4(i32x4.shuffle(a1, a1, 2, 3, 0, 1))), 48);
    }
    for (; k < n; k++) {
      let s: f32 = 0;
      let xk = x + (<usize>k << 2);
      let xs = xi;
      for (let j = 0; j < t; j++) {
        s += load<f32>(xs) * load<f32>(xk);
        xk += rowBytes;
        xs += rowBytes;
      }
      const hp = hi + (<usize>k << 3);
      store<f64>(hp, load<f64>(hp) + <f64>s);
    }
  }
}

/**
 * Rank-1 error feedback inside a block: W[r][c] -= e[r] · hrow[c] for r < rows, c0 ≤ c < c1. w (rows, n) f32 with
 * row stride n; e (rows) f32 (the scaled quantization error of one column); hrow (n) f32 (a row of the Cholesky
 * factor of H⁻¹). One product per element, so f32 is exact up to one rounding.
 */
export function gptq_rank1_update(w: usize, e: usize, hrow: usize, rows: i32, n: i32, c0: i32, c1: i32): void {
  const rowBytes = <usize>n << 2;
  for (let r = 0; r < rows; r++) {
    const er = load<f32>(e + (<usize>r << 2));
    const s = f32x4.splat(er);
    const wr = w + <usize>r * rowBytes;
    let c = c0;
    for (; c + 4 <= c1; c += 4) {
      const wp = wr + (<usize>c << 2);
      v128.store(wp, f32x4.sub(v128.load(wp), f32x4.mul(s, v128.load(hrow + (<usize>c << 2)))));
    }
    for (; c < c1; c++) {
      const wp = wr + (<usize>c << 2);
      store<f32>(wp, load<f32>(wp) - er * load<f32>(hrow + (<usize>c << 2)));
    }
  }
}

/**
 * The lazy batch update after a block of columns i1..i2: W[r][c] -= Σ_b err[r][b] · hinv[i1 + b][c] for r < rows,
 * i2 ≤ c < n. w (rows, n) f32; err (rows, i2 - i1) f32; hinv (n, n) f32. Each sum has i2 - i1 ≤ 128 terms and is
 * accumulated in f32 (as GPTQ's own GPU code does), then subtracted once.
 */
export function gptq_block_update(w: usize, err: usize, hinv: usize, rows: i32, n: i32, i1: i32, i2: i32): void {
  const rowBytes = <usize>n << 2;
  const nb = i2 - i1;
  const errRow = <usize>nb << 2;
  const h0 = hinv + <usize>i1 * rowBytes;
  for (let r = 0; r < rows; r++) {
    const wr = w + <usize>r * rowBytes;
    const er = err + <usize>r * errRow;
    let c = i2;
    for (; c + 16 <= n; c += 16) {
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let hp = h0 + (<usize>c << 2);
      for (let b = 0; b < nb; b++) {
        const s = f32x4.splat(load<f32>(er + (<usize>b << 2)));
        a0 = f32x4.add(a0, f32x4.mul(s, v128.load(hp)));
        a1 = f32x4.add(a1, f32x4.mul(s, v128.load(hp, 16)));
        a2 = f32x4.add(a2, f32x4.mul(s, v128.load(hp, 32)));
        a3 = f32x4.add(a3, f32x4.mul(s, v128.load(hp, 48)));
        hp += rowBytes;
      }
      const wp = wr + (<usize>c << 2);
      v128.store(wp, f32x4.sub(v128.load(wp), a0));
      v128.store(wp, f32x4.sub(v128.load(wp, 16), a1), 16);
      v128.store(wp, f32x4.sub(v128.load(wp, 32), a2), 32);
      v128.store(wp, f32x4.sub(v128.load(wp, 48), a3), 48);
    }
    for (; c + 4 <= n; c += 4) {
      let a0 = f32x4.splat(0);
      let hp = h0 + (<usize>c << 2);
      for (let b = 0; b < nb; b++) {
        a0 = f32x4.add(a0, f32x4.mul(f32x4.splat(load<f32>(er + (<usize>b << 2))), v128.load(hp)));
        hp += rowBytes;
      }
      const wp = wr + (<usize>c << 2);
      v128.store(wp, f32x4.sub(v128.load(wp), a0));
    }
    for (; c < n; c++) {
      let s: f32 = 0;
      let hp = h0 + (<usize>c << 2);
      for (let b = 0; b < nb; b++) {
        s += load<f32>(er + (<usize>b << 2)) * load<f32>(hp);
        hp += rowBytes;
      }
      const wp = wr + (<usize>c << 2);
      store<f32>(wp, load<f32>(wp) - s);
    }
  }
}

/** columns of the Cholesky factor computed per panel, and rows of the triangular inverse per block */
const PANEL: i32 = 16;

/** bytes of scratch gptq_cholesky and gptq_trinv_lower take for an (n, n) matrix */
export function gptq_linalg_scratch(n: i32): i32 {
  return PANEL * n * 8 + 2 * PANEL * 16;
}

/** one element e of the trailing update: e −= Σ_kk s[kk]·p[kk] in kk order (s: splatted panel values, p: a panel column) */
// @ts-ignore: decorator
@inline function trailing1(e: usize, p: usize, s: usize, nk: i32, rowBytes: usize): void {
  let v = load<f64>(e);
  for (let kk = 0; kk < nk; kk++) {
    v -= load<f64>(s + (<usize>kk << 4)) * load<f64>(p);
    p += rowBytes;
  }
  store<f64>(e, v);
}

/**
 * In place: the lower Cholesky factor L of a (n, n) f64, symmetric positive definite with its lower triangle
 * given; the upper triangle is zeroed. Returns 1, or 0 when a pivot is not positive and finite. Right-looking in
 * panels of PANEL columns: each panel's columns are finished, then every later element gets the panel's updates
 * one after another, so element (i, j) is a[i][j] − l[i][0]·l[j][0] − l[i][1]·l[j][1] − … in that order, exactly
 * as the column-by-column loop of src/gptq/linalg.ts computes it (the same bits), while the matrix streams through
 * the cache once per panel instead of once per column. p: gptq_linalg_scratch(n) bytes.
 */
export function gptq_cholesky(a: usize, n: i32, p: usize): i32 {
  const rowBytes = <usize>n << 3;
  for (let k0 = 0; k0 < n; k0 += PANEL) {
    const k1 = min(n, k0 + PANEL);
    // the panel's columns, one after another, updating the rest of the panel
    for (let k = k0; k < k1; k++) {
      const rk = a + <usize>k * rowBytes;
      const d = load<f64>(rk + (<usize>k << 3));
      if (!(d > 0) || !isFinite(d)) return 0;
      const lkk = Math.sqrt(d);
      store<f64>(rk + (<usize>k << 3), lkk);
      for (let i = k + 1; i < n; i++) {
        const ri = a + <usize>i * rowBytes;
        const lik = load<f64>(ri + (<usize>k << 3)) / lkk;
        store<f64>(ri + (<usize>k << 3), lik);
        const jEnd = min(i, k1 - 1);
        for (let j = k + 1; j <= jEnd; j++) {
          const e = ri + (<usize>j << 3);
          store<f64>(e, load<f64>(e) - lik * load<f64>(a + <usize>j * rowBytes + (<usize>k << 3)));
        }
      }
    }
    if (k1 >= n) break;
    // the panel transposed (p[kk][j] = l[j][k0 + kk]) so the trailing update reads it along rows
    const nk = k1 - k0;
    for (let kk = 0; kk < nk; kk++) {
      const pk = p + <usize>kk * rowBytes;
      for (let j = k1; j < n; j++) store<f64>(pk + (<usize>j << 3), load<f64>(a + <usize>j * rowBytes + (<usize>(k0 + kk) << 3)));
    }
    // every later element (i ≥ j ≥ k1) gets the panel's updates in column order, two rows at a time so each
    // panel load serves both; the rows' panel values are splatted once into the scratch after the panel
    const sp = p + <usize>nk * rowBytes;
    for (let i = k1; i < n; i += 2) {
      const two = i + 1 < n;
      const r0 = a + <usize>i * rowBytes, r1 = r0 + rowBytes;
      for (let kk = 0; kk < nk; kk++) {
        v128.store(sp + (<usize>kk << 4), f64x2.splat(load<f64>(r0 + (<usize>(k0 + kk) << 3))));
        if (two) v128.store(sp + (<usize>(PANEL + kk) << 4), f64x2.splat(load<f64>(r1 + (<usize>(k0 + kk) << 3))));
      }
      let j = k1;
      if (two) {
        for (; j + 2 <= i + 1; j += 2) {
          const o = <usize>j << 3;
          let v0 = v128.load(r0 + o), v1 = v128.load(r1 + o);
          let pj = p + o;
          for (let kk = 0; kk < nk; kk++) {
            const pv = v128.load(pj);
            v0 = f64x2.sub(v0, f64x2.mul(v128.load(sp + (<usize>kk << 4)), pv));
            v1 = f64x2.sub(v1, f64x2.mul(v128.load(sp + (<usize>(PANEL + kk) << 4)), pv));
            pj += rowBytes;
          }
          v128.store(r0 + o, v0);
          v128.store(r1 + o, v1);
        }
      }
      for (let jj = j; jj <= i; jj++) trailing1(r0 + (<usize>jj << 3), p + (<usize>jj << 3), sp, nk, rowBytes);
      if (two) for (let jj = j; jj <= i + 1; jj++) trailing1(r1 + (<usize>jj << 3), p + (<usize>jj << 3), sp + (<usize>PANEL << 4), nk, rowBytes);
    }
  }
  for (let i = 0; i < n; i++) memory.fill(a + <usize>i * rowBytes + (<usize>(i + 1) << 3), 0, <usize>(n - i - 1) << 3);
  return 1;
}

/**
 * In place: X = M⁻¹ for M (n, n) f64 lower triangular (upper triangle zero, diagonal non-zero). Row i of X is
 * −(Σ_{k<i} m[i][k]·x[k][·]) / m[i][i] with x[i][i] = 1/m[i][i], each sum taken in k order from 0, exactly as
 * src/gptq/linalg.ts's column loop does (the same bits). Rows go in blocks of PANEL: the earlier rows' terms are
 * added to the whole block as each earlier row streams past once. acc: gptq_linalg_scratch(n) bytes.
 */
export function gptq_trinv_lower(a: usize, n: i32, acc: usize): void {
  const rowBytes = <usize>n << 3;
  for (let i0 = 0; i0 < n; i0 += PANEL) {
    const i1 = min(n, i0 + PANEL);
    memory.fill(acc, 0, <usize>(i1 - i0) * rowBytes);
    // terms of the finished rows k < i0 into every row of the block, four rows k at a time: x[k] is zero past its
    // diagonal, so each element takes its four terms in k order (an added 0·m changes no sum that starts at +0)
    let k = 0;
    for (; k + 4 <= i0; k += 4) {
      const xk = a + <usize>k * rowBytes;
      for (let r = i0; r < i1; r++) {
        const mr = a + <usize>r * rowBytes + (<usize>k << 3);
        axpy4_f64(acc + <usize>(r - i0) * rowBytes, xk, rowBytes, load<f64>(mr), load<f64>(mr, 8), load<f64>(mr, 16), load<f64>(mr, 24), k + 4);
      }
    }
    for (; k < i0; k++) {
      const xk = a + <usize>k * rowBytes;
      for (let r = i0; r < i1; r++) axpy_f64(acc + <usize>(r - i0) * rowBytes, xk, load<f64>(a + <usize>r * rowBytes + (<usize>k << 3)), k + 1);
    }
    // then row by row: the block's own earlier rows, and the row is final
    for (let r = i0; r < i1; r++) {
      const ar = acc + <usize>(r - i0) * rowBytes;
      const rr = a + <usize>r * rowBytes;
      for (let k = i0; k < r; k++) axpy_f64(ar, a + <usize>k * rowBytes, load<f64>(rr + (<usize>k << 3)), k + 1);
      const mrr = load<f64>(rr + (<usize>r << 3));
      for (let j = 0; j < r; j++) store<f64>(rr + (<usize>j << 3), -load<f64>(ar + (<usize>j << 3)) / mrr);
      store<f64>(rr + (<usize>r << 3), 1 / mrr);
    }
  }
}

/** y[0..m) += s0·x0 + s1·x1 + s2·x2 + s3·x3 in that order per element, the rows x0..x3 rs bytes apart (no fused multiply-add) */
// @ts-ignore: decorator
@inline function axpy4_f64(y: usize, x: usize, rs: usize, s0: f64, s1: f64, s2: f64, s3: f64, m: i32): void {
  const a0 = f64x2.splat(s0), a1 = f64x2.splat(s1), a2 = f64x2.splat(s2), a3 = f64x2.splat(s3);
  let j = 0;
  for (; j + 2 <= m; j += 2) {
    const o = <usize>j << 3;
    let v = v128.load(y + o);
    v = f64x2.add(v, f64x2.mul(a0, v128.load(x + o)));
    v = f64x2.add(v, f64x2.mul(a1, v128.load(x + rs + o)));
    v = f64x2.add(v, f64x2.mul(a2, v128.load(x + 2 * rs + o)));
    v = f64x2.add(v, f64x2.mul(a3, v128.load(x + 3 * rs + o)));
    v128.store(y + o, v);
  }
  for (; j < m; j++) {
    const o = <usize>j << 3;
    store<f64>(y + o, (((load<f64>(y + o) + s0 * load<f64>(x + o)) + s1 * load<f64>(x + rs + o)) + s2 * load<f64>(x + 2 * rs + o)) + s3 * load<f64>(x + 3 * rs + o));
  }
}

/** y[0..m) += s · x[0..m), f64, one product and one sum per element (no fused multiply-add) */
// @ts-ignore: decorator
@inline function axpy_f64(y: usize, x: usize, s: f64, m: i32): void {
  const sv = f64x2.splat(s);
  let j = 0;
  for (; j + 2 <= m; j += 2) {
    const o = <usize>j << 3;
    v128.store(y + o, f64x2.add(v128.load(y + o), f64x2.mul(sv, v128.load(x + o))));
  }
  for (; j < m; j++) {
    const o = <usize>j << 3;
    store<f64>(y + o, load<f64>(y + o) + s * load<f64>(x + o));
  }
}
