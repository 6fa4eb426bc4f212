"""The two services without credentials of their own refuse to listen beyond loopback, with DEFAULT
settings otherwise: `rmscore api` under RMSCORE_AUTH=disabled, and `rmscore flower` without
RMSCORE_FLOWER_BASIC_AUTH (its generated credentials are for the terminal that started it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import clean_env, run_cli


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_api_without_auth_refuses_a_non_loopback_address(tmp_path: Path, host: str) -> None:
    env = clean_env(RMSCORE_AUTH="disabled", RMSCORE_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    proc = run_cli(["api", "--host", host, "--port", "1"], env, check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to listen" in proc.stderr


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.10"])
def test_flower_without_configured_auth_refuses_a_non_loopback_address(address: str) -> None:
    proc = run_cli(["flower", "--address", address, "--port", "1"], clean_env(), check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to serve Flower" in proc.stderr and "Flower basic auth for this run" not in proc.stderr
