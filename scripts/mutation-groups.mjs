// The module groups of the mutation runs (stryker.config.mjs, scripts/mutation.mjs): what each mutates and the fast
// test files that judge it (EDGEPRUNE_TEST_QUICK=1 shrinks the float64-reference tests; docs/testing.md).
const QUICK = "EDGEPRUNE_TEST_QUICK=1";
export const GROUPS = {
  sampler: { mutate: ["src/sampler.ts"], tests: ["sampler"] },
  forward: { mutate: ["src/model/forward.ts"], tests: ["ref-forward"] },
  // GPTQ of one matrix; the whole-model walk (model.ts, calibrate.ts) and the kernels' scalar twin (reference.ts)
  // are judged by gptq.test.ts, whose llama.cpp runs are too slow to repeat per mutant
  gptq: { mutate: ["src/gptq/gptq.ts", "src/gptq/codec.ts", "src/gptq/linalg.ts"], tests: [`${QUICK} ref-gptq`] },
  // the scores; file surgery (remove.ts, laco.ts) and the studies (study.ts, evaluate.ts) are judged by
  // prune.test.ts and study.test.ts, which run the CLI and llama.cpp
  prune: { mutate: ["src/prune/metrics.ts", "src/prune/stats.ts"], tests: [`${QUICK} ref-bi`, "metrics"] },
  quant: { mutate: ["src/quant/ref.ts"], tests: ["formats", "kernels"] },
};
