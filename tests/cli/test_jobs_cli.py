"""`rmscore jobs` and `rmscore report` in both modes (database and API), and the default database:
one per-user file (platformdirs) whatever folder a command runs from. Real Redis, real SQLite, a
real `rmscore api` process; no worker is needed (the jobs stay queued)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import start_api, stop_proc
from testkit import CLI, clean_env, redis_url


def rmscore(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"rmscore {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment whose per-user data directory is under tmp_path, and no RMSCORE_DATABASE_URL."""
    import redis

    redis.Redis.from_url(redis_url("cli")).flushdb()
    return clean_env(XDG_DATA_HOME=str(tmp_path / "xdg"), RMSCORE_BROKER_URL=redis_url("cli"))


def submit(env: dict[str, str], cwd: Path, n_lines: int) -> str:
    cwd.mkdir(parents=True, exist_ok=True)
    data = cwd / f"in{n_lines}.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a"}) + "\n" for i in range(n_lines)))
    return rmscore(["submit", str(data)], env, cwd).stdout.strip()


def test_default_database_is_per_user_not_per_folder(tmp_path: Path, home: dict[str, str]) -> None:
    first = submit(home, tmp_path / "a", 2)
    second = submit(home, tmp_path / "b", 3)
    listed = rmscore(["jobs", "--json"], home, tmp_path / "a")
    jobs = [json.loads(line) for line in listed.stdout.splitlines()]
    # Both folders' jobs in one database, newest first, with their counts.
    assert [j["id"] for j in jobs] == [second, first]
    assert [j["request_counts"]["total"] for j in jobs] == [3, 2]
    assert all(j["status"] == "queued" for j in jobs)
    db_file = tmp_path / "xdg" / "rmscore" / "rmscore.db"
    assert db_file.is_file()
    assert not list(tmp_path.glob("*/rmscore.db*")), "a database appeared in the working folder"
    # It says where the jobs are.
    assert str(db_file) in listed.stderr


def test_jobs_table_and_filter(tmp_path: Path, home: dict[str, str]) -> None:
    job = submit(home, tmp_path, 4)
    table = rmscore(["jobs"], home, tmp_path).stdout.splitlines()
    assert table[0].split()[:4] == ["JOB", "STATUS", "KIND", "MODEL"]
    assert table[1].split()[:2] == [job, "queued"] and table[1].split()[4] == "4"
    none = rmscore(["jobs", "--status", "completed"], home, tmp_path)
    assert none.stdout == "" and "0 jobs" in none.stderr


@pytest.fixture
def api(tmp_path: Path, home: dict[str, str], tiny_model_dir: Path) -> Iterator[dict[str, str]]:
    """A real `rmscore api` on a SQLite file; yields the environment of a client that uses it."""
    server_env = {
        **home,
        "RMSCORE_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
        "RMSCORE_MODEL": str(tiny_model_dir),
    }
    key = rmscore(["keys", "create", "reader"], server_env, tmp_path).stdout.strip()
    url, proc = start_api(server_env, tmp_path / "api.log", cwd=tmp_path)
    try:
        yield {**home, "RMSCORE_API_URL": url, "RMSCORE_API_KEY": key}
    finally:
        stop_proc(proc)


def test_jobs_and_report_through_the_api(tmp_path: Path, api: dict[str, str]) -> None:
    work = tmp_path / "work"
    first = submit(api, work, 2)
    second = submit(api, work, 5)
    listed = rmscore(["jobs", "--json"], api, work)
    jobs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(j["id"], j["request_counts"]["total"]) for j in jobs] == [(second, 5), (first, 2)]
    assert api["RMSCORE_API_URL"] in listed.stderr

    out = work / "report.html"
    rmscore(["report", second, "-o", str(out)], api, work)
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and second in html
    # The API mode opened no database of its own, here or in the data directory.
    assert not list(work.glob("rmscore.db*")) and not (tmp_path / "xdg").exists()


def test_local_only_commands_say_so_in_api_mode(tmp_path: Path, api: dict[str, str]) -> None:
    """Keys live in the database, not behind the API: the command says where it works instead."""
    listed = rmscore(["keys", "list"], {**api, "RMSCORE_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}"}, tmp_path)
    assert "RMSCORE_API_URL is not used" in listed.stderr and str(tmp_path / "api.db") in listed.stderr
    assert json.loads(listed.stdout.splitlines()[0])["name"] == "reader"
