import { duration, formatBytes, formatCount } from '../core/format.ts';
import type { BuildObserver } from '../pipelines/engine/build.ts';

/**
 * Progress of a build on stderr: a live line redrawn a few times a second on a terminal, a plain line every
 * `intervalMs` otherwise (logs of a batch job), nothing with --quiet.
 */
export class BuildProgress implements BuildObserver {
  private rows = 0;
  private successes = 0;
  private images = 0;
  private bytes = 0;
  private shards = 0;
  private totalRows: number | undefined;
  private readonly start = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly mode: 'tty' | 'lines' | 'quiet',
    private readonly stream: NodeJS.WritableStream = process.stderr,
    private readonly intervalMs = mode === 'tty' ? 250 : 10_000,
  ) {}

  started(info: { shardsDone: number; rowsToProcess: number | undefined }): void {
    this.totalRows = info.rowsToProcess;
    if (this.mode === 'quiet') return;
    if (info.shardsDone > 0) this.stream.write(`resuming: ${info.shardsDone} shard${info.shardsDone === 1 ? '' : 's'} already built\n`);
    this.timer = setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
  }

  row(outcome: { status: string; images: number; bytes: number }): void {
    this.rows++;
    if (outcome.status === 'success') this.successes++;
    this.images += outcome.images;
    this.bytes += outcome.bytes;
  }

  shard(): void {
    this.shards++;
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.mode === 'tty') this.stream.write('\r\x1b[K');
  }

  line(): string {
    const seconds = Math.max((Date.now() - this.start) / 1000, 0.001);
    const rate = this.rows / seconds;
    const parts = [
      this.totalRows ? `${formatCount(this.rows)}/${formatCount(this.totalRows)} rows` : `${formatCount(this.rows)} rows`,
      `${(this.images / seconds).toFixed(1)} images/s`,
      `${this.rows ? ((100 * this.successes) / this.rows).toFixed(1) : '0.0'}% ok`,
      formatBytes(this.bytes),
      `${this.shards} shard${this.shards === 1 ? '' : 's'}`,
    ];
    if (this.totalRows && rate > 0 && this.rows <= this.totalRows) parts.push(`ETA ${duration((this.totalRows - this.rows) / rate)}`);
    return parts.join(' | ');
  }

  private draw(): void {
    this.stream.write(this.mode === 'tty' ? `\r\x1b[K${this.line()}` : `${new Date().toISOString()} ${this.line()}\n`);
  }
}
