"""Whom the score cache may answer, and for how long, against real `rmscore worker` processes.

- Weights replaced in place (same file name, size, mtime and inode) are a new model identity: after
  a worker restart the same job is scored again, by the new weights, exactly as a fresh model
  scores it, and nothing comes from the cache.
- The cache is per tenant by default: another tenant's identical job is scored, not served;
  `RMSCORE_CACHE_SCOPE=shared` shares it between tenants (and only the shared rows).
- The reconciler prunes the cache to its bounds, once per prune interval fleet-wide;
  `rmscore cache stats / clear / prune` read and empty it.

Real Redis (db 6), a real SQLite file, real worker processes on a copy of the tiny model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_score_cache import PAIRS, Stack, iter_parsed_items, pairs
from testkit import REDIS_URL, clean_env, run_cli

BROKER = f"{REDIS_URL}/6"


def scored(rows: list[Any]) -> list[Any]:
    return [r for r in rows if r.error_code is None]


def fresh_model_scores(model_dir: Path) -> list[tuple[float, float]]:
    """(chosen, rejected) of every good line of `pairs(...)`, from the model at `model_dir` loaded here."""
    from worker.engine import Scorer
    from worker.scoring import score_items

    engine = Scorer.load(str(model_dir), device="cpu", lanes=1)
    from rmscore.formats import LineError

    items = [p for p in iter_parsed_items(pairs("ref")) if not isinstance(p, LineError)]
    return [(r["chosen_score"], r["rejected_score"]) for r in score_items(engine, items)]


@pytest.fixture
def model_copy(tmp_path: Path, tiny_model_dir: Path) -> Path:
    path = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model_dir, path)
    return path


def test_weights_replaced_in_place_are_scored_again_never_served_from_the_cache(
    tmp_path: Path, model_copy: Path, other_tiny_model_dir: Path
) -> None:
    other = other_tiny_model_dir  # the same shapes, other random weights (seed 1)
    s = Stack(tmp_path, model_copy, broker=BROKER)
    try:
        w = s.start_worker("tiny@trust-before")
        try:
            first = s.run_job(w, "a")
            before = s.beat
        finally:
            w.stop()
        assert [r.cached for r in scored(s.rows(first))] == [False] * PAIRS

        # Replace the weights in place: same inode (rewritten, not renamed), same size, same mtime.
        weights = model_copy / "model.safetensors"
        st = weights.stat()
        new_bytes = (other / "model.safetensors").read_bytes()
        assert len(new_bytes) == st.st_size and new_bytes != weights.read_bytes()
        with open(weights, "r+b") as f:
            f.write(new_bytes)
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
        after_st = weights.stat()
        assert (after_st.st_size, after_st.st_mtime_ns, after_st.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)

        w = s.start_worker("tiny@trust-after")
        try:
            second = s.run_job(w, "b")
            after = s.beat
        finally:
            w.stop()
        rows = scored(s.rows(second))
        assert [r.cached for r in rows] == [False] * PAIRS and after["cache_hits"] == 0
        want = fresh_model_scores(other)
        got = [(r.chosen_score, r.rejected_score) for r in rows]
        for (gc, gr), (wc, wr) in zip(got, want, strict=True):
            assert gc == pytest.approx(wc, abs=1e-5) and gr == pytest.approx(wr, abs=1e-5)
        old = [(r.chosen_score, r.rejected_score) for r in scored(s.rows(first))]
        assert max(abs(g[0] - o[0]) for g, o in zip(got, old, strict=True)) > 1e-3  # the weights did change
        # The operator sees which weights each worker held: in its heartbeat and its log.
        assert before["weights"].startswith("sha256:") and after["weights"] != before["weights"]
        assert after["weights"] in w.output()
    finally:
        s.redis.flushdb()


def test_cache_is_per_tenant_unless_the_operator_shares_it(tmp_path: Path, model_copy: Path) -> None:
    s = Stack(tmp_path, model_copy, broker=BROKER)
    try:
        w = s.start_worker("tiny@trust-tenant")  # default settings: RMSCORE_CACHE_SCOPE=tenant
        try:
            alice = s.run_job(w, "a", tenant="alice")
            engine_after_alice = s.beat["engine_items"]
            bob = s.run_job(w, "b", tenant="bob")
            after_bob = s.beat
            alice_again = s.run_job(w, "c", tenant="alice")
            after_alice_again = s.beat
        finally:
            w.stop()
        assert [r.cached for r in scored(s.rows(alice))] == [False] * PAIRS
        # Bob's identical job learns nothing from Alice's: scored by the model, not flagged cached.
        assert [r.cached for r in scored(s.rows(bob))] == [False] * PAIRS
        assert after_bob["engine_items"] == engine_after_alice + 2 * PAIRS and after_bob["cache_hits"] == 0
        # Alice's own repeat is served from her cache.
        assert [r.cached for r in scored(s.rows(alice_again))] == [True] * PAIRS
        assert after_alice_again["cache_hits"] == 2 * PAIRS
        assert after_alice_again["engine_items"] == after_bob["engine_items"]

        w = s.start_worker("tiny@trust-shared", RMSCORE_CACHE_SCOPE="shared")
        try:
            carol = s.run_job(w, "d", tenant="carol")
            dave = s.run_job(w, "e", tenant="dave")
        finally:
            w.stop()
        # The shared scope starts empty (tenant rows are never shared after the fact), then serves all.
        assert [r.cached for r in scored(s.rows(carol))] == [False] * PAIRS
        assert [r.cached for r in scored(s.rows(dave))] == [True] * PAIRS

        # `rmscore cache stats` sees alice's, bob's and the shared rows of one identity; clear empties it.
        st = json.loads(run_cli(["cache", "stats", "--json"], s.env).stdout)
        assert st["rows"] == 3 * 2 * PAIRS
        assert [(i["model"], i["rows"], i["scopes"]) for i in st["identities"]] == [("tiny", 6 * PAIRS, 3)]
        assert run_cli(["cache", "clear", "--model", "other-model"], s.env).stdout.strip() == "0"
        assert run_cli(["cache", "clear", "--tenant", "bob"], s.env).stdout.strip() == str(2 * PAIRS)
        assert run_cli(["cache", "clear", "--model", str(model_copy)], s.env).stdout.strip() == str(4 * PAIRS)
        assert json.loads(run_cli(["cache", "stats", "--json"], s.env).stdout)["rows"] == 0
    finally:
        s.redis.flushdb()


def test_the_reconciler_prunes_the_cache_once_per_interval(tmp_path: Path) -> None:
    import redis

    from db.cache import CachedScore, rows_by_model, store
    from db.migrate import upgrade
    from db.session import make_engine
    from rmscore import keys
    from rmscore.broker import create_app
    from rmscore.settings import Settings
    from worker.reconcile import reconcile_once

    url = f"sqlite:///{tmp_path / 'prune.db'}"
    db = make_engine(url)
    upgrade(db)
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    settings = Settings(database_url=url, broker_url=BROKER, cache_max_rows=4, _env_file=None)
    assert settings.cache_max_age > 0 and settings.cache_prune_interval >= 60  # bounded by default

    def fill(n: int, tag: str) -> None:
        store(db, "alice", "i" * 64, "tiny", {f"{tag}{i:062d}": CachedScore(0.0, 1, False) for i in range(n)})

    try:
        fill(10, "a")
        report = reconcile_once(db, r, create_app(settings), settings)
        assert report.cache_pruned == 6 and rows_by_model(db) == {"tiny": 4}
        assert r.ttl(keys.CACHE_PRUNE_GATE) > 0
        fill(3, "b")  # within the interval another pass leaves the cache alone ...
        assert reconcile_once(db, r, create_app(settings), settings).cache_pruned == 0
        assert rows_by_model(db) == {"tiny": 7}
        r.delete(keys.CACHE_PRUNE_GATE)  # ... and the next interval prunes again
        assert reconcile_once(db, r, create_app(settings), settings).cache_pruned == 3
        fill(2, "c")  # `rmscore cache prune` enforces the bounds at once
        env = clean_env(RMSCORE_DATABASE_URL=url, RMSCORE_BROKER_URL=BROKER, RMSCORE_CACHE_MAX_ROWS="4")
        assert run_cli(["cache", "prune"], env).stdout.strip() == "2"
        assert rows_by_model(db) == {"tiny": 4}
    finally:
        r.flushdb()
        db.dispose()
