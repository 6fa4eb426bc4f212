"""Online serving bench: latency of small `POST /v1/score` requests idle and while a big batch job
runs on the same worker, and the throughput of many concurrent small requests against the engine's
own batch throughput on the same items. Not a test: it reports figures (ratios within one run).

    rmscore make-tiny-model models/small --size small
    .venv/bin/python bench/online.py --model models/small

Runs on loopback through bench/load.py's `start_stack`: its own `redis-server`, a fresh SQLite file,
one `rmscore worker` and one `rmscore api` (auth enabled). HH-RLHF pairs from ../shared/data. Phases, in order:

1. engine: the items of phase 4 scored in one in-process engine call (before the worker starts),
   the batch baseline;
2. idle: `--requests` requests of `--request-pairs` pairs, one after another;
3. loaded: the same while a `--job-pairs` job runs on the worker (cancelled afterwards);
4. concurrent: `--clients` clients send `--pairs` pairs as requests of `--small-pairs` pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from load import REPO, pct, start_stack, stop_all, wait_for

DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def hh_pairs(n: int) -> list[dict[str, Any]]:
    with gzip.open(DATA, "rt") as f:
        rows = [json.loads(line) for line in f]
    return [rows[i % len(rows)] for i in range(n)]


def engine_rate(model: str, pairs: list[dict[str, Any]]) -> float:
    """Conversations per second of one in-process engine call over `pairs` (the worker's settings)."""
    from rmscore.formats import PairItem, parse_object
    from worker.engine import Scorer

    engine = Scorer.load(model, device="cpu")
    engine.warmup()
    convs = [c for p in pairs if isinstance(it := parse_object(p, 1), PairItem) for c in it.conversations]
    t0 = time.perf_counter()
    engine.score(convs)
    return len(convs) / (time.perf_counter() - t0)


def sequential(url: str, key: str, pairs: list[dict[str, Any]], n: int, size: int) -> tuple[list[float], Counter[Any]]:
    seconds: list[float] = []
    status: Counter[Any] = Counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as http:
        for i in range(n):
            items = pairs[i * size : (i + 1) * size]
            t0 = time.perf_counter()
            try:
                code: Any = http.post("/v1/score", json={"items": items}).status_code
            except httpx.HTTPError as e:
                code = type(e).__name__
            seconds.append(time.perf_counter() - t0)
            status[code] += 1
    return seconds, status


async def concurrent(url: str, key: str, pairs: list[dict[str, Any]], clients: int, size: int) -> Counter[Any]:
    requests = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    status: Counter[Any] = Counter()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        for items in requests[n::clients]:
            try:
                status[(await http.post("/v1/score", json={"items": items})).status_code] += 1
            except httpx.HTTPError as e:
                status[type(e).__name__] += 1

    limits = httpx.Limits(max_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, limits=limits) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Model directory (e.g. models/small).")
    ap.add_argument("--requests", type=int, default=10, help="Requests per latency phase [10].")
    ap.add_argument("--request-pairs", type=int, default=16, help="Pairs per latency request [16].")
    ap.add_argument("--job-pairs", type=int, default=1500, help="Pairs in the batch job of phase 3 [1500].")
    ap.add_argument("--clients", type=int, default=32, help="Concurrent clients in phase 4 [32].")
    ap.add_argument("--pairs", type=int, default=128, help="Pairs phase 4 scores [128].")
    ap.add_argument("--small-pairs", type=int, default=2, help="Pairs per request in phase 4 [2].")
    ap.add_argument("--json", type=Path, help="Also write the report as JSON here.")
    a = ap.parse_args()
    model = str(Path(a.model).resolve())
    latency_pairs = hh_pairs(a.requests * a.request_pairs)
    small = hh_pairs(a.pairs)
    print("online: phase 1, the engine in-process", flush=True)
    engine_cps = engine_rate(model, small)

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-online-"))
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops what was started
    report: dict[str, Any] = {"model": a.model, "engine_conversations_per_s": round(engine_cps, 2)}
    try:
        # Chunks of 64 pairs (not 256): cancelling the job after phase 3 waits for the chunk in hand.
        extra = {"RMSCORE_SYNC_TIMEOUT": "120", "RMSCORE_CHUNK_SIZE": "64"}
        url, key = start_stack(model, tmp, procs, [None], **extra)
        sequential(url, key, latency_pairs, 1, a.request_pairs)  # the first request after start-up

        print("online: phase 2, idle", flush=True)
        idle, idle_status = sequential(url, key, latency_pairs, a.requests, a.request_pairs)

        print("online: phase 3, while a batch job runs", flush=True)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
            body = {"kind": "pairwise", "items": hh_pairs(a.job_pairs), "options": {"cache": False}}
            job = http.post("/v1/jobs", json=body).json()["id"]
            wait_for(lambda: http.get(f"/v1/jobs/{job}").json()["status"] == "running", 120, "the job", procs)
            loaded, loaded_status = sequential(url, key, latency_pairs, a.requests, a.request_pairs)
            still = http.get(f"/v1/jobs/{job}").json()
            http.post(f"/v1/jobs/{job}/cancel")

            def idle_again() -> bool:
                return http.get(f"/v1/jobs/{job}").json()["status"] in ("cancelled", "completed", "failed")

            wait_for(idle_again, 600, "the job to stop", procs)

        print(f"online: phase 4, {a.clients} concurrent clients", flush=True)
        t0 = time.perf_counter()
        many_status = asyncio.run(concurrent(url, key, small, a.clients, a.small_pairs))
        many_cps = 2 * a.pairs / (time.perf_counter() - t0)
    finally:
        stop_all(procs)

    def summary(seconds: list[float], status: Counter[Any]) -> dict[str, Any]:
        ok = status.get(200, 0)
        return {"n": len(seconds), "p50_ms": round(pct(seconds, 0.5)), "p99_ms": round(pct(seconds, 0.99)),
                "status": {str(k): v for k, v in status.items()}, "all_200": ok == sum(status.values())}

    report["idle"] = summary(idle, idle_status)
    report["during_batch_job"] = summary(loaded, loaded_status)
    report["during_batch_job"]["job_items_done_meanwhile"] = still["request_counts"]["completed"]
    report["loaded_p50_over_idle_p50"] = round(pct(loaded, 0.5) / pct(idle, 0.5), 2)
    report["concurrent"] = {
        "clients": a.clients,
        "pairs": a.pairs,
        "pairs_per_request": a.small_pairs,
        "conversations_per_s": round(many_cps, 2),
        "status": {str(k): v for k, v in many_status.items()},
        "over_engine": round(many_cps / engine_cps, 2),
    }
    report["logs"] = str(tmp)
    print(json.dumps(report, indent=2))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
