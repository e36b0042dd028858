// The `convert` command: a Hugging Face model folder (safetensors + tokenizer files) to a GGUF llama.cpp runs,
// streamed to a temp file and renamed into place. Parses arguments and reports; the work is src/convert/.
import { Command, Option } from "commander";
import * as fs from "node:fs";
import { dirname, join, resolve } from "node:path";
import { convertChunks, CONVERT_TYPES, planConvert } from "../convert/convert.js";
import { writeFileAtomic } from "../node/files.js";
import { openHfModel } from "../node/hf.js";
import { ProgressBar } from "../node/progress.js";
import { mib } from "./common.js";

export function registerConvertCommand(program: Command): void {
  program
    .command("convert")
    .description("convert a Hugging Face model folder (llama, qwen2, qwen3, gemma3, phi3) to GGUF as llama.cpp's converter writes it")
    .argument("<hf-dir>", "folder with config.json, model.safetensors (or a sharded index), tokenizer.json, tokenizer_config.json")
    .requiredOption("-o, --output <file>", "output GGUF file")
    .addOption(new Option("--type <type>", "tensor type of the weight matrices (auto: BF16 for BF16 checkpoints, else F16)").choices(CONVERT_TYPES).default("auto"))
    .option("--vocab-only", "write only the metadata and the vocabulary (no tensors)")
    .action(async (dir: string, o: { output: string; type: string; vocabOnly?: boolean }) => {
      const outDir = dirname(resolve(o.output));
      if (!fs.existsSync(outDir)) throw new Error(`${o.output}: directory ${outDir} does not exist`);
      const model = openHfModel(dir, { weights: !o.vocabOnly });
      try {
        const t0 = performance.now();
        const plan = await planConvert(model, { type: o.type, vocabOnly: o.vocabOnly });
        for (const n of plan.notes) process.stderr.write(`note: ${n}\n`);
        const bar = new ProgressBar("convert", plan.tensors.length);
        const inputs = [...model.shards, ...["config.json", "tokenizer.json", "tokenizer_config.json"].map((f) => join(dir, f))];
        const bytes = await writeFileAtomic(o.output, convertChunks(plan, (i, t) => bar.update(i + 1, t.name)), { inputs });
        bar.done();
        const types = new Map<string, number>();
        for (const t of plan.tensors) types.set(t.format.name, (types.get(t.format.name) ?? 0) + 1);
        const typeList = [...types].map(([n, c]) => `${c} ${n}`).join(", ");
        process.stderr.write(
          `wrote ${o.output}: ${plan.family.arch}, ${plan.tensors.length} tensors${typeList ? ` (${typeList})` : ""}, ` +
          `vocabulary ${plan.vocab.size} tokens (${plan.vocab.style}${plan.vocab.style === "gpt2" ? `, pre-tokenizer ${plan.vocab.pre}` : ""}), ${mib(bytes)} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
        );
      } finally {
        model.close();
      }
    });
}
