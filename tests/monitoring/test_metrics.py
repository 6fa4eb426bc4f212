"""After a job: the worker's own Prometheus endpoint and the API's `/metrics` report it."""

from __future__ import annotations

from typing import Any

import httpx
from monkit import CHUNK_SIZE, IDLE_CHUNKS, METRICS_TOKEN, Fleet
from prometheus_client.parser import text_string_to_metric_families
from testkit import wait_until


def samples(url: str, token: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else None, timeout=30)
    assert resp.status_code == 200, resp.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    hits = [v for (n, ls), v in found.items() if n == name and want <= ls]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples in {sorted(n for n, _ in found)}"
    return hits[0]


def test_the_worker_exports_what_it_scored(fleet: Fleet) -> None:
    me = {"worker": fleet.worker.name, "model": "tiny"}

    def after_the_job() -> Any:
        # The job turns completed when its last chunk is stored, a moment before the worker counts it.
        m = samples(fleet.worker_metrics_url)
        return m if value(m, "rmscore_worker_items_scored_total", **me) == fleet.job_items else None

    m = wait_until(after_the_job, 60, f"the worker's metrics to count {fleet.job_items} items")
    from worker.weights import directory_digest

    weights = directory_digest(fleet.model_dir)  # the content the worker loaded, as its identity names it
    info = {"model_id": str(fleet.model_dir), "weights": weights, "dtype": "float32", "device": "cpu"}
    assert value(m, "rmscore_worker_info", **me, **info) == 1
    # Pairs: chosen and rejected; each went through the model or came from the score cache. Online
    # requests other tests sent to this shared worker went through the model too.
    conversations = value(m, "rmscore_worker_conversations_scored_total", **me)
    expected = 2 * fleet.job_items + fleet.online_conversations
    assert conversations + value(m, "rmscore_worker_cache_hits_total", **me) == expected
    assert conversations > 0
    assert value(m, "rmscore_worker_chunks_total", **me) == -(-fleet.job_items // CHUNK_SIZE)
    tokens = value(m, "rmscore_worker_tokens_scored_total", **me)
    padded = value(m, "rmscore_worker_padded_tokens_total", **me)
    assert conversations < tokens <= padded
    assert value(m, "rmscore_worker_padding_efficiency", **me) == tokens / padded
    batches = value(m, "rmscore_worker_batches_total", **me)
    assert batches >= 1
    # Every batch since start-up is timed (the warm-up's is neither counted nor timed).
    assert value(m, "rmscore_worker_batch_seconds_count", **me) == batches
    assert value(m, "rmscore_worker_batch_seconds_sum", **me) > 0
    assert value(m, "rmscore_worker_oom_splits_total", **me) == 0
    assert value(m, "rmscore_worker_model_load_seconds", **me) > 0
    assert value(m, "rmscore_worker_tokens_per_second", **me) >= 0
    assert value(m, "rmscore_worker_max_batch_tokens", **me) >= 16
    assert value(m, "rmscore_worker_busy", **me) == 0


def test_the_api_exports_jobs_lines_and_queue_depth(fleet: Fleet) -> None:
    assert httpx.get(f"{fleet.api_url}/readyz", timeout=30).status_code == 200  # a request to time
    # Every tenant's counts: not without the scrape token (the worker's own port is private).
    assert httpx.get(f"{fleet.api_url}/metrics", timeout=30).status_code == 401
    m = samples(f"{fleet.api_url}/metrics", METRICS_TOKEN)
    assert value(m, "rmscore_jobs", status="completed") == 1
    assert value(m, "rmscore_jobs", status="queued") == 1  # the tiny-idle job: no worker serves it
    assert value(m, "rmscore_lines", outcome="scored") == fleet.job_items
    assert value(m, "rmscore_lines", outcome="failed") == 0
    # Queue depth comes from Redis: the served queue is drained, the idle one holds every chunk.
    assert value(m, "rmscore_queue_depth", model="tiny", queue="batch") == 0
    assert value(m, "rmscore_queue_depth", model="tiny-idle", queue="batch") == IDLE_CHUNKS
    assert value(m, "rmscore_queue_depth", model="tiny-idle", queue="sync") == 0
    # Score cache rows per model, as the database holds them (the job filled the cache).
    from db.cache import rows_by_model
    from db.session import get_engine

    cache_rows = rows_by_model(get_engine(fleet.settings.database_url))
    assert cache_rows.get("tiny", 0) > 0
    assert value(m, "rmscore_score_cache_rows", model="tiny") == cache_rows["tiny"]
    assert value(m, "rmscore_api_request_seconds_count", method="GET", route="/readyz", status="200") >= 1
