"""RMSCORE_AUTH=disabled (local mode, DEFAULT settings otherwise) against a real `rmscore api`: a web
page can neither reach it through a rebound DNS name (Host allow-list) nor post to it cross-site
(Origin / Sec-Fetch-Site checks, and form-shaped bodies need X-Rmscore-Client). rmscore's own
client, and same-origin pages (/docs), still work."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from harness import RedisServer, start_api, stop_proc
from testkit import clean_env

from rmscore.http import CLIENT_HEADER

EVIL = "http://evil.example"
PAIR = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
JSONL = (json.dumps(PAIR) + "\n").encode()


@dataclass
class LocalApi:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def local_api(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LocalApi]:
    tmp = tmp_path_factory.mktemp("local-api")
    redis_server = RedisServer(tmp / "redis.log").start()
    env = clean_env(
        RMSCORE_DATABASE_URL=f"sqlite:///{tmp / 'rmscore.db'}",
        RMSCORE_BROKER_URL=redis_server.url,
        RMSCORE_MODEL=str(tiny_model_dir),
        RMSCORE_AUTH="disabled",
    )
    url, proc = start_api(env, tmp / "api.log")
    try:
        yield LocalApi(url, int(url.rsplit(":", 1)[1]), proc, tmp / "api.log")
    finally:
        stop_proc(proc)
        redis_server.kill()


def _upload(api: LocalApi, headers: dict[str, str]) -> httpx.Response:
    """A multipart upload, as an HTML form (or rmscore's client) sends it."""
    files = {"file": ("pairs.jsonl", JSONL, "application/octet-stream")}
    return httpx.post(f"{api.url}/v1/jobs/upload", files=files, data={"kind": "pairwise"}, headers=headers, timeout=60)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example", "10.0.0.5"])
def test_a_foreign_host_name_is_refused(local_api: LocalApi, host: str) -> None:
    """DNS rebinding: the page's requests reach 127.0.0.1 but name the attacker's host."""
    host = host.format(port=local_api.port)
    for method, path in (("GET", "/v1/jobs"), ("GET", "/healthz"), ("POST", "/v1/jobs")):
        r = httpx.request(method, f"{local_api.url}{path}", headers={"Host": host}, json={}, timeout=30)
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "invalid_host"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}"])
def test_loopback_host_names_are_answered(local_api: LocalApi, host: str) -> None:
    r = httpx.get(f"{local_api.url}/v1/jobs", headers={"Host": host.format(port=local_api.port)}, timeout=30)
    assert r.status_code == 200, r.text


FORMS = {
    "multipart": lambda api, h: _upload(api, h),
    "urlencoded": lambda api, h: httpx.post(
        f"{api.url}/v1/jobs/upload", content=b"kind=pairwise", timeout=30,
        headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
    ),
    "text-plain-jobs": lambda api, h: httpx.post(
        f"{api.url}/v1/jobs", content=json.dumps({"kind": "pairwise", "items": [PAIR]}).encode(), timeout=30,
        headers={**h, "Content-Type": "text/plain"},
    ),
    "text-plain-upload": lambda api, h: httpx.post(
        f"{api.url}/v1/jobs/upload", content=JSONL, timeout=30, headers={**h, "Content-Type": "text/plain"}
    ),
}  # fmt: skip


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},  # a form on another site (modern browser)
        {"Origin": EVIL},  # no fetch metadata
        {"Sec-Fetch-Site": "cross-site"},  # no Origin
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},  # another local app
        {},  # no browser headers, and no X-Rmscore-Client either
    ],
    ids=["cross-site", "origin-only", "fetch-site-only", "opaque-origin", "same-site", "no-client-header"],
)
def test_form_shaped_posts_from_a_page_are_refused(local_api: LocalApi, form: str, headers: dict[str, str]) -> None:
    before = httpx.get(f"{local_api.url}/v1/jobs", timeout=30).json()["data"]
    r = FORMS[form](local_api, headers)
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.json()["error"]["code"] == "cross_site_request"
    assert "access-control-allow-origin" not in r.headers
    assert httpx.get(f"{local_api.url}/v1/jobs", timeout=30).json()["data"] == before  # nothing was created


def test_cross_site_header_spoof_with_the_client_header_is_still_refused(local_api: LocalApi) -> None:
    """The header alone does not pass a request whose Origin is foreign (a preflight would have failed)."""
    r = _upload(local_api, {"Origin": EVIL, CLIENT_HEADER: "x"})
    assert r.status_code == 403, r.text
    r = httpx.post(f"{local_api.url}/v1/jobs/cancel-me/cancel", headers={"Origin": EVIL}, timeout=30)
    assert r.status_code == 403, r.text


def test_the_same_upload_with_the_client_header_or_same_origin_works(local_api: LocalApi) -> None:
    for headers in (
        {CLIENT_HEADER: "curl"},
        {"Origin": local_api.url, "Sec-Fetch-Site": "same-origin"},  # the API's own /docs page
        {"Origin": local_api.url},
    ):
        r = _upload(local_api, headers)
        assert r.status_code == 202, (headers, r.text)
        assert r.json()["request_counts"]["total"] == 1
    # JSON needs no header: a browser must preflight it cross-site, and CORS is off.
    r = httpx.post(f"{local_api.url}/v1/jobs", json={"kind": "pairwise", "items": [PAIR]}, timeout=30)
    assert r.status_code == 202, r.text


def test_rmscore_client_uploads_and_cancels(local_api: LocalApi, tmp_path: Path) -> None:
    from rmscore.client import Client

    path = tmp_path / "pairs.jsonl"
    path.write_bytes(JSONL * 3)
    with Client(local_api.url, api_key="") as client:
        job = client.submit(path, kind="pairwise")
        assert job.total == 3
        assert client.cancel(job.id).status in ("cancelling", "cancelled")


def test_no_cors_headers_by_default(local_api: LocalApi) -> None:
    """CORS is off unless RMSCORE_CORS_ORIGINS lists origins: a page can neither read answers nor
    pass a preflight (so it cannot send JSON or X-Rmscore-Client cross-site)."""
    r = httpx.get(f"{local_api.url}/v1/jobs", headers={"Origin": EVIL}, timeout=30)
    assert r.status_code == 200 and not [h for h in r.headers if h.lower().startswith("access-control-")]
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = CLIENT_HEADER
    r = httpx.options(f"{local_api.url}/v1/jobs/upload", headers=preflight, timeout=30)
    assert not [h for h in r.headers if h.lower().startswith("access-control-")], dict(r.headers)
