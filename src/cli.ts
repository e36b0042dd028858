// The edgeprune command line: parses arguments with commander and dispatches to the library. Errors are one line
// on stderr and a non-zero exit, never a stack trace (EDGEPRUNE_DEBUG=1 shows it). Node-only.
import { Command, Option } from "commander";
import * as fs from "node:fs";
import { cacheTypeK, cacheTypeV, cacheTypes, checkContextOption, checkFile, drain, expandShorthands, int, mib, noteThreads, num, peakRss, readPrompt, startThreads, threadsAsked, threadsOption, type CacheTypeFlags } from "./commands/common.js";
import { threadedRuntime } from "./threads/pool.js";
import { registerChatCommand } from "./commands/chat.js";
import { registerConvertCommand } from "./commands/convert.js";
import { registerPruneCommands } from "./commands/prune.js";
import { registerQualityCommands } from "./commands/quality.js";
import { registerStudyCommands } from "./commands/study.js";
import { registerSynthCommand } from "./commands/synth.js";
import { generateSteps, type GenerateResult } from "./generate.js";
import { metaString } from "./gguf/metadata.js";
import type { GgufFile } from "./gguf/types.js";
import type { QuantFormat } from "./quant/formats.js";
import { KEY } from "./gguf/names.js";
import { describeConfig } from "./model/config.js";
import { checkModelFile } from "./model/check.js";
import { kvCacheBytes, kvCacheName, planBytes, shardPlan } from "./model/model.js";
import { defaultShardBytes, describeShards, type Shard } from "./model/shards.js";
import { kvFormats } from "./model/forward.js";
import { expectedTensors } from "./model/weights.js";
import { FileSource, openTensorFile, writeFileAtomic } from "./node/files.js";
import { loadModelFile, readGgufFileHeader } from "./node/load.js";
import { ProgressBar } from "./node/progress.js";
import { chooseCliKernels } from "./node/kernels.js";
import { perplexity } from "./perplexity.js";
import { ggufChunks, layoutGguf } from "./gguf/writer.js";
import { parseQuantRecipe, quantizeModel, quantTargets } from "./quant/quantize.js";
import { SAMPLER_DEFAULTS, validateSamplerOptions } from "./sampler.js";
import { calibrationWindows, checkGptqMemory, codecFor, DEFAULT_CALIB_TOKENS, errorTable, GPTQ_DEFAULTS, planGptq, quantizeGptq, type QuantMethod } from "./gptq/index.js";
import { tokenizerFromGguf } from "./tokenizer/index.js";
import { dirname, resolve } from "node:path";

/** Defaults shared by the CLI and the server. */
export const DEFAULTS = {
  tokens: 128,
  pplContext: 512,
  ...SAMPLER_DEFAULTS,
  /**
   * `serve`: bind address, port, contexts and their upper bound, queue bound, shutdown grace, warm-up requests,
   * /v1/completions' default max_tokens, request body limit, and the chat template sandbox's deadline and heap
   */
  serve: {
    host: "127.0.0.1", port: 8080, parallel: 1, maxParallel: 64, queue: 64, graceMs: 10_000, warmup: 256, completionTokens: 16,
    maxBodyBytes: 4 * 1024 * 1024, templateMs: 500, templateHeapMb: 64,
  },
} as const;

/** The kernel build this process runs, why, and the self-test's findings (`info`). */
function kernelsInfo(): { build: string; why: string; selfTestMs?: number; i32DotAddBaselineTierOk?: boolean } {
  const k = chooseCliKernels();
  return { build: k.build, why: k.why, selfTestMs: k.selfTest?.ms, i32DotAddBaselineTierOk: k.selfTest?.i32DotAddOk };
}

/** "Q4_K: 120, Q6_K: 30, F32: 40" — how many tensors of a plan end up in each type */
function typeSummary(plan: { target: { name: string } }[]): string {
  const n = new Map<string, number>();
  for (const p of plan) n.set(p.target.name, (n.get(p.target.name) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k}: ${v}`).join(", ");
}

/** The version in package.json (dist/src/cli.js and src/cli.ts both sit two folders below it). */
export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("edgeprune")
    .description("Run, prune (ShortGPT Block Influence) and quantize LLaMA-family GGUF models in WebAssembly SIMD")
    .showHelpAfterError(false)
    .configureOutput({ outputError: (str, write) => write(`edgeprune: ${str.replace(/^error: /, "error: ")}`) });
  program.version(`edgeprune ${packageVersion()}`, "-V, --version", "print the version and exit");
  // the kernel build (and its self-test) once, before any command runs; not for --help or --version
  program.hook("preAction", () => {
    const k = chooseCliKernels();
    if (process.env.EDGEPRUNE_DEBUG) process.stderr.write(`edgeprune: kernels: ${k.build} (${k.why})\n`);
  });

  program
    .command("info")
    .description("show a GGUF model's architecture, hyperparameters, tensor types, sizes and the memory it will need")
    .argument("<model>", "GGUF file")
    .option("--ctx <n>", "context size used to estimate memory (at most the model's context length)", int("--ctx", { min: 1 }))
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .option("--json", "print JSON")
    .action((model: string, o: { ctx?: number; json?: boolean } & CacheTypeFlags) => {
      checkFile(model, "model");
      const file = readGgufFileHeader(model);
      const types = new Map<string, { count: number; bytes: number }>();
      for (const t of file.tensors) {
        const e = types.get(t.format.name) ?? { count: 0, bytes: 0 };
        e.count++;
        e.bytes += t.byteSize;
        types.set(t.format.name, e);
      }
      const arch = metaString(file.kv, KEY.architecture, "");
      const names = new Set(file.tensors.map((t) => t.name));
      let config: ReturnType<typeof checkModelFile> | undefined;
      let configError: string | undefined;
      // the loader's own checks: a file they refuse is described, with the reason, but not planned for
      try { config = checkModelFile(file, model); } catch (e) { configError = (e as Error).message; }
      if (config) checkContextOption(o.ctx, config.trainContext);
      if (config) kvFormats(config, o); // a cache type the model cannot hold is refused here too
      const params = file.tensors.reduce((a, t) => a + t.nElements, 0);
      const need = config ? planBytes(file, config, { contextSize: o.ctx, ...cacheTypes(o) }) : undefined;
      const infoCtx = config ? (o.ctx ?? Math.min(config.trainContext, 2048)) : 0;
      const kvBytes = config ? kvCacheBytes(config, infoCtx, o) : undefined;
      // how a load would spread it over wasm memories (or why it cannot)
      let shards: Shard[] | undefined, shardError: string | undefined;
      if (config) try { shards = shardPlan(model, file, config, { contextSize: o.ctx, ...cacheTypes(o) }); } catch (e) { shardError = (e as Error).message; }
      const info = {
        file: model, version: file.version, architecture: arch, name: metaString(file.kv, KEY.name, ""),
        fileBytes: file.fileSize, tensors: file.tensors.length, parameters: params,
        tensorTypes: Object.fromEntries(types),
        config: config && { ...config, arch: undefined, family: config.arch.models, removedAttention: [...config.removedAttention], removedFfn: [...config.removedFfn] },
        contextSize: config ? infoCtx : undefined, memoryBytes: need,
        kvCache: config ? { typeK: kvFormats(config, o).k.name.toLowerCase(), typeV: kvFormats(config, o).v.name.toLowerCase(), bytes: kvBytes } : undefined,
        shards: shards?.map((s) => ({ layers: [s.start, s.end], embed: s.embed, head: s.head, bytes: s.bytes, weightBytes: s.weightBytes, kvBytes: s.kvBytes })),
        shardError,
        runnable: configError ? `no: ${configError}` : "yes",
        kernels: kernelsInfo(),
      };
      if (o.json) { console.log(JSON.stringify(info, null, 2)); return; }
      console.log(`file          ${model} (GGUF v${file.version}, ${mib(file.fileSize)})`);
      console.log(`architecture  ${arch || "(none)"}  name: ${info.name}`);
      console.log(`parameters    ${params.toLocaleString("en-US")} in ${file.tensors.length} tensors`);
      console.log(`tensor types  ${[...types].map(([k, v]) => `${k}: ${v.count} (${mib(v.bytes)})`).join(", ")}`);
      if (config) {
        const c = config;
        console.log(`family        ${c.architecture}: ${c.arch.models}`);
        console.log(`layers        ${c.nLayers}  dim ${c.dim}  ffn ${c.hiddenDim}  heads ${c.nHeads} (kv ${c.nKvHeads}, head size ${c.headSize})`);
        console.log(`vocab         ${c.vocabSize}  context ${c.trainContext}  rms eps ${c.rmsEps.toPrecision(3)}${c.tiedOutput ? "  tied output" : ""}`);
        for (const line of describeConfig(c)) console.log(line);
        if (c.removedAttention.size || c.removedFfn.size) console.log(`removed halves attention: [${[...c.removedAttention]}]  ffn: [${[...c.removedFfn]}]`);
        console.log(`tensors used  ${expectedTensors(c, (n) => names.has(n)).length} of ${file.tensors.length}`);
        console.log(`KV cache      ${mib(kvBytes!)} at context ${info.contextSize}: K ${info.kvCache!.typeK}, V ${info.kvCache!.typeV} (--cache-type-k / --cache-type-v)`);
        console.log(`memory        ${mib(need!)} of wasm memory at context ${info.contextSize} (weights + KV cache + scratch)`);
        if (shards) {
          console.log(`shards        ${shards.length} wasm ${shards.length === 1 ? "memory" : "memories"} (at most ${mib(defaultShardBytes())} each${process.env.EDGEPRUNE_MAX_SHARD_MIB ? ", EDGEPRUNE_MAX_SHARD_MIB" : ""})`);
          if (shards.length > 1) for (const line of describeShards(shards)) console.log(`  ${line}`);
        } else {
          console.log(`shards        cannot load: ${shardError}`);
        }
      } else {
        console.log(`runnable      ${info.runnable}`);
      }
      console.log(`kernels       ${info.kernels.build} (${info.kernels.why})`);
    });

  program
    .command("generate")
    .description("generate text from a prompt, streaming it to stdout; timings and peak memory go to stderr (Ctrl-C stops it early)")
    .argument("<model>", "GGUF file")
    .option("-p, --prompt <text>", "prompt text; - reads it from standard input")
    .option("-f, --file <file>", "read the prompt from a file (one trailing newline dropped, as llama.cpp does)")
    .option("-n, --tokens <n>", "tokens to generate", int("-n", { min: 0 }), DEFAULTS.tokens)
    .option("--temp <t>", "temperature; 0 is greedy", num("--temp", { min: 0 }), DEFAULTS.temperature)
    .option("--top-k <k>", "top-k (0 = off)", int("--top-k", { min: 0 }), DEFAULTS.topK)
    .option("--top-p <p>", "top-p (1 = off)", num("--top-p", { above: 0, max: 1 }), DEFAULTS.topP)
    .option("--min-p <p>", "min-p (0 = off)", num("--min-p", { min: 0, max: 1 }), DEFAULTS.minP)
    .option("--repeat-penalty <r>", "repetition penalty (1 = off)", num("--repeat-penalty", { above: 0 }), DEFAULTS.repeatPenalty)
    .option("--repeat-last-n <n>", "tokens the penalty looks back over", int("--repeat-last-n", { min: 0 }), DEFAULTS.repeatLastN)
    .option("-s, --seed <n>", "sampling seed (default: random)", int("--seed"))
    .option("--ctx <n>", "context size (KV cache length; at most the model's context length)", int("--ctx", { min: 1 }))
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .addOption(threadsOption())
    .option("--no-bos", "do not add the BOS token")
    .option("--ignore-eos", "keep generating past end-of-sequence")
    .option("--json", "print one JSON object (text, tokens, prompt_tokens, timings) on stdout instead of streaming the text")
    .action(async (model: string, o: {
      prompt?: string; file?: string; tokens: number; temp: number; topK: number; topP: number; minP: number; repeatPenalty: number;
      repeatLastN: number; seed?: number; ctx?: number; threads?: number; bos: boolean; ignoreEos?: boolean; json?: boolean;
    } & CacheTypeFlags) => {
      checkFile(model, "model");
      const promptText = readPrompt(o);
      // every check that can fail does so before the prompt is echoed
      const config = checkModelFile(readGgufFileHeader(model), model);
      checkContextOption(o.ctx, config.trainContext);
      // as serve does: load-time survivors would otherwise double V8's young generation for the whole run
      (await import("./node/heap.js")).keepYoungGenerationSize();
      // Without --ctx the KV cache holds this run (prompt + new tokens; llama.cpp's n_ctx set to what is used), not
      // the model's 2048-token default: loading plans for at most the prompt's UTF-8 bytes + BOS/EOS/space prefix
      // (no tokenizer yet), and the context is cut to the exact count once the prompt is tokenized.
      const bound = Buffer.byteLength(promptText) + 3 + o.tokens;
      const asked = await threadsAsked(o);
      kvFormats(config, o);
      const m = loadModelFile(model, { contextSize: o.ctx ?? Math.min(bound, config.trainContext, 2048), threads: asked, ...cacheTypes(o) });
      const prompt = m.tokenizer.encode(promptText, { addBos: o.bos && m.tokenizer.addBos });
      if (prompt.length === 0) throw new Error("the prompt is empty (and --no-bos leaves no token to start from)");
      const ctxSize = o.ctx ?? Math.min(prompt.length + o.tokens, config.trainContext, 2048);
      if (prompt.length + o.tokens > ctxSize) {
        throw new Error(`prompt (${prompt.length} tokens) + ${o.tokens} new tokens exceed the context size ${ctxSize}${o.ctx === undefined ? ` (the model's context length is ${config.trainContext})` : "; use a larger --ctx"}`);
      }
      const sampling = {
        temperature: o.temp, topK: o.topK, topP: o.topP, minP: o.minP, repeatPenalty: o.repeatPenalty, repeatLastN: o.repeatLastN, seed: o.seed,
      };
      validateSamplerOptions(sampling);
      const threads = await startThreads(m, asked);
      const ctx = m.createContext({ contextSize: ctxSize });
      // Ctrl-C stops the generation at the next token; the text gets its newline and the timings still print
      let interrupted = false;
      const onSigint = () => { interrupted = true; };
      process.on("SIGINT", onSigint);
      let r: GenerateResult;
      try {
        if (!o.json) process.stdout.write(promptText);
        const steps = generateSteps(ctx, m.tokenizer, prompt, { maxTokens: o.tokens, ...sampling, stopAtEos: !o.ignoreEos, shouldStop: () => interrupted });
        for (;;) {
          const step = steps.next();
          if (step.done) { r = step.value; break; }
          if (!o.json) process.stdout.write(step.value.text);
          // lets the SIGINT handler run between tokens
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      } finally {
        process.off("SIGINT", onSigint);
      }
      const pp = (prompt.length / r.prefillMs) * 1000;
      const decoded = Math.max(0, r.tokens.length - 1);
      const tg = decoded > 0 ? (decoded / r.decodeMs) * 1000 : 0;
      if (o.json) {
        // prompt_tokens holds BOS when the model adds it: the exact ids to hand llama.cpp for a comparison
        console.log(JSON.stringify({
          model, text: r.text, tokens: r.tokens, prompt_tokens: prompt, stop_reason: r.stopReason,
          timings: { prompt_n: prompt.length, prompt_ms: r.prefillMs, prompt_per_second: pp, predicted_n: r.tokens.length, predicted_ms: r.decodeMs, predicted_per_second: tg },
          threads, kernels: m.rt.simd, context_size: ctx.contextSize, shards: m.runtimes.length, cache_type_k: ctx.kv.k.name.toLowerCase(), cache_type_v: ctx.kv.v.name.toLowerCase(),
        }));
      } else {
        // the timings start on a line of their own, whatever the text ended with (stdout and stderr often share a terminal)
        process.stdout.write("\n");
      }
      await drain(process.stdout);
      process.stderr.write(
        `prefill: ${prompt.length} tokens in ${r.prefillMs.toFixed(1)} ms (${pp.toFixed(1)} tok/s)\n` +
        `decode: ${r.tokens.length} tokens in ${r.decodeMs.toFixed(1)} ms (${tg.toFixed(1)} tok/s), stopped by ${interrupted ? "Ctrl-C" : r.stopReason}\n` +
        `memory: wasm ${mib(m.memoryBytes)}${m.runtimes.length > 1 ? ` in ${m.runtimes.length} memories` : ""} (${kvCacheName(m.config, m.defaultContext)} KV cache ${mib(kvCacheBytes(m.config, ctx.contextSize, m.defaultContext))} for ${ctx.contextSize} tokens), peak RSS ${mib(peakRss())}; ` +
        `${threads} thread${threads > 1 ? "s" : ""}, ${m.rt.simd} kernels\n`,
      );
      m.stopThreads();
      if (interrupted) process.exitCode = 130;
    });

  program
    .command("quantize")
    .description("quantize a model's weight matrices to a block format and write a new GGUF: round-to-nearest, or GPTQ calibrated on a text")
    .argument("<model>", "input GGUF file")
    .addOption(new Option("--type <type>", "target type: a block format, or q4_k_m (llama.cpp's Q4_K/Q6_K mix)").choices(quantTargets()).makeOptionMandatory())
    .addOption(new Option("--method <method>", "quantization method").choices(["rtn", "gptq"]).default("rtn"))
    .option("--calib <file>", "calibration text for gptq (documents split on <|endoftext|> lines; the first 80% are used)")
    .option("--tokens <n>", "calibration tokens", int("--tokens", { min: 1 }), DEFAULT_CALIB_TOKENS)
    .option("--group <n>", "gptq: columns sharing one scale, a multiple of 32", int("--group", { min: 1 }), GPTQ_DEFAULTS.group)
    .option("--act-order", "gptq: quantize columns by decreasing input energy (static groups)")
    .option("--damp <f>", "gptq: dampening, as a fraction of the mean of diag(H)", num("--damp", { min: 0 }), GPTQ_DEFAULTS.damp)
    .option("--allow-requantize", "quantize matrices that are already quantized (each rounding adds error: quantize the float original if you have it)")
    .addOption(threadsOption("threads for the calibration passes and GPTQ's updates (with --calib; round-to-nearest without it runs on one)"))
    .requiredOption("-o, --output <file>", "output GGUF file")
    .action(async (model: string, o: { type: string; method: string; output: string; calib?: string; tokens: number; group: number; actOrder?: boolean; damp: number; allowRequantize?: boolean; threads?: number }) => {
      checkFile(model, "model");
      const target = parseQuantRecipe(o.type);
      const method = o.method as QuantMethod;
      if (method === "gptq") {
        codecFor(target.base);
        if (!o.calib) throw new Error("--method gptq needs --calib FILE (a calibration text)");
      }
      if (o.calib) checkFile(o.calib, "calibration file");
      const outDir = dirname(resolve(o.output));
      if (!fs.existsSync(outDir)) throw new Error(`${o.output}: directory ${outDir} does not exist`);
      const src = new FileSource(model);
      try {
        const file = readGgufFileHeader(model);
        const config = checkModelFile(file, model);
        checkRequantize(file, model, target.base, o.allowRequantize ?? false);
        if (!o.calib) {
          const { spec, tensorChunks, plan } = quantizeModel(file, src, target);
          for (const p of plan) if (p.note) process.stderr.write(`note: ${p.note}\n`);
          const bar = new ProgressBar("quantize", plan.length);
          const layout = layoutGguf(spec);
          const bytes = await writeFileAtomic(o.output, ggufChunks(spec, (i) => { bar.update(i + 1, plan[i].info.name); return tensorChunks(i); }, layout), { inputs: [model] });
          bar.done();
          const changed = plan.filter((p) => p.target !== p.info.format).length;
          process.stderr.write(`wrote ${o.output}: ${changed} of ${plan.length} tensors quantized (${typeSummary(plan)}; ${target.name}, ${o.method}), ${mib(file.fileSize)} → ${mib(bytes)}\n`);
          return;
        }
        planGptq(file, target, method, o.group);
        const tokenizer = tokenizerFromGguf(file.kv);
        const cw = calibrationWindows(tokenizer, fs.readFileSync(o.calib, "utf8"), o.tokens, config.trainContext);
        checkGptqMemory(file, cw.windows, target, method, model, o.group);
        process.stderr.write(`calibration: ${cw.tokens} tokens in ${cw.windows.length} windows of ${cw.windows[0].length}, from the first ${cw.calibDocuments} of ${cw.documents} documents of ${o.calib}\n`);
        const asked = await threadsAsked(o);
        const runtime = await threadedRuntime(asked);
        const threads = noteThreads(asked, runtime.pool?.size ?? 1);
        const bar = new ProgressBar(method, config.nLayers * 4);
        const t0 = performance.now();
        let out: ReturnType<typeof openTensorFile> | undefined;
        let r: ReturnType<typeof quantizeGptq>;
        try {
          r = quantizeGptq(file, src, cw.windows, target, {
            method, group: o.group, actOrder: o.actOrder, damp: o.damp, name: model, onProgress: (d, _t, note) => bar.update(d, note),
            openSink: (spec) => (out = openTensorFile(o.output, spec, { inputs: [model, o.calib!] })), runtime,
          });
          bar.done();
        } catch (e) {
          out?.abort();
          throw e;
        } finally {
          runtime.pool?.close();
        }
        const bytes = out!.commit();
        for (const p of r.plan) if (p.note) process.stderr.write(`note: ${p.note}\n`);
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        const changed = r.plan.filter((p) => p.target !== p.info.format).length;
        console.log(errorTable(r.errors, method, config.nLayers));
        process.stderr.write(`wrote ${o.output}: ${changed} of ${r.plan.length} tensors quantized (${typeSummary(r.plan)}; ${target.name}, ${method}${method === "gptq" ? `, group ${o.group}${o.actOrder ? ", act-order" : ""}, damp ${o.damp}` : ""}; ${r.calibrated} calibrated, embeddings round-to-nearest; ${r.passes.full} full and ${r.passes.partial} partial layer passes), ${mib(file.fileSize)} → ${mib(bytes)} in ${secs} s on ${threads} thread${threads === 1 ? "" : "s"}, peak RSS ${mib(peakRss())}\n`);
      } finally {
        src.close();
      }
    });

  program
    .command("ppl")
    .description("perplexity of a model on a text file (llama.cpp's method: windows of --ctx tokens, BOS first, second half of each window scored)")
    .argument("<model>", "GGUF file")
    .requiredOption("-f, --file <text>", "UTF-8 text file")
    .option("--ctx <n>", "window length in tokens", int("--ctx", { min: 2 }), DEFAULTS.pplContext)
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .option("--chunks <n>", "score at most this many windows", int("--chunks", { min: 1 }))
    .addOption(threadsOption())
    .option("--json", "print the result as one line of JSON on stdout (the perplexity line goes to stderr)")
    .action(async (model: string, o: { file: string; ctx: number; chunks?: number; threads?: number; json?: boolean } & CacheTypeFlags) => {
      checkFile(model, "model");
      checkFile(o.file, "text file");
      checkContextOption(o.ctx, checkModelFile(readGgufFileHeader(model), model).trainContext);
      const asked = await threadsAsked(o);
      const m = loadModelFile(model, { contextSize: o.ctx, threads: asked, ...cacheTypes(o) });
      const threads = await startThreads(m, asked);
      const text = fs.readFileSync(o.file, "utf8");
      const tokens = m.tokenizer.encode(text, { addBos: m.tokenizer.addBos });
      const total = Math.floor(tokens.length / o.ctx);
      const bar = new ProgressBar("perplexity", o.chunks !== undefined ? Math.min(total, o.chunks) : total);
      const t0 = performance.now();
      const r = perplexity(m, tokens, { contextSize: o.ctx, maxChunks: o.chunks, onProgress: (d) => bar.update(d) });
      bar.done();
      const secs = (performance.now() - t0) / 1000;
      m.stopThreads();
      process.stderr.write(`${r.chunks} windows of ${r.contextSize} tokens, ${r.scoredTokens} tokens scored in ${secs.toFixed(1)} s on ${threads} thread${threads === 1 ? "" : "s"} (${m.rt.simd} kernels)\n`);
      // with --json the JSON is the last line (scripts read it with tail -1); the human line goes to stderr then
      if (o.json) {
        process.stderr.write(`perplexity: ${r.perplexity.toFixed(4)}\n`);
        console.log(JSON.stringify({ model, file: o.file, ...r, threads, kernels: m.rt.simd }));
      } else {
        console.log(`perplexity: ${r.perplexity.toFixed(4)}`);
      }
    });

  registerChatCommand(program);
  registerQualityCommands(program, DEFAULTS);
  registerPruneCommands(program);
  registerStudyCommands(program);
  registerSynthCommand(program);
  registerConvertCommand(program);
  program
    .command("serve")
    .description("serve the OpenAI API (/v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models), llama-server's /tokenize, /detokenize and /props, /health and /metrics over HTTP")
    .argument("<model>", "GGUF file")
    .option("--host <addr>", "address to bind; on a non-loopback address any Host header is answered (docs/serving.md, Security)", DEFAULTS.serve.host)
    .option("--cors <origins>", "comma-separated origins (e.g. http://localhost:3000) whose web pages may call the server, or *; default: none")
    .option("--port <n>", "port (0 picks a free one)", int("--port", { min: 0, max: 65535 }), DEFAULTS.serve.port)
    .option("--api-key <key>", "require `Authorization: Bearer <key>` on every route but /health")
    .option("--parallel <n>", "requests generating at once (one KV cache each)", int("--parallel"), DEFAULTS.serve.parallel)
    .option("--queue <n>", "requests that may wait for a KV cache; more get 429", int("--queue", { min: 0 }), DEFAULTS.serve.queue)
    .option("--ctx <n>", "context size per request (prompt + completion; at most the model's context length)", int("--ctx", { min: 1 }))
    .addOption(cacheTypeK()).addOption(cacheTypeV())
    .addOption(threadsOption())
    .option("--grace <ms>", "on SIGTERM, how long in-flight requests may finish before they are cancelled", int("--grace", { min: 0 }), DEFAULTS.serve.graceMs)
    .option("--warmup <n>", "requests the server sends itself before /health answers 200, so memory is steady from the first client request (0: none)", int("--warmup", { min: 0 }), DEFAULTS.serve.warmup)
    .option("--embeddings", "serve POST /v1/embeddings (off by default, as llama-server's --embeddings)")
    .option("--pooling <type>", "how /v1/embeddings pools a decoder's hidden states: mean or last (default last, the token node-llama-cpp's embedding context reads)")
    .option("--quiet", "do not log each request")
    .action(async (model: string, o: { host: string; cors?: string; port: number; apiKey?: string; parallel: number; queue: number; ctx?: number; threads?: number; grace: number; warmup: number; embeddings?: boolean; pooling?: string; quiet?: boolean } & CacheTypeFlags) => {
      if (o.pooling !== undefined && o.pooling !== "mean" && o.pooling !== "last") throw new Error(`invalid --pooling ${JSON.stringify(o.pooling)}: expected mean or last (a decoder model has no CLS token; rank pooling needs a reranker)`);
      if (o.pooling !== undefined && !o.embeddings) throw new Error("--pooling applies to /v1/embeddings: add --embeddings");
      checkFile(model, "model");
      checkContextOption(o.ctx, checkModelFile(readGgufFileHeader(model), model).trainContext);
      const { parseCorsList } = await import("./server/policy.js");
      const cors = o.cors !== undefined ? parseCorsList(o.cors) : undefined;
      // first, before the model load allocates: a serving process keeps a fixed young generation (heap.ts says why)
      (await import("./node/heap.js")).keepYoungGenerationSize();
      const { startServer } = await import("./server/server.js");
      const say = (line: string) => process.stderr.write(`edgeprune: ${line}\n`);
      const server = await startServer({
        model, host: o.host, cors, port: o.port, apiKey: o.apiKey ?? process.env.EDGEPRUNE_API_KEY, parallel: o.parallel, queue: o.queue,
        contextSize: o.ctx, ...cacheTypes(o), threads: await threadsAsked(o), graceMs: o.grace, warmup: o.warmup,
        embeddings: o.embeddings ?? false, pooling: o.pooling as "mean" | "last" | undefined, log: (line) => { if (!o.quiet || !/^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) /.test(line)) say(line); },
      });
      const stopped = new Promise<void>((resolve) => {
        const stop = (sig: string) => { say(`${sig}: stopping`); server.close().then(resolve); };
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
      try {
        await server.ready;
      } catch (e) {
        await server.close();
        throw e;
      }
      await stopped;
      say("stopped");
    });

  program
    .command("pull")
    .description("download a model from models/manifest.json (or a URL) into the cache, resuming and verifying its sha256; prints its path")
    .argument("<name-or-url>", "a manifest name (e.g. stories260K) or an http(s) URL of a GGUF")
    .option("--sha256 <hex>", "expected sha256 (for URLs the manifest does not list)")
    .option("--no-verify", "store a file whose sha256 nobody has established (refused otherwise)")
    .option("--cache <dir>", "cache directory (default: $EDGEPRUNE_CACHE, $XDG_CACHE_HOME/edgeprune or ~/.cache/edgeprune)")
    .action(async (spec: string, o: { sha256?: string; verify: boolean; cache?: string }) => {
      const { pull, defaultCacheDir } = await import("./node/pull.js");
      let bar: ProgressBar | undefined;
      const r = await pull(spec, {
        cacheDir: o.cache ?? defaultCacheDir(), sha256: o.sha256, noVerify: !o.verify,
        log: (line) => process.stderr.write(`edgeprune: ${line}\n`),
        onProgress: (done, total) => {
          bar ??= new ProgressBar("pull", total || done);
          bar.update(done, `${mib(done)}${total ? ` of ${mib(total)}` : ""}`);
        },
      });
      bar?.done();
      const how = r.cached ? "already cached" : r.resumedFrom > 0 ? `downloaded, resumed at byte ${r.resumedFrom}` : "downloaded";
      process.stderr.write(`${how}: ${r.path} (${mib(r.bytes)}, sha256 ${r.sha256}${r.verified ? ", verified" : ", NOT verified"})\n`);
      console.log(r.path);
    });

  return program;
}

/**
 * Refuses to quantize matrices that already are (llama-quantize refuses too, without --allow-requantize): the
 * second rounding adds its error to the first, and GPTQ's error feedback cannot undo what the first one lost.
 */
function checkRequantize(file: GgufFile, model: string, target: QuantFormat, allow: boolean): void {
  const matrices = file.tensors.filter((t) => t.shape.length === 2 && t.name.endsWith(".weight"));
  const quantized = matrices.filter((t) => !FLOAT_FORMATS.has(t.format.name));
  if (quantized.length === 0) return;
  const types = [...new Set(quantized.map((t) => t.format.name))].join(", ");
  if (quantized.every((t) => t.format === target) && quantized.length === matrices.filter((t) => t.dims[0] % target.blockSize === 0).length) {
    throw new Error(`${model}: its weight matrices are already ${target.name}; there is nothing to quantize (start from the F32/F16 original to quantize it differently)`);
  }
  if (!allow) {
    throw new Error(`${model}: ${quantized.length} of its ${matrices.length} weight matrices are already quantized (${types}); quantizing them again to ${target.name} adds a second rounding error. Quantize the F32/F16 original, or pass --allow-requantize`);
  }
  process.stderr.write(`note: requantizing ${quantized.length} ${types} matrices to ${target.name} (--allow-requantize): expect more error than quantizing the original\n`);
}

/** Formats whose values are the weights themselves, not a rounding of them. */
const FLOAT_FORMATS: ReadonlySet<string> = new Set(["F32", "F16", "BF16"]);

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(expandShorthands(argv));
    // a command may set its own code (generate stopped by Ctrl-C: 130, as llama.cpp)
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code?.startsWith("commander.")) {
      // commander already printed its message (or help/version output, which exits 0)
      return err.exitCode ?? 1;
    }
    process.stderr.write(`edgeprune: error: ${err.message}\n`);
    if (process.env.EDGEPRUNE_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
