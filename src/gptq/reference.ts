// Scalar reference for the GPTQ wasm kernels in assembly/gptq.ts: the same loops in plain TypeScript, summed in
// float64. It is the spec the kernels are tested against (test/gptq.test.ts), written to be read, not to be fast.

/** H (n, n) += xᵀx for x (t, n), upper triangle (k ≥ i) only, as gptq_accumulate_h. */
export function accumulateH(h: Float64Array, x: Float32Array, n: number, t: number): void {
  for (let i = 0; i < n; i++) {
    for (let k = i; k < n; k++) {
      let s = 0;
      for (let j = 0; j < t; j++) s += x[j * n + i] * x[j * n + k];
      h[i * n + k] += s;
    }
  }
}

/** w (rows, n): w[r][c] -= e[r] * hrow[c] for c0 ≤ c < c1, as gptq_rank1_update. */
export function rank1Update(w: Float32Array, e: Float32Array, hrow: Float32Array, rows: number, n: number, c0: number, c1: number): void {
  for (let r = 0; r < rows; r++) for (let c = c0; c < c1; c++) w[r * n + c] -= e[r] * hrow[c];
}

/** w (rows, n): w[r][c] -= Σ_b err[r][b] * hinv[i1+b][c] for i2 ≤ c < n; err (rows, i2-i1), as gptq_block_update. */
export function blockUpdate(w: Float32Array, err: Float32Array, hinv: Float32Array, rows: number, n: number, i1: number, i2: number): void {
  const nb = i2 - i1;
  for (let r = 0; r < rows; r++) {
    for (let c = i2; c < n; c++) {
      let s = 0;
      for (let b = 0; b < nb; b++) s += err[r * nb + b] * hinv[(i1 + b) * n + c];
      w[r * n + c] -= s;
    }
  }
}
