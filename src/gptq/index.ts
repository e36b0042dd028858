// GPTQ's public surface: calibration windows, whole-model quantization, the per-matrix algorithm and the error
// summary the CLI prints. src/index.ts and src/cli.ts import from here only.
export { calibrationWindows, DEFAULT_CALIB_TOKENS, MAX_CALIB_WINDOW, type CalibrationWindows } from "../data/documents.js";
export { codecFor, gptqTargets, type Codec } from "./codec.js";
export { GPTQ_DEFAULTS, gptqMatrix, prepareHessian, type GptqOptions, type PreparedHessian } from "./gptq.js";
export { checkGptqMemory, planGptq, quantizeGptq, relativeError, rtnMatrix, type GptqModelOptions, type GptqModelResult, type QuantMethod, type TensorError } from "./model.js";
export { errorTable } from "./report.js";
