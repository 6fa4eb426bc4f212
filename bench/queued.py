"""A queued job against the engine alone (issue 17): what the queue, the database and the worker's
loop cost on top of the model, with the worker's chunk pipeline on (the default) and off.

One run, the same items, interleaved rounds (noise from other processes falls on all three alike):
  engine      worker.scoring.score_items on every item in this process, warm: the ceiling;
  queued      the job submitted as `rmscore submit` does (db.producer.submit: stored, then one
              message per chunk to Redis) and scored by a warm `rmscore worker` with its chunk
              pipeline on (RMSCORE_WORKER_OVERLAP=true, worker/chunk_pipeline.py: chunk N+1
              prepared and N-1 stored while N is on the device; the default on CUDA only); clock
              from the submit to the job completed, its results stored;
  sequential  the same with RMSCORE_WORKER_OVERLAP=false: one chunk at a time, start to end.
Figures: queued / engine (target >= 0.95) and sequential / engine, items/s. Each queued job runs
under a new tenant, so the score cache (per tenant) never answers it: every item is scored.

Data: --data hh (default): HH-RLHF harmless-base pairs (--pairs, 0 = all 2,312; an item is a pair,
two conversations); --data chats: --chats short prompt/response chats (bench/upload.py's generator),
where the tiny model is nearly free and the worker's own costs are everything.

    .venv/bin/python bench/queued.py                          # tiny model, all 2,312 pairs, SQLite
    .venv/bin/python bench/queued.py --data chats --chats 5000 --rounds 3
    .venv/bin/python bench/queued.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Workers: two warm `rmscore worker` processes, started before the clock (model load and warm-up are
outside it, as for a long-running worker), one per mode, each on its own queue (the sequential one
serves the same model directory through a symlink of another name). One torch thread per process
by default (--threads), the engine in this process too. Redis: --broker-url (its db is flushed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchkit import HH, ROOT, write_report  # first: puts the repository and tests/ on sys.path, sets HF_HUB_OFFLINE

MODES = ("engine", "queued", "sequential")
POLL_S = 0.05


def queued_seconds(data: Path, model: Path, n: int, settings: Any, db: Any, app: Any, r: Any) -> float:
    """Seconds from the submit to the job completed with every item's result stored."""
    from db.jobs import get_job
    from db.producer import submit

    t0 = time.perf_counter()
    created = submit(data, model=str(model), tenant=f"bench-{uuid.uuid4().hex[:8]}", settings=settings, db=db,
                     app=app, r=r)  # fmt: skip
    while (job := get_job(db, created.job.id)).status not in ("completed", "failed", "cancelled"):
        time.sleep(POLL_S)
    seconds = time.perf_counter() - t0
    if job.status != "completed" or job.completed != n:
        raise RuntimeError(f"job {job.id}: {job.status}, {job.completed} of {n} items scored")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "tiny"), help="model directory (tiny: built if missing)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", choices=("hh", "chats"), default="hh")
    ap.add_argument("--pairs", type=int, default=0, help="HH-RLHF pairs (0 = all 2,312)")
    ap.add_argument("--chats", type=int, default=5000, help="short chats with --data chats")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three modes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--chunk-size", type=int, default=None, help="RMSCORE_CHUNK_SIZE (default: the setting's)")
    ap.add_argument("--chunk-max-tokens", type=int, default=None, help="RMSCORE_CHUNK_MAX_TOKENS (GPU: 1048576)")
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/7", help="flushed before and after")
    ap.add_argument("--hh-file", default=str(HH))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "queued.json"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the workers are stopped

    import redis
    import torch
    from harness import start_worker_proc, stop_all
    from system import fresh_database, hh_lines, write_data
    from testkit import clean_env

    from db.session import get_engine
    from rmscore.broker import create_app
    from rmscore.inputs import iter_parsed
    from rmscore.settings import Settings
    from worker.engine import Scorer
    from worker.scoring import score_items
    from worker.tiny_model import make_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-bench-queued-"))
    model = Path(args.model).resolve()
    if not (model / "config.json").exists():
        make_tiny_model(str(model), "tiny")
    sequential_model = tmp / f"{model.name}-sequential"  # same weights, another name: its own queue
    sequential_model.symlink_to(model, target_is_directory=True)
    data = tmp / "items.jsonl"
    if args.data == "hh":
        lines = hh_lines(Path(args.hh_file), args.pairs or 2312)
        data.write_bytes(b"\n".join(lines) + b"\n")
    else:
        write_data("tiny", data, args.chats, Path(args.hh_file))
    items = list(iter_parsed(str(data)))
    n = len(items)

    r = redis.Redis.from_url(args.broker_url)
    r.flushdb()
    db_url, drop = fresh_database(args.database_url, tmp, "queued")
    env = clean_env(RMSCORE_DATABASE_URL=db_url, RMSCORE_BROKER_URL=args.broker_url, RMSCORE_HEARTBEAT_INTERVAL="1",
                    OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))  # fmt: skip
    limits = {"chunk_size": args.chunk_size, "chunk_max_tokens": args.chunk_max_tokens}
    limits = {k: v for k, v in limits.items() if v}
    env.update({f"RMSCORE_{k.upper()}": str(v) for k, v in limits.items()})
    workers = {
        "bench-queued@overlap": (model, {"RMSCORE_WORKER_OVERLAP": "true"}),  # a CPU's default is off
        "bench-queued@sequential": (sequential_model, {"RMSCORE_WORKER_OVERLAP": "false"}),
    }
    procs = [start_worker_proc({**env, **extra}, name, tmp / f"{name.split('@')[1]}.log", ["--model", str(m)],
                               device=args.device) for name, (m, extra) in workers.items()]  # fmt: skip
    settings = Settings(database_url=db_url, broker_url=args.broker_url, model=str(model),
                        models=[str(sequential_model)], _env_file=None, **limits)  # fmt: skip
    results: dict[str, Any] = {"data": args.data, "items": n, "rounds": [], "database": db_url.split(":", 1)[0],
                               "threads": args.threads, "device": args.device, "model": str(model),
                               "chunk_size": settings.chunk_size, "chunk_max_tokens": settings.chunk_max_tokens,
                               "load_1min_at_start": os.getloadavg()[0]}  # fmt: skip
    try:
        torch.set_num_threads(args.threads)
        engine = Scorer.load(str(model), device=args.device)
        engine.warmup()
        for w in procs:  # started together above: their model loads overlap
            w.wait_ready(r, timeout=600)
        db, app = get_engine(db_url), create_app(settings)
        print(f"{n} items ({args.data}), {args.rounds} rounds; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              f"cores; database {results['database']}", flush=True)  # fmt: skip
        for k in range(args.rounds):
            took: dict[str, float] = {}
            for mode in MODES:
                if mode == "engine":
                    t0 = time.perf_counter()
                    score_items(engine, items)  # type: ignore[arg-type]
                    took[mode] = time.perf_counter() - t0
                else:
                    target = model if mode == "queued" else sequential_model
                    took[mode] = queued_seconds(data, target, n, settings, db, app, r)
            results["rounds"].append(took)
            print(f"round {k + 1}/{args.rounds}: " + ", ".join(f"{m} {n / s:7.1f} items/s" for m, s in took.items()),
                  flush=True)  # fmt: skip
    finally:
        stop_all([w.proc for w in procs], timeout=60)
        r.flushdb()
        drop()

    total = {m: sum(rnd[m] for rnd in results["rounds"]) for m in MODES}
    rate = {m: n * len(results["rounds"]) / total[m] for m in MODES}
    results["items_per_s"] = rate
    results["queued/engine"] = rate["queued"] / rate["engine"]
    results["sequential/engine"] = rate["sequential"] / rate["engine"]
    results["queued/sequential"] = rate["queued"] / rate["sequential"]
    results["per_round_queued/engine"] = [rnd["engine"] / rnd["queued"] for rnd in results["rounds"]]
    print(f"\nitems/s: engine {rate['engine']:.1f}, queued {rate['queued']:.1f}, sequential {rate['sequential']:.1f}")
    v = results["queued/engine"]
    print(f"queued / engine      {v:5.2f}  >= 0.95  {'met' if v >= 0.95 else 'NOT met'}"
          f"  (rounds: {', '.join(f'{x:.2f}' for x in results['per_round_queued/engine'])})")  # fmt: skip
    print(f"sequential / engine  {results['sequential/engine']:5.2f}  (the worker before its pipeline)")
    print(f"queued / sequential  {results['queued/sequential']:5.2f}  (what the overlap buys)")
    write_report(args.out, results, f"; worker logs in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
