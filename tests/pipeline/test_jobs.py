"""Jobs through the real pipeline give what `rmscore score` gives, line for line, exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipekit import HH_PAIRS, Pipeline
from testkit import assert_records_equal, run_cli

from db.chunks import SCORING_FAILED
from rmscore import failure_messages


def test_datasets_complete_and_match_rmscore_score(
    pipeline: Pipeline, steady_worker: Any, inputs: dict[str, Path], references: dict[str, Any], tmp_path: Path
) -> None:
    # Through the CLI, as a user would: the job id alone on stdout, then status and results.
    submitted = run_cli(["submit", str(inputs["hh"]), "--kind", "pairwise", "--chunk-size", "40"], pipeline.env)
    hh_job = submitted.stdout.strip()
    assert len(hh_job) == 32 and "\n" not in hh_job
    ebb_job = pipeline.submit(inputs["ebb"], chunk_size=16)

    waited = run_cli(["submit", str(inputs["ebb"]), "--chunk-size", "30", "--wait"], pipeline.env)
    assert "completed" in waited.stderr
    for job_id in (hh_job, ebb_job, waited.stdout.strip()):
        pipeline.wait(job_id)

    pipeline.assert_exactly_once(hh_job, references["hh"])
    pipeline.assert_exactly_once(ebb_job, references["ebb"])
    pipeline.assert_exactly_once(waited.stdout.strip(), references["ebb"])
    assert len(references["hh"]) == HH_PAIRS

    out = tmp_path / "hh.jsonl"
    run_cli(["results", hh_job, "-o", str(out)], pipeline.env)
    assert_records_equal([json.loads(x) for x in out.read_text().splitlines()], references["hh"])

    status = json.loads(run_cli(["status", ebb_job, "--json"], pipeline.env).stdout)
    assert status["status"] == "completed" and status["request_counts"] == {"total": 80, "completed": 80, "failed": 0}
    want = sum(r["correct"] for r in references["ebb"]) / 80
    assert abs(status["accuracy"]["overall"] - want) < 1e-12
    assert set(status["accuracy"]["subsets"]) == {r["subset"] for r in references["ebb"]}
    assert status["started_at"] and status["completed_at"]


def test_bad_lines_fail_alone(
    pipeline: Pipeline, steady_worker: Any, inputs: dict[str, Path], references: dict[str, Any]
) -> None:
    job_id = pipeline.submit(inputs["bad"], chunk_size=8)
    job = pipeline.wait(job_id)
    ref = references["bad"]
    assert (job.total, job.failed) == (len(ref), sum("error" in r for r in ref)) and job.failed == 6
    pipeline.assert_exactly_once(job_id, ref)
    codes = {r["line"]: r["error"]["code"] for r in pipeline.records(job_id) if "error" in r}
    assert sorted(set(codes.values())) == [
        "empty_conversation",
        "invalid_field",
        "invalid_json",
        "last_turn_not_assistant",
        "not_an_object",
        "unknown_role",
    ]


def test_a_poison_chunk_is_retried_then_only_its_poison_item_fails(
    pipeline: Pipeline, steady_worker: Any, tmp_path: Path
) -> None:
    rows = [
        {"custom_id": "poison-me" if i == 6 else f"ok{i}", "prompt": f"q{i}", "response": "r"} for i in range(1, 13)
    ]
    path = tmp_path / "poison.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job_id = pipeline.submit(path, chunk_size=4)
    job = pipeline.wait(job_id)
    assert (job.status, job.completed, job.failed) == ("completed", 11, 1)
    chunks = pipeline.chunks(job_id)
    assert [c.status for c in chunks] == ["done", "done", "done"]  # the last attempt bisected it
    assert chunks[1].attempts == pipeline.settings.max_attempts
    records = pipeline.records(job_id)
    assert [r["line"] for r in records] == list(range(1, 13))
    failed = [r for r in records if "error" in r]
    assert [r["line"] for r in failed] == [6]
    assert {r["error"]["code"] for r in failed} == {SCORING_FAILED}
    # The tenant gets a fixed message; the exception's text is in the worker's log only.
    assert failed[0]["error"]["message"] == failure_messages.item_failed(6)
    assert "poisons its chunk" in steady_worker.output()
    assert pipeline.result_rows(job_id) == 12


def test_a_model_that_is_not_served_is_refused(pipeline: Pipeline, inputs: dict[str, Path]) -> None:
    proc = run_cli(["submit", str(inputs["bad"]), "--model", "gpt-4"], pipeline.env, check=False)
    assert proc.returncode == 2 and "unknown_model" in proc.stderr and proc.stdout == ""


def test_a_worker_beats_and_can_be_checked(pipeline: Pipeline, steady_worker: Any) -> None:
    from rmscore import keys

    key = keys.worker_heartbeat(steady_worker.name)
    beat = json.loads(pipeline.redis.get(key))
    assert (beat["model"], beat["queue"], beat["device"]) == ("tiny", "score.tiny", "cpu")
    assert beat["pid"] == steady_worker.proc.pid and beat["model_id"] == str(pipeline.model_dir)
    assert 0 < pipeline.redis.pttl(key) <= pipeline.settings.heartbeat_ttl * 1000
    assert run_cli(["worker", "--check", "--name", steady_worker.name], pipeline.env).stdout.strip() == (
        steady_worker.name
    )
    assert run_cli(["worker", "--check", "--name", "nobody@nowhere"], pipeline.env, check=False).returncode == 1
