"""Peer for bench/image.bench.ts: img2dataset's image recipe with OpenCV, one process per core.

Reads a file holding one image path a line; for each image: cv2.imdecode, alpha matted onto white,
shortest side to SIZE with INTER_AREA (downscale only), cv2.imencode JPEG at QUALITY.
Prints one JSON line: counts, wall and CPU seconds (self + children), peak RSS.
Run with the Debian interpreter: /usr/bin/python3 (apt-get install python3-opencv python3-numpy).
"""
import argparse
import json
import multiprocessing
import os
import resource
import sys
import time

import cv2
import numpy as np

SIZE = 256
QUALITY = 95


def init_worker() -> None:
    # One process per core already fills the machine; OpenCV's own threads would oversubscribe it.
    cv2.setNumThreads(1)


def process(path: str) -> int:
    """Bytes of the encoded output, or -1 when the image cannot be decoded."""
    with open(path, "rb") as f:
        buf = np.frombuffer(f.read(), np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        return -1
    if img.ndim == 3 and img.shape[-1] == 4:
        alpha = img[:, :, 3, np.newaxis]
        img = np.rint((alpha / 255 * img[..., :3] + 255 - alpha).clip(0, 255)).astype(np.uint8)
    height, width = img.shape[:2]
    short = min(width, height)
    if short > SIZE:
        scale = SIZE / short
        img = cv2.resize(img, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    return len(encoded) if ok else -1


def cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def own_peak_rss_mib() -> float:
    """VmHWM: ru_maxrss also holds the peak of the process that spawned this one (kept across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("list", help="file with one image path a line")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with open(args.list) as f:
        paths = [line for line in f.read().splitlines() if line]

    cpu_before = cpu_seconds()
    started = time.perf_counter()
    with multiprocessing.Pool(args.processes, initializer=init_worker) as pool:
        sizes = list(pool.imap_unordered(process, paths, chunksize=8))
        pool.close()
        pool.join()  # reaps the workers so that RUSAGE_CHILDREN counts them
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before

    # ru_maxrss is in KiB on Linux; for children it is the largest single child, not their sum.
    self_rss = own_peak_rss_mib()
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ok = [s for s in sizes if s >= 0]
    print(json.dumps({
        "images": len(paths),
        "ok": len(ok),
        "failed": len(paths) - len(ok),
        "outputBytes": sum(ok),
        "processes": args.processes,
        "wallSeconds": round(wall, 3),
        "cpuSeconds": round(cpu, 3),
        "selfRssMiB": round(self_rss, 1),
        "largestChildRssMiB": round(child_rss, 1),
        "opencv": cv2.__version__,
    }))


if __name__ == "__main__":
    sys.exit(main())
