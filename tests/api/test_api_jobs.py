"""Jobs over HTTP against real processes: upload, poll, results, pagination, cancel, idempotency."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from apistack import Stack, read_jsonl, wait_job
from testkit import assert_records_equal

pytestmark = pytest.mark.integration


def test_upload_results_equal_rmscore_score(stack: Stack, hh_file: Path, hh_reference: list[dict[str, Any]]) -> None:
    with stack.client() as c:
        with open(hh_file, "rb") as f:
            r = c.post("/v1/jobs/upload", files={"file": (hh_file.name, f)}, data={"kind": "pairwise"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running")
        assert job["request_counts"]["total"] == len(hh_reference)
        assert job["request_counts"]["failed"] == sum("error" in rec for rec in hh_reference)

        done = wait_job(c, job["id"])
        assert done["status"] == "completed"
        assert done["request_counts"]["completed"] + done["request_counts"]["failed"] == len(hh_reference)
        assert done["accuracy"]["n"] == sum("correct" in rec for rec in hh_reference)

        results = read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text)
        assert_records_equal(results, hh_reference)

        errors = read_jsonl(c.get(f"/v1/jobs/{job['id']}/errors").text)
        assert_records_equal(errors, [rec for rec in hh_reference if "error" in rec])

        rows = list(csv.DictReader(io.StringIO(c.get(f"/v1/jobs/{job['id']}/results?format=csv").text)))
        assert [int(r["line"]) for r in rows] == [rec["line"] for rec in hh_reference]
        for row, rec in zip(rows, hh_reference, strict=True):
            if "error" in rec:
                assert row["error_code"] == rec["error"]["code"]
            else:
                assert abs(float(row["chosen_score"]) - rec["chosen_score"]) <= 1e-4

        from rmscore.parquet import read_table

        pq = stack.tmp / "results.parquet"
        pq.write_bytes(c.get(f"/v1/jobs/{job['id']}/results?format=parquet").content)
        table = read_table(pq)
        assert [r["line"] for r in table] == [rec["line"] for rec in hh_reference]
        assert [r["error_code"] for r in table] == [rec.get("error", {}).get("code") for rec in hh_reference]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_parquet_upload_and_client_download(stack: Stack, hh_file: Path, hh_reference: list[dict[str, Any]]) -> None:
    """A Parquet file of the same rows scores as the JSONL did; the client reads and writes Parquet."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    with gzip.open(hh_file, "rt") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("rejected"), str) and "chosen" in obj:
                rows.append(obj)
    path = stack.tmp / "hh.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    want = [rec for rec in hh_reference if "chosen_score" in rec]
    assert len(want) == len(rows)

    with stack.api() as api:
        progress: list[int] = []
        job = api.submit(path, kind="pairwise", on_progress=lambda sent, total: progress.append(sent))
        assert progress and progress[-1] == path.stat().st_size
        job = api.wait(job.id, poll=0.3)
        assert job.status == "completed" and job.total == len(rows) and job.failed == 0
        got = list(api.results(job.id))
        for g, w in zip(got, want, strict=True):
            assert abs(g["chosen_score"] - w["chosen_score"]) <= 1e-4
            assert abs(g["rejected_score"] - w["rejected_score"]) <= 1e-4
        out = stack.tmp / "out.parquet"
        api.download(job.id, out)
        from rmscore.parquet import read_table

        assert [r["chosen_score"] for r in read_table(out)] == [g["chosen_score"] for g in got]


def _chat_items(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"custom_id": f"{prefix}-{i}", "prompt": f"question {i}?", "response": f"answer {'ok ' * (i % 7)}{i}"}
        for i in range(n)
    ]


def test_pagination_returns_every_row_once(stack: Stack) -> None:
    with stack.client("bob") as c:
        items = _chat_items(37, "page") + [{"custom_id": "bad", "messages": []}]
        job = c.post("/v1/jobs", json={"items": items}).json()
        wait_job(c, job["id"])
        lines: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"format": "json", "limit": 5}
            if cursor:
                params["cursor"] = cursor
            page = c.get(f"/v1/jobs/{job['id']}/results", params=params).json()
            lines += [rec["line"] for rec in page["data"]]
            assert page["has_more"] == (page["next_cursor"] is not None)
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert lines == list(range(1, 39))

        seen: list[tuple[str, int]] = []
        cursor = None
        while True:
            params = {"job_id": job["id"], "limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/scores", params=params).json()
            seen += [(s["job_id"], s["line"]) for s in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == [(job["id"], n) for n in range(1, 38)]  # the bad line has no score


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_list_jobs_newest_first_each_once(stack: Stack) -> None:
    with stack.client("erin") as c:
        ids = [c.post("/v1/jobs", json={"items": _chat_items(2, f"l{i}")}).json()["id"] for i in range(5)]
        got: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/jobs", params=params).json()
            got += [j["id"] for j in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert got == ids[::-1]
        for j in ids:
            wait_job(c, j)
        done = c.get("/v1/jobs", params={"status": "completed", "limit": 100}).json()["data"]
        assert {j["id"] for j in done} == set(ids)


def test_cancel_keeps_partial_results(stack: Stack) -> None:
    items = _chat_items(1200, "cancel")
    with stack.client("carol") as c:
        job = c.post("/v1/jobs", json={"items": items}).json()
        deadline = time.monotonic() + 120
        while c.get(f"/v1/jobs/{job['id']}").json()["request_counts"]["completed"] == 0:
            if time.monotonic() > deadline:  # a wait limit, not a speed check
                pytest.fail("no chunk was scored within 120 s")
            time.sleep(0.1)
        r = c.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] in ("cancelling", "cancelled")
        final = wait_job(c, job["id"], until=("cancelled",))
        counts = final["request_counts"]
        assert 0 < counts["completed"] < counts["total"] == len(items)
        assert final["cancelled_at"] is not None

        results = read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text)
        assert [rec["line"] for rec in results] == list(range(1, len(items) + 1))
        scored = [rec for rec in results if "score" in rec]
        assert len(scored) == counts["completed"]
        assert all(rec["error"]["code"] == "cancelled" for rec in results if "error" in rec)
        scores = c.get("/v1/scores", params={"job_id": job["id"], "limit": 1000}).json()
        assert len(scores["data"]) == min(1000, counts["completed"])

        assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"  # no-op


def test_idempotency_key_returns_the_same_job(stack: Stack, hh_file: Path) -> None:
    body = {"items": _chat_items(3, "idem"), "metadata": {"run": 1}}
    with stack.client("alice") as a, stack.client("bob") as b:
        r1 = a.post("/v1/jobs", json=body, headers={"Idempotency-Key": "same-key"})
        r2 = a.post("/v1/jobs", json=body, headers={"Idempotency-Key": "same-key"})
        assert r1.status_code == r2.status_code == 202
        assert r1.json()["id"] == r2.json()["id"]
        assert r2.headers.get("Idempotent-Replayed") == "true"
        other = b.post("/v1/jobs", json=body, headers={"Idempotency-Key": "same-key"}).json()
        assert other["id"] != r1.json()["id"]  # keys are per tenant

        uploads = []
        for _ in range(2):
            with open(hh_file, "rb") as f:
                uploads.append(
                    a.post("/v1/jobs/upload", files={"file": (hh_file.name, f)}, headers={"Idempotency-Key": "up-1"})
                )
        assert uploads[0].json()["id"] == uploads[1].json()["id"]
        listed = a.get("/v1/jobs", params={"limit": 100}).json()["data"]
        assert sum(j["idempotency_key"] == "up-1" for j in listed) == 1
        wait_job(a, r1.json()["id"])
        cancel = a.post(f"/v1/jobs/{r1.json()['id']}/cancel")
        assert cancel.status_code == 409
        assert cancel.json()["error"]["code"] == "job_ended"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_cli_job_commands_through_the_api(stack: Stack, hh_file: Path, hh_reference: list[dict[str, Any]]) -> None:
    """`rmscore submit/status/results/cancel` in API mode (the `Remote` backend), in a fresh process."""
    import subprocess

    from apistack import CLI, REPO

    env = {**stack.env, "RMSCORE_API_URL": stack.url, "RMSCORE_API_KEY": stack.keys["alice"]}

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*CLI, *args], env=env, cwd=REPO, capture_output=True, text=True)
        assert out.returncode == code, out.stderr[-2000:]
        return out

    submitted = run("submit", str(hh_file), "--kind", "pairwise", "--wait", "--chunk-size", "7")
    job_id = submitted.stdout.strip()
    assert len(job_id) == 32
    assert "--chunk-size is set by the server" in submitted.stderr and "accuracy" in submitted.stderr
    status = json.loads(run("status", job_id, "--json").stdout)
    assert status["status"] == "completed" and status["request_counts"]["total"] == len(hh_reference)
    assert_records_equal(read_jsonl(run("results", job_id).stdout), hh_reference)
    out = stack.tmp / "remote.csv"
    run("results", job_id, "-o", str(out))
    assert len(list(csv.DictReader(out.open()))) == len(hh_reference)
    ended = run("cancel", job_id, code=2)
    assert "job_ended" in ended.stderr and ended.stdout == ""


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_every_results_format_says_which_scores_came_from_the_cache(stack: Stack) -> None:
    """The same items twice for one tenant: the first job scores them (cached false), the second
    takes each score from the cache (cached true), and JSONL, JSON pages, CSV and Parquet all say so."""
    from rmscore.parquet import read_table

    # Conversations no other test of this stack scores (custom ids are not part of what is cached).
    fresh = [{**item, "prompt": f"cache export {uuid.uuid4().hex} {item['prompt']}"} for item in _chat_items(5, "ce")]
    items = [*fresh, {"custom_id": "bad", "messages": []}]
    with stack.client("carol") as c:
        jobs = []
        for _ in range(2):
            job = c.post("/v1/jobs", json={"items": items}).json()
            assert wait_job(c, job["id"])["status"] == "completed"
            jobs.append(job["id"])
        for job_id, want in zip(jobs, (False, True), strict=True):
            url = f"/v1/jobs/{job_id}/results"
            jsonl = read_jsonl(c.get(url).text)
            page = c.get(url, params={"format": "json", "limit": 100}).json()["data"]
            rows = list(csv.DictReader(io.StringIO(c.get(url, params={"format": "csv"}).text)))
            path = stack.tmp / f"{job_id}.parquet"
            path.write_bytes(c.get(url, params={"format": "parquet"}).content)
            table = read_table(path)
            for records in (jsonl, page):
                assert [r.get("cached") for r in records] == [want] * 5 + [None]  # an error line has no score
            assert [r["cached"] for r in rows] == [str(want)] * 5 + [""]
            assert [r["cached"] for r in table] == [want] * 5 + [None]
