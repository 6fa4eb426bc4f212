"""`make demo`'s path (`rmscore demo`) end to end: real Redis or the embedded one, a real worker, the
API and Flower; it must print the summary and leave nothing running."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

RMSCORE = str(Path(sys.executable).parent / "rmscore")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from worker.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", "tiny")


@pytest.mark.integration
@pytest.mark.parametrize("redis", ["running", "absent"])
def test_demo_runs_and_cleans_up(tmp_path, model_dir, redis):
    sample = tmp_path / "sample.jsonl"
    rows = [
        {"prompt": f"q{i}", "chosen": f"good answer {i}", "rejected": "bad", "subset": f"s{i % 2}"} for i in range(8)
    ]
    sample.write_text("".join(json.dumps(r) + "\n" for r in rows))
    port = free_port()
    broker = os.environ.get("RMSCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/15" if redis == "running" else f"redis://127.0.0.1:{port}/0"
    env = {**os.environ, "RMSCORE_BROKER_URL": broker, "HF_HUB_OFFLINE": "1"}
    env.pop("RMSCORE_API_URL", None)
    proc = subprocess.run(
        [
            RMSCORE,
            "demo",
            "--model",
            str(model_dir),
            "--input",
            str(sample),
            "--state-dir",
            str(tmp_path / "st"),
            "--api-port",
            str(free_port()),
            "--flower-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    out = proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "completed, 8 scored, 0 failed" in out
    assert "overall" in out and "s0" in out and "s1" in out
    assert "random weights" in out and "/docs" in out and "Flower" in out
    # The progress bar and the summary give the same rate in the same unit.
    rates = re.findall(r"([\d,]+\.\d) (\w+)/s", out)
    assert len(rates) >= 2 and len(set(rates)) == 1 and rates[0][1] == "pairs", rates
    # Flower runs behind basic auth: the credentials generated for the run are shown with its URL.
    assert re.search(r"Flower +http://127\.0\.0\.1:\d+\n +login: user rmscore password [\w-]{20,} ", out), out[-2000:]
    if redis == "absent":
        assert "starting an embedded redis-server" in out
    else:
        assert "redis: using" in out
    # Nothing the demo started is left behind: no worker on this model, no API, no embedded Redis.
    marks = (str(model_dir), str(tmp_path), str(port))
    leftovers = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(m in cmd for m in marks):
            leftovers.append(cmd)
    assert not leftovers, leftovers
