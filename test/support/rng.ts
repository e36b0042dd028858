// Seeded pseudo-random numbers for tests: the library's own generator, so inputs repeat on every run.
export { mulberry32 } from "../../src/random.js";
