/**
 * One progress line on stderr for every long command (build, inspect, mix, extract): on a terminal a live line
 * redrawn in place at most every `ttyIntervalMs`; elsewhere (a batch job's log) a timestamped line at most every
 * `logIntervalMs`; nothing when quiet. `update` may be called as often as the work likes: it draws only when due.
 */
export type ProgressMode = 'tty' | 'lines' | 'quiet';

export class ProgressLine {
  private last = 0;
  private drawn = false;

  constructor(
    readonly mode: ProgressMode,
    private readonly stream: NodeJS.WritableStream = process.stderr,
    private readonly intervalMs = mode === 'tty' ? 250 : 10_000,
  ) {}

  /** `quiet` when asked, else `tty` or `lines` as the stream is a terminal or not. */
  static modeFor(quiet: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
    return quiet ? 'quiet' : stream.isTTY ? 'tty' : 'lines';
  }

  /** Draws `text` if a line is due (or `force`); `text` is made only then. */
  update(text: () => string, force = false): void {
    if (this.mode === 'quiet') return;
    const now = Date.now();
    if (!force && now - this.last < this.intervalMs) return;
    this.last = now;
    this.drawn = true;
    this.stream.write(this.mode === 'tty' ? `\r\x1b[K${text()}` : `${new Date(now).toISOString()} ${text()}\n`);
  }

  /** A line of its own, between updates (`resuming: ...`). */
  note(text: string): void {
    if (this.mode === 'quiet') return;
    this.clear();
    this.stream.write(`${text}\n`);
  }

  /** Clears a live line, so what follows starts on a clean line. */
  clear(): void {
    if (this.mode === 'tty' && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
