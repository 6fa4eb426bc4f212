"""Tenants and keys: another tenant's jobs are 404, bad keys 401, keys stored only as hashes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from apistack import CLI, REPO, Stack, wait_job
from sqlalchemy import select

pytestmark = pytest.mark.integration


def test_tenant_isolation(stack: Stack) -> None:
    items = [{"custom_id": "secret", "prompt": "p", "response": "r"}]
    with stack.client("alice") as a, stack.client("bob") as b, stack.client("admin") as root:
        job = a.post("/v1/jobs", json={"items": items}).json()
        wait_job(a, job["id"])
        jid = job["id"]
        for method, path in (
            ("GET", f"/v1/jobs/{jid}"),
            ("GET", f"/v1/jobs/{jid}/results"),
            ("GET", f"/v1/jobs/{jid}/results?format=json"),
            ("GET", f"/v1/jobs/{jid}/results?format=parquet"),
            ("GET", f"/v1/jobs/{jid}/errors"),
            ("POST", f"/v1/jobs/{jid}/cancel"),
        ):
            r = b.request(method, path)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["code"] == "job_not_found"
        assert b.get("/v1/scores", params={"job_id": jid}).json()["data"] == []
        assert all(s["job_id"] != jid for s in b.get("/v1/scores", params={"limit": 1000}).json()["data"])
        assert jid not in {j["id"] for j in b.get("/v1/jobs", params={"limit": 100}).json()["data"]}
        assert b.get("/v1/scores", params={"custom_id": "secret"}).json()["data"] == []

        assert a.get(f"/v1/jobs/{jid}").status_code == 200
        assert root.get(f"/v1/jobs/{jid}").json()["tenant"] == "alice"  # admin keys see every tenant
        assert [s["job_id"] for s in root.get("/v1/scores", params={"custom_id": "secret"}).json()["data"]] == [jid]


def test_missing_or_wrong_key_is_401(stack: Stack) -> None:
    good = stack.keys["alice"]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with stack.client(None) as c:
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": f"Basic {good}"},
            {"Authorization": "Bearer rk_0000000000000000_" + "x" * 43},
            {"Authorization": f"Bearer {wrong_secret}"},
            {"Authorization": "Bearer not-a-key"},
        ):
            for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/scores")):
                r = c.request(method, path, headers=headers, json={"items": [1]})
                assert r.status_code == 401, (headers, path, r.text)
                assert r.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
                assert r.headers["WWW-Authenticate"] == "Bearer"
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_keys_cli_prints_only_the_key_and_stores_a_hash(stack: Stack, tmp_path: Path) -> None:
    from db.api_keys import api_keys

    out = subprocess.run(
        [*CLI, "keys", "create", "cli-user", "--tenant", "frank"],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    key = out.stdout.strip()
    assert out.stdout == key + "\n" and key.startswith("rk_")
    with stack.client(None) as c:
        r = c.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json()["data"] == []

    with stack.db().connect() as conn:
        rows = conn.execute(select(api_keys)).all()
    all_keys = [key, *stack.keys.values()]
    for row in rows:
        stored = " ".join(str(v) for v in row)
        for k in all_keys:
            s = k.split("_", 2)[2]
            assert k not in stored and s not in stored
            assert hashlib.sha256(s.encode()).hexdigest() not in stored
    assert any(r.tenant == "frank" for r in rows)

    key_id = key.split("_")[1]
    subprocess.run([*CLI, "keys", "revoke", key_id], env=stack.env, cwd=REPO, capture_output=True, check=True)
    fresh = subprocess.run(
        [*CLI, "keys", "create", "cli-user2", "--tenant", "frank"],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [*CLI, "keys", "revoke", fresh.split("_")[1]], env=stack.env, cwd=REPO, capture_output=True, check=True
    )
    with stack.client(None) as c:  # never used before revocation, so never cached: refused at once
        assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {fresh}"}).status_code == 401
