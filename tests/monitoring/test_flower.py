"""Flower, started by `rmscore flower` with basic auth, sees the worker under its descriptive name,
what it holds (through Celery's stats), and the job's chunk tasks with readable arguments."""

from __future__ import annotations

import ast
import re
import socket
from typing import Any

import httpx
from monkit import CHUNK_SIZE, Fleet
from testkit import wait_until


def test_flower_api_refuses_requests_without_credentials(fleet: Fleet) -> None:
    for path in ("/api/workers", "/api/tasks"):
        assert fleet.flower(path, auth=False).status_code == 401, path
    wrong = httpx.get(f"{fleet.flower_url}/api/workers", auth=("monitor", "guess"), timeout=30)
    assert wrong.status_code == 401
    assert fleet.flower("/api/workers").status_code == 200


def test_flower_shows_the_worker_online_under_its_descriptive_name(fleet: Fleet) -> None:
    name = fleet.worker.name
    assert name == f"tiny@{socket.gethostname()}-cpu"
    status = wait_until(lambda: fleet.flower("/api/workers", status="true").json().get(name), 60, f"{name} online")
    assert status is True


def test_flower_shows_what_the_worker_holds_in_its_stats(fleet: Fleet) -> None:
    def stats() -> dict[str, Any] | None:
        # Flower keeps the last stats it got: the ones from before the job until a refresh reaches
        # the worker between two tasks (it answers only then), so wait for the job's to show.
        workers = fleet.flower("/api/workers", refresh="true").json()
        stats = (workers.get(fleet.worker.name) or {}).get("stats", {})
        # Flat `rmscore.*` entries of scalars (a row each on Flower's page), no nested dict.
        assert "rmscore" not in stats
        held = {k.removeprefix("rmscore."): v for k, v in stats.items() if k.startswith("rmscore.")}
        assert not any(isinstance(v, dict | list) for v in held.values()), held
        return held if held and held["items_scored"] == fleet.job_items else None

    held = wait_until(stats, 60, f"the worker's stats in Flower to count {fleet.job_items} items")
    assert held["worker"] == fleet.worker.name
    assert (held["model"], held["model_id"], held["device"], held["queue"]) == (
        "tiny",
        str(fleet.model_dir),
        "cpu",
        "score.tiny",
    )
    assert held["dtype"] == "float32" and held["gpu"] is None  # CPU: no GPU to describe
    assert "revision" in held and held["max_batch_tokens"] >= 16
    from worker.weights import directory_digest

    assert held["weights"] == directory_digest(fleet.model_dir)  # the identity the score cache keys on
    assert held["model_load_seconds"] > 0
    # Everything the job scored shows, nothing of the warm-up.
    # Pairs: chosen and rejected; each went through the model or came from the score cache.
    assert held["conversations_scored"] + held["cache_hits"] == 2 * fleet.job_items
    assert held["conversations_scored"] > 0
    assert held["tokens_scored"] > held["conversations_scored"]
    assert held["tokens_per_second_1m"] >= 0
    assert 0 < held["padding_efficiency"] <= 1
    assert held["oom_splits"] == 0 and held["current_job"] is None


def test_flower_worker_page_shows_rmscore_stats_as_rows(fleet: Fleet) -> None:
    """On the worker's page (tab Other) each figure is a row of its own, not one raw Python dict."""
    page = fleet.flower(f"/worker/{fleet.worker.name}")
    assert page.status_code == 200
    html = page.text
    assert re.search(r"<td>rmscore\.model</td>\s*<td[^>]*>tiny</td>", html), html[-3000:]
    assert re.search(r"<td>rmscore\.device</td>\s*<td[^>]*>cpu</td>", html)
    assert "{&#39;worker&#39;" not in html and "{&#x27;worker&#x27;" not in html


def test_flower_shows_chunks_of_a_cancelled_job_as_revoked_not_succeeded(fleet: Fleet) -> None:
    """Messages of chunks whose job was cancelled before they started reach the worker, which runs
    nothing: Flower must not list them as SUCCESS."""
    from celery import Celery
    from sqlalchemy import select

    from db.jobs import cancel_job, create_job
    from db.models import chunks
    from db.session import get_engine
    from rmscore import keys
    from rmscore.inputs import iter_parsed

    db = get_engine(fleet.settings.database_url)
    # Stored, cancelled, and only then sent: as if the cancel came while its messages sat in the queue.
    job = create_job(db, iter_parsed(fleet.tmp / "pairs.jsonl"), model="tiny", chunk_size=CHUNK_SIZE).job
    cancel_job(db, job.id)
    with db.connect() as conn:
        rows = conn.execute(select(chunks).where(chunks.c.job_id == job.id)).all()
    assert rows and {r.status for r in rows} == {"cancelled"}
    # The messages a producer sends (db.producer.send_chunks), from a plain Celery app on the broker.
    sender = Celery("sender", broker=fleet.settings.broker_url, set_as_current=False)
    queue = keys.score_queue("tiny")
    for r in rows:
        kwargs = {"job": r.job_id, "chunk": r.id, "items": r.n_items}
        sender.send_task(keys.TASK_SCORE_CHUNK, kwargs=kwargs, queue=queue, exchange="", routing_key=queue)
    sender.close()

    def of_job(state: str) -> list[dict[str, Any]]:
        found = fleet.flower("/api/tasks", taskname="rmscore.score_chunk", state=state).json()
        return [t for t in found.values() if ast.literal_eval(t["kwargs"]).get("job") == job.id]

    revoked = wait_until(lambda: len(of_job("REVOKED")) == len(rows) and of_job("REVOKED"), 60, "revoked chunks")
    assert sorted(ast.literal_eval(t["kwargs"])["chunk"] for t in revoked) == sorted(r.id for r in rows)
    assert of_job("SUCCESS") == [] and of_job("FAILURE") == []


def test_flower_lists_the_jobs_chunk_tasks_as_succeeded_with_readable_arguments(fleet: Fleet) -> None:
    n_chunks = -(-fleet.job_items // CHUNK_SIZE)

    def tasks() -> list[dict[str, Any]] | None:
        found = fleet.flower("/api/tasks", taskname="rmscore.score_chunk", state="SUCCESS").json()
        mine = [t for t in found.values() if ast.literal_eval(t["kwargs"]).get("job") == fleet.job_id]
        return mine if len(mine) == n_chunks else None

    mine = wait_until(tasks, 60, f"{n_chunks} succeeded chunk tasks in Flower")
    for t in mine:
        assert t["name"] == "rmscore.score_chunk" and t["worker"] == fleet.worker.name
        kwargs = ast.literal_eval(t["kwargs"])
        assert set(kwargs) == {"job", "chunk", "items"} and t["args"] in ("()", "[]")
        assert t["result"] in ("'done'", "done")
    assert sum(ast.literal_eval(t["kwargs"])["items"] for t in mine) == fleet.job_items


def test_flower_metrics_show_the_worker_online(fleet: Fleet) -> None:
    line = re.compile(rf'^flower_worker_online\{{worker="{re.escape(fleet.worker.name)}"\}} 1\.0$', re.M)
    wait_until(lambda: line.search(fleet.flower("/metrics").text), 60, "flower_worker_online of the worker")


def test_flower_shows_the_online_lanes_stats_after_an_online_request(fleet: Fleet) -> None:
    """`rmscore.online.*` rows (worker/online.py's OnlineStats) count a `POST /v1/score` once the
    worker's next stats reach Flower."""
    from db.api_keys import create_key
    from db.session import get_engine

    key = create_key(get_engine(fleet.settings.database_url), "flower-online")[0]
    r = httpx.post(
        f"{fleet.api_url}/v1/score",
        json={"items": [{"prompt": "Hi?", "response": "Hello."}, {"text": "Hello there"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert all("score" in rec for rec in r.json()["results"]), r.text
    fleet.online_conversations += 2  # the shared worker scored them: test_metrics counts them too

    def online() -> dict[str, Any] | None:
        stats = (fleet.flower("/api/workers", refresh="true").json().get(fleet.worker.name) or {}).get("stats", {})
        rows = {k.removeprefix("rmscore.online."): v for k, v in stats.items() if k.startswith("rmscore.online.")}
        return rows if rows.get("requests", 0) >= 1 else None

    rows = wait_until(online, 60, "the online request in the worker's Flower stats")
    assert rows["items"] >= 2 and rows["engine_calls"] >= 1 and rows["expired"] == 0
    assert rows["latency_p50_s"] is not None and rows["latency_p50_s"] >= rows["wait_p50_s"] >= 0
