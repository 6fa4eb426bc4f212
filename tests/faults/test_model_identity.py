"""Two model directories with the same basename (`…/a/tiny`, `…/b/tiny`, different weights) share a
queue name (`score.tiny`). A worker must only score a chunk with the exact model its job was
submitted for: the one serving the other directory leaves it for the right worker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from faultkit import MODEL, FaultEnv
from testkit import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_worker_of_another_model_with_the_same_name_scores_nothing(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]], other_tiny_model_dir: Path
) -> None:
    env: FaultEnv = fault_env()  # jobs are submitted for the session's tiny model (seed 0)
    other = other_tiny_model_dir  # seed 1, same directory name
    assert other.name == env.pipe.model_dir.name and other.resolve() != env.pipe.model_dir.resolve()

    impostor = env.start_worker({**env.pipe.env}, f"{MODEL}@impostor", ["--model", str(other)])
    impostor.wait_ready(env.pipe.redis)
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=10)  # 3 chunks on score.tiny

    def refused_or_scored() -> bool:
        return "left for a worker of that model" in impostor.output() or env.pipe.job(job_id).completed > 0

    wait_until(refused_or_scored, 60, "the impostor to take a chunk")
    time.sleep(3)  # and every other message it is sent meanwhile (the reconciler re-sends each second)
    assert env.pipe.job(job_id).completed == 0, "scored with another model's weights"
    assert {c.status for c in env.pipe.chunks(job_id)} == {"queued"}
    assert all(c.attempts == 0 for c in env.pipe.chunks(job_id))  # refusing uses up no attempt

    right = env.worker("right").wait_ready(env.pipe.redis)
    env.pipe.wait(job_id, timeout=120)
    env.assert_invariant(job_id, clean_reference)  # the submitted model's scores, every line once
    owners = {c.lease_owner.rsplit("/", 1)[0] for c in env.pipe.chunks(job_id)}
    assert owners == {right.name}
