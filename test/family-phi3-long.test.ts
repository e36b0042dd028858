// Architecture family phi3 with LongRoPE's long factors in use (an original context below the comparison's):
// the probability comparisons against llama.cpp (test/support/family-suite.ts); the commands run on phi3's file.
import { familySuite } from "./support/family-suite.js";

familySuite("phi3-long", undefined, { commands: false });
