"""Redis faults: restarted empty mid-job, and gone for 30 s. Workers and the API reconnect by
themselves; the reconciler re-sends what the broker lost; every job ends exactly as a clean run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from faultkit import MODEL, FaultEnv, sleep_while
from testkit import wait_until

from rmscore import keys
from worker.faults import CHUNK_DELAY_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_redis_restarted_without_persistence_mid_job(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]]
) -> None:
    env: FaultEnv = fault_env()
    w = env.worker("restart", **{CHUNK_DELAY_ENV: "0.3"}).wait_ready(env.pipe.redis)
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=3)  # 10 chunks
    env.wait_progress(job_id, 6)
    assert env.pipe.redis.llen(keys.score_queue(MODEL)) > 0  # work still queued in the broker
    env.redis_server.restart()  # killed, back empty: every queued message is gone
    assert env.pipe.redis.llen(keys.score_queue(MODEL)) == 0
    env.pipe.wait(job_id, timeout=120)
    env.assert_invariant(job_id, clean_reference)
    assert w.alive()
    wait_until(lambda: env.pipe.redis.exists(keys.worker_heartbeat(w.name)), 30, "the heartbeat to come back")


def test_redis_down_for_30_seconds_api_and_workers_reconnect(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]]
) -> None:
    env: FaultEnv = fault_env(RMSCORE_CHUNK_SIZE="3")
    w = env.worker("outage", **{CHUNK_DELAY_ENV: "0.3"}).wait_ready(env.pipe.redis)
    url = env.api()
    items = [json.loads(line) for line in fault_input.read_text().splitlines()]
    body = {"kind": "pairwise", "items": items, "options": {"cache": False}}
    # What is posted during the outage: two chunks are enough to show such jobs complete too (ten
    # chunks each, at the 0.3 s chunk delay, only made the test wait once the broker was back).
    small = {**body, "items": items[:6]}
    with httpx.Client(base_url=url, timeout=30) as api:
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        env.wait_progress(job_id, 3)

        env.redis_server.kill()
        during: list[int] = []
        accepted_during: list[str] = []

        def api_answers() -> None:
            # The API stays up and answers with clear statuses, never a 500, while the broker is gone.
            assert api.get("/healthz").status_code == 200
            ready = api.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert api.get(f"/v1/jobs/{job_id}").status_code == 200  # the database still answers
            r = api.post("/v1/jobs", json=small)
            during.append(r.status_code)
            if r.status_code == 202:
                accepted_during.append(r.json()["id"])

        sleep_while(30, api_answers, every=5)
        assert w.alive(), w.output()[-3000:]
        assert during and set(during) <= {202, 503}, during
        env.redis_server.start()  # same port, empty

        wait_until(lambda: api.get("/readyz").status_code == 200, 60, "the API to be ready again")
        env.pipe.wait(job_id, timeout=120)
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        after = r.json()["id"]
        # Jobs accepted during the outage (202: stored, sent once the broker is back) complete too.
        accepted = [j["id"] for j in api.get("/v1/jobs", params={"limit": 100}).json()["data"]]
        for other in accepted:
            env.pipe.wait(other, timeout=120)
    assert after in accepted and job_id in accepted
    assert set(accepted_during) <= set(accepted)
    for other in accepted:  # job_id and after: all 30 lines; the rest were posted during the outage
        env.assert_invariant(other, clean_reference if other in (job_id, after) else clean_reference[:6])
    assert w.alive()
    # Nothing was ever answered with a 500 by the API process.
    assert " 500 " not in env.api_log()
    time.sleep(0)  # keep the API log flushed before teardown reads it
