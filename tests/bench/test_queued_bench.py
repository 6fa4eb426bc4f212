"""bench/queued.py runs end to end at a tiny size (two real workers, Redis, SQLite) and reports the
figures it promises, so it cannot rot. Speeds are not asserted: they go in README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Redis database 1: no suite owns it (tests/testkit.py REDIS_DB); the bench flushes it.
BROKER = os.environ.get("RMSCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/1"


def test_tiny_queued_run_reports_its_ratios(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "queued.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMSCORE_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "queued.py"), "--data", "chats", "--chats", "120", "--rounds", "1",
         "--chunk-size", "20", "--broker-url", BROKER, "--out", str(out),
         "--model", str(tiny_model_dir)],  # the session's tiny model: not built again
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["items"] == 120 and report["chunk_size"] == 20 and len(report["rounds"]) == 1
    assert set(report["rounds"][0]) == {"engine", "queued", "sequential"}
    for ratio in ("queued/engine", "sequential/engine", "queued/sequential"):
        assert report[ratio] > 0, report
    assert "queued / engine" in done.stdout and "queued / sequential" in done.stdout, done.stdout


def test_help() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "queued.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--database-url" in done.stdout and "RMSCORE_WORKER_OVERLAP" in done.stdout
