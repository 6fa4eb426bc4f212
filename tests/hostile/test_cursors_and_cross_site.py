"""Crafted cursors and cross-site requests against the hostile suite's stack (DEFAULT settings:
auth enabled, no CORS origin), recorded with the API's peak memory like every other attempt.

Local mode (RMSCORE_AUTH=disabled), where no key stands in a web page's way, has its own suite:
tests/api/test_api_local_mode.py (foreign Host names, cross-site forms); Flower's control API under
a cross-site POST: tests/monitoring/test_flower_security.py.
"""

from __future__ import annotations

import base64

import pytest
from hostilekit import Hostile, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("hostile", ["sqlite", "postgresql"], indirect=True)]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_crafted_cursors_are_400_everywhere(hostile: Hostile) -> None:
    from rmscore import cursor as cursors

    with hostile.client("bob") as c:
        job = c.post("/v1/jobs", json={"kind": "chat", "items": [{"prompt": "q", "response": "a"}] * 3}).json()
        wait_job(c, job["id"])
        crafted = {
            "not base64": "%%%",
            "empty": "",
            "huge line": cursors.encode("line", 2**200),
            "negative line": cursors.encode("line", -(2**63)),
            "NUL in a job id": cursors.encode("scores", job["id"] + "\x00", 1, "tiny"),
            "lone surrogate": _b64(b'["line", "\\ud800"]'),
            "float line": _b64(b'["line", 1e308]'),
            "deep JSON": _b64(b"[" * 150 + b"]" * 150),  # (a longer cursor is a 422: 512 characters at most)
            "another endpoint's cursor": cursors.encode("jobs", "2026-01-01T00:00:00", job["id"]),
            "invalid UTF-8": _b64(b"\xff\xfe\xfd"),
        }
        for path in ("/v1/jobs", "/v1/scores", f"/v1/jobs/{job['id']}/results", f"/v1/jobs/{job['id']}/errors"):
            for name, cursor in crafted.items():
                if not cursor:
                    continue  # an empty cursor is no cursor: the first page
                params = {"cursor": cursor, "format": "json"}
                r = hostile.attack(f"{path}: cursor {name}", lambda p=path, q=params: c.get(p, params=q))
                if name == "another endpoint's cursor" and path == "/v1/jobs":
                    assert r.status_code == 200, r.text  # it is this endpoint's own shape
                    continue
                assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor", (path, name, r.text)


@pytest.mark.parametrize(
    "ctype",
    ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain", "application/json"],
)
def test_a_cross_site_request_without_a_key_changes_nothing(hostile: Hostile, ctype: str) -> None:
    """What a web page can send from another origin: no Authorization header (a browser never adds
    a Bearer key by itself), any simple content type. Every writing route answers 401, with no
    Access-Control-* header, and no job appears."""
    page = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": ctype}
    body = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{}\r\n--x--\r\n'
    with hostile.client("alice") as owner:
        before = owner.get("/v1/jobs", params={"limit": 100}).json()["data"]
        victim = before[0]["id"] if before else "0" * 32
    with hostile.client(tenant=None) as c:
        for path in ("/v1/jobs", "/v1/jobs/upload", "/v1/score", f"/v1/jobs/{victim}/cancel"):
            r = hostile.attack(
                f"{path}: cross-site {ctype.split(';')[0]} without a key",
                lambda p=path: c.post(p, content=body, headers=page),
            )
            assert r.status_code == 401, (path, r.status_code, r.text)
            assert not any(h.lower().startswith("access-control-") for h in r.headers), dict(r.headers)
    with hostile.client("alice") as owner:
        assert owner.get("/v1/jobs", params={"limit": 100}).json()["data"] == before
