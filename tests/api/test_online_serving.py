"""Online serving with a real API and worker: requests are answered between micro-batches of a chunk
the worker holds, a late answer is 504 (not 503), and every trainer face returns the same scores,
the card's. The worker runs each micro-batch 0.3 s slower (RMSCORE_FAULT_BATCH_DELAY, worker/faults.py)
with one conversation per micro-batch, so a chunk of 8 pairs holds 16 boundaries."""

from __future__ import annotations

import gzip
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from apistack import stack_env
from harness import free_port, launch, stop_all, wait_http

pytestmark = pytest.mark.integration


@dataclass
class Online:
    url: str  # RMSCORE_SYNC_TIMEOUT=60
    metrics_url: str  # the worker's Prometheus endpoint
    short_url: str  # the same fleet through an API with RMSCORE_SYNC_TIMEOUT=1
    key: str
    db_url: str
    worker: Any

    def client(self, url: str | None = None, key: str | None = "") -> httpx.Client:
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=url or self.url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Online]:
    import redis

    from db.api_keys import create_key
    from db.migrate import upgrade
    from db.session import get_engine

    tmp = tmp_path_factory.mktemp("online")
    db_url = f"sqlite:///{tmp / 'rmscore.db'}"
    from testkit import redis_url

    broker = redis_url("online")
    redis.Redis.from_url(broker).flushdb()
    upgrade(get_engine(db_url))
    key = create_key(get_engine(db_url), "alice")[0]
    env = stack_env(
        tiny_model_dir,
        db_url,
        broker,
        RMSCORE_FAULT_BATCH_DELAY="0.3",
        RMSCORE_MAX_BATCH_TOKENS="64",
        RMSCORE_CHUNK_SIZE="64",
        OMP_NUM_THREADS="1",
        RMSCORE_WORKER_METRICS_PORT=str(metrics_port := free_port()),
    )
    procs = [launch(["worker"], env, tmp / "worker.log")]
    ports = free_port(), free_port()
    procs.append(launch(["api", "--port", str(ports[0])], env, tmp / "api.log"))
    short_env = {**env, "RMSCORE_SYNC_TIMEOUT": "1"}
    procs.append(launch(["api", "--port", str(ports[1])], short_env, tmp / "api-short.log"))
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc, log in zip(urls, procs[1:], ("api.log", "api-short.log"), strict=True):
            wait_http(f"{url}/readyz", proc, tmp / log)  # ready: a worker's heartbeat is there
        yield Online(urls[0], f"http://127.0.0.1:{metrics_port}/metrics", urls[1], key, db_url, procs[0])
    finally:
        stop_all(procs)


def hh_pairs(shared_data: Path, n: int) -> list[dict[str, Any]]:
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        return [json.loads(next(f)) for _ in range(n)]


def chunk_statuses(db_url: str, job_id: str) -> list[str]:
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine(db_url).connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT status FROM chunks WHERE job_id = :j"), {"j": job_id})]


def stored_identities(db_url: str, job_id: str) -> list[Any]:
    """The model identity of each scored result row (the API answers do not show it)."""
    from sqlalchemy import select

    from db.models import results
    from db.session import get_engine

    with get_engine(db_url).connect() as conn:
        q = select(results.c.model_identity).where(results.c.job_id == job_id, results.c.error_code.is_(None))
        return [r[0] for r in conn.execute(q.order_by(results.c.line))]


def test_answered_while_the_worker_holds_a_chunk(online: Online, shared_data: Path) -> None:
    from testkit import wait_until

    with online.client() as c:
        r = c.post("/v1/jobs", json={"items": hh_pairs(shared_data, 8), "options": {"cache": False}})
        assert r.status_code in (200, 201, 202), r.text
        job_id = r.json()["id"]
        wait_until(lambda: chunk_statuses(online.db_url, job_id) == ["leased"], 60, "the chunk to be leased", 0.05)
        r = c.post("/v1/score", json={"items": [{"prompt": "Hi?", "response": "Hello."}]})
        assert r.status_code == 200, r.text
        assert "score" in r.json()["results"][0]
        # Answered while the chunk is still in the worker's hands: not stored, not done.
        assert chunk_statuses(online.db_url, job_id) == ["leased"]
        assert c.get(f"/v1/jobs/{job_id}").json()["request_counts"]["completed"] == 0
        wait_until(lambda: chunk_statuses(online.db_url, job_id) == ["done"], 120, "the chunk to finish", 0.2)


def test_late_answer_is_504_and_no_worker_is_not_blamed_on_the_broker(online: Online) -> None:
    body = {"items": [{"text": "Hello there"}]}
    online.worker.send_signal(signal.SIGSTOP)  # hung, heartbeat still live: the workers are late, not gone
    try:
        with online.client(online.short_url) as c:
            r = c.post("/v1/score", json=body)
            assert r.status_code == 504, r.text
            assert r.json()["error"]["code"] == "timeout"
            r = c.post("/get_reward", json={"query": ["Hello there"]})
            assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text
    finally:
        online.worker.send_signal(signal.SIGCONT)
    with online.client() as c:  # the timed-out requests were withdrawn; the fleet answers again
        r = c.post("/v1/score", json=body)
        assert r.status_code == 200, r.text


def test_every_face_returns_the_same_scores_the_cards(online: Online, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer, pipeline

    from rmscore.client import reward_function

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    convs = [
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
        [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue, like the sea."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}],
    ]
    texts = [tok.apply_chat_template(c, tokenize=False) for c in convs]  # as trainers render them: BOS included
    pipe = pipeline("text-classification", model=str(tiny_model_dir), tokenizer=tok, device="cpu")
    card = [o[0]["score"] for o in pipe([t.replace(tok.bos_token, "") for t in texts], function_to_apply="none",
                                         top_k=None)]
    with online.client() as c:
        r = c.post("/v1/score", json={"items": [{"messages": m} for m in convs] + [{"text": t} for t in texts]})
        assert r.status_code == 200, r.text
        v1 = [rec["score"] for rec in r.json()["results"]]
        r = c.post("/get_reward", json={"query": texts, "prompts": ["p"] * 3, "labels": [None] * 3})
        assert r.status_code == 200, r.text
        rewards = r.json()["rewards"]
        assert r.json()["scores"] == rewards
        r = c.post("/classify", json={"model": None, "input": texts})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1, 2]
        classify = [d["probs"][0] for d in body["data"]]
        r = c.post("/v1/classify", json={"messages": convs[1], "use_activation": True})
        assert r.status_code == 200, r.text
        sigmoid = r.json()["data"][0]["probs"][0]
    # The first URL refuses connections: the function fails over to the live one. Pickled, as TRL's
    # worker processes receive it.
    import pickle

    trl = pickle.loads(pickle.dumps(reward_function([f"http://127.0.0.1:{free_port()}", online.url], online.key)))
    assert trl.__name__ == "rmscore"
    from_trl = trl([c[:-1] for c in convs], [[c[-1]] for c in convs], ground_truth=["x"] * 3)
    for got in (v1[:3], v1[3:], rewards, classify, from_trl):
        assert got == pytest.approx(v1[:3], abs=1e-6)
        assert got == pytest.approx(card, abs=1e-4)
    import math

    assert sigmoid == pytest.approx(1 / (1 + math.exp(-card[1])), abs=1e-4)
    # Each of those requests was observed: latency and queue wait on the worker's /metrics.
    metrics = httpx.get(online.metrics_url, timeout=10).text
    for name in ("rmscore_worker_online_latency_seconds_count", "rmscore_worker_online_wait_seconds_count"):
        counts = [float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)]
        assert counts and counts[0] >= 5, (name, counts)


def test_faces_refuse_bad_input_with_4xx(online: Online) -> None:
    import base64

    cases: list[tuple[str, Any]] = [
        ("/get_reward", {"query": []}),
        ("/get_reward", {"query": "not a list"}),
        ("/get_reward", {"query": [3]}),
        ("/get_reward", {"query": ["a\ud800b"]}),
        ("/get_reward", {"query": ["nul\x00"]}),
        ("/get_reward", {"query": [""]}),
        ("/get_reward", {"prompts": ["missing query"]}),
        ("/get_reward", {"query": ["x"] * 65}),
        ("/get_reward", [1, 2]),
        ("/classify", {"input": []}),
        ("/classify", {}),
        ("/classify", {"input": "x", "messages": [{"role": "user", "content": "x"}]}),
        ("/classify", {"messages": [{"role": "user", "content": "no reply"}]}),
        ("/classify", {"input": [{"text": "nested"}]}),
        ("/classify", {"input": "x", "use_activation": "yes please"}),
        ("/classify", {"input": "x", "model": "/etc/passwd"}),
    ]
    with online.client() as c:
        for path, body in cases:
            r = c.post(path, content=json.dumps(body).encode("utf-8", "surrogatepass"),
                       headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        r = c.post("/v1/score", json={"items": [{"text": 5}]})
    # /v1/score answers per item: the text of wrong type is an error record, not a 5xx.
    assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "invalid_field"
    with online.client(key=None) as c:  # no key, wrong key: 401 before the body is read
        assert c.post("/get_reward", json={"query": ["x"]}).status_code == 401
        assert c.post("/classify", json={"input": "x"}).status_code == 401
    with online.client(key="rk_wrong") as c:
        assert c.post("/get_reward", json={"query": ["x"]}).status_code == 401
    # OpenRLHF's client sends the key only as URL credentials, i.e. HTTP Basic.
    basic = base64.b64encode(f"rm:{online.key}".encode()).decode()
    r = httpx.post(f"{online.url}/get_reward", json={"query": ["x"]}, headers={"Authorization": f"Basic {basic}"},
                   timeout=120)
    assert r.status_code == 200 and len(r.json()["rewards"]) == 1, r.text
    r = httpx.post(f"{online.url}/get_reward", json={"query": ["x"]}, headers={"Authorization": "Basic !!"})
    assert r.status_code == 401


def test_store_true_keeps_the_answer_as_a_job_readable_like_any_other(online: Online, shared_data: Path) -> None:
    import io

    import pyarrow.parquet as pq
    from testkit import clean_env, run_cli

    pairs = [{**p, "custom_id": f"p{i}"} for i, p in enumerate(hh_pairs(shared_data, 2))]
    body = {"items": [*pairs, {"chosen": "no prompt"}], "store": True, "metadata": {"run": "ppo-7"}}
    with online.client() as c:
        r = c.post("/v1/score", json=body, headers={"Idempotency-Key": "online-1"})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["stored"] is True and answer["job_id"], answer
        job_id, recs = answer["job_id"], answer["results"]
        assert [("chosen_score" in x, "error" in x) for x in recs] == [(True, False), (True, False), (False, True)]
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["kind"], job["metadata"]) == ("completed", "pairwise", {"run": "ppo-7"})
        assert job["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
        # The stored results are the answer, with `cached` as the worker gave it (absent: scored by the model).
        lines = [json.loads(x) for x in c.get(f"/v1/jobs/{job_id}/results").text.splitlines()]
        assert lines == [x if "error" in x else {**x, "cached": x.get("cached", False)} for x in recs], lines
        for fmt in ("csv", "json", "parquet"):
            got = c.get(f"/v1/jobs/{job_id}/results", params={"format": fmt})
            assert got.status_code == 200, (fmt, got.text)
        table = pq.read_table(io.BytesIO(got.content)).to_pylist()
        assert [row["chosen_score"] for row in table[:2]] == [x["chosen_score"] for x in recs[:2]]
        scores = c.get("/v1/scores", params={"job_id": job_id}).json()["data"]
        assert {s["custom_id"]: s["chosen_score"] for s in scores if s.get("custom_id")} == {
            "p0": recs[0]["chosen_score"], "p1": recs[1]["chosen_score"]}  # fmt: skip
        assert answer["model_identity"] and stored_identities(online.db_url, job_id) == [answer["model_identity"]] * 2
        for view in ("report", "preferences"):  # readers of turns: a stored pairwise job has them
            got = c.get(f"/v1/jobs/{job_id}/{view}")
            assert got.status_code == 200, (view, got.text[:2000])
        # Retry with the key: the stored job answers, nothing new; another request with it: 422.
        again = c.post("/v1/score", json=body, headers={"Idempotency-Key": "online-1"})
        assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true", again.text
        assert (again.json()["job_id"], again.json()["results"]) == (job_id, lines)
        other = c.post("/v1/score", json={**body, "items": pairs[:1]}, headers={"Idempotency-Key": "online-1"})
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text
        # Refused before any scoring, each with its 4xx: text (no turns to report on), mixed kinds,
        # metadata with nothing to keep it in.
        for bad, code in (
            ({"items": [{"text": "Hello"}], "store": True}, "text_not_stored"),
            ({"items": [pairs[0], {"prompt": "a", "response": "b"}], "store": True}, "mixed_kinds"),
            ({"items": pairs[:1], "metadata": {"a": 1}}, "invalid_request"),
            ({"items": pairs[:1], "store": "yes please"}, None),
        ):  # fmt: skip
            r = c.post("/v1/score", json=bad)
            assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
            assert code is None or r.json()["error"]["code"] == code, r.text
    # The CLI reads it from the database as it reads any job.
    env = clean_env(RMSCORE_DATABASE_URL=online.db_url)
    status = run_cli(["status", job_id], env)
    assert "completed" in status.stdout + status.stderr
    out = run_cli(["results", job_id], env).stdout
    assert [json.loads(x)["line"] for x in out.splitlines() if x.startswith("{")] == [1, 2, 3], out
