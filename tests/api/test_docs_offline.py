"""`/docs` and `/redoc` on an air-gapped machine: a real `rmscore api` process, headless Chromium
(the report's harness, tests/report/browser) with every request off the API's origin blocked.
FastAPI's default pages load Swagger UI and ReDoc from a CDN and stayed blank there."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from testkit import CLI, REPO, clean_env

BROWSER_DIR = REPO / "tests" / "report" / "browser"
CHROMIUM = os.environ.get("RMSCORE_CHROMIUM", "/usr/bin/chromium")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
CDN_PAGE = """<!DOCTYPE html><title>FastAPI's default docs page</title><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"})</script>"""


def browse(shots: Path, allowed: str, *urls: str) -> list[dict[str, Any]]:
    problems = [
        what
        for what, ok in (
            (f"{CHROMIUM} is missing", Path(CHROMIUM).is_file()),
            ("node is missing", shutil.which("node") is not None),
            ("playwright-core is missing", (BROWSER_DIR / "node_modules" / "playwright-core").is_dir()),
        )
        if not ok
    ]
    if problems:
        pytest.fail(f"BROWSER TEST NOT SET UP: {problems[0]}. Run `make browser-setup`.", pytrace=False)
    shots.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["node", str(BROWSER_DIR / "check_docs.mjs"), str(shots), allowed, *urls],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=BROWSER_DIR,
    )
    assert done.returncode == 0, f"the browser run failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)["pages"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `rmscore api` (no worker needed to serve its docs)."""
    tmp = tmp_path_factory.mktemp("docs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = clean_env(RMSCORE_DATABASE_URL=f"sqlite:///{tmp / 'rmscore.db'}", RMSCORE_BROKER_URL="redis://127.0.0.1:9/0")
    log = tmp / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "api", "--port", str(port)], env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:  # a wait limit, not a speed claim
                pytest.fail(f"the API did not answer /healthz in 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_docs_render_with_the_network_cut_off(api_url: str, tmp_path: Path) -> None:
    cdn = tmp_path / "cdn.html"
    cdn.write_text(CDN_PAGE)
    swagger, redoc, default = browse(tmp_path / "shots", api_url, f"{api_url}/docs", f"{api_url}/redoc", cdn.as_uri())

    assert swagger["blocked"] == [], f"/docs reached off the machine: {swagger['blocked']}"
    # ReDoc's bundle links its "powered by" logo from its CDN; offline, only that image is missing.
    assert set(redoc["blocked"]) <= {REDOC_LOGO}, f"/redoc reached off the machine: {redoc['blocked']}"
    for page in (swagger, redoc):
        assert page["failed"] == [] and page["page_errors"] == [], page
        assert page["rendered"], f"{page['url']} did not render:\n{page['text'][:2000]}"
    spec = httpx.get(f"{api_url}/openapi.json").json()
    n_operations = sum(len(methods) for methods in spec["paths"].values())
    assert swagger["swagger_title"].startswith("rmscore") and swagger["swagger_operations"] == n_operations
    assert "/v1/jobs/upload" in swagger["text"]
    assert redoc["redoc_title"].startswith("rmscore") and redoc["redoc_operations"] == n_operations

    # The harness sees what it is there for: a CDN page is blocked and stays blank.
    assert any("cdn.jsdelivr.net" in u for u in default["blocked"])
    assert not default["rendered"] and default["swagger_operations"] == 0
