"""Preference data out against the real stack (`rmscore api` + `rmscore worker` on the tiny model,
real Redis, SQLite and PostgreSQL): a scored HH-RLHF job exported over HTTP and by the CLI (local
and through the API), every file loaded with the `datasets` library (offline, local files) and
checked for the columns TRL's DPO / SFT trainers read and against the job's stored scores.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apistack import REPO, Stack, read_jsonl, wait_job

from rmscore.formats import split_hh

pytestmark = pytest.mark.integration
os.environ["HF_DATASETS_OFFLINE"] = "1"  # local files only: datasets must never reach the hub
TENANT = "prefs"  # a tenant of its own: no other test counts its jobs
PREFERENCE_COLUMNS = ["prompt", "chosen", "rejected", "chosen_score", "rejected_score", "margin",
                      "agrees_with_label", "custom_id", "line"]  # fmt: skip
BEST_COLUMNS = ["prompt", "completion", "score", "custom_id", "line"]


def load(path: Path, cache: Path) -> Any:
    """The file as `datasets` loads it (what a TRL script does with a local file)."""
    import datasets

    builder = "parquet" if path.suffix == ".parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=str(cache))


@pytest.fixture(scope="module")
def prefs(stack: Stack) -> Iterator[dict[str, Any]]:
    """The HH job, scored: its id, a client of its tenant, its input lines and stored results by line."""
    from db.api_keys import create_key

    key = create_key(stack.db(), TENANT)[0]
    stack.keys[TENANT] = key
    with stack.client(TENANT) as c:
        yield {"client": c, "key": key}


@pytest.fixture(scope="module")
def hh_job(stack: Stack, prefs: dict[str, Any], hh_file: Path) -> dict[str, Any]:
    c = prefs["client"]
    with open(hh_file, "rb") as f:
        r = c.post("/v1/jobs/upload", files={"file": (hh_file.name, f)}, data={"kind": "pairwise"})
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["id"])
    assert job["status"] == "completed" and job["request_counts"]["failed"] > 0  # it has failed lines
    results = {rec["line"]: rec for rec in read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text)}
    with gzip.open(hh_file, "rt") as f:
        inputs = {n: line for n, line in enumerate(f, start=1)}
    return {"id": job["id"], "results": results, "inputs": inputs}


def conversation(inputs: dict[int, str], line: int, side: str) -> list[dict[str, str]]:
    return split_hh(json.loads(inputs[line])[side])


def check_preferences(ds: Any, job: dict[str, Any], min_margin: float) -> None:
    assert ds.column_names == PREFERENCE_COLUMNS
    scored = {n: r for n, r in job["results"].items() if "chosen_score" in r}
    margins = {n: abs(r["chosen_score"] - r["rejected_score"]) for n, r in scored.items()}
    want = sorted(n for n, d in margins.items() if d > 0 and d >= min_margin)
    assert [row["line"] for row in ds] == want and want  # hand count: untied pairs over the margin, in order
    for row in ds:
        rec = scored[row["line"]]
        agrees = rec["chosen_score"] > rec["rejected_score"]
        assert row["agrees_with_label"] is agrees
        assert row["chosen_score"] == pytest.approx(max(rec["chosen_score"], rec["rejected_score"]), abs=1e-6)
        assert row["rejected_score"] == pytest.approx(min(rec["chosen_score"], rec["rejected_score"]), abs=1e-6)
        assert row["margin"] == row["chosen_score"] - row["rejected_score"] >= min_margin
        # Conversational: prompt + reply is the whole conversation of the side that scored higher.
        higher, lower = ("chosen", "rejected") if agrees else ("rejected", "chosen")
        assert row["prompt"] + row["chosen"] == conversation(job["inputs"], row["line"], higher)
        assert row["prompt"] + row["rejected"] == conversation(job["inputs"], row["line"], lower)
        assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"


def check_best(ds: Any, job: dict[str, Any], min_score: float | None) -> None:
    assert ds.column_names == BEST_COLUMNS
    scored = {n: r for n, r in job["results"].items() if "chosen_score" in r}
    best = {n: max(r["chosen_score"], r["rejected_score"]) for n, r in scored.items()}
    assert [row["line"] for row in ds] == sorted(n for n, s in best.items() if min_score is None or s >= min_score)
    for row in ds:
        assert row["score"] == pytest.approx(best[row["line"]], abs=1e-6)
        side = "chosen" if scored[row["line"]]["chosen_score"] >= scored[row["line"]]["rejected_score"] else "rejected"
        assert row["prompt"] + row["completion"] == conversation(job["inputs"], row["line"], side)


def test_http_exports_load_in_datasets_with_trls_columns(
    stack: Stack, prefs: dict[str, Any], hh_job: dict[str, Any], tmp_path: Path
) -> None:
    c, job = prefs["client"], hh_job
    scored = [r for r in job["results"].values() if "chosen_score" in r]
    margins = sorted(abs(r["chosen_score"] - r["rejected_score"]) for r in scored)
    median = margins[len(margins) // 2]
    for fmt, min_margin in (("jsonl", 0.0), ("parquet", median)):
        r = c.get(f"/v1/jobs/{job['id']}/preferences", params={"format": fmt, "min_margin": min_margin})
        assert r.status_code == 200, r.text
        path = tmp_path / f"prefs.{fmt}"
        path.write_bytes(r.content)
        check_preferences(load(path, tmp_path / "cache"), job, min_margin)
    top = sorted(max(r["chosen_score"], r["rejected_score"]) for r in scored)
    for fmt, min_score in (("parquet", None), ("jsonl", top[len(top) // 2])):
        params: dict[str, Any] = {"format": fmt, **({} if min_score is None else {"min_score": min_score})}
        r = c.get(f"/v1/jobs/{job['id']}/best", params=params)
        assert r.status_code == 200, r.text
        path = tmp_path / f"best.{fmt}"
        path.write_bytes(r.content)
        check_best(load(path, tmp_path / "cache"), job, min_score)


def cli(stack: Stack, args: list[str], *, api: bool) -> subprocess.CompletedProcess[str]:
    env = dict(stack.env)
    if api:
        env.update(RMSCORE_API_URL=stack.url, RMSCORE_API_KEY=stack.keys[TENANT])
    cmd = [sys.executable, "-c", "from rmscore.cli import main; main()", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_cli_writes_the_same_rows_locally_and_through_the_api(
    stack: Stack, prefs: dict[str, Any], hh_job: dict[str, Any], tmp_path: Path
) -> None:
    job = hh_job
    local, remote = tmp_path / "local.parquet", tmp_path / "remote.jsonl.gz"
    done = cli(stack, ["preferences", job["id"], "-o", str(local), "--pairs", "best-vs-rest"], api=False)
    assert done.returncode == 0, done.stderr
    assert "messages form" in done.stderr
    assert cli(stack, ["preferences", job["id"], "-o", str(remote)], api=True).returncode == 0
    a, b = load(local, tmp_path / "cache"), load(remote, tmp_path / "cache")
    check_preferences(a, job, 0.0)
    assert a.to_list() == b.to_list()
    best_local, best_remote = tmp_path / "best.jsonl", tmp_path / "best.parquet"
    assert cli(stack, ["best", job["id"], "-o", str(best_local)], api=False).returncode == 0
    assert cli(stack, ["best", job["id"], "-o", str(best_remote)], api=True).returncode == 0
    check_best(load(best_local, tmp_path / "cache"), job, None)
    assert load(best_local, tmp_path / "cache").to_list() == load(best_remote, tmp_path / "cache").to_list()


@pytest.mark.parametrize("stack", ["sqlite", "postgresql"], indirect=True)
def test_pairs_given_as_strings_come_back_as_strings(stack: Stack, prefs: dict[str, Any], tmp_path: Path) -> None:
    c = prefs["client"]
    items = [{"custom_id": f"s{i}", "prompt": f"Name a colour ({i})", "chosen": "Blue." * (i + 1), "rejected": "No."}
             for i in range(4)]  # fmt: skip
    r = c.post("/v1/jobs", json={"items": items, "kind": "pairwise"})
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["id"])
    scores = {rec["custom_id"]: rec for rec in read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text)}
    path = tmp_path / "text.parquet"
    path.write_bytes(c.get(f"/v1/jobs/{job['id']}/preferences", params={"format": "parquet"}).content)
    ds = load(path, tmp_path / "cache")
    assert ds.features["prompt"].dtype == ds.features["chosen"].dtype == "string"
    for row in ds:
        item = items[int(row["custom_id"][1:])]
        rec = scores[row["custom_id"]]
        agrees = rec["chosen_score"] > rec["rejected_score"]
        higher, lower = ("chosen", "rejected") if agrees else ("rejected", "chosen")
        assert (row["prompt"], row["chosen"], row["rejected"]) == (item["prompt"], item[higher], item[lower])
    assert len(ds) == sum(rec["chosen_score"] != rec["rejected_score"] for rec in scores.values())
    path = tmp_path / "best.jsonl"
    path.write_bytes(c.get(f"/v1/jobs/{job['id']}/best").content)
    best = load(path, tmp_path / "cache")
    assert best.features["completion"].dtype == "string" and len(best) == len(items)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_mistakes_are_4xx_with_a_reason(
    stack: Stack, prefs: dict[str, Any], hh_job: dict[str, Any], tmp_path: Path
) -> None:
    from db.jobs import cancel_job, create_job
    from rmscore.formats import parse_object

    c, job_id = prefs["client"], hh_job["id"]

    def error(path: str, **params: Any) -> tuple[int, str, str]:
        r = c.get(path, params=params)
        body = r.json()["error"]
        return r.status_code, body["code"], body["message"]

    url = f"/v1/jobs/{job_id}/preferences"
    assert error(url, min_margin="nan")[:2] == (400, "invalid_min_margin")
    assert error(url, min_margin=-1)[:2] == (400, "invalid_min_margin")
    assert error(url, pairs="everything")[0] == 422
    assert error(url, format="csv")[0] == 422
    assert error(f"/v1/jobs/{job_id}/best", min_score="inf")[:2] == (400, "invalid_min_score")
    status, code, message = error(url, model="no-such-model")
    assert (status, code) == (400, "unknown_model") and "tiny" in message
    with stack.client("alice") as other:  # another tenant's key: the job does not exist for it
        r = other.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"

    chat = c.post("/v1/jobs", json={"items": [{"prompt": "hi", "response": "hello"}]}).json()["id"]
    wait_job(c, chat)
    for what in ("preferences", "best"):
        assert error(f"/v1/jobs/{chat}/{what}")[:2] == (400, "nothing_to_compare")

    # A job nobody serves (two models no worker has) stays queued: 409 until it ends.
    pair = parse_object({"prompt": "q", "chosen": "a", "rejected": "b"}, 1)
    queued = create_job(stack.db(), [pair], model="nobody-a", models=["nobody-b"], tenant=TENANT).job.id
    assert error(f"/v1/jobs/{queued}/preferences")[:2] == (409, "job_not_finished")
    cancel_job(stack.db(), queued)
    status, code, message = error(f"/v1/jobs/{queued}/preferences")
    assert (status, code) == (400, "model_required") and "nobody-a, nobody-b" in message
    r = c.get(f"/v1/jobs/{queued}/preferences", params={"model": "nobody-b"})
    assert r.status_code == 200 and r.content == b""  # cancelled before any score: no rows

    out = tmp_path / "x.jsonl"
    done = cli(stack, ["preferences", chat, "-o", str(out)], api=True)
    assert done.returncode == 2 and "nothing_to_compare" in done.stderr and "Traceback" not in done.stderr
    done = cli(stack, ["best", queued, "-o", str(out)], api=False)
    assert done.returncode == 2 and "nobody-a, nobody-b" in " ".join(done.stderr.split())
    done = cli(stack, ["preferences", job_id, "-o", str(tmp_path / "x.csv")], api=False)
    assert done.returncode == 2 and ".parquet" in done.stderr
    done = cli(stack, ["preferences", job_id, "--min-margin", "nan", "-o", str(out)], api=False)
    assert done.returncode == 2 and "invalid_min_margin" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written, not even a .part file


def turns(value: Any, role: str) -> list[dict[str, str]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


@pytest.mark.parametrize("stack", ["sqlite", "postgresql"], indirect=True)
def test_listwise_rows_pair_the_best_with_the_worst_or_with_each_other(
    stack: Stack, prefs: dict[str, Any], tmp_path: Path
) -> None:
    c = prefs["client"]
    items = [
        {"custom_id": "u0", "prompt": "Name a fruit.", "responses": ["Apple.", "A car.", "Banana, ripe.", "No."]},
        {"custom_id": "l1", "prompt": turns("2+2?", "user"), "chosen": ["4."], "rejected": ["5.", "22."]},
        {"custom_id": "t2", "prompt": "Hi.", "responses": ["Hello.", "Hello."]},  # equal responses: a tie, no pair
    ]
    r = c.post("/v1/jobs", json={"items": items, "kind": "listwise"})
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json()["id"])
    assert job["status"] == "completed", job
    recs = {rec["custom_id"]: rec for rec in read_jsonl(c.get(f"/v1/jobs/{job['id']}/results").text)}
    given = {it["custom_id"]: it for it in items}

    def responses(cid: str) -> list[Any]:
        it = given[cid]
        return it["responses"] if "responses" in it else it["chosen"] + it["rejected"]

    def fetch(what: str, name: str, **params: Any) -> Any:
        got = c.get(f"/v1/jobs/{job['id']}/{what}", params=params)
        assert got.status_code == 200, got.text
        (tmp_path / name).write_bytes(got.content)
        return load(tmp_path / name, tmp_path / "cache")

    worst_best = fetch("preferences", "bw.parquet", format="parquet")
    assert worst_best.column_names == PREFERENCE_COLUMNS
    assert [row["custom_id"] for row in worst_best] == ["u0", "l1"]  # t2's responses tie
    for row in worst_best:
        rec, cid = recs[row["custom_id"]], row["custom_id"]
        assert row["prompt"] == turns(given[cid]["prompt"], "user")  # one form per file: messages here
        assert row["chosen"] == turns(responses(cid)[rec["best"]], "assistant")
        assert row["rejected"] == turns(responses(cid)[rec["worst"]], "assistant")
        assert (row["chosen_score"], row["rejected_score"]) == (max(rec["scores"]), min(rec["scores"]))
    labelled = worst_best[1]
    assert labelled["agrees_with_label"] is (recs["l1"]["best"] == 0)

    rest = fetch("preferences", "rest.jsonl", pairs="best-vs-rest")
    want = [(cid, j) for cid in ("u0", "l1", "t2") for j, s in enumerate(recs[cid]["scores"])
            if s < max(recs[cid]["scores"])]  # fmt: skip
    got = [(row["custom_id"], row["rejected_score"]) for row in rest]
    assert got == [(cid, recs[cid]["scores"][j]) for cid, j in want]
    margins = sorted(row["margin"] for row in rest)
    cut = margins[len(margins) // 2]
    kept = fetch("preferences", "cut.jsonl", pairs="best-vs-rest", min_margin=cut)
    assert len(kept) == sum(m >= cut for m in margins) and all(row["margin"] >= cut for row in kept)

    best = fetch("best", "best.parquet", format="parquet")
    assert best.column_names == BEST_COLUMNS
    assert [row["custom_id"] for row in best] == ["u0", "l1", "t2"]
    for row in best:
        rec = recs[row["custom_id"]]
        assert row["completion"] == turns(responses(row["custom_id"])[rec["best"]], "assistant")
        assert row["score"] == max(rec["scores"])
