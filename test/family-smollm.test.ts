// Architecture family smollm against llama.cpp: the tests every family gets (test/support/family-suite.ts).
import { familySuite } from "./support/family-suite.js";

familySuite("smollm");
