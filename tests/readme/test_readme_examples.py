"""README.md's shell examples, run as written against a stack started the way the README says.

The examples are read from the README itself (`readme_blocks.extract`), so they cannot drift from what
this test runs. They run in order in one bash script, in an empty folder that holds only what a
reader's clone would after `make demo` (`.venv`, `models/tiny`), with a fresh home directory and
no RMSCORE_* variable but a private Redis database. Two things differ from a reader's terminal,
both visible here: the API and Flower ports are swapped for free ones (a parallel run cannot share
8000/5555), and `curl` fails on an HTTP error (`--fail-with-body`), so an example that answers 4xx
or 5xx fails the test instead of printing an error a reader would have met.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from readme_blocks import Block, extract, script
from testkit import REPO, redis_url

README = REPO / "README.md"
DOCKER_README = REPO / "docker" / "README.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("path", [README, DOCKER_README], ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_example_runs_or_says_why_not(path: Path) -> None:
    blocks = extract(path)
    assert blocks, f"{path.name} has no shell examples"
    for b in blocks:
        assert b.skip is None or len(b.skip) > 5, f"{b.where}: say why the example is not run"


def test_readme_examples_run_as_written(tmp_path: Path, tiny_model_dir: Path) -> None:
    blocks: list[Block] = [b for b in extract(README) if b.skip is None]
    work = tmp_path / "clone"
    (work / "models").mkdir(parents=True)
    (work / ".venv").symlink_to(REPO / ".venv")
    (work / "models" / "tiny").symlink_to(tiny_model_dir)
    home = tmp_path / "home"
    home.mkdir()
    api_port, flower_port = free_port(), free_port()
    venv_bin = str(REPO / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMSCORE_", "VIRTUAL_ENV"))}
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        # The reader has not activated the venv yet: the README must say how to get `rmscore`.
        PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin),
        RMSCORE_BROKER_URL=redis_url("readme"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    import redis

    redis.Redis.from_url(env["RMSCORE_BROKER_URL"]).flushdb()
    text = script(
        blocks,
        replace={
            "127.0.0.1:8000": f"127.0.0.1:{api_port}",
            ":5555": f":{flower_port}",
            "rmscore up": f"rmscore up --port {api_port} --flower-port {flower_port}",
        },
        ready_url=f"http://127.0.0.1:{api_port}/readyz",
    )
    # An HTTP example that answers 4xx/5xx fails (a reader would have seen an error, not a result).
    text = text.replace("set -euo pipefail", 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }', 1)
    (tmp_path / "readme.sh").write_text(text)
    try:
        done = subprocess.run(
            ["bash", str(tmp_path / "readme.sh")], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"README examples still running after 900 s:\n{(e.stderr or b'')[-4000:]!r}")
    finally:
        redis.Redis.from_url(env["RMSCORE_BROKER_URL"]).flushdb()
    where = [ln for ln in done.stderr.splitlines() if ln.startswith(">>> ")]
    assert done.returncode == 0, (
        f"README example at {where[-1][4:] if where else '?'} failed (exit {done.returncode}):\n"
        f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-5000:]}"
    )
    assert where[-1] == ">>> all examples ran"


def test_docker_readme_examples_that_need_no_docker_run_as_written(tmp_path: Path) -> None:
    """docker/README.md's examples that need no Docker engine (the lock, the .env), run from the root
    of a copy of the repository's tracked files, as its text says ("All commands … from the
    repository root")."""
    blocks = [b for b in extract(DOCKER_README) if b.skip is None]
    assert blocks, "docker/README.md has no example that runs without Docker: mark fewer as skipped"
    tree = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in files.splitlines():
        source = REPO / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(source.read_bytes())
    (tree / ".venv").symlink_to(REPO / ".venv")
    text = script(blocks, replace={}, ready_url="")
    done = subprocess.run(["bash", "-c", text], cwd=tree, capture_output=True, text=True, timeout=300)
    where = [ln for ln in done.stderr.splitlines() if ln.startswith(">>> ")]
    failed_at = where[-1][4:] if where else "?"
    assert done.returncode == 0, f"docker/README.md example at {failed_at}:\n{done.stderr[-3000:]}"
    assert (tree / "docker" / ".env").read_text() == (REPO / "docker" / ".env.example").read_text()
    pins = (tree / "docker" / "constraints.txt").read_text()
    assert "transformers==" in pins and "celery==" in pins, pins[:500]
