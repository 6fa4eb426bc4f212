"""Security of the running system: Celery never unpickles, secrets never reach logs or error
bodies, and TLS URLs for Redis and PostgreSQL are accepted as configured."""

from __future__ import annotations

import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from faultkit import MODEL, FaultEnv, sleep_while
from testkit import wait_until

from rmscore import keys

REDIS_PASSWORD = "redis-Pw-9f3b1c7e"
DB_PASSWORD = "pg-Pw-4d2a8e6b"


class _Marker:
    """Unpickling this creates the directory `path`: proof that a payload was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


@pytest.mark.integration
def test_a_pickle_message_is_refused_never_executed(
    fault_env: Any, fault_input: Path, clean_reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    from kombu import Connection, Exchange, Producer

    env: FaultEnv = fault_env()
    w = env.worker("pickle").wait_ready(env.pipe.redis)

    # The payload is live: unpickling it runs code (here, creates a directory).
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Marker(str(probe))))
    assert probe.is_dir()

    marker = tmp_path / "pwned"
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": keys.TASK_SCORE_CHUNK, "id": task_id, "root_id": task_id, "argsrepr": "()"}
    body = ((_Marker(str(marker)),), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    with Connection(env.redis_server.url) as conn:
        Producer(conn).publish(
            body,
            exchange=Exchange(""),
            routing_key=keys.score_queue(MODEL),
            serializer="pickle",  # application/x-python-serialize
            headers=headers,
        )
    wait_until(lambda: "untrusted content" in w.output(), 60, "the worker to refuse the pickle message")
    assert not marker.exists()
    assert "application/x-python-serialize" in w.output()
    assert env.pipe.redis.llen(keys.score_queue(MODEL)) == 0  # dropped, not left to be retried

    # The worker is still up and scores real work after it.
    job_id = env.pipe.submit(fault_input, model=MODEL, chunk_size=10)
    env.pipe.wait(job_id, timeout=120)
    env.assert_invariant(job_id, clean_reference)
    assert w.alive() and not marker.exists()


@pytest.mark.integration
@pytest.mark.slow
def test_no_secret_in_logs_or_error_bodies(fault_env: Any, fault_input: Path) -> None:
    from db.api_keys import create_key

    env: FaultEnv = fault_env("postgresql", redis_password=REDIS_PASSWORD, db_password=DB_PASSWORD)
    assert REDIS_PASSWORD in env.pipe.broker_url and DB_PASSWORD in env.pipe.db_url
    api_key = create_key(env.pipe.db, "alice")[0]
    w = env.worker("secrets").wait_ready(env.pipe.redis)
    url = env.api(RMSCORE_AUTH="enabled", RMSCORE_CHUNK_SIZE="10")
    items = [json.loads(line) for line in fault_input.read_text().splitlines()]
    secrets = (REDIS_PASSWORD, DB_PASSWORD, api_key, api_key.split(".")[-1])
    bodies: list[str] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as api:
        r = api.post("/v1/jobs", json={"kind": "pairwise", "items": items})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        env.pipe.wait(job_id, timeout=120)
        # Failed auth: a key with a typo, a key without its scheme.
        for headers in ({"Authorization": "Bearer " + api_key[:-2] + "xx"}, {"Authorization": api_key}):
            r = httpx.get(f"{url}/v1/jobs", headers=headers)
            assert r.status_code == 401
            bodies.append(r.text)
        bodies.append(api.post("/v1/jobs", json={"items": [{"bad": api_key}]}).text)
        # The broker gone: the API's errors name the failure, not the URL with its password.
        env.redis_server.kill()

        def collect() -> None:
            bodies.append(api.get("/readyz").text)
            r = api.post("/v1/jobs", json={"kind": "pairwise", "items": items[:2]})
            assert r.status_code in (202, 503), r.text
            bodies.append(r.text)

        sleep_while(3, collect)
        env.redis_server.start()
        wait_until(lambda: api.get("/readyz").status_code == 200, 60, "the API to be ready again")
    assert w.alive()
    logs = {"worker": w.output(), "api": env.api_log()}
    assert "Refusing" not in logs["worker"]
    for secret in secrets:
        for name, text in logs.items():
            assert secret not in text, f"a secret appears in the {name} log"
        for body in bodies:
            assert secret not in body, body
    assert "broker" in " ".join(bodies)  # the outage was answered, and said what failed


def test_tls_urls_for_redis_and_postgresql_are_accepted() -> None:
    import redis
    from pydantic import ValidationError

    from db.session import make_engine
    from rmscore.broker import create_app, get_redis
    from rmscore.settings import Settings

    broker = "rediss://:s3cret@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem"
    database = "postgresql+psycopg://rmscore:s3cret@db.internal:5432/rmscore?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    s = Settings(broker_url=broker, database_url=database, _env_file=None)
    assert (s.broker_url, s.database_url, s.backend_url) == (broker, database, broker)

    client = get_redis(s.broker_url)  # builds the pool; connects only when used
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"

    app = create_app(s)
    assert app.conf.broker_url == broker and app.connection_for_write().transport_cls == "rediss"
    assert "s3cret" not in app.connection_for_write().as_uri()  # what Celery prints is masked

    db = make_engine(s.database_url)
    assert db.url.query["sslmode"] == "verify-full" and db.url.password == "s3cret"
    assert "s3cret" not in repr(db.url) and "s3cret" not in str(db)

    for bad in ({"broker_url": "amqp://x"}, {"broker_url": "http://redis"}, {"database_url": "mysql://db/x"}):
        with pytest.raises(ValidationError):
            Settings(**bad, _env_file=None)
