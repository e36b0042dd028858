// The module groups of the mutation runs (stryker.config.mjs, scripts/mutation.mjs): what each mutates and the fast
// test files that judge it (EDGEPRUNE_TEST_QUICK=1 shrinks the float64-reference tests; docs/testing.md).
const QUICK = "EDGEPRUNE_TEST_QUICK=1";
export const GROUPS = {
  sampler: { mutate: ["src/sampler.ts"], tests: ["sampler"] },
  forward: { mutate: ["src/model/forward.ts"], tests: ["ref-forward"] },
  gptq: { mutate: ["src/gptq/**/*.ts"], tests: [`${QUICK} ref-gptq`] },
  prune: { mutate: ["src/prune/**/*.ts"], tests: [`${QUICK} ref-bi`] },
  quant: { mutate: ["src/quant/ref.ts"], tests: ["formats", "kernels"] },
};
