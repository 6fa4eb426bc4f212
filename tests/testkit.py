"""Helpers shared by the test suites (import as `testkit`: pytest puts tests/ on sys.path).

Real services only: the Redis and PostgreSQL on this machine, real `rmscore` processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
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


@dataclass
class WorkerProc:
    """A real `rmscore worker` process (in its own session, so signals reach only it)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye (a machine lost)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (Celery's warm shutdown: the chunk in hand finishes), then wait for the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"worker {self.name} ignored SIGTERM for {timeout}s:\n{self.output()[-3000:]}"
            ) from None

    def wait_ready(self, redis_client: Any, timeout: float = 180) -> WorkerProc:
        """Until Celery says ready (after the model is loaded and warmed up) and the heartbeat is there."""
        from rmscore import keys

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited {self.proc.returncode}:\n{self.output()[-4000:]}")
            return bool(redis_client.exists(keys.worker_heartbeat(self.name))) and " ready." in self.output()

        try:
            wait_until(ready, timeout, f"worker {self.name}", 0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.output()[-4000:]}") from None
        return self


def start_worker_proc(env: dict[str, str], name: str, log: Path, args: list[str] | None = None) -> WorkerProc:
    cmd = [*CLI, "worker", "--device", "cpu", "--name", name, *(args or [])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return WorkerProc(name, proc, log, env)


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
