"""Helpers shared by the test suites (import as `testkit`: pytest puts tests/ on sys.path).

Real services only: the Redis and PostgreSQL on this machine, real `rmscore` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from rmscore.cli import main; main()"]
PG_URL = os.environ.get("RMSCORE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RMSCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# One Redis database per suite, so a suite never flushes another's keys (tests/api uses 13 and 14).
# Each suite owns a Redis database, so suites never flush each other's: api 13-14, monitoring 12.
# Free databases: 0 (a user's default), 1. Benches use 5-6, the demo test 15, tests/readme 2.
REDIS_DB = {
    "online": 8,
    "cli": 7,
    "db": 11,
    "pipeline-sqlite": 9,
    "pipeline-postgresql": 10,
    "monitoring": 12,
    "hostile-sqlite": 3,
    "hostile-postgresql": 4,
    "readme": 2,
}


def redis_url(suite: str) -> str:
    return f"{REDIS_URL}/{REDIS_DB[suite]}"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process' environment without any RMSCORE_* setting, offline, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RMSCORE_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    # One torch thread per process: tests run several model processes on a 2-core machine, where
    # torch's default of one thread per core made each of them 10-20x slower (threads spin-waiting
    # for cores the other processes hold).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], *, check: bool = True, timeout: float = 300) -> Any:
    """Run `rmscore ARGS` to completion; returns the CompletedProcess (text)."""
    proc = subprocess.run([*CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"rmscore {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(sql)


def database_url(backend: str, tmp: Path, make_pg_url: Any, prefix: str) -> str:
    """A fresh SQLite file under `tmp`, or a fresh PostgreSQL schema (see the `pg_schema_url` fixture)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'rmscore.db'}"
    return make_pg_url(prefix)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (returned); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def assert_records_equal(got: list[dict[str, Any]], want: list[dict[str, Any]], tol: float = 1e-4) -> None:
    """A job's result records equal `rmscore score`'s for the same lines (scores within `tol`)."""
    assert [r["line"] for r in got] == [r["line"] for r in want]
    for g, w in zip(got, want, strict=True):
        # Stored results also say whether a score came from the score cache (`rmscore score` has none):
        # a bool on every scored line, nothing on an error; the scores themselves must match.
        assert isinstance(g.get("cached"), bool) if "error" not in g else "cached" not in g, g
        if "cached" not in w:
            g = {k: v for k, v in g.items() if k != "cached"}
        assert g.keys() == w.keys(), (g, w)
        for k, v in w.items():
            if isinstance(v, float):
                assert abs(g[k] - v) <= tol, (k, g, w)
            else:
                assert g[k] == v, (k, g, w)


def card_pipeline(model_dir: Path) -> Any:
    """The model card's scoring, on transformers 5: text-classification, no sigmoid, batch size 1.
    Returns a function from conversations to their scores (the reference every engine path must meet)."""
    from transformers import AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pipe = pipeline("text-classification", model=str(model_dir), tokenizer=tokenizer, device="cpu")

    def score(conversations: list) -> list[float]:
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=False).replace(
                tokenizer.bos_token, ""
            )
            for c in conversations
        ]
        out = pipe(texts, batch_size=1, function_to_apply="none", top_k=None)
        return [o[0]["score"] for o in out]

    return score
