#!/usr/bin/env python3
"""Feeds m4data's trainer bridge to a PyTorch trainer: numpy only, torch optional.

`M4DataBatches` starts `m4data train --dry-run --dump - ...` for this rank and reads the batches it writes to its
standard output: a stream of .npy arrays, five per batch, always in the order of TENSOR_ORDER. With torch installed it
is a `torch.utils.data.IterableDataset` whose items are dicts of tensors; without, a plain iterable of numpy arrays.

    from pytorch_feed import M4DataBatches
    batches = M4DataBatches("out/mix", extra_args=["--steps", "1000", "--batch-size", "8"])
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=0)  # already batched; the bridge
    for batch in loader:                                                          # has its own pixel workers
        out = model(**batch)  # input_ids, attention_mask, labels, pixel_values, image_attention_mask

Under torchrun each process reads RANK and WORLD_SIZE, so every rank gets its own slice and the same number of
batches. As a script it prints each batch's shapes (`--digest` prints dtype, shape and sha256 per array instead):

    python3 examples/pytorch_feed.py --mixture out/mix -- --steps 3 --seq-len 1024
    m4data train --dry-run --mixture out/mix --dump - | python3 examples/pytorch_feed.py -
"""
import ast
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np

try:
    import torch
    from torch.utils.data import IterableDataset as _Base
except ImportError:  # numpy only: a plain iterable
    torch = None
    _Base = object

TENSOR_ORDER = ("input_ids", "attention_mask", "labels", "pixel_values", "image_attention_mask")
_MAGIC = b"\x93NUMPY"
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_npy(stream):
    """Reads one .npy array (format 1.0 or 2.0) from a binary stream; None at a clean end of stream."""
    magic = _read_exactly(stream, 6, allow_eof=True)
    if magic is None:
        return None
    if magic != _MAGIC:
        raise ValueError(f"not a .npy stream (starts with {magic!r})")
    major, _minor = _read_exactly(stream, 2)
    length_bytes = 2 if major == 1 else 4
    header_length = int.from_bytes(_read_exactly(stream, length_bytes), "little")
    header = ast.literal_eval(_read_exactly(stream, header_length).decode("latin1"))
    if header["fortran_order"]:
        raise ValueError("Fortran-ordered arrays are not expected from m4data")
    dtype = np.dtype(header["descr"])
    shape = tuple(header["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    data = _read_exactly(stream, count * dtype.itemsize)
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def read_batches(stream):
    """Yields dicts of the five arrays of each batch from a stream of .npy arrays."""
    while True:
        first = read_npy(stream)
        if first is None:
            return
        arrays = [first] + [read_npy(stream) for _ in TENSOR_ORDER[1:]]
        if any(a is None for a in arrays):
            raise EOFError("the stream ended inside a batch")
        yield dict(zip(TENSOR_ORDER, arrays))


def _read_exactly(stream, n, allow_eof=False):
    chunks = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == n:
                return None
            raise EOFError(f"the stream ended {remaining} bytes short of {n}")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def m4data_command(m4data=None):
    """How to run m4data: the `m4data` argument (e.g. "npx m4data" or a path), else `$M4DATA`, else `m4data` on PATH
    (after `npm install -g` or `npm link` in the checkout), else the bin/m4data.mjs of the checkout this file is in."""
    chosen = m4data or os.environ.get("M4DATA")
    if chosen:
        return shlex.split(chosen)
    on_path = shutil.which("m4data")
    if on_path:
        return [on_path]
    bundled = os.path.join(_REPO, "bin", "m4data.mjs")
    if os.path.exists(bundled):
        return ["node", bundled]
    raise FileNotFoundError(
        "m4data not found: pass M4DataBatches(..., m4data='npx m4data') or a path to bin/m4data.mjs, set M4DATA, "
        "or put m4data on PATH (npm install -g, or npm link in the m4data checkout)"
    )


class M4DataBatches(_Base):
    """This rank's batches of a mixture, read from a child `m4data train --dry-run --dump -`."""

    def __init__(self, mixture, rank=None, world_size=None, extra_args=(), as_torch=True, m4data=None):
        self.mixture = mixture
        self.m4data = m4data
        self.rank = int(os.environ.get("RANK", 0)) if rank is None else rank
        self.world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
        self.extra_args = list(extra_args)
        self.as_torch = as_torch and torch is not None

    def command(self):
        return m4data_command(self.m4data) + [
            "train", "--dry-run", "--dump", "-", "--quiet",
            "--mixture", self.mixture, "--rank", str(self.rank), "--world-size", str(self.world_size),
        ] + self.extra_args

    def __iter__(self):
        child = subprocess.Popen(self.command(), stdout=subprocess.PIPE)  # logs stay on our stderr
        try:
            for batch in read_batches(child.stdout):
                yield {k: torch.from_numpy(v.copy()) for k, v in batch.items()} if self.as_torch else batch
        finally:
            child.stdout.close()
            code = child.wait()
        if code not in (0, None):
            raise RuntimeError(f"m4data train exited with status {code}")


def _describe(batch, digest):
    if digest:
        return json.dumps({k: [v.dtype.str, list(v.shape), hashlib.sha256(v.tobytes()).hexdigest()] for k, v in batch.items()})
    return "  ".join(f"{k} {list(v.shape)}" for k, v in batch.items())


def main(argv):
    digest = "--digest" in argv
    argv = [a for a in argv if a != "--digest"]
    if argv[:1] == ["-"]:
        batches = read_batches(sys.stdin.buffer)
    elif argv[:1] == ["--mixture"] and len(argv) >= 2:
        extra = argv[3:] if argv[2:3] == ["--"] else argv[2:]
        batches = M4DataBatches(argv[1], extra_args=extra, as_torch=False)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for batch in batches:
        print(_describe(batch, digest), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
