/**
 * Preload for a process bench/build.bench.ts runs and measures (`node --import <this file> bin/m4data.mjs build ...`):
 * samples RSS every 20 ms and, when the process exits, writes its CPU time and peak RSS as JSON to the file named by
 * M4_BENCH_USAGE_FILE. The kernel's peak (VmHWM) catches spikes between samples; getrusage's maxRSS would not do:
 * Linux carries the peak RSS of the spawning process (here the benchmark) across fork and exec into it.
 */
import { readFileSync, writeFileSync } from 'node:fs';

function kernelPeak() {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

const out = process.env.M4_BENCH_USAGE_FILE;
if (out) {
  let sampled = process.memoryUsage.rss();
  const timer = setInterval(() => {
    sampled = Math.max(sampled, process.memoryUsage.rss());
  }, 20);
  timer.unref();
  process.once('exit', (code) => {
    const usage = process.resourceUsage();
    writeFileSync(
      out,
      JSON.stringify({
        code,
        cpuMicros: usage.userCPUTime + usage.systemCPUTime,
        sampledPeakRss: Math.max(sampled, process.memoryUsage.rss()),
        kernelPeakRss: kernelPeak(),
        // getrusage's figure, for comparison only (see above).
        rusageMaxRss: usage.maxRSS * 1024,
        // Milliseconds since this process started: the parent's wall time minus this is spawn overhead.
        uptimeMs: performance.now(),
      }),
    );
  });
}
