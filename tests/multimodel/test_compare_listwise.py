"""Two models on one listwise job: per-model summaries, and `compare` agreeing on a line when both
pick the same best response, checked against each model's stored records.

The chunks are scored in process by two real tiny models (different seeds) through the chunk
lifecycle a worker uses, as tests/report does: what is under test is the store's arithmetic."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from rmscore.formats import parse_object, split_hh


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Any, str]:
    from db.chunks import claim_chunk, complete_chunk, load_items, new_owner, queued_chunks
    from db.jobs import create_job
    from db.migrate import upgrade
    from db.session import make_engine
    from worker.engine import Scorer
    from worker.scoring import score_items
    from worker.tiny_model import make_tiny_model

    tmp = tmp_path_factory.mktemp("compare-listwise")
    db = make_engine(f"sqlite:///{tmp / 'rmscore.db'}")
    upgrade(db)
    engines = {
        name: Scorer.load(str(make_tiny_model(tmp / name, "tiny", seed=seed)), device="cpu")
        for name, seed in (("a", 0), ("b", 1))
    }
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        rows = [json.loads(x) for x in itertools.islice(f, 25)]
    convs = [(split_hh(r["chosen"]), split_hh(r["rejected"])) for r in rows]
    lines = []
    for i in range(24):
        (c, r), (c2, _) = convs[i], convs[i + 1]
        replies = [c[-1]["content"], r[-1]["content"], c2[-1]["content"]]
        labelled = {"chosen": replies[:1], "rejected": replies[1:], "subset": "Focus" if i % 2 else "Math"}
        lines.append({"prompt": c[:-1], **(labelled if i < 16 else {"responses": replies})})
    parsed = [parse_object(obj, n) for n, obj in enumerate(lines, 1)]
    created = create_job(db, parsed, model="a", models=["b"], kind="listwise", chunk_size=7)
    for ref in queued_chunks(db, job_id=created.job.id):
        lease = claim_chunk(db, ref.id, new_owner("compare-test"), lease_seconds=300, max_attempts=3)
        assert lease is not None
        engine = engines[ref.model]
        assert complete_chunk(db, lease, score_items(engine, load_items(db, lease)), engine.identity)
    return db, created.job.id


def test_compare_agrees_on_the_best_response(job: tuple[Any, str], capsys: pytest.CaptureFixture[str]) -> None:
    from db.compare import compare_job
    from db.jobs import job_summary
    from db.results import iter_results
    from rmscore.cli.compare import print_comparison

    db, job_id = job
    a = {r["line"]: r for r in iter_results(db, job_id, model="a")}
    b = {r["line"]: r for r in iter_results(db, job_id, model="b")}
    agree = [line for line in a if a[line]["best"] == b[line]["best"]]
    assert 0 < len(agree) < len(a)  # two different models: some picks differ, some match

    c = compare_job(db, job_id, limit=100)
    assert c["kind"] == "listwise" and c["models"] == ["a", "b"] and c["n"] == len(a)
    assert c["agreement"] == pytest.approx(len(agree) / len(a))
    assert [d["line"] for d in c["disagreements"]] == sorted(set(a) - set(agree))
    d = c["disagreements"][0]
    assert d["scores"]["b"]["best"] == b[d["line"]]["best"]
    for model, recs in (("a", a), ("b", b)):
        credit = [r["correct"] for r in recs.values() if "correct" in r]
        assert len(credit) == 16 and c["accuracy"][model] == pytest.approx(sum(credit) / 16)
    focus = next(s for s in c["subsets"] if s["subset"] == "Focus")
    want = [r["correct"] for r in a.values() if r.get("subset") == "Focus"]
    assert focus["accuracy"]["a"] == pytest.approx(sum(want) / len(want))

    s = job_summary(db, job_id)
    assert s["request_counts"] == {"total": 48, "completed": 48, "failed": 0, "responses": 72}
    assert set(s["by_model"]) == {"a", "b"}
    best_b = [r["scores"][r["best"]] for r in b.values()]
    assert s["by_model"]["b"]["best_of_n"]["best"]["mean"] == pytest.approx(sum(best_b) / len(best_b))

    from rmscore.cli.display import print_job

    print_job(s)  # `rmscore status`: the counts with responses, the best-of-N and accuracy tables
    status = capsys.readouterr().err
    assert "72 on the lines that parsed" in status and "best of N (24 lines scored)" in status
    assert "best-of-N accuracy" in status and "the lines they disagree on" in " ".join(status.split())

    print_comparison(c)
    shown = capsys.readouterr().err
    assert "lines whose best response they disagree on" in shown and f"#{d['scores']['a']['best']}" in shown
