// The reconstruction-error summary `edgeprune quantize --calib` prints: per layer, ‖WX − ŴX‖ / ‖WX‖ over the
// calibration inputs of all its quantized matrices, for the method used and for round-to-nearest.
import { ERROR_ROWS, relativeError, type QuantMethod, type TensorError } from "./model.js";

/** A plain-text table, one line per layer and one for the whole model. */
export function errorTable(errors: TensorError[], method: QuantMethod, nLayers: number): string {
  const gptq = method === "gptq";
  const sampled = errors.some((e) => e.rows === ERROR_ROWS);
  const lines = [
    `relative reconstruction error ‖WX − ŴX‖ / ‖WX‖ on the calibration inputs, all quantized matrices of a layer${sampled ? ` (measured on ${ERROR_ROWS} evenly spaced rows of the larger matrices)` : ""}`,
    gptq ? "layer        gptq       rtn   change" : "layer         rtn",
  ];
  const row = (label: string, errs: TensorError[]) => {
    const r = relativeError(errs, "rtn");
    if (!gptq) return `${label.padEnd(7)} ${r.toFixed(5).padStart(9)}`;
    const g = relativeError(errs, "gptq");
    const change = r > 0 ? `${(((g - r) / r) * 100).toFixed(1)}%` : "-";
    return `${label.padEnd(7)} ${g.toFixed(5).padStart(9)} ${r.toFixed(5).padStart(9)} ${change.padStart(8)}`;
  };
  for (let l = 0; l < nLayers; l++) {
    const errs = errors.filter((e) => e.layer === l);
    if (errs.length > 0) lines.push(row(`blk.${l}`, errs));
  }
  lines.push(row("all", errors));
  return lines.join("\n");
}
