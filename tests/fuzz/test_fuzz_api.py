"""Fuzz the API in process (FastAPI's TestClient, SQLite, a private Redis; no worker needed):
generated JSON bodies, uploads, raw bytes and query strings never get a 5xx, and every error is
`{"error": {"code", "message"}}`. An accepted job counts every line it was given."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from harness import RedisServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import job_body, json_values, lines, no_newline, texts

from rmscore.http import CLIENT_HEADER

EXAMPLES = 300  # per test: 1,200 requests with the four tests below
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.config import ApiConfig
    from api.main import create_app
    from rmscore.settings import Settings

    tmp = tmp_path_factory.mktemp("fuzz-api")
    server = RedisServer(tmp / "redis.log").start()
    s = Settings(
        database_url=f"sqlite:///{tmp / 'rmscore.db'}",
        broker_url=server.url,
        model="/models/tiny",
        auth="disabled",
        max_upload_bytes=200_000,
        max_json_body_bytes=200_000,
        max_line_bytes=4096,
        max_turns=8,
        _env_file=None,
    )
    try:
        # Local mode answers loopback Host names only, and form-shaped bodies need the client header.
        app = create_app(s, ApiConfig.from_settings(s))
        with TestClient(
            app, raise_server_exceptions=False, base_url="http://127.0.0.1", headers={CLIENT_HEADER: "fuzz"}
        ) as c:
            yield c
    finally:
        server.kill()


def check(r: Any) -> dict[str, Any] | None:
    assert r.status_code < 500, (r.status_code, r.text[:2000])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["message"]
        return None
    return r.json() if "json" in r.headers.get("content-type", "") else None


@FUZZ
@given(body=job_body())
def test_json_job_bodies(client: Any, body: Any) -> None:
    job = check(client.post("/v1/jobs", json=body))
    if job is not None:  # accepted: one counted line per item given
        assert job["request_counts"]["total"] == len(body["items"])


@FUZZ
@given(
    file=st.lists(lines.map(no_newline), min_size=1, max_size=8),
    kind=st.sampled_from([None, "auto", "chat", "pairwise", "bogus"]),
    gzip_it=st.booleans(),
)
def test_uploads(client: Any, file: list[bytes], kind: str | None, gzip_it: bool) -> None:
    import gzip

    data = b"\n".join(file) + b"\n"
    name = "in.jsonl"
    if gzip_it:
        data, name = gzip.compress(data), "in.jsonl.gz"
    params = {"kind": kind} if kind else {}
    job = check(client.post("/v1/jobs/upload", params=params, files={"file": (name, data)}))
    if job is not None:
        assert job["request_counts"]["total"] == sum(1 for raw in file if raw.rstrip(b"\r").strip())


@FUZZ
@given(
    raw=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
    path=st.sampled_from(["/v1/jobs", "/v1/jobs/upload", "/v1/score"]),
    ctype=st.sampled_from(["application/json", "multipart/form-data; boundary=x", "text/plain", "", "application/x"]),
)
def test_raw_bodies(client: Any, raw: bytes, path: str, ctype: str) -> None:
    if path == "/v1/score" and raw.lstrip().startswith(b"{"):
        return  # a valid scoring request would wait for a worker; the JSON job fuzz covers the shapes
    check(client.post(path, content=raw, headers={"Content-Type": ctype} if ctype else {}))


@FUZZ
@given(
    path=st.sampled_from(
        ["/v1/jobs/{}", "/v1/jobs/{}/results", "/v1/jobs/{}/errors", "/v1/jobs/{}/cancel", "/v1/jobs"]
    ),
    ident=texts,
    params=st.dictionaries(
        st.sampled_from(["status", "limit", "cursor", "format", "job_id", "min_score", "correct", "model", "subset"]),
        st.one_of(texts, st.integers(-(10**20), 10**20).map(str), st.sampled_from(["nan", "inf", "-1", "1e309"])),
        max_size=4,
    ),
    scores=st.booleans(),
)
def test_paths_and_queries(client: Any, path: str, ident: str, params: dict[str, str], scores: bool) -> None:
    from urllib.parse import quote

    url = "/v1/scores" if scores else path.format(quote(ident, safe="") or "x")
    method = client.post if url.endswith("/cancel") else client.get
    check(method(url, params=params))


def test_the_fuzzed_jobs_are_stored_whole(client: Any) -> None:
    """After the fuzz: every stored job's counters match its items (nothing half-written)."""
    listed = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert listed, "the fuzz accepted no job at all: the strategies lost their valid shapes"
    for job in listed:
        counts = job["request_counts"]
        assert 0 <= counts["completed"] + counts["failed"] <= counts["total"]


