"""`api.browser.BrowserGuard`'s decisions, on a bare ASGI app (the real API is tested end to end in
tests/api/test_api_local_mode.py): which Host names pass, which writes count as cross-site."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.browser import BrowserGuard, host_name
from rmscore.http import CLIENT_HEADER

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def client(**kw: object) -> TestClient:
    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", ok, methods=["GET", "POST"])])
    return TestClient(BrowserGuard(app, **kw), base_url="http://127.0.0.1:8000")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "name"),
    [("127.0.0.1:8000", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:80", "::1"), ("::1", "::1"), ("", "")],
)
def test_host_name(host: str, name: str) -> None:
    assert host_name(host) == name


def test_extra_hosts_come_from_the_setting_only() -> None:
    assert client().get("/", headers={"Host": "rm.lan:8000"}).status_code == 400
    assert client(allowed_hosts=["rm.lan"]).get("/", headers={"Host": "rm.lan:8000"}).status_code == 200


def test_a_listed_cors_origin_may_post_a_form_and_an_unlisted_one_may_not() -> None:
    dash = {"Origin": "https://dash.example", "Sec-Fetch-Site": "cross-site", **FORM}
    assert client(cors_origins=["https://dash.example/"]).post("/", headers=dash, content=b"a=1").status_code == 200
    assert client(cors_origins=["https://other.example"]).post("/", headers=dash, content=b"a=1").status_code == 403


def test_reads_are_not_checked_for_origin_and_writes_need_the_header_without_one() -> None:
    c = client()
    assert c.get("/", headers={"Origin": "http://evil.example"}).status_code == 200  # CORS keeps the answer
    assert c.post("/", headers=FORM, content=b"a=1").status_code == 403
    assert c.post("/", headers={**FORM, CLIENT_HEADER: "x"}, content=b"a=1").status_code == 200
    assert c.post("/", json={"a": 1}).status_code == 200  # JSON: a page would need a preflight
