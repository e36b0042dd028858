// Deno, for the tests only: calls llama.cpp's own C functions in the libraries node-llama-cpp ships (the exact ggml
// and llama.cpp node-llama-cpp runs) through Deno's FFI, so K-quant bytes and the Q4_K_M tensor mix can be compared
// with llama.cpp's, not with a re-implementation. Jobs come as a JSON file; see test/support/ggml-ffi.ts.
//   deno run --allow-ffi --allow-read --allow-write test/support/ggml-ffi.deno.mjs LIBDIR JOBS.json
const [dir, jobsPath] = Deno.args;
const jobs = JSON.parse(Deno.readTextFileSync(jobsPath));
const ggml = Deno.dlopen(`${dir}/libggml-base.so`, {
  ggml_quantize_chunk: { parameters: ["i32", "buffer", "buffer", "i64", "i64", "i64", "pointer"], result: "usize" },
  dequantize_row_q4_K: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  dequantize_row_q6_K: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  dequantize_row_q5_0: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  dequantize_row_q8_0: { parameters: ["buffer", "buffer", "i64"], result: "void" },
});
let llama;
const cstr = (s) => new TextEncoder().encode(`${s}\0`);
for (const job of jobs) {
  if (job.op === "quantize") {
    // ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix = NULL): what llama-quantize calls per tensor
    const src = new Float32Array(Deno.readFileSync(job.input).buffer);
    const dst = new Uint8Array(job.bytes);
    const rows = src.length / job.rowLength;
    const n = ggml.symbols.ggml_quantize_chunk(job.type, src, dst, 0n, BigInt(rows), BigInt(job.rowLength), null);
    if (Number(n) !== job.bytes) throw new Error(`ggml_quantize_chunk wrote ${n} bytes, expected ${job.bytes}`);
    Deno.writeFileSync(job.output, dst);
  } else if (job.op === "dequantize") {
    const src = Deno.readFileSync(job.input);
    const dst = new Float32Array(job.values);
    ggml.symbols[`dequantize_row_${job.format}`](src, dst, BigInt(job.values));
    Deno.writeFileSync(job.output, new Uint8Array(dst.buffer));
  } else if (job.op === "model") {
    llama ??= Deno.dlopen(`${dir}/${job.libllama}`, {
      llama_model_quantize_default_params: { parameters: [], result: { struct: ["i32", "i32", "i32", "i32", "u8", "u8", "u8", "u8", "u8", "u8", "pointer", "pointer", "pointer", "pointer", "usize"] } },
      llama_model_quantize: { parameters: ["buffer", "buffer", "buffer"], result: "u32" },
    });
    const params = llama.symbols.llama_model_quantize_default_params();
    const v = new DataView(params.buffer);
    v.setInt32(0, 1, true); // nthread
    v.setInt32(4, job.ftype, true); // llama_ftype
    if (job.pure) v.setUint8(19, 1); // pure: the ftype's base type everywhere (llama-quantize --pure)
    const rc = llama.symbols.llama_model_quantize(cstr(job.input), cstr(job.output), params);
    if (rc !== 0) throw new Error(`llama_model_quantize(${job.input}) returned ${rc}`);
  } else {
    throw new Error(`unknown job ${job.op}`);
  }
}
