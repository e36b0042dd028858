// Architecture family qwen2 against llama.cpp: the tests every family gets (test/support/family-suite.ts).
import { familySuite } from "./support/family-suite.js";

familySuite("qwen2");
