"""`GET /v1/scores` filters against what the jobs' own results say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apistack import Stack, read_jsonl, wait_job

pytestmark = pytest.mark.integration


def _all(c: Any, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {**params, "limit": 50}
        if cursor:
            q["cursor"] = cursor
        r = c.get("/v1/scores", params=q)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_score_filters(stack: Stack, shared_data: Path) -> None:
    bench = json.loads((shared_data / "evalbiasbench.json").read_text())
    pairs = [
        {**row, "subset": bias, "custom_id": f"ebb-{bias}-{i}"}
        for bias, rows in bench.items()
        for i, row in enumerate(rows)
    ]
    chats = [{"custom_id": f"chat-{i}", "prompt": f"q{i}", "response": "a " * (i % 5 + 1)} for i in range(20)]
    chats.append({"custom_id": "long", "prompt": "tell me " * 3000, "response": "ok"})  # over 4096 tokens
    with stack.client("dave") as c:
        pj = c.post("/v1/jobs", json={"kind": "pairwise", "items": pairs}).json()
        cj = c.post("/v1/jobs", json={"kind": "chat", "items": chats}).json()
        wait_job(c, pj["id"])
        wait_job(c, cj["id"])
        pres = read_jsonl(c.get(f"/v1/jobs/{pj['id']}/results").text)
        cres = read_jsonl(c.get(f"/v1/jobs/{cj['id']}/results").text)
        assert all("error" not in r for r in pres + cres)

        def keys(rows: list[dict[str, Any]], job: str | None = None) -> list[tuple[str, int]]:
            return [(r.get("job_id", job), r["line"]) for r in rows]  # type: ignore[misc]

        expected_all = sorted(keys(pres, pj["id"]) + keys(cres, cj["id"]))
        assert keys(_all(c)) == expected_all  # stable (job_id, line) order, all of the tenant's rows

        assert keys(_all(c, job_id=pj["id"])) == keys(pres, pj["id"])

        one = _all(c, custom_id="chat-3")
        assert keys(one) == [(cj["id"], 4)] and one[0]["score"] == cres[3]["score"]

        subset = sorted({p["subset"] for p in pairs})[0]
        assert keys(_all(c, subset=subset)) == keys([r for r in pres if r["subset"] == subset], pj["id"])

        chat_scores = sorted(r["score"] for r in cres)
        lo, hi = chat_scores[5], chat_scores[15]
        got = _all(c, job_id=cj["id"], min_score=lo, max_score=hi)
        assert keys(got) == keys([r for r in cres if lo <= r["score"] <= hi], cj["id"])
        assert all(lo <= g["score"] <= hi for g in got)

        margins = sorted(r["chosen_score"] - r["rejected_score"] for r in pres)
        cut = margins[len(margins) // 2]
        assert keys(_all(c, job_id=pj["id"], min_score=cut)) == keys(
            [r for r in pres if r["chosen_score"] - r["rejected_score"] >= cut], pj["id"]
        )

        truncated = _all(c, truncated=True)
        assert keys(truncated) == keys([r for r in cres if r["truncated"]], cj["id"]) == [(cj["id"], len(chats))]

        wrong = _all(c, job_id=pj["id"], correct=False)
        assert keys(wrong) == keys([r for r in pres if not r["correct"]], pj["id"])

        assert _all(c, custom_id="no-such-id") == []
        assert c.get("/v1/scores", params={"cursor": "garbage!"}).json()["error"]["code"] == "invalid_cursor"
