// Dense float64 linear algebra GPTQ needs once per calibration site: Cholesky factorization and the upper
// Cholesky factor of an inverse. O(n³) in plain TypeScript, fine for the n ≤ a few thousand of edge models;
// the O(rows·n²) work per weight matrix is in wasm (assembly/gptq.ts).

/** In place: the lower Cholesky factor L of a symmetric positive definite a (n, n), upper part zeroed; false if not PD. */
export function choleskyLower(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j];
    for (let k = 0; k < j; k++) d -= a[rj + k] * a[rj + k];
    if (!(d > 0) || !Number.isFinite(d)) return false;
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      a[ri + j] = s / ljj;
    }
    for (let k = j + 1; k < n; k++) a[rj + k] = 0;
  }
  return true;
}

/**
 * The upper triangular U with H⁻¹ = UᵀU (what GPTQ's `cholesky(cholesky_inverse(cholesky(H)), upper=True)` gives),
 * or null when H is not positive definite. With J the order reversal, J H J = M Mᵀ (Cholesky), and U = J M⁻¹ J:
 * one factorization and one triangular inverse, no explicit H⁻¹.
 */
export function inverseCholeskyUpper(h: Float64Array, n: number): Float64Array | null {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k <= i; k++) m[i * n + k] = h[(n - 1 - i) * n + (n - 1 - k)];
  if (!choleskyLower(m, n)) return null;
  // X = M⁻¹, lower triangular, column by column
  const x = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    x[j * n + j] = 1 / m[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += m[i * n + k] * x[k * n + j];
      x[i * n + j] = -s / m[i * n + i];
    }
  }
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = i; k < n; k++) u[i * n + k] = x[(n - 1 - i) * n + (n - 1 - k)];
  return u;
}

/**
 * Solve A X = B for a symmetric positive definite a (n, n) and b (n, m), both row-major, through a's Cholesky
 * factor (a is overwritten by it); X comes back in b's place. Returns false (b untouched) when a is not PD.
 */
export function choleskySolve(a: Float64Array, n: number, b: Float64Array, m: number): boolean {
  if (!choleskyLower(a, n)) return false;
  // L Z = B (forward), then Lᵀ X = Z (back), every right-hand column at once
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const l = a[ri + k];
      if (l !== 0) for (let c = 0; c < m; c++) b[i * m + c] -= l * b[k * m + c];
    }
    const d = a[ri + i];
    for (let c = 0; c < m; c++) b[i * m + c] /= d;
  }
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const l = a[k * n + i];
      if (l !== 0) for (let c = 0; c < m; c++) b[i * m + c] -= l * b[k * m + c];
    }
    const d = a[i * n + i];
    for (let c = 0; c < m; c++) b[i * m + c] /= d;
  }
  return true;
}
