/**
 * Preload for a process bench/build.bench.ts runs and measures (`node --import <this file> bin/m4data.mjs build ...`):
 * samples RSS every 100 ms and, when the process exits, writes its CPU time, peak RSS and main-thread GC time as JSON to the file named by
 * M4_BENCH_USAGE_FILE. The kernel's peak (VmHWM) catches spikes between samples; getrusage's maxRSS would not do:
 * Linux carries the peak RSS of the spawning process (here the benchmark) across fork and exec into it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';

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
  // Not more often: under heavy libvips work one read of the RSS can block the event loop for a few hundred microseconds.
  const timer = setInterval(() => {
    sampled = Math.max(sampled, process.memoryUsage.rss());
  }, 100);
  timer.unref();
  let gcMs = 0;
  let majorGcs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMs += entry.duration;
      if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majorGcs++;
    }
  }).observe({ entryTypes: ['gc'] });
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
        // Collections of the last moments before exit may not have been delivered yet: a slight undercount.
        gcMs,
        majorGcs,
      }),
    );
  });
}
