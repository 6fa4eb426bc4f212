"""Jobs for a model no worker serves: submit, status and /readyz say so and for how long, and
`rmscore up` starts a worker for every configured model. Real Redis, SQLite, `rmscore worker`,
`rmscore api` and `rmscore up` processes on the tiny model (under a second model name too)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from harness import free_port, start_api, start_worker_proc, stop_proc
from testkit import CLI, clean_env, redis_url, wait_until

pytestmark = pytest.mark.integration


def rmscore(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"rmscore {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def other_model(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The tiny model under a second name (`other`), as RMSCORE_MODELS would list a second model."""
    path = tmp_path / "other"
    path.symlink_to(tiny_model_dir, target_is_directory=True)
    return path


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path, other_model: Path) -> dict[str, str]:
    redis.Redis.from_url(redis_url("cli")).flushdb()
    return clean_env(
        RMSCORE_DATABASE_URL=f"sqlite:///{tmp_path / 'rmscore.db'}",
        RMSCORE_BROKER_URL=redis_url("cli"),
        RMSCORE_MODEL=str(tiny_model_dir),
        RMSCORE_MODELS=json.dumps([str(other_model)]),
        RMSCORE_HEARTBEAT_INTERVAL="1",
        RMSCORE_HEARTBEAT_TTL="3",
    )


@pytest.fixture
def api(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    url, proc = start_api(env, tmp_path / "api.log", cwd=tmp_path)
    try:
        yield url
    finally:
        stop_proc(proc)


def test_submit_status_and_readyz_name_the_unserved_model(
    tmp_path: Path, env: dict[str, str], api: str, other_model: Path
) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "hi", "response": "hello"}\n')

    # Nobody has ever served `other`: submit and status say so, and how to fix it.
    submitted = rmscore(["submit", str(data), "--model", "other"], env, tmp_path)
    job = submitted.stdout.strip()
    assert "no live worker serves model other (no worker has ever served it)" in submitted.stderr
    assert "rmscore worker --model" in submitted.stderr
    status = rmscore(["status", job], env, tmp_path)
    assert f"job {job}, queued" in status.stderr and "no live worker serves model other" in status.stderr
    # The same through the API (which reads /readyz for it).
    key = rmscore(["keys", "create", "me", "--tenant", "local"], env, tmp_path).stdout.strip()
    remote = {**env, "RMSCORE_API_URL": api, "RMSCORE_API_KEY": key}
    assert "no live worker serves model other" in rmscore(["status", job], remote, tmp_path).stderr
    ready = httpx.get(f"{api}/readyz").json()
    assert set(ready["models"]) == {"tiny", "other"}
    assert ready["models"]["other"]["live"] == 0 and ready["models"]["other"]["last_seen"] is None
    assert "no worker has ever served it" in ready["models"]["other"]["problem"]

    # A worker for `other` comes, scores the job, and goes.
    worker = start_worker_proc(env, "other@cli-test", tmp_path / "worker.log", ["--model", str(other_model)])
    try:
        worker.wait_ready(redis.Redis.from_url(redis_url("cli")))

        def completed() -> bool:
            return json.loads(rmscore(["status", job, "--json"], env, tmp_path).stdout)["status"] == "completed"

        wait_until(completed, 120, "the job to complete")
        done = rmscore(["status", job], env, tmp_path)
        assert "no live worker" not in done.stderr
        assert httpx.get(f"{api}/readyz").json()["models"]["other"]["live"] == 1
    finally:
        assert worker.stop() == 0

    # Gone (its heartbeat expired): now they say since when.
    wait_until(lambda: httpx.get(f"{api}/readyz").json()["models"]["other"]["live"] == 0, 30, "the heartbeat to expire")
    later = rmscore(["submit", str(data), "--model", "other"], env, tmp_path)
    assert "no live worker serves model other (the last one was seen" in later.stderr
    assert httpx.get(f"{api}/readyz").json()["models"]["other"]["last_seen"] is not None


def test_up_starts_a_worker_per_configured_model(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [*CLI, "up", "--port", str(port), "--flower-port", "0", "--log-dir", str(tmp_path / "logs")],
            env={**env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "Ctrl-C stops" in log.read_text() or up.poll() is not None, 300, "rmscore up to be ready")
        assert up.poll() is None, log.read_text()
        assert "workers for tiny, other" in log.read_text()
        models = httpx.get(f"http://127.0.0.1:{port}/readyz").json()["models"]
        assert models["tiny"]["live"] == 1 and models["other"]["live"] == 1, models
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=90) == 0, log.read_text()[-3000:]
