"""What `rmscore up` prints in one terminal: a quiet start (no readiness polls, migration plugins,
Celery's root warning or Flower's inspect warnings), the URLs and Flower login last, then each
process's lines prefixed with its name. Real Redis, SQLite and `rmscore up` with a worker, the API
and Flower on the tiny model; a job submitted to it shows up as the worker's prefixed lines."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
import redis
from harness import free_port
from testkit import CLI, clean_env, redis_url, wait_until

from rmscore.logmux import LogMux

pytestmark = pytest.mark.integration

PREFIXED = re.compile(r"^(redis|api|flower|worker-\d+)\s* \| ")


def test_up_is_quiet_until_ready_then_prefixes_each_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    redis.Redis.from_url(redis_url("cli")).flushdb()
    env = clean_env(
        RMSCORE_DATABASE_URL=f"sqlite:///{tmp_path / 'rmscore.db'}",
        RMSCORE_BROKER_URL=redis_url("cli"),
        RMSCORE_MODEL=str(tiny_model_dir),
        COLUMNS="300",
    )
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [*CLI, "up", "--port", str(free_port()), "--flower-port", str(free_port())],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "Ctrl-C stops" in log.read_text() or up.poll() is not None, 300, "rmscore up to be ready")
        assert up.poll() is None, log.read_text()
        data = tmp_path / "in.jsonl"
        data.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a"}) + "\n" for i in range(3)))
        job = subprocess.run(
            [*CLI, "submit", str(data), "--wait"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        ).stdout.strip()
        wait_until(lambda: f"of job {job}" in log.read_text(), 60, "the worker's line about the job")
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=90)
    text = log.read_text()
    assert code == 0, text[-3000:]
    lines = text.splitlines()
    ready = next(i for i, line in enumerate(lines) if line.startswith("ready"))
    started = lines[: ready + 5]
    # Start-up: the supervisor's own lines and the URL block, nothing from the children.
    assert not any(PREFIXED.match(line) for line in started), "\n".join(started)
    for noise in ("GET /readyz", "alembic", "SecurityWarning", "superuser", "Inspect method", "readyz:"):
        assert noise not in text, noise
    # The URLs and the Flower login come last, once everything is ready.
    assert [line.split()[0] for line in lines[ready + 1 : ready + 5]] == ["workers", "Flower", "Flower", "Ctrl-C"]
    assert "Flower login: user rmscore password" in lines[ready + 3]
    # After that, every child's line says which process it is.
    worker = [line for line in lines[ready + 5 :] if f"of job {job}" in line]
    assert worker and all(line.startswith("worker-0 | ") for line in worker), worker


def test_mux_holds_the_start_shows_errors_and_replays_a_failed_start() -> None:
    out: list[str] = []
    mux = LogMux(["api", "worker-0"], out.append)
    mux.feed("api", 'INFO:     127.0.0.1:40906 - "GET /readyz HTTP/1.1" 503 Service Unavailable\n')
    mux.feed("api", "readyz: workers not ready: RuntimeError: no live worker serves model tiny\n")
    mux.feed("worker-0", "loading the model\n")
    mux.feed("worker-0", "ERROR worker.runner: cannot open the model\n")
    assert out == ["worker-0 | ERROR worker.runner: cannot open the model"]  # only what is wrong, at once
    mux.replay(["worker-0"])
    assert out[1:] == ["worker-0 | loading the model"]
    mux.release()
    mux.feed("api", 'INFO:     127.0.0.1:1 - "GET /v1/jobs HTTP/1.1" 200 OK')
    mux.feed("flower", "[W 261201 20:27:52 inspector:98] Inspect method stats failed")
    assert out[2:] == ['api      | INFO:     127.0.0.1:1 - "GET /v1/jobs HTTP/1.1" 200 OK']
