"""The pipeline end to end: real Redis (db 9 for SQLite, 10 for PostgreSQL), a real database, real
`rmscore worker` processes on the tiny model, and `rmscore score` as the reference for every result.

Short leases (5 s) and a reconciler every second make the recovery tests quick. Two model names
serve two queues: `tiny` (a worker kept for the whole session) and `tiny-faults` (workers that
tests start, stop, kill and slow down), so fault tests never share a queue with the steady worker.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import WorkerProc, start_worker_proc
from pipekit import FAULTS_MODEL, HH_PAIRS, Pipeline, make_pipeline
from testkit import CLI, REPO, clean_env, database_url, redis_url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def pipeline(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_schema_url: Any,
    tiny_model_dir: Path,
) -> Iterator[Pipeline]:
    import redis

    backend = request.param
    tmp = tmp_path_factory.mktemp(f"pipeline-{backend}")
    db_url = database_url(backend, tmp, pg_schema_url, "rmscore_pipe")
    broker_url = redis_url(f"pipeline-{backend}")
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    faults_dir = tmp / FAULTS_MODEL
    faults_dir.symlink_to(tiny_model_dir, target_is_directory=True)
    yield make_pipeline(backend, db_url, broker_url, client, tmp, tiny_model_dir, faults_dir, models=[faults_dir])
    client.flushdb()


@pytest.fixture(scope="session")
def steady_worker(pipeline: Pipeline) -> Iterator[WorkerProc]:
    """One worker on the `tiny` queue for the whole session. It raises on any chunk holding the
    item `poison-me` (fault injection), so the retry-then-fail path runs on the real process."""
    name = f"tiny@steady-{pipeline.backend}"
    env = pipeline.worker_env(RMSCORE_FAULT_POISON="poison-me")
    w = start_worker_proc(env, name, pipeline.tmp / "steady-worker.log", ["--model", str(pipeline.model_dir)])
    try:
        yield w.wait_ready(pipeline.redis)
    finally:
        w.stop()


# --------------------------------------------------------------------------- inputs and references


@pytest.fixture(scope="session")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("inputs")
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rb") as f:
        hh = [next(f) for _ in range(HH_PAIRS)]
    (tmp / "hh500.jsonl").write_bytes(b"".join(hh))
    good = [
        json.dumps(
            {
                "custom_id": f"g{i}",
                "messages": [
                    {"role": "user", "content": f"Question {i}?"},
                    {"role": "assistant", "content": "An answer. " * i},
                ],
            }
        )
        for i in range(1, 41)
    ]
    bad = [
        "{not json",
        json.dumps({"messages": []}),
        "",
        json.dumps([1, 2]),  # "" is blank: skipped, not bad
        json.dumps({"custom_id": "x", "messages": [{"role": "robot", "content": "beep"}]}),
        json.dumps({"custom_id": "y", "messages": [{"role": "user", "content": "no reply"}]}),
        json.dumps({"custom_id": 7, "prompt": "p", "response": 5}),
    ]
    lines = list(good)
    for i, b in enumerate(bad):
        lines.insert(3 + 6 * i, b)
    (tmp / "bad-lines.jsonl").write_text("\n".join(lines) + "\n")
    return {"hh": tmp / "hh500.jsonl", "ebb": shared_data / "evalbiasbench.json", "bad": tmp / "bad-lines.jsonl"}


@pytest.fixture(scope="session")
def references(
    inputs: dict[str, Path], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    """What `rmscore score` writes for each input: the reference every job's results must equal.
    The runs go in parallel; the session waits for them only when a test first needs them."""
    tmp = tmp_path_factory.mktemp("references")
    env = clean_env()
    procs = {}
    for name, path in inputs.items():
        out = tmp / f"{name}.jsonl"
        cmd = [*CLI, "score", str(path), "--model", str(tiny_model_dir), "--device", "cpu", "-o", str(out)]
        procs[name] = (subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
    refs = {}
    for name, (proc, out) in procs.items():
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr.decode()[-3000:]
        refs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    return refs
