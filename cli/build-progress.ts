import { duration, formatBytes, formatCount, plural } from '../core/format.ts';
import type { BuildObserver } from '../pipelines/engine/build.ts';
import type { ProgressLine } from './progress-line.ts';

/** Progress of a build on its progress line, redrawn by a timer: rows, images/s, success rate, bytes, shards, ETA. */
export class BuildProgress implements BuildObserver {
  private rows = 0;
  private successes = 0;
  private images = 0;
  private bytes = 0;
  private shards = 0;
  private totalRows: number | undefined;
  private readonly start = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly progress: ProgressLine) {}

  started(info: { shardsDone: number; rowsToProcess: number | undefined }): void {
    this.totalRows = info.rowsToProcess;
    if (this.progress.mode === 'quiet') return;
    if (info.shardsDone > 0) this.progress.note(`resuming: ${plural(info.shardsDone, 'shard')} already built`);
    this.timer = setInterval(() => this.progress.update(() => this.line(), true), this.progress.mode === 'tty' ? 250 : 10_000);
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
    this.progress.clear();
  }

  line(): string {
    const seconds = Math.max((Date.now() - this.start) / 1000, 0.001);
    const rate = this.rows / seconds;
    const parts = [
      this.totalRows ? `${formatCount(this.rows)}/${formatCount(this.totalRows)} rows` : `${formatCount(this.rows)} rows`,
      `${(this.images / seconds).toFixed(1)} images/s`,
      `${this.rows ? ((100 * this.successes) / this.rows).toFixed(1) : '0.0'}% ok`,
      formatBytes(this.bytes),
      plural(this.shards, 'shard'),
    ];
    if (this.totalRows && rate > 0 && this.rows <= this.totalRows) parts.push(`ETA ${duration((this.totalRows - this.rows) / rate)}`);
    return parts.join(' | ');
  }
}
