/**
 * Runs bench/peer/opencv_resize.py (img2dataset's resize recipe) over a list of image files, for the image and build
 * benchmarks. Peak RSS is the whole process tree's, sampled from /proc: the script's getrusage figures would include
 * this benchmark's RSS, carried over fork and exec, and count only the largest of its workers.
 */
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand, type ImageRunFigures } from '../harness.ts';

const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'opencv_resize.py');

/** CPU and peak RSS are the pool process's and its workers' together (shared pages counted in each, as `ps` would). */
export interface PeerRun extends ImageRunFigures {
  largestWorkerRssMiB: number;
  processes: number;
  opencv: string;
}

/** The peer over the files listed one per line in `listFile`, one process per core; or why it could not run. */
export async function runOpenCvPeer(listFile: string): Promise<PeerRun | string> {
  const probe = await runCommand(PYTHON, ['-c', 'import cv2, numpy']);
  if (probe.code !== 0) return `${PYTHON} cannot import cv2/numpy; install them with: apt-get install -y python3-opencv python3-numpy`;
  const processes = os.availableParallelism();
  let peakRssBytes = 0;
  const watch = (pid: number) => {
    const timer = setInterval(() => (peakRssBytes = Math.max(peakRssBytes, treeRss(pid))), 25);
    return () => clearInterval(timer);
  };
  const r = await runCommand(PYTHON, [SCRIPT, listFile, '--processes', String(processes)], { watch });
  if (r.code !== 0) return `peer failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    images: number;
    ok: number;
    wallSeconds: number;
    cpuSeconds: number;
    largestChildRssMiB: number;
    opencv: string;
  };
  return {
    images: out.images,
    ok: out.ok,
    wallSeconds: out.wallSeconds,
    imagesPerSecond: out.images / out.wallSeconds,
    cpuSeconds: out.cpuSeconds,
    cpuShare: out.cpuSeconds / out.wallSeconds,
    cpuMsPerImage: (out.cpuSeconds * 1000) / out.images,
    peakRssMiB: peakRssBytes / 2 ** 20,
    largestWorkerRssMiB: out.largestChildRssMiB,
    processes,
    opencv: out.opencv,
  };
}

/** RSS of a process and all its descendants, summed, from /proc; 0 for a process that is gone. */
function treeRss(root: number): number {
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    try {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      total += match ? Number(match[1]) * 1024 : 0;
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
        if (children !== '') stack.push(...children.split(' ').map(Number));
      }
    } catch {
      // exited between two reads
    }
  }
  return total;
}
