"""Bodies without a key are never read; stalled bodies end with 408; one tenant's stalled uploads
cannot take the upload slots every tenant shares. Real sockets against a real API, default settings
(RMSCORE_UPLOAD_READ_TIMEOUT 30 s, RMSCORE_MAX_UPLOADS_PER_TENANT 2)."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hostilekit import MIB, RSS_TARGET_MB, Hostile, error_code, raw_request, read_response, request_head

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("hostile", ["sqlite"], indirect=True)]

GOOD = json.dumps({"prompt": "hello", "response": "hi"}).encode() + b"\n"


STALLED_PATHS = (("/v1/jobs", "application/json"), ("/v1/jobs/upload", "application/x-ndjson"))


@pytest.fixture(scope="module", autouse=True)
def carols_stalled_bodies(hostile: Hostile) -> Iterator[list[socket.socket]]:
    """Carol's two stalled bodies (one per path), started with the module: the default 30 s read
    timeout runs out while the other tests run, and test_a_stalled_body_ends_with_408 reads the
    answers. Carol is in no other test; 11 idle bytes in flight change nothing they measure."""
    host, port = hostile.url.removeprefix("http://").split(":")
    socks = []
    try:
        for path, ctype in STALLED_PATHS:
            sock = socket.create_connection((host, int(port)), timeout=120)
            socks.append(sock)
            sock.sendall(request_head(path, hostile.keys["carol"], 10_000, ctype) + b'{"items": [')
        yield socks
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/score", "/v1/jobs/upload"])
@pytest.mark.parametrize("key", [None, "rk_nope_nope"])
def test_no_key_is_answered_before_the_body(hostile: Hostile, path: str, key: str | None) -> None:
    # Only the head is sent: the 401 can only come if the server did not wait for the 60 MB body.
    ctype = "application/x-ndjson" if path.endswith("upload") else "application/json"
    status, response, sock = raw_request(hostile.url, request_head(path, key, 60 * MIB, ctype))
    sock.close()
    hostile.record(f"{path}: 60 MB announced, key {key!r}, head only", status)
    assert status == 401
    assert error_code(response) == ("missing_api_key" if key is None else "invalid_api_key")


def test_an_unauthenticated_60mb_body_is_not_parsed(hostile: Hostile) -> None:
    body = b'{"items": [' + b"{}," * (20 * MIB) + b"{}]}"
    with hostile.client(tenant=None) as c:
        r = hostile.attack(
            "/v1/jobs: 60 MB body sent whole without a key",
            lambda: c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}),
            len(body),
        )
        assert (r.status_code, r.json()["error"]["code"]) == (401, "missing_api_key")
        assert c.get("/healthz").status_code == 200
    assert hostile.rss_mb() < RSS_TARGET_MB


def test_an_oversized_json_body_is_refused_from_its_head(hostile: Hostile) -> None:
    status, response, sock = raw_request(hostile.url, request_head("/v1/jobs", hostile.keys["alice"], 60 * MIB))
    sock.close()
    hostile.record("/v1/jobs: 60 MB announced with a key, head only", status)
    assert (status, error_code(response)) == (413, "body_too_large")


def _answered(sock: socket.socket) -> bool:
    """Whether the server has sent anything on `sock` (without waiting for it)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def test_one_tenants_stalled_uploads_leave_room_for_others(hostile: Hostile) -> None:
    # Alice starts four uploads and stalls all of them mid-body.
    head = request_head("/v1/jobs/upload", hostile.keys["alice"], 10 * MIB, "application/x-ndjson")
    socks = []
    for _ in range(4):
        s = socket.create_connection(tuple(hostile.url.removeprefix("http://").split(":")), timeout=120)  # type: ignore[arg-type]
        s.sendall(head + GOOD)
        socks.append(s)
    try:
        # Two of them are refused at once (her limit is two uploads at a time); two are held, stalled.
        answered = []
        while len(answered) < 2:
            readable, _, _ = select.select([s for s in socks if s not in answered], [], [], 120)
            assert readable, "no upload was refused"
            answered.extend(readable)
        refusals = [s.recv(65536) for s in answered]
        for data in refusals:
            hostile.record("upload: a third and fourth stalled upload of one tenant", int(data[9:12]))
            assert data.startswith(b"HTTP/1.1 429"), data[:300]
            assert b"retry-after" in data.lower()
        held = [s for s in socks if s not in answered]
        # Bob's upload goes through while alice's two are still held (nothing answered on them yet).
        with hostile.client("bob") as c:
            r = hostile.attack(
                "upload: another tenant, during the stalls",
                lambda: c.post("/v1/jobs/upload", files={"file": ("a.jsonl", GOOD * 3)}),
            )
        assert r.status_code == 202, r.text
        assert not any(_answered(s) for s in held)
        # The stalled ones end with 408 once nothing came for the read timeout.
        for s in held:
            data = b""
            while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
                data += chunk
            hostile.record("upload: stalled mid-body", int(data[9:12]))
            assert data.startswith(b"HTTP/1.1 408"), data[:300]
    finally:
        for s in socks:
            s.close()
    # And alice can upload again.
    with hostile.client("alice") as c:
        assert c.post("/v1/jobs/upload", files={"file": ("a.jsonl", GOOD)}).status_code == 202


def test_a_stalled_body_ends_with_408(hostile: Hostile, carols_stalled_bodies: list[socket.socket]) -> None:
    # 11 bytes of a 10,000-byte body, then nothing, on each path since the module started (30 s at
    # least: the test before this one alone waits out the same timeout).
    for (path, _), sock in zip(STALLED_PATHS, carols_stalled_bodies, strict=True):
        status, response = read_response(sock)
        hostile.record(f"{path}: 11 bytes of a 10,000-byte body, then nothing", status)
        assert (status, error_code(response)) == (408, "read_timeout"), (path, response[:300])


def test_a_burst_of_wrong_keys_stays_bounded(hostile: Hostile) -> None:
    """Each unknown key costs a scrypt of 16 MiB; 40 at once must not take 40 x 16 MiB of the API."""

    def one(i: int) -> int:
        key = f"rk_{i:0{len(hostile.keys['alice'].split('_')[1])}x}_{'w' * 30}{i}"  # well-formed, unknown
        with httpx.Client(base_url=hostile.url, headers={"Authorization": f"Bearer {key}"}) as c:
            return c.get("/v1/jobs", timeout=120).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(one, range(40)))
    hostile.record("40 concurrent requests, each with its own wrong key", max(statuses))
    assert statuses == [401] * 40
    assert hostile.rss_mb() < RSS_TARGET_MB, hostile.summary()
