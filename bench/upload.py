"""Upload a generated N-line JSONL file to a real `rmscore api` and report lines/s and the API
process's peak RSS (issue 4: a 1,000,000-line upload must stay under 300 MB).

    .venv/bin/python bench/upload.py [--lines 1000000] [--database-url URL] [--broker-url URL]

Starts its own API (auth disabled, on 127.0.0.1, a fresh SQLite file unless --database-url is
given); no worker is needed, since the upload ends when every line is stored and its chunks are
queued. The broker's Redis database is flushed before and after (default: db 15). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the process harness (tests/harness.py)

from benchkit import start_bench_api  # noqa: E402
from harness import stop_proc  # noqa: E402

from rmscore.http import CLIENT_HEADER  # noqa: E402

WORDS = "the a reward model scores how helpful honest and harmless an answer is to a question"


def generate(path: Path, n: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    words = WORDS.split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            prompt = " ".join(rng.choices(words, k=rng.randint(5, 25)))
            response = " ".join(rng.choices(words, k=rng.randint(5, 40)))
            f.write(json.dumps({"custom_id": f"row-{i}", "prompt": prompt, "response": response}) + "\n")
    return path.stat().st_size


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc (Linux only)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--keep", action="store_true", help="Keep the generated file and database.")
    args = ap.parse_args()

    import redis

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-bench-upload-"))
    data = tmp / "upload.jsonl"
    t0 = time.perf_counter()
    size = generate(data, args.lines)
    print(f"generated {args.lines:,} lines ({size / 1e6:,.1f} MB) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    db_url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    r = redis.Redis.from_url(args.broker_url)
    r.flushdb()
    url, api = start_bench_api(db_url, args.broker_url, tmp / "api.log", auth="disabled")
    try:
        idle_rss = peak_rss_mb(api.pid)

        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:  # RSS over time, to show it stays flat rather than growing with the file
            while not stop.wait(0.5):
                try:
                    samples.append(
                        int(Path(f"/proc/{api.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
                    )
                except OSError:
                    return

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        with open(data, "rb") as f:
            resp = httpx.post(
                f"{url}/v1/jobs/upload",
                files={"file": (data.name, f, "application/x-ndjson")},
                headers={CLIENT_HEADER: "bench"},  # local mode refuses form-shaped bodies without it
                timeout=httpx.Timeout(None, connect=10),
            )
        seconds = time.perf_counter() - t0
        stop.set()
        resp.raise_for_status()
        job = resp.json()
        peak = peak_rss_mb(api.pid)
        report = {
            "lines": args.lines,
            "bytes": size,
            "database": db_url.split(":", 1)[0],
            "seconds": round(seconds, 1),
            "lines_per_second": round(args.lines / seconds),
            "mb_per_second": round(size / 1e6 / seconds, 1),
            "api_idle_rss_mb": round(idle_rss, 1),
            "api_peak_rss_mb": round(peak, 1),
            "api_rss_mb_quartiles": [round(samples[int(q * (len(samples) - 1))], 1) for q in (0, 0.25, 0.5, 0.75, 1)]
            if samples
            else None,
            "job_total": job["request_counts"]["total"],
            "job_status": job["status"],
        }
        print(json.dumps(report, indent=2))
        ok = job["request_counts"]["total"] == args.lines and peak < 300
        print(("OK" if ok else "FAIL") + f": peak RSS {peak:.0f} MiB (limit 300)", file=sys.stderr)
        return 0 if ok else 1
    finally:
        stop_proc(api)
        r.flushdb()
        if not args.keep:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()


if __name__ == "__main__":
    sys.exit(main())
