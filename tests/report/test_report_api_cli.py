"""The report through its two doors: `GET /v1/jobs/{id}/report` (same auth as the job) and `rmscore report`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from report_jobs import XSS

from api.config import ApiConfig
from api.main import create_app
from db.api_keys import create_key
from rmscore.report import CSP
from rmscore.settings import Settings

RMSCORE = str(Path(sys.executable).parent / "rmscore")
REPORT_PATH = "/v1/jobs/{job_id}/report"


def url_of(db: Any) -> str:
    return str(db.url.render_as_string(hide_password=False))


@pytest.fixture(scope="module")
def client(report_db: Any) -> Any:
    app = create_app(Settings(database_url=url_of(report_db), auth="enabled"), ApiConfig())
    assert REPORT_PATH in app.openapi()["paths"], "the app does not mount the report"
    with TestClient(app) as c:
        yield c


def test_report_endpoint_serves_the_page_to_its_tenant(client: Any, report_db: Any, pairwise_job: str) -> None:
    key, _ = create_key(report_db, "report-reader", tenant="local")
    resp = client.get(f"/v1/jobs/{pairwise_job}/report", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["content-security-policy"] == CSP
    body = resp.text
    assert '<table id="rewardbench">' in body and '<table id="evalbiasbench">' in body and "<svg" in body
    assert "<script" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_report_endpoint_auth(client: Any, report_db: Any, pairwise_job: str) -> None:
    assert client.get(f"/v1/jobs/{pairwise_job}/report").status_code == 401
    other, _ = create_key(report_db, "someone-else")
    resp = client.get(f"/v1/jobs/{pairwise_job}/report", headers={"Authorization": f"Bearer {other}"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "job_not_found"


def test_rmscore_report_writes_the_file(tmp_path: Path, report_db: Any, pairwise_job: str) -> None:
    env = {**os.environ, "RMSCORE_DATABASE_URL": url_of(report_db), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "report.html"
    done = subprocess.run(
        [RMSCORE, "report", pairwise_job, "-o", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"written to {out}" in " ".join(done.stderr.split())
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<table id="accuracy">' in page and XSS not in page

    missing = subprocess.run(
        [RMSCORE, "report", "nope", "-o", str(tmp_path / "x.html")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "job_not_found" in missing.stderr
    assert not (tmp_path / "x.html").exists()
