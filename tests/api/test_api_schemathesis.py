"""Schemathesis, from the published /openapi.json, against the real API: no 5xx, no response
that breaks the schema (status codes, content types and bodies as documented). Bounded in time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from apistack import REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]


def test_schemathesis_finds_no_server_error(stack: Stack, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.fail("schemathesis is not installed (pip install schemathesis; it is in the dev extra)")
    cmd = [
        str(st),
        "run",
        f"{stack.url}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        "--header",
        f"Authorization: Bearer {stack.keys['fuzz']}",
        "--max-examples",
        "10",
        # A budget that fuzzing and stateful testing repeat to fill (schemathesis 4): one pass of every
        # phase over all 18 operations (~1,300 cases) takes ~6 s here; 25 s leaves room for a slow
        # machine to finish that pass, then fuzzes on (45 s gave ~4,700 cases in all).
        "--max-time",
        "25",
        "--seed",
        "7",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "70",
        "--report-dir",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    summary = "\n".join(line for line in out.stdout.splitlines() if len(line) < 400)[-6000:]
    assert out.returncode == 0, summary
    assert "Tested:" in out.stdout, summary
