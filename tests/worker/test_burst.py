"""`rmscore worker --burst`: a real worker scores every chunk of its model that was submitted, then
exits 0 by itself (a worker without the flag never does); with nothing to do it exits at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness import RedisServer, migrated, service_env, start_worker_proc
from testkit import run_cli

from rmscore import keys

LINES = 14  # chunks of 4: four chunks, so the worker must come back to its queue after the first


def _wait_exit(worker, timeout: float = 240) -> int:  # type: ignore[no-untyped-def]
    try:
        return worker.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"a --burst worker still ran after {timeout}s:\n{worker.output()[-3000:]}") from None


def test_a_burst_worker_drains_its_queue_then_exits_0(tmp_path: Path, tiny_model_dir: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis.log").start()
    try:
        db_url = f"sqlite:///{tmp_path / 'rmscore.db'}"
        migrated(db_url)
        env = service_env(db_url, redis_server.url, tiny_model_dir)
        src = tmp_path / "chats.jsonl"
        src.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(LINES)))
        job = run_cli(["submit", str(src), "--chunk-size", "4"], env).stdout.strip()

        worker = start_worker_proc(env, "burst-1", tmp_path / "worker.log", ["--burst"])
        assert _wait_exit(worker) == 0, worker.output()[-3000:]
        assert "burst: no chunk of tiny left to score; stopping" in worker.output()

        status = json.loads(run_cli(["status", job, "--json"], env).stdout)
        assert status["status"] == "completed"
        assert status["request_counts"] == {"total": LINES, "completed": LINES, "failed": 0}
        # Its heartbeat is gone with it: nothing claims a worker is still serving.
        assert not redis_server.client().keys(keys.worker_heartbeat("*"))

        # Nothing left: a second burst worker loads, looks twice, and goes.
        idle = start_worker_proc(env, "burst-2", tmp_path / "worker2.log", ["--burst"])
        assert _wait_exit(idle) == 0, idle.output()[-3000:]
        assert " received" not in idle.output()  # no chunk message came to it
    finally:
        redis_server.kill()
