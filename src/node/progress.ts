// A one-line progress bar on stderr for long CLI runs; silent when stderr is not a terminal (CI logs stay clean),
// unless EDGEPRUNE_PROGRESS=lines asks for a plain line every 10 s (long runs in the background, logs).
// Written by hand: it is a dozen lines, smaller than any dependency that does it.

export class ProgressBar {
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly lines = !this.tty && process.env.EDGEPRUNE_PROGRESS === "lines";
  private last = 0;
  private readonly start = Date.now();

  constructor(private readonly label: string, private readonly total: number) {}

  update(done: number, note = ""): void {
    const now = Date.now();
    if (this.lines) {
      if (done < this.total && now - this.last < 10_000) return;
      this.last = now;
      process.stderr.write(`${this.label} ${done}/${this.total} ${((now - this.start) / 1000).toFixed(0)}s ${note}\n`);
      return;
    }
    if (!this.tty) return;
    if (done < this.total && now - this.last < 100) return;
    this.last = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 30;
    const filled = Math.round(frac * width);
    const secs = ((now - this.start) / 1000).toFixed(1);
    process.stderr.write(`\r${this.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${this.total} ${secs}s ${note}\x1b[K`);
  }

  done(): void {
    if (this.tty) process.stderr.write("\n");
  }
}
