"""bench/system.py runs end to end at a tiny size (real API, Redis, worker, SQLite) and reports
every figure it promises, so it cannot rot. Speeds are not asserted: they go in bench/README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("RMSCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/6"  # this test's own db


def test_tiny_system_run_reports_its_figures(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "system.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMSCORE_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "system.py"), "--sizes", "tiny", "--tiny-items", "200",
         "--workers", "1", "--profile", "--broker-url", BROKER, "--out", str(out),
         "--models-dir", str(tiny_model_dir.parent)],  # the session's tiny model: not built again
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["size"] == "tiny" and run["items"] == 200 and run["workers"] == 1
    assert run["system_items_per_s"] > 0 and run["engine_items_per_s"] > 0
    assert run["system/engine"] > 0
    # The profile covers the chunk's phases: model forward and the database writes at least.
    phases = report["profile"]["phases_s"]
    assert "model forward" in phases and "store results + chunk done (DB)" in phases, phases
    assert "tiny x1 items/s end to end" in done.stdout and "worker profile" in done.stdout, done.stdout


def test_help() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "system.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--tiny-items" in done.stdout
