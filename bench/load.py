"""Load test: N concurrent clients submit small jobs and poll them for a while against a real
`rmscore api` and real `rmscore worker` processes; then every accepted job is checked to have
completed with every line accounted for. Not a test: it reports figures.

    .venv/bin/python bench/load.py --model models/tiny [--clients 50] [--duration 60] [--workers 2]

Everything runs on loopback: its own `redis-server` on a free port (no persistence), a fresh
SQLite file (or --database-url), an API key created for the run, the API with auth enabled, and
`--workers` workers on the tiny model (`rmscore make-tiny-model models/tiny` builds one). Bounded:
the clients stop after --duration seconds, the check waits at most --drain-timeout more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the process harness (tests/harness.py)

import harness  # noqa: E402
from harness import RedisServer, free_port, launch, service_env, wait_http  # noqa: E402
from testkit import CLI  # noqa: E402

TERMINAL = ("completed", "failed", "cancelled")
SPLITS = ("submit_first", "submit_later")  # "submit" split in two: reported, not counted twice in "all"


def wait_for(predicate: Any, timeout: float, what: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise SystemExit(f"load: {what} failed (exited: {[p.args for p in dead]}); see the logs")
        time.sleep(0.3)


def start_stack(
    model: str,
    tmp: Path,
    procs: list[subprocess.Popen[bytes]],
    workers: list[str | None],
    database_url: str | None = None,
    *,
    api_workers: int = 1,
    **env_extra: str,
) -> tuple[str, str]:
    """Its own `redis-server`, the schema, an API key, `rmscore worker`s (named, or default names for
    None) and `rmscore api`, all on loopback with auth enabled; (API URL, key) once /readyz answers.
    Every process is appended to `procs` as it starts, the Redis server first (`stop_all` stops them)."""
    if not shutil.which("redis-server"):
        raise SystemExit("bench: needs redis-server on PATH (it starts its own, on loopback)")
    redis = RedisServer(tmp / "redis.log").start()
    assert redis.proc is not None
    procs.append(redis.proc)
    db_url = database_url or f"sqlite:///{tmp / 'rmscore.db'}"
    env = service_env(
        db_url, redis.url, Path(model).resolve(), RMSCORE_AUTH="enabled", RMSCORE_HEARTBEAT_INTERVAL="2", **env_extra
    )
    subprocess.run([*CLI, "db", "upgrade"], env=env, cwd=REPO, check=False, capture_output=True)
    made = subprocess.run([*CLI, "keys", "create", "bench"], env=env, cwd=REPO, capture_output=True, text=True)
    key = next((w for w in made.stdout.split() if w.startswith("rk_")), None)
    if made.returncode != 0 or key is None:
        raise SystemExit(f"bench: could not create an API key:\n{made.stdout}{made.stderr}")
    for i, name in enumerate(workers):
        procs.append(launch(["worker", *(["--name", name] if name else [])], env, tmp / f"worker{i}.log"))
    api_port = free_port()
    procs.append(launch(["api", "--port", str(api_port), "--workers", str(api_workers)], env, tmp / "api.log"))
    url = f"http://127.0.0.1:{api_port}"
    wait_http(f"{url}/readyz", procs[-1], tmp / "api.log", timeout=300)
    return url, key


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """The API and workers first (their graceful shutdown), then the Redis server they use."""
    harness.stop_all(procs[1:])
    harness.stop_all(procs[:1])


def items_for(n: int, job: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"j{job}-{i}",
            "prompt": f"Question {job}.{i}: how do I keep a plant alive?",
            "chosen": "Water it when the soil is dry and give it light.",
            "rejected": "Plants do not need anything.",
        }
        for i in range(n)
    ]


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: Counter[tuple[str, int | str]] = Counter()
        self.accepted: dict[str, int] = {}  # job id -> items submitted
        self.t0 = time.monotonic()
        self.when: list[tuple[float, str, float]] = []  # (latency s, what, seconds into the run)

    def record(self, what: str, seconds: float, status: int | str) -> None:
        self.latency[what].append(seconds)
        self.when.append((seconds, what, time.monotonic() - seconds - self.t0))
        self.status[(what, status)] += 1


async def client_loop(n: int, http: httpx.AsyncClient, deadline: float, stats: Stats, items: int, poll: float) -> None:
    job = 0
    while time.monotonic() < deadline:
        job += 1
        body = {"kind": "pairwise", "items": items_for(items, n * 100_000 + job), "options": {"cache": False}}
        t0 = time.perf_counter()
        try:
            r = await http.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
            status: int | str = r.status_code
        except httpx.HTTPError as e:
            status = type(e).__name__
        took = time.perf_counter() - t0
        stats.record("submit", took, status)
        # Every client's first submit arrives at once (a burst of --clients): reported apart too.
        stats.latency["submit_first" if job == 1 else "submit_later"].append(took)
        if status != 202:
            retry = float(r.headers.get("Retry-After", 1)) if isinstance(status, int) else 1.0
            await asyncio.sleep(min(retry, 5.0))
            continue
        job_id = r.json()["id"]
        stats.accepted[job_id] = items
        while time.monotonic() < deadline:
            await asyncio.sleep(poll * (0.5 + random.random()))
            t0 = time.perf_counter()
            try:
                r = await http.get(f"/v1/jobs/{job_id}")
                status = r.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            stats.record("poll", time.perf_counter() - t0, status)
            if status == 200 and r.json()["status"] in TERMINAL:
                break


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def verify(url: str, key: str, accepted: dict[str, int], timeout: float) -> dict[str, Any]:
    """Every accepted job completed, counts add up, and its results hold each line exactly once."""
    headers = {"Authorization": f"Bearer {key}"}
    problems: list[str] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for job_id, n in accepted.items():
            while True:
                job = http.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in TERMINAL or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            c = job["request_counts"]
            if job["status"] != "completed" or c["total"] != n or c["completed"] + c["failed"] != n:
                problems.append(f"{job_id}: {job['status']} {c} for {n} items")
                continue
            lines = [json.loads(x)["line"] for x in http.get(f"/v1/jobs/{job_id}/results").text.splitlines() if x]
            if sorted(lines) != list(range(1, n + 1)):
                problems.append(f"{job_id}: result lines {sorted(lines)} for {n} items")
    return {"jobs": len(accepted), "problems": problems}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Model directory for the workers (e.g. models/tiny).")
    ap.add_argument("--clients", type=int, default=50, help="Concurrent clients [50].")
    ap.add_argument("--duration", type=float, default=60, help="Seconds the clients run [60].")
    ap.add_argument("--workers", type=int, default=2, help="rmscore worker processes [2].")
    ap.add_argument("--api-workers", type=int, default=1, help="API processes (`rmscore api --workers`) [1].")
    ap.add_argument("--items", type=int, default=4, help="Pairs per job [4].")
    ap.add_argument("--poll", type=float, default=1.0, help="Mean seconds between a client's polls [1.0].")
    ap.add_argument("--drain-timeout", type=float, default=300, help="Most seconds to wait for jobs afterwards [300].")
    ap.add_argument("--database-url", help="Default: a fresh SQLite file in a temporary directory.")
    ap.add_argument("--json", type=Path, help="Also write the report as JSON here.")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rmscore-load-"))
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops what was started
    try:
        from rmscore.settings import model_name

        # Named <model>@…: /readyz looks for the default model's workers.
        names = [f"{model_name(a.model)}@load-w{i}" for i in range(a.workers)]
        url, key = start_stack(
            a.model, tmp, procs, names, a.database_url, api_workers=a.api_workers, OMP_NUM_THREADS="1"
        )
        time.sleep(2)  # let the second worker finish its warm-up too
        what = f"{a.clients} clients for {a.duration:.0f}s, {a.workers} workers, {a.api_workers} API process(es), "
        what += f"{a.items} pairs a job, {'PostgreSQL' if a.database_url else 'SQLite'}"
        print(f"load: {what}", flush=True)

        async def run_all() -> tuple[Stats, float]:
            # Every client is made before the clock starts: making one loads a CA bundle (~0.1 s of
            # CPU, blocking this event loop), so making them inside the run stalled requests already
            # in flight and counted ~4 s of the bench's own start-up in the first submits' latency.
            headers = {"Authorization": f"Bearer {key}"}
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=headers, timeout=60))
                    for _ in range(a.clients)
                ]
                stats = Stats()
                t0 = time.monotonic()
                deadline = t0 + a.duration
                await asyncio.gather(
                    *(client_loop(n, http, deadline, stats, a.items, a.poll) for n, http in enumerate(clients))
                )
                return stats, time.monotonic() - t0

        stats, elapsed = asyncio.run(run_all())
        checked = verify(url, key, stats.accepted, a.drain_timeout)
    finally:
        stop_all(procs)

    every = [x for what, v in stats.latency.items() if what not in SPLITS for x in v]
    report: dict[str, Any] = {
        "clients": a.clients,
        "workers": a.workers,
        "api_workers": a.api_workers,
        "database": "postgresql" if a.database_url else "sqlite",
        "load_1min": os.getloadavg()[0],
        "seconds": round(elapsed, 1),
        "requests": len(every),
        "requests_per_s": round(len(every) / elapsed, 1),
        "latency_ms": {
            what: {"n": len(v), "p50": round(pct(v, 0.50), 1), "p99": round(pct(v, 0.99), 1)}
            for what, v in [("all", every), *sorted(stats.latency.items())]
        },
        "status": {f"{what} {code}": n for (what, code), n in sorted(stats.status.items(), key=str)},
        "errors": {f"{what} {code}": n for (what, code), n in stats.status.items() if code not in (200, 202)},
        "slowest": [f"{w} {lat * 1000:.0f} ms at {at:.1f}s" for lat, w, at in sorted(stats.when, reverse=True)[:15]],
        "jobs_accepted": checked["jobs"],
        "items_accepted": sum(stats.accepted.values()),
        "problems": checked["problems"],
        "logs": str(tmp),
    }
    print(json.dumps(report, indent=2))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    ok = not checked["problems"]
    print("load: every accepted job completed with every line accounted for" if ok else "load: PROBLEMS above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
