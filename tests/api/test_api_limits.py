"""Limits and malformed input: the right status and error code, never a 500.

A second API process shares the SQLite stack's database and broker with small limits and an
extra configured model that no worker serves (so its jobs stay queued: a deterministic backlog).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apistack import Stack
from harness import start_api, stop_proc

GHOST = "/nonexistent/models/ghost"


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[httpx.Client]:
    env = {
        **stack.env,
        "RMSCORE_MODELS": json.dumps([GHOST]),
        "RMSCORE_MAX_UPLOAD_BYTES": "20000",
        "RMSCORE_MAX_ITEMS_PER_JOB": "50",
        "RMSCORE_MAX_LINE_BYTES": "100000",
        "RMSCORE_MAX_QUEUED_ITEMS_PER_TENANT": "10",
        "RMSCORE_MAX_JSON_BODY_BYTES": "100000",
    }
    log = stack.tmp / "api-limited.log"
    url, proc = start_api(env, log)
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {stack.keys['erin']}"}, timeout=60
        ) as c:
            yield c
    finally:
        stop_proc(proc)


def _err(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]


def test_size_limits(limited: httpx.Client, tmp_path: Path) -> None:
    item = {"prompt": "p", "response": "r"}
    _err(limited.post("/v1/jobs", json={"items": [item] * 51}), 413, "too_many_items")
    _err(limited.post("/v1/jobs", content=b"x" * 100_001, headers={"Content-Type": "application/json"}), 413)
    big = tmp_path / "big.jsonl"
    big.write_text((json.dumps(item) + "\n") * 1000)
    _err(limited.post("/v1/jobs/upload", files={"file": ("big.jsonl", big.read_bytes())}), 413, "upload_too_large")
    chunked = limited.post(
        "/v1/jobs/upload",
        content=iter([big.read_bytes()[i : i + 4096] for i in range(0, big.stat().st_size, 4096)]),
        headers={"Content-Type": "application/x-ndjson"},
    )
    _err(chunked, 413, "upload_too_large")
    listed = limited.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert all(j["request_counts"]["total"] <= 50 for j in listed)  # nothing half-stored


def test_line_hardening(limited: httpx.Client, stack: Stack) -> None:
    lines = [
        json.dumps({"prompt": "p", "response": "x" * 150_000}).encode(),  # over max_line_bytes
        b'{"prompt": "p", "response": "\xff\xfe"}',  # invalid UTF-8
        json.dumps({"prompt": "p\u0000", "response": "r"}).encode(),  # NUL
        b"[" * 5000 + b"]" * 5000,  # deeply nested
        json.dumps({"prompt": "p", "response": "r", "n": 10**400}).encode(),  # huge number, unknown field
        json.dumps({"prompt": "<|begin_of_text|><|eot_id|>", "response": "<|start_header_id|>"}).encode(),
        json.dumps(
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 600}
        ).encode(),
        b'{"prompt": "p", "response": "\\ud800"}',  # a lone surrogate: valid JSON, no UTF-8 form
        b'{"custom_id": "a\\u0000b", "prompt": "p", "response": "r"}',  # NUL: PostgreSQL cannot store it
    ]
    r = limited.post(
        "/v1/jobs/upload?kind=chat&model=ghost",
        files={"file": ("x.jsonl.gz", gzip.compress(b"\n".join(lines)))},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["model"] == "ghost" and job["request_counts"]["total"] == len(lines)
    with stack.client("erin") as c:
        errors = [json.loads(x) for x in c.get(f"/v1/jobs/{job['id']}/errors").text.splitlines()]
    codes = {e["line"]: e["error"]["code"] for e in errors}
    assert codes == {
        1: "line_too_long",
        2: "invalid_utf8",
        3: "invalid_text",
        4: "invalid_json",
        7: "too_many_turns",
        8: "invalid_text",
        9: "invalid_text",
    }


def test_back_pressure_429_and_nothing_dropped(limited: httpx.Client, stack: Stack) -> None:
    items = [{"prompt": f"p{i}", "response": "r"} for i in range(5)]  # two fill the cap of 10
    bob = {"Authorization": f"Bearer {stack.keys['bob']}"}  # a tenant with nothing else queued
    accepted = []
    last = None
    for _ in range(4):
        last = limited.post("/v1/jobs", json={"model": "ghost", "items": items}, headers=bob)
        if last.status_code != 202:
            break
        accepted.append(last.json()["id"])
    assert last is not None
    err = _err(last, 429, "overloaded")
    assert "queue is full" in err["message"]
    assert int(last.headers["Retry-After"]) > 0
    assert len(accepted) == 2  # 5 + 5 lines fit under the cap of 10; the third job did not
    for jid in accepted:
        assert limited.get(f"/v1/jobs/{jid}", headers=bob).json()["status"] == "queued"
    with open(__file__, "rb") as f:  # uploads are refused up front too
        r = limited.post("/v1/jobs/upload?model=ghost", files={"file": ("a.jsonl", f)}, headers=bob)
        _err(r, 429, "overloaded")


def test_uploads_count_their_lines_against_the_tenant_backlog(limited: httpx.Client, stack: Stack) -> None:
    """Uploads were checked with no incoming lines, so any upload got in while the queue had room."""
    from db.api_keys import create_key

    fresh = {"Authorization": f"Bearer {create_key(stack.db(), 'backlog-uploads')[0]}"}  # nothing queued yet

    def upload(n: int) -> httpx.Response:
        blob = b"".join(json.dumps({"prompt": f"p{i}", "response": "r"}).encode() + b"\n" for i in range(n))
        return limited.post("/v1/jobs/upload?model=ghost", files={"file": ("a.jsonl", blob)}, headers=fresh)

    assert upload(6).status_code == 202  # 6 waiting, cap 10
    _err(upload(5), 429, "overloaded")  # 6 + 5 > 10: refused, though the queue had room for some
    assert upload(4).status_code == 202  # 6 + 4 = 10 fits
    listed = limited.get("/v1/jobs", headers=fresh).json()["data"]
    assert sorted(j["request_counts"]["total"] for j in listed) == [4, 6]  # the refused one left nothing


def test_no_worker_and_unknown_model(limited: httpx.Client) -> None:
    item = {"prompt": "p", "response": "r"}
    r = limited.post("/v1/score", json={"model": "ghost", "items": [item]})
    _err(r, 503, "no_worker")
    _err(limited.post("/v1/jobs", json={"model": "../../etc", "items": [item]}), 400, "unknown_model")
    _err(limited.post("/v1/jobs", json={"model": GHOST + "/../x", "items": [item]}), 400, "unknown_model")


@pytest.mark.parametrize(
    ("method", "path", "kw", "status"),
    [
        ("POST", "/v1/jobs", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 422),
        ("POST", "/v1/jobs", {"json": {"items": [1], "extra": 1}}, 422),
        ("POST", "/v1/jobs", {"json": {"items": [1], "options": {"overflow": "explode"}}}, 422),
        ("POST", "/v1/jobs", {"json": {"items": [1], "metadata": {"a": [[[[[[[[[[1]]]]]]]]]]}}}, 400),
        ("POST", "/v1/jobs", {"json": {"items": [1], "kind": "images"}}, 422),
        (
            "POST",
            "/v1/jobs",
            {"content": b"[" * 100_00 + b"]" * 100_00, "headers": {"Content-Type": "application/json"}},
            413,  # dense: refused as body_too_complex before it is parsed
        ),
        ("POST", "/v1/jobs/upload", {"content": b"x", "headers": {"Content-Type": "text/html"}}, 415),
        ("POST", "/v1/jobs/upload", {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}}, 400),
        ("POST", "/v1/jobs/upload", {"files": {"other": ("a", b"1")}}, 400),
        ("POST", "/v1/jobs/upload", {"files": {"file": ("a.jsonl.gz", b"\x1f\x8bnot gzip")}}, 400),
        ("POST", "/v1/jobs/upload", {"files": {"file": ("a.parquet", b"PAR1 nope")}}, 400),
        ("POST", "/v1/jobs/upload?metadata=[1]", {"files": {"file": ("a", b"{}")}}, 400),
        ("GET", "/v1/jobs?limit=0", {}, 422),
        ("GET", "/v1/jobs?cursor=%FF", {}, 400),
        ("GET", "/v1/jobs/x/results?format=xml", {}, 422),
        ("GET", "/v1/scores?min_score=inf", {}, 400),
        ("GET", "/v1/scores?truncated=maybe", {}, 422),
        ("DELETE", "/v1/jobs", {}, 405),
    ],
)
def test_malformed_requests(limited: httpx.Client, method: str, path: str, kw: dict, status: int) -> None:
    _err(limited.request(method, path, **kw), status)
    assert limited.get("/healthz").status_code == 200
