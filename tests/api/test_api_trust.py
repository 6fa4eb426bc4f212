"""Issue 12 ("Trust") over HTTP against real processes: exact paging of multi-model jobs, crafted
cursors, Idempotency-Key reuse, what a failed line tells a tenant, and what is public."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from apistack import POISON_ID, Stack, read_jsonl, wait_job
from harness import free_port, start_api, stop_proc

pytestmark = pytest.mark.integration


def _chat(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"custom_id": f"{prefix}-{i}", "prompt": f"{prefix} {i}?", "response": "yes " * (i % 4 + 1)} for i in range(n)
    ]


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_scores_of_a_two_model_job_page_exactly(stack: Stack) -> None:
    """A job scored by two models has two rows per line; every page size returns each once."""
    from db.results import result_row, upsert_results
    from db.session import writing
    from rmscore.formats import chat_record

    with stack.client("frank") as c:
        job = c.post("/v1/jobs", json={"kind": "chat", "items": _chat(5, "two")}).json()
        wait_job(c, job["id"])
    # The second model's rows, as its workers would store them (one worker serves this stack).
    rows = [
        result_row(
            job["id"], "zz-second", chat_record(line, f"two-{line - 1}", 0.5 * line, 7, False), None, datetime.now()
        )
        for line in range(1, 6)
    ]
    with writing(stack.db()) as conn:
        upsert_results(conn, rows)
    want = [(line, m) for line in range(1, 6) for m in ("tiny", "zz-second")]
    with stack.api("frank") as api:
        for size in (1, 2, 3, 7, 1000):
            got = [(r["line"], r["model"]) for r in api.scores(job_id=job["id"], page_size=size)]
            assert got == want, size


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_crafted_cursors_are_400_on_every_paged_endpoint(stack: Stack) -> None:
    from rmscore import cursor as cursors

    with stack.client("grace") as c:
        job = c.post("/v1/jobs", json={"kind": "chat", "items": _chat(3, "cur")}).json()
        wait_job(c, job["id"])
        bad = [
            "%%%",
            "not-a-cursor",
            _b64("x|" + "9" * 30),  # the old /v1/scores shape, a line past 64 bits: a 500 before
            _b64("line:" + "9" * 30),  # the old results shape
            _b64("2026-01-01T00:00:00+05:00|x"),  # the old jobs shape, an aware time
            cursors.encode("scores", job["id"], 2**64, "tiny"),
            cursors.encode("scores", job["id"] + "\x00", 1, "tiny"),
            cursors.encode("line", -1),
            cursors.encode("line", 2**31),  # past PostgreSQL's INTEGER: a DataError there
            cursors.encode("jobs", "9999-12-31T23:59:59", 5),
        ]
        urls = [
            "/v1/jobs",
            "/v1/scores",
            f"/v1/jobs/{job['id']}/results?format=json",
            f"/v1/jobs/{job['id']}/results?format=jsonl",
            f"/v1/jobs/{job['id']}/errors?format=json",
        ]
        for url in urls:
            for cursor in bad:
                r = c.get(url, params={"cursor": cursor})
                _error(r, 400, "invalid_cursor")
        # The largest line a cursor may hold is just past the end: an empty page, not an error.
        page = c.get(
            f"/v1/jobs/{job['id']}/results",
            params={"format": "json", "cursor": cursors.encode("line", cursors.INT_MAX)},
        )
        assert page.status_code == 200 and page.json()["data"] == [], page.text


def test_an_idempotency_key_reused_for_another_request_is_refused(stack: Stack, tmp_path: Path) -> None:
    body = {"kind": "chat", "items": _chat(3, "idem2"), "metadata": {"run": 1}}
    with stack.client("heidi") as c:
        first = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-json"})
        assert first.status_code == 202, first.text
        # The same request (default fields spelled out or not) gets the same job back.
        again = c.post("/v1/jobs", json={**body, "models": None}, headers={"Idempotency-Key": "k-json"})
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        for other in (
            {**body, "items": _chat(4, "idem2")},
            {**body, "metadata": {"run": 2}},
            {**body, "kind": "auto"},
        ):
            r = c.post("/v1/jobs", json=other, headers={"Idempotency-Key": "k-json"})
            assert "different request" in _error(r, 422, "idempotency_key_reused")
        r = c.post("/v1/jobs", json=body, params={"cache": "false"}, headers={"Idempotency-Key": "k-json"})
        _error(r, 422, "idempotency_key_reused")

        # Uploads: each retry has a fresh multipart boundary; the same file and fields are the same request.
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps(x) + "\n" for x in _chat(40, "up")))
        with stack.api("heidi") as api:
            one = api.submit(path, kind="chat", idempotency_key="k-up")
            two = api.submit(path, kind="chat", idempotency_key="k-up")
            assert one.id == two.id
            path2 = tmp_path / "in2.jsonl"
            path2.write_text(path.read_text().replace("up 7?", "up 7!"))
            with pytest.raises(Exception) as e:
                api.submit(path2, kind="chat", idempotency_key="k-up")
            assert getattr(e.value, "code", None) == "idempotency_key_reused"
            with pytest.raises(Exception) as e:
                api.submit(path, kind="pairwise", idempotency_key="k-up")  # same file, another field
            assert getattr(e.value, "code", None) == "idempotency_key_reused"
        raw = path.read_bytes()
        headers = {"Idempotency-Key": "k-raw", "Content-Type": "application/x-ndjson"}
        r1 = c.post("/v1/jobs/upload", content=raw, headers=headers)
        # The same bytes, in other chunks: still the same request.
        r2 = c.post("/v1/jobs/upload", content=iter([raw[:7], raw[7:1000], raw[1000:]]), headers=headers)
        assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
        assert r1.json()["id"] == r2.json()["id"] and r2.headers.get("Idempotent-Replayed") == "true"
        _error(c.post("/v1/jobs/upload", content=raw[:-2] + b"\n", headers=headers), 422, "idempotency_key_reused")
        # A key used for a JSON submission is not an upload's.
        _error(
            c.post("/v1/jobs/upload", content=raw, headers={**headers, "Idempotency-Key": "k-json"}),
            422,
            "idempotency_key_reused",
        )
        listed = c.get("/v1/jobs", params={"limit": 100}).json()["data"]
        assert sorted(j["idempotency_key"] for j in listed if j["idempotency_key"]) == ["k-json", "k-raw", "k-up"]


def test_a_failed_line_gives_the_tenant_a_code_not_the_cause(stack: Stack) -> None:
    """The worker raises on the poison item; the exception's text is for the operator's log only."""
    import socket

    from rmscore import failure_messages

    items = [*_chat(2, "safe"), {"custom_id": POISON_ID, "prompt": "p", "response": "r"}]
    with stack.client("ivan") as c:
        job = c.post("/v1/jobs", json={"kind": "chat", "items": items}).json()
        wait_job(c, job["id"])
        (bad,) = [r for r in read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text) if "error" in r]
        expected = {"code": "scoring_failed", "message": failure_messages.item_failed(3)}
        assert bad["line"] == 3 and bad["error"] == expected
        sync = c.post("/v1/score", json={"items": items})
        message = _error(sync, 502, "scoring_failed")
        assert message == failure_messages.request_failed()
    for text in (bad["error"]["message"], message, sync.text):
        assert "poisons its chunk" not in text and "InjectedFault" not in text
        assert socket.gethostname() not in text
    # The operator has the cause, in the worker's log: for the job, and for the online request (the
    # worker's online lane scored it; the API only relays its reply).
    worker_log = (stack.tmp / "worker.log").read_text()
    assert "poisons its chunk" in worker_log
    assert "poisons its chunk" in worker_log[worker_log.index("online request failed") :]


def test_health_is_public_and_metrics_need_an_admin_key(stack: Stack) -> None:
    ready = httpx.get(f"{stack.url}/readyz", timeout=30)
    assert ready.status_code == 200
    # Per component ok / not ok, nothing else: no counts, no host names, no error text. Per model:
    # live workers and when one last beat (a job for a model with none waits; say so), no names.
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"] == {c: {"ok": True} for c in ("database", "broker", "workers")}
    assert set(body["models"]) == {"tiny"}
    assert body["models"]["tiny"]["live"] >= 1 and body["models"]["tiny"]["problem"] is None
    assert set(body["models"]["tiny"]) == {"live", "last_seen", "problem"}
    assert httpx.get(f"{stack.url}/healthz", timeout=30).json() == {"status": "ok"}

    _error(httpx.get(f"{stack.url}/metrics", timeout=30), 401, "missing_api_key")
    with stack.client("alice") as tenant:
        _error(tenant.get("/metrics"), 403, "admin_required")
    with stack.client("admin") as admin:
        m = admin.get("/metrics")
        assert m.status_code == 200 and "rmscore_jobs{" in m.text, m.text[:300]


def test_not_ready_says_which_component_not_why(stack: Stack) -> None:
    """An API whose broker is gone: /readyz names the component, the log has the reason; a
    Prometheus scrape with RMSCORE_METRICS_TOKEN still reads the database's gauges."""
    token = "scrape-" + "s3cret" * 4
    dead = free_port()
    env = {**stack.env, "RMSCORE_BROKER_URL": f"redis://127.0.0.1:{dead}/0", "RMSCORE_METRICS_TOKEN": token}
    log = stack.tmp / "api-no-broker.log"
    url, proc = start_api(env, log)
    try:
        r = httpx.get(f"{url}/readyz", timeout=30)
        assert r.status_code == 503
        assert r.json() == {
            "status": "not_ready",
            "checks": {"database": {"ok": True}, "broker": {"ok": False}, "workers": {"ok": False}},
            "models": {},  # the broker holds the heartbeats: with it down nothing is known of workers
        }
        m = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert m.status_code == 200 and "rmscore_jobs{" in m.text
        _error(
            httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token[:-1]}x"}, timeout=30),
            401,
            "invalid_api_key",
        )
        with stack.client("admin") as admin:
            assert httpx.get(f"{url}/metrics", headers=admin.headers, timeout=30).status_code == 200
    finally:
        stop_proc(proc)
    assert "readyz: broker not ready" in log.read_text() and str(dead) in log.read_text()
