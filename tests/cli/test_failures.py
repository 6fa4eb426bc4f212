"""Expected failures read as one or two lines, the cause and the fix, with a non-zero exit code;
`--debug` brings the traceback back. Real processes, real (absent) services: nothing is mocked."""

from __future__ import annotations

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from testkit import CLI, PG_URL, clean_env


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rmscore(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_short(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert 1 <= len(lines) <= 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "hi", "response": "hello"}\n')
    return path


def test_default_model_offline(tmp_path: Path, data: Path) -> None:
    """The default model is a hub id; offline and not cached, `score` says so and how to fix it."""
    env = clean_env(HF_HOME=str(tmp_path / "hf"))
    proc = rmscore(["score", str(data)], env, tmp_path)
    assert_short(proc, 2, "NCSOFT/Llama-3-OffsetBias-RM-8B", "RMSCORE_MODEL", "make-tiny-model")


def test_hub_unreachable(tmp_path: Path, data: Path) -> None:
    """Online but no hub answering: one probe fails at once, instead of from_pretrained's retries."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = clean_env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_ENDPOINT=endpoint)
    proc = rmscore(["score", str(data), "--model", "someorg/some-rm"], env, tmp_path)
    assert_short(proc, 2, "someorg/some-rm", "unreachable", endpoint, "RMSCORE_MODEL")


def test_missing_model_directory(tmp_path: Path, data: Path) -> None:
    proc = rmscore(["score", str(data), "--model", "./models/nope"], clean_env(), tmp_path)
    assert_short(proc, 2, "./models/nope", "make-tiny-model")


def test_bad_setting(tmp_path: Path) -> None:
    proc = rmscore(["status", "job_x"], clean_env(RMSCORE_OVERFLOW="bogus"), tmp_path)
    assert_short(proc, 2, "RMSCORE_OVERFLOW", "bogus", "truncate")


def test_bad_list_setting(tmp_path: Path) -> None:
    proc = rmscore(["jobs"], clean_env(RMSCORE_MODELS="a,b"), tmp_path)
    assert_short(proc, 2, "models", "JSON")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = rmscore(["--debug", "status", "job_x"], clean_env(RMSCORE_OVERFLOW="bogus"), tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ValidationError" in proc.stderr


def test_redis_down(tmp_path: Path) -> None:
    broker = f"redis://127.0.0.1:{closed_port()}/0"
    proc = rmscore(["worker", "--check"], clean_env(RMSCORE_BROKER_URL=broker), tmp_path)
    assert_short(proc, 1, "Redis", broker, "RMSCORE_BROKER_URL")


def test_database_down(tmp_path: Path) -> None:
    url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{closed_port()}")
    proc = rmscore(["status", "job_x"], clean_env(RMSCORE_DATABASE_URL=url), tmp_path)
    assert_short(proc, 1, "database", "RMSCORE_DATABASE_URL")


def test_api_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    commands = (["status", "job_x"], ["jobs"], ["report", "job_x", "-o", str(tmp_path / "r.html")])
    # Each command spends ~8 s in the client's default retries (with backoff) before it gives up:
    # the three run at once, each with those defaults untouched.
    with ThreadPoolExecutor(len(commands)) as pool:
        procs = list(pool.map(lambda args: rmscore(args, clean_env(RMSCORE_API_URL=url), tmp_path), commands))
    for proc in procs:
        assert_short(proc, 1, url)
