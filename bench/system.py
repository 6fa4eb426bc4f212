"""The whole system against the engine alone: what the API, Redis, the worker loop and the database
cost on top of the model (issue 7, items 1-3).

For each model size it scores the same items twice, in one run:
  engine   rmscore's engine in this process (worker.scoring.score_items), the ceiling;
  system   a job uploaded to a real `rmscore api`, queued in Redis, scored by real `rmscore worker`
           processes, stored in the database, and every result read back through the API.
Clock for `system`: from the upload's first byte to the last result record read back (model
loading and warm-up are before it, as they are for a long-running worker). The ratio
system/engine is the overhead figure (target >= 0.9 on `small`); `tiny`, where the model is
nearly free, shows the plumbing alone (target >= 2,000 items/s with one worker). With --workers 1,2
the tiny job also runs on two worker processes (the scale-out ratio). With --profile the tiny
one-worker run is profiled inside the worker (RMSCORE_PROFILE, cProfile) and a summary printed.

    .venv/bin/python bench/system.py --profile     # small: 150 HH pairs; tiny: 10,000 chats, 1 and 2 workers
    .venv/bin/python bench/system.py --sizes tiny --tiny-items 300 --workers 1   # smoke size

Services: the Redis on 127.0.0.1:6379 (db 5, flushed) and, by default, a fresh SQLite file;
--database-url postgresql+psycopg://... for PostgreSQL (each run gets a fresh schema, dropped
after it). Every run starts from an empty database: a second run on the same one would be served
by the score cache and measure nothing. An item is one input line: on `small` an
HH-RLHF pair (two conversations), on `tiny` a short prompt/response chat (one conversation).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import HH, ROOT, write_report  # first: puts the repository and tests/ on sys.path, sets HF_HUB_OFFLINE

POLL_S = 0.25


def write_data(size: str, path: Path, n: int, hh: Path) -> None:
    """`small`: the first `n` HH-RLHF pairs. `tiny`: `n` short chat lines (bench/upload.py's
    generator), where the model is nearly free and the plumbing is everything."""
    if size == "tiny":
        from upload import generate

        generate(path, n)
    else:
        path.write_bytes(b"\n".join(hh_lines(hh, n)) + b"\n")


def hh_lines(path: Path, n: int) -> list[bytes]:
    """The first `n` HH-RLHF lines, repeated when `n` exceeds the file (2,312 pairs)."""
    with gzip.open(path, "rb") as f:
        lines = [ln.rstrip(b"\n") for ln in f if ln.strip()]
    return list(itertools.islice(itertools.cycle(lines), n))


def engine_rate(model: str, data: Path, threads: int) -> float:
    """Items/s of the engine in this process on the lines in `data` (after a warm-up)."""
    import torch

    from rmscore.inputs import iter_parsed
    from worker.engine import Scorer
    from worker.scoring import score_items

    torch.set_num_threads(threads)
    items = list(iter_parsed(str(data)))
    engine = Scorer.load(model, device="cpu")
    engine.warmup()
    t0 = time.perf_counter()
    score_items(engine, items)  # type: ignore[arg-type]
    return len(items) / (time.perf_counter() - t0)


class Stack:
    """A real `rmscore api` and N `rmscore worker` processes on one model, database and Redis db."""

    def __init__(self, model: str, db_url: str, broker_url: str, workers: int, threads: int, tmp: Path,
                 extra_env: dict[str, str]) -> None:
        from harness import free_port, launch, service_env, start_worker_proc

        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = service_env(
            db_url, broker_url, model, RMSCORE_AUTH="disabled", RMSCORE_HEARTBEAT_INTERVAL="1", **extra_env
        )
        self.env = env
        per_worker = str(max(1, threads // workers))
        self.workers = [
            start_worker_proc(
                dict(env, OMP_NUM_THREADS=per_worker, MKL_NUM_THREADS=per_worker), f"bench{i}@system",
                tmp / f"worker{i}.log",
            )
            for i in range(workers)
        ]  # fmt: skip
        self.api = launch(["api", "--port", str(self.port)], env, tmp / "api.log")

    def wait_ready(self, redis_client: Any, timeout: float = 300) -> None:
        """Every worker has loaded its model and beats; the API answers /healthz."""
        from harness import wait_http

        for w in self.workers:
            w.wait_ready(redis_client, timeout)
        wait_http(f"{self.url}/healthz", self.api, self.tmp / "api.log", timeout=timeout)

    def stop(self) -> None:
        from harness import stop_all

        stop_all([*(w.proc for w in self.workers), self.api], timeout=60)


def system_rate(stack: Stack, data: Path, n: int) -> tuple[float, dict[str, float]]:
    """Items/s of one job end to end: upload, scoring, and reading every result back."""
    from rmscore.client import Client

    with Client(stack.url, "", timeout=300) as client:
        t0 = time.perf_counter()
        job = client.submit(data)
        t_up = time.perf_counter()
        # Poll gently: on 2 cores, status requests every 50 ms cost the API (and so the worker beside
        # it) 10-20% of a core; 0.25 s adds at most that much to the clock.
        while not client.job(job.id).terminal:
            time.sleep(POLL_S)
        t_done = time.perf_counter()
        got = sum(1 for _ in client.results(job.id))
        t1 = time.perf_counter()
    if got != n:
        raise RuntimeError(f"job {job.id}: {got} results for {n} lines")
    phases = {"upload_s": t_up - t0, "scoring_s": t_done - t_up, "results_s": t1 - t_done, "total_s": t1 - t0}
    return n / (t1 - t0), phases


# Where a chunk's time goes: cumulative time of these functions in the worker (name -> label).
PHASES = {
    ("chunks.py", "claim_chunk"): "claim the chunk (DB)",
    ("chunks.py", "load_items"): "load its items (DB)",
    ("render.py", "text"): "chat template (render)",
    ("render.py", "encode"): "render + tokenize",
    ("engine.py", "_forward"): "model forward",
    ("scoring.py", "prepare_items"): "cache lookup + render + tokenize",
    ("chunks.py", "complete_chunk"): "store results + chunk done (DB)",
    # The three stages of worker/chunk_pipeline.py, each on its own thread (they overlap).
    ("runner.py", "process"): "prepare stage (claim, load, render)",
    ("runner.py", "_on_device"): "device stage",
    ("runner.py", "_store"): "store stage",
}


def profile_summary(path: Path, top: int = 12) -> dict[str, Any]:
    """Phases of the worker's chunk handling and the functions with the most own time (cProfile)."""
    st = pstats.Stats(str(path))
    total = st.total_tt  # type: ignore[attr-defined]
    phases: dict[str, float] = {}
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        label = PHASES.get((Path(file).name, fn))
        if label and (Path(file).parent.name in ("worker", "db")):
            phases[label] = phases.get(label, 0.0) + ct
        rows.append({"function": f"{Path(file).name}:{line}({fn})", "calls": nc, "own_s": tt, "cum_s": ct,
                     "own_share": tt / total if total else 0.0})
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return {"total_s": total, "phases_s": phases, "top_own": rows[:top]}


def fresh_database(base_url: str | None, tmp: Path, tag: str) -> tuple[str, Any]:
    """A new, empty database per run, so no run finds another's scores (the score cache) or rows.
    SQLite: a new file; PostgreSQL: a new schema of `base_url`, dropped by the returned callback."""
    from db.migrate import ensure_schema
    from db.session import get_engine

    drop: Any = lambda: None  # noqa: E731
    if base_url is None:
        url = f"sqlite:///{tmp / f'bench-{tag}.db'}"
    else:
        import uuid

        import psycopg

        schema = f"rmscore_bench_{uuid.uuid4().hex[:10]}"
        plain = base_url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{base_url}?options=-csearch_path%3D{schema}"

        def drop() -> None:
            get_engine(url).dispose()
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    ensure_schema(get_engine(url))
    return url, drop


def run_stack(model: str, args: argparse.Namespace, r: Any, workers: int, tmp: Path, data: Path,
              n: int, env: dict[str, str], tag: str) -> tuple[float, dict[str, float]]:
    r.flushdb()
    db_url, drop = fresh_database(args.database_url, tmp, tag)
    stack = Stack(model, db_url, args.broker_url, workers, args.threads, tmp, env)
    try:
        stack.wait_ready(r)
        return system_rate(stack, data, n)
    finally:
        stack.stop()
        drop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,tiny", help="model sizes, comma-separated (built if missing)")
    ap.add_argument("--small-pairs", type=int, default=150, help="pairs in the small-model job")
    ap.add_argument("--tiny-items", type=int, default=10000, help="short chat items in the tiny-model job")
    ap.add_argument("--workers", default="1,2", help="worker counts to run the tiny job with, e.g. 1,2")
    # One torch thread per process by default: on a shared 2-core machine more threads spin-wait for
    # cores other processes hold, which made runs 10-20x slower and very noisy.
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (split among workers)")
    ap.add_argument("--chunk-size", type=int, default=None, help="RMSCORE_CHUNK_SIZE (default: the setting's)")
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/5", help="flushed before and after")
    ap.add_argument("--profile", action="store_true", help="cProfile the tiny one-worker run inside the worker")
    ap.add_argument("--data", default=str(HH))
    ap.add_argument("--models-dir", default=str(ROOT / "models"), help="where each size's model is (built if missing)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "system.json"))
    args = ap.parse_args()
    # SIGTERM (a timeout, a killed run) unwinds like Ctrl-C, so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import redis

    from worker.tiny_model import make_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-bench-system-"))
    db_url = args.database_url or "sqlite"
    r = redis.Redis.from_url(args.broker_url)
    extra = {"RMSCORE_CHUNK_SIZE": str(args.chunk_size)} if args.chunk_size else {}
    sizes = [s for s in args.sizes.split(",") if s]
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    results: dict[str, Any] = {"database": db_url.split(":", 1)[0], "threads": args.threads, "runs": []}
    print(f"load: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores; database {results['database']}",
          flush=True)

    for size in sizes:
        model = str(Path(args.models_dir) / size)
        if not (Path(model) / "config.json").exists():
            make_tiny_model(model, size)
        n = args.small_pairs if size == "small" else args.tiny_items
        data = tmp / f"{size}.jsonl"
        write_data(size, data, n, Path(args.data))
        counts = worker_counts if size == "tiny" else [1]
        for workers in counts:
            sys_rate, phases = run_stack(model, args, r, workers, tmp, data, n, extra, f"{size}-{workers}")
            # The engine alone, right after, on the same lines and with the same threads per process.
            eng_rate = engine_rate(model, data, max(1, args.threads // workers)) if workers == 1 else None
            run: dict[str, Any] = {"size": size, "items": n, "workers": workers, "system_items_per_s": sys_rate,
                                   "engine_items_per_s": eng_rate, **phases}
            if eng_rate:
                run["system/engine"] = sys_rate / eng_rate
            results["runs"].append(run)
            print(f"{size:>5} x{workers}: system {sys_rate:8.1f} items/s"
                  + (f"  engine {eng_rate:8.1f} items/s  ratio {sys_rate / eng_rate:5.2f}" if eng_rate else "")
                  + f"  (upload {phases['upload_s']:.1f}s, scoring {phases['scoring_s']:.1f}s,"
                  f" results {phases['results_s']:.1f}s)", flush=True)
        if args.profile and size == "tiny":
            # A separate run: cProfile slows the worker, so it never feeds the figures above.
            prof = tmp / "tiny-profile.prof"
            rate, _ = run_stack(model, args, r, 1, tmp, data, n, dict(extra, RMSCORE_PROFILE=str(prof)), "profile")
            results["profile"] = {"items_per_s_while_profiled": rate, **profile_summary(prof)}
    r.flushdb()

    tiny = {run["workers"]: run for run in results["runs"] if run["size"] == "tiny"}
    if 1 in tiny and 2 in tiny:
        results["two_workers/one_worker"] = tiny[2]["system_items_per_s"] / tiny[1]["system_items_per_s"]

    print("\nfigure                               value    target")
    for run in results["runs"]:
        label = f"{run['size']} x{run['workers']}"
        if run["size"] == "small" and "system/engine" in run:
            v = run["system/engine"]
            print(f"{label + ' system/engine':<34} {v:8.2f}  >= 0.9   {'met' if v >= 0.9 else 'NOT met'}")
        if run["size"] == "tiny" and run["workers"] == 1:
            v = run["system_items_per_s"]
            print(f"{label + ' items/s end to end':<34} {v:8.0f}  >= 2000  {'met' if v >= 2000 else 'NOT met'}"
                  f"  ({v / 2000:.2f} of target)")
            if "system/engine" in run:
                print(f"{label + ' system/engine':<34} {run['system/engine']:8.2f}")
    if "two_workers/one_worker" in results:
        print(f"{'tiny two workers / one worker':<34} {results['two_workers/one_worker']:8.2f}  (2 cores shared)")
    if "profile" in results:
        prof = results["profile"]
        whole = prof["total_s"] or 1.0  # the three threads' time together
        print(f"\nworker profile, tiny x1 ({prof['items_per_s_while_profiled']:.0f} items/s while profiled):")
        for label, sec in sorted(prof["phases_s"].items(), key=lambda kv: -kv[1]):
            print(f"  {sec:7.2f}s  {sec / whole * 100:5.1f}%  {label}")
        print("  top own time:")
        for p in prof["top_own"]:
            print(f"  {p['own_s']:7.2f}s  {p['own_share'] * 100:5.1f}%  {p['calls']:>8}  {p['function']}")
    write_report(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
