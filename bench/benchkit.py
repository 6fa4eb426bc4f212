"""What the bench scripts share beyond the process harness (tests/harness.py): where the repository
and the HH-RLHF test file are, writing a report, and the `rmscore api` the storage benches time.
Import as `benchkit` (a script run as `python bench/X.py` has bench/ on sys.path): importing it puts
the repository (a fresh clone runs without installing) and tests/ (the harness) on sys.path and
keeps the Hugging Face hub offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the process harness (tests/harness.py)


def write_report(out: str | Path, results: dict[str, Any], note: str = "") -> None:
    """The results as JSON at `out` (its folder made), and a line saying where (`note` after it)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}{note}")


def start_bench_api(db_url: str, broker_url: str, log: Path, *, auth: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A real `rmscore api` on the bench's database and Redis (the tiny model named, never loaded by
    the API), started with the harness's `start_api`; (base URL, process). Needs tests/ on sys.path."""
    from harness import start_api
    from testkit import clean_env

    env = clean_env(
        RMSCORE_DATABASE_URL=db_url,
        RMSCORE_BROKER_URL=broker_url,
        RMSCORE_AUTH=auth,
        RMSCORE_MODEL="./models/tiny",
    )
    return start_api(env, log)
