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
