"""`rmscore flower` with the DEFAULT settings (no RMSCORE_FLOWER_BASIC_AUTH): Flower's control API
is never open. A web page cannot shut a worker down (no credentials: refused; a browser's
remembered credentials: refused as cross-site), no permissive CORS header is sent, and the
credentials generated for the run, printed once on stderr, do work.

Real processes: a private redis-server, a real `rmscore worker` on the tiny model and a real
`rmscore flower`. FLOWER_UNAUTHENTICATED_API=true is in their environment on purpose: the old code
set it itself, and whoever sets it, Flower must not be open.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from harness import WorkerProc, free_port, launch, local_stack, stop_proc, wait_http
from testkit import wait_until

EVIL = "http://evil.example"
CREDENTIALS = re.compile(r"Flower basic auth for this run: user (\S+) password (\S+) ")


@dataclass
class OpenFlower:
    url: str
    auth: tuple[str, str]
    worker: WorkerProc
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def flower_default(tmp_path: Path, tiny_model_dir: Path) -> Iterator[OpenFlower]:
    with local_stack(tmp_path, tiny_model_dir, "victim", api=False, FLOWER_UNAUTHENTICATED_API="true") as stack:
        port, log = free_port(), tmp_path / "flower.log"
        flower = launch(["flower", "--port", str(port)], stack.env, log)
        try:
            found = wait_until(lambda: CREDENTIALS.search(log.read_text()), 60, "the generated Flower credentials")
            auth = (found.group(1), found.group(2))
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/api/workers", flower, log, auth=auth)
            yield OpenFlower(url, auth, stack.worker, flower, log)
        finally:
            stop_proc(flower)


def _worker_name(f: OpenFlower) -> str:
    def online() -> str | None:
        workers = httpx.get(f"{f.url}/api/workers", params={"status": "true"}, auth=f.auth, timeout=30).json()
        return next((name for name, up in workers.items() if up), None)

    return wait_until(online, 60, "the worker online in Flower")


def test_a_web_page_cannot_shut_a_worker_down_through_flower(flower_default: OpenFlower) -> None:
    f = flower_default
    name = _worker_name(f)
    shutdown = f"{f.url}/api/worker/shutdown/{name}"
    # What a plain HTML form on another site sends: a simple content type, the page's Origin.
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"}

    cross_site = httpx.post(shutdown, headers=form, content=b"x=1", timeout=30)
    assert cross_site.status_code == 403, cross_site.text  # refused before anything runs
    # A browser that remembers the credentials would send them: still refused as cross-site.
    remembered = httpx.post(shutdown, headers=form, content=b"x=1", auth=f.auth, timeout=30)
    assert remembered.status_code == 403, remembered.text
    # No page could get this far without a cross-site header, but no credentials is refused too.
    anonymous = httpx.post(shutdown, timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    wrong = httpx.post(shutdown, auth=(f.auth[0], "guess"), timeout=30)
    assert wrong.status_code == 401, wrong.text

    # No permissive CORS: a preflight gets no Access-Control-* header (so the browser stops there),
    # and a cross-origin read is refused without credentials.
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    r = httpx.options(shutdown, headers=preflight, timeout=30)
    assert not [h for h in r.headers if h.lower().startswith("access-control-")], dict(r.headers)
    r = httpx.get(f"{f.url}/api/workers", headers={"Origin": EVIL}, timeout=30)
    assert r.status_code == 401 and "access-control-allow-origin" not in r.headers, dict(r.headers)

    # The worker is still there and answers Flower's ping.
    alive = httpx.get(f"{f.url}/api/workers", params={"status": "true", "refresh": "true"}, auth=f.auth, timeout=30)
    assert alive.json().get(name) is True
    assert f.worker.alive()

    # The generated credentials work for the operator's own client: the same request shuts it down.
    ok = httpx.post(shutdown, auth=f.auth, timeout=30)
    assert ok.status_code == 200, ok.text
    wait_until(lambda: not f.worker.alive(), 60, "the worker to exit on the authenticated shutdown")


def test_generated_credentials_are_printed_once_and_never_on_the_command_line(flower_default: OpenFlower) -> None:
    f = flower_default
    user, password = f.auth
    assert user == "rmscore" and len(password) >= 20
    assert f.log.read_text().count(password) == 1
    cmdline = Path(f"/proc/{f.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    assert password not in cmdline and "flower" in cmdline
    assert httpx.get(f"{f.url}/api/workers", timeout=30).status_code == 401
