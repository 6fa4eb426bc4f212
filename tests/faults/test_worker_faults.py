"""Worker faults: killed (SIGKILL) three times and stopped (SIGTERM) once in one job, and a poison
item that makes the model raise. The job completes; only the poison item ends failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faultkit import MODEL, POISON_ID, POISON_LINE, FaultEnv
from testkit import assert_records_equal

from db.chunks import SCORING_FAILED
from rmscore import failure_messages
from worker.faults import CHUNK_DELAY_ENV, POISON_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_three_sigkills_and_a_sigterm_in_one_job(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]]
) -> None:
    # Five attempts: the same chunk may be the one in hand at more than one kill.
    env: FaultEnv = fault_env(RMSCORE_MAX_ATTEMPTS="5")
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=3)  # 10 chunks
    killed = []
    for n in range(3):
        w = env.worker(f"killed{n}", **{CHUNK_DELAY_ENV: "30"}).wait_ready(env.pipe.redis)
        killed.append(env.wait_leased(job_id, w).id)
        w.kill()  # mid-chunk: nothing of that chunk is stored
    assert env.pipe.job(job_id).completed == 0

    stopped = env.worker("stopped", **{CHUNK_DELAY_ENV: "2"}).wait_ready(env.pipe.redis)
    held = env.wait_leased(job_id, stopped)
    assert stopped.stop() == 0  # warm shutdown: the chunk in hand is finished and stored
    assert {c.id: c.status for c in env.pipe.chunks(job_id)}[held.id] == "done"

    env.worker("rescuer").wait_ready(env.pipe.redis)
    env.pipe.wait(job_id, timeout=180)
    env.assert_invariant(job_id, clean_reference)
    attempts = {c.id: c.attempts for c in env.pipe.chunks(job_id)}
    for chunk_id in killed:  # each killed chunk ran again after its lease expired
        assert attempts[chunk_id] >= 2
    assert sum(attempts.values()) >= len(attempts) + 3


def test_a_poison_item_is_retried_with_its_chunk_then_fails_alone(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]]
) -> None:
    env: FaultEnv = fault_env()
    worker = env.worker("poisoned", **{POISON_ENV: POISON_ID}).wait_ready(env.pipe.redis)
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=4)  # 8 chunks; line 14 is in the 4th
    job = env.pipe.wait(job_id, timeout=120)
    env.assert_counts_add_up(job_id)
    assert (job.completed, job.failed) == (len(clean_reference) - 1, 1)

    chunks = env.pipe.chunks(job_id)
    assert all(c.status == "done" for c in chunks)
    poisoned = [c for c in chunks if c.first_line <= POISON_LINE <= c.last_line]
    assert len(poisoned) == 1 and poisoned[0].attempts == env.pipe.settings.max_attempts
    assert {c.attempts for c in chunks if c.id != poisoned[0].id} == {1}  # only its chunk was retried

    records = env.pipe.records(job_id)
    bad = [r for r in records if "error" in r]
    assert [r["line"] for r in bad] == [POISON_LINE]
    assert bad[0]["custom_id"] == POISON_ID and bad[0]["error"]["code"] == SCORING_FAILED
    # A fixed message for the tenant; the cause, as the model raised it, in the worker's log only.
    assert bad[0]["error"]["message"] == failure_messages.item_failed(POISON_LINE)
    assert "poisons its chunk" in worker.output()
    assert_records_equal(
        [r for r in records if r["line"] != POISON_LINE], [r for r in clean_reference if r["line"] != POISON_LINE]
    )
