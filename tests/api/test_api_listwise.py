"""Listwise jobs over HTTP against real processes: JSON and upload submissions, the summary, results
in every format, the report; odd input ends as one error per line, never a 5xx."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from apistack import Stack, read_jsonl, wait_job

pytestmark = pytest.mark.integration

ITEMS: list[Any] = [
    {"custom_id": "a", "prompt": "Pick one.", "responses": ["x", "y", [{"role": "assistant", "content": "z"}]]},
    {"custom_id": "b", "subset": "Math", "prompt": "2 + 2?", "chosen": ["4"], "rejected": ["5", "22"]},
    {"custom_id": "c", "prompt": "q", "responses": ["\ud800"]},
    {"custom_id": "d", "prompt": "q", "responses": {"not": "a list"}},
    {"custom_id": "e", "prompt": "q", "responses": ["r"] * 65},
    {"custom_id": "f", "prompt": "q", "chosen": [], "rejected": ["r"]},
    "not an object",
]


def test_listwise_over_http(stack: Stack) -> None:
    with stack.client() as c:
        # Sent as ASCII JSON: the lone surrogate travels as the escape "\ud800", as a client would send it.
        body = json.dumps({"kind": "listwise", "items": ITEMS})
        r = c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["id"])
        assert job["status"] == "completed" and job["kind"] == "listwise"
        assert job["request_counts"] == {"total": 7, "completed": 2, "failed": 5, "responses": 6}
        assert job["best_of_n"]["n"] == 2 and job["accuracy"]["subsets"]["Math"]["n"] == 1

        recs = read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text)
        assert [r["line"] for r in recs] == list(range(1, 8))
        codes = [r["error"]["code"] if "error" in r else None for r in recs]
        assert codes == [None, None, "invalid_text", "invalid_field", "too_many_responses", "no_responses",
                         "not_an_object"]
        lw = recs[1]
        assert len(lw["scores"]) == 3 and lw["scores"][lw["best"]] == max(lw["scores"])
        assert lw["correct"] in (0.0, 0.5, 1.0, 1 / 3)

        page = c.get(f"/v1/jobs/{job['id']}/results", params={"format": "json"}).json()["data"]
        assert page[1]["scores"] == lw["scores"] and page[1]["correct"] == lw["correct"]
        rows = list(csv.DictReader(io.StringIO(c.get(f"/v1/jobs/{job['id']}/results?format=csv").text)))
        assert json.loads(rows[0]["scores"]) == recs[0]["scores"] and rows[2]["error_code"] == "invalid_text"
        parquet = c.get(f"/v1/jobs/{job['id']}/results?format=parquet")
        assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
        report = c.get(f"/v1/jobs/{job['id']}/report")
        assert report.status_code == 200 and 'id="best-of-n"' in report.text
        assert c.get(f"/v1/jobs/{job['id']}/compare").status_code == 400  # one model: nothing to compare

        # POST /v1/score takes a listwise item too: the same scores, now (the score cache may answer).
        now = c.post("/v1/score", json={"items": [ITEMS[1]]})
        assert now.status_code == 200, now.text
        (sync,) = now.json()["results"]
        assert sync["scores"] == pytest.approx(lw["scores"], abs=1e-6) and sync["best"] == lw["best"]

        # An upload names the kind in its form; a pair line in a listwise job is a list of two.
        lines = "\n".join(json.dumps(x) for x in ({"prompt": "q", "chosen": "c", "rejected": "r"}, ITEMS[0]))
        up = c.post("/v1/jobs/upload", files={"file": ("bon.jsonl", lines.encode())}, data={"kind": "listwise"})
        assert up.status_code == 202, up.text
        done = wait_job(c, up.json()["id"])
        assert done["request_counts"] == {"total": 2, "completed": 2, "failed": 0, "responses": 5}
