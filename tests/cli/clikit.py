"""Helpers of the CLI tests: a real `rmscore api` process and free ports."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def serve_api(env: dict[str, str], cwd: Path, port: int, log: Path) -> Any:
    """A real `rmscore api` process on `port`, answering /healthz; the caller terminates it."""
    import subprocess
    import time

    import httpx
    from testkit import CLI

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "api", "--port", str(port)], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"rmscore api did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
