// A float64 llama forward pass straight over a Hugging Face checkpoint's tensors, in transformers' own conventions
// (rotate-half RoPE on the unpermuted q/k weights, GQA, RMSNorm, SwiGLU, tied lm_head): an independent check of
// `convert`, which reorders q/k for llama.cpp's interleaved RoPE. Written for tiny models; slow and exact, not a runtime.

export interface HfLlamaWeights {
  config: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; rms_norm_eps: number; rope_theta: number; head_dim?: number };
  /** HF tensor name → values (row-major) */
  get: (name: string) => Float64Array;
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const s = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * s * w[i]);
}

/** W (rows, cols) @ x (cols) */
function matvec(w: Float64Array, x: Float64Array, rows: number): Float64Array {
  const cols = x.length;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
    out[r] = s;
  }
  return out;
}

/** transformers' apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, per head of size hd */
function rope(v: Float64Array, nHeads: number, hd: number, pos: number, theta: number): void {
  const half = hd / 2;
  for (let h = 0; h < nHeads; h++) {
    const o = h * hd;
    for (let i = 0; i < half; i++) {
      const freq = 1 / Math.pow(theta, (2 * i) / hd);
      const a = pos * freq, c = Math.cos(a), s = Math.sin(a);
      const x1 = v[o + i], x2 = v[o + i + half];
      v[o + i] = x1 * c - x2 * s;
      v[o + i + half] = x2 * c + x1 * s;
    }
  }
}

/** Greedy decoding of `n` tokens after `prompt` (each token's logits in float64); returns the new tokens. */
export function refGreedy(w: HfLlamaWeights, prompt: number[], n: number): number[] {
  const c = w.config;
  const d = c.hidden_size, nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim ?? d / nh, ff = c.intermediate_size;
  const emb = w.get("model.embed_tokens.weight");
  const lmHead = w.get("lm_head.weight");
  const vocab = lmHead.length / d;
  const L = c.num_hidden_layers;
  const layer = Array.from({ length: L }, (_, l) => {
    const p = `model.layers.${l}.`;
    return {
      an: w.get(p + "input_layernorm.weight"), fn: w.get(p + "post_attention_layernorm.weight"),
      q: w.get(p + "self_attn.q_proj.weight"), k: w.get(p + "self_attn.k_proj.weight"), v: w.get(p + "self_attn.v_proj.weight"),
      o: w.get(p + "self_attn.o_proj.weight"), g: w.get(p + "mlp.gate_proj.weight"), u: w.get(p + "mlp.up_proj.weight"), dn: w.get(p + "mlp.down_proj.weight"),
    };
  });
  const norm = w.get("model.norm.weight");
  const keys: Float64Array[][] = layer.map(() => []);
  const vals: Float64Array[][] = layer.map(() => []);
  const out: number[] = [];
  let tokens = prompt.slice();
  let pos = 0;
  for (let step = 0; step < n; step++) {
    let logits: Float64Array<ArrayBufferLike> = new Float64Array(0);
    for (const tok of tokens) {
      let x: Float64Array<ArrayBufferLike> = emb.slice(tok * d, (tok + 1) * d);
      for (let l = 0; l < L; l++) {
        const ly = layer[l];
        const h = rmsnorm(x, ly.an, c.rms_norm_eps);
        const q = matvec(ly.q, h, nh * hd), k = matvec(ly.k, h, nkv * hd), v = matvec(ly.v, h, nkv * hd);
        rope(q, nh, hd, pos, c.rope_theta);
        rope(k, nkv, hd, pos, c.rope_theta);
        keys[l].push(k);
        vals[l].push(v);
        const att = new Float64Array(nh * hd);
        for (let hh = 0; hh < nh; hh++) {
          const kh = Math.floor(hh / (nh / nkv));
          const scores = keys[l].map((kk) => {
            let s = 0;
            for (let i = 0; i < hd; i++) s += q[hh * hd + i] * kk[kh * hd + i];
            return s / Math.sqrt(hd);
          });
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, b) => a + b, 0);
          for (let t = 0; t < e.length; t++) for (let i = 0; i < hd; i++) att[hh * hd + i] += (e[t] / z) * vals[l][t][kh * hd + i];
        }
        const ao = matvec(ly.o, att, d);
        x = x.map((xv, i) => xv + ao[i]);
        const h2 = rmsnorm(x, ly.fn, c.rms_norm_eps);
        const g = matvec(ly.g, h2, ff), u = matvec(ly.u, h2, ff);
        const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
        const down = matvec(ly.dn, act, d);
        x = x.map((xv, i) => xv + down[i]);
      }
      pos++;
      logits = matvec(lmHead, rmsnorm(x, norm, c.rms_norm_eps), vocab);
    }
    let best = 0;
    for (let i = 1; i < vocab; i++) if (logits[i] > logits[best]) best = i;
    out.push(best);
    tokens = [best];
  }
  return out;
}
