"""How long a worker's load spends naming its weights (`worker.weights.directory_digest`): MB/s of
SHA-256 over a model-shaped directory, on one thread and on the default thread count, read from the
page cache (the second of two passes) as after a load that just read the files.

    .venv/bin/python bench/weights_digest.py [--shards 4] [--mib 1024] [--dir /tmp]

Writes `--shards` files of `--mib` MiB each (random bytes) into a temporary directory under `--dir`,
hashes it, deletes it. The 8B model is 4 safetensors shards, 16 GB in all: its cost is about
16,000 MB / the default-thread rate when cached, or the disk's read rate when not. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.weights import directory_digest  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="rmscore-digest-") as tmp:
        chunk = os.urandom(1 << 20)
        for i in range(args.shards):
            with open(Path(tmp) / f"model-{i:05d}.safetensors", "wb") as f:
                for _ in range(args.mib):
                    f.write(chunk)
        total_mb = args.shards * args.mib * (1 << 20) / 1e6
        rates = {}
        for label, threads in (("1 thread", 1), ("default threads", None)):
            directory_digest(tmp, threads=threads)  # warm the page cache
            t0 = time.perf_counter()
            directory_digest(tmp, threads=threads)
            rates[label] = total_mb / (time.perf_counter() - t0)
        for label, rate in rates.items():
            print(f"{label:>16}: {rate:8.0f} MB/s  -> 16 GB (8B model) in {16_000 / rate:5.1f} s")
        print(f"default / 1 thread: {rates['default threads'] / rates['1 thread']:.2f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
