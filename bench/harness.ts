// Small shared tools for benchmarks: timing, best-of-N, peak RSS, child processes, and the closing JSON line.
import { execFile } from 'node:child_process';

/** The time `fn` takes, and what it returns. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, value };
}

/** Runs each contender `rounds` times, alternating so drift on a noisy machine hits both, and keeps each one's best time. */
export async function bestOf(rounds: number, contenders: Record<string, () => Promise<unknown>>): Promise<Record<string, number>> {
  return bestTimes(await roundsOf(rounds, contenders));
}

/** Each contender's best time over its rounds. */
export function bestTimes(times: Record<string, number[]>): Record<string, number> {
  return Object.fromEntries(Object.entries(times).map(([name, seconds]) => [name, Math.min(...seconds)]));
}

/**
 * Runs each contender `rounds` times, alternating, and gives every time (seconds), by contender, round by round. With
 * `settle`, each timed run follows an untimed one of the same contender: it pays for its own garbage, not for the
 * garbage of the one before (a pass that holds 180 MB of buffers leaves the next a collection of the old generation).
 */
export async function roundsOf(
  rounds: number,
  contenders: Record<string, () => Promise<unknown>>,
  options: { settle?: boolean } = {},
): Promise<Record<string, number[]>> {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(contenders).map((name) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, fn] of Object.entries(contenders)) {
      if (options.settle) await fn();
      times[name]!.push((await timed(fn)).seconds);
    }
  }
  return times;
}

/** The median over rounds of `baseline / contender` (each round's two times side by side): drift within a round cancels. */
export function pairedRatio(baseline: readonly number[], contender: readonly number[]): number {
  const ratios = baseline.map((b, i) => b / contender[i]!).sort((a, b) => a - b);
  const mid = ratios.length >> 1;
  const median = ratios.length % 2 ? ratios[mid]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
  return Math.round(median * 100) / 100;
}

/** Samples RSS every few milliseconds until stopped; returns the peak in bytes. */
export function rssSampler(intervalMs = 20): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

export const MB = 1e6;

/** `--quick` (or BENCH_QUICK=1) shrinks a benchmark's input for a smoke run. */
export function isQuick(): boolean {
  return process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
}

export function report(name: string, figures: Record<string, unknown>): void {
  console.log(JSON.stringify({ bench: name, ...figures }));
}

export function ratio(a: number, b: number): number {
  return Math.round((a / b) * 100) / 100;
}

/** Runs a command to its end; `watch` is called with its pid once started and may return a function that stops it. */
export function runCommand(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; watch?: (pid: number) => () => void } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stop: (() => void) | undefined;
    const child = execFile(command, args, { env: options.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      stop?.();
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
    if (options.watch && child.pid !== undefined) stop = options.watch(child.pid);
  });
}

/** What one contender that processes images did in one run. */
export interface ImageRunFigures {
  images: number;
  ok: number;
  wallSeconds: number;
  imagesPerSecond: number;
  cpuSeconds: number;
  /** CPU seconds / wall seconds (children included where a contender has them): 2.0 is both cores of this machine. */
  cpuShare: number;
  /** CPU time per image: less sensitive than images/s to other load on the machine. */
  cpuMsPerImage: number;
  peakRssMiB: number;
}
