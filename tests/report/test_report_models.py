"""A job whose results carry two models (what issue 8's model comparison will store) is shown
side by side: a column per model in every table, a series per model in every chart."""

from __future__ import annotations

from typing import Any

import pytest
from report_jobs import SHARED, Page, make_job, pairwise_lines, pct

from db.report import build_report, collect
from db.results import result_row, upsert_results
from db.session import utcnow, writing
from rmscore.evaluation import evaluate
from rmscore.formats import LineError, parse_object

LINES = 30


@pytest.fixture(scope="module")
def two_model_job(tmp_path_factory: pytest.TempPathFactory, report_db: Any, tiny_engine: Any) -> tuple[str, str]:
    from worker.engine import Scorer
    from worker.scoring import score_items
    from worker.tiny_model import make_tiny_model

    lines = pairwise_lines(SHARED)[:LINES]
    job_id = make_job(report_db, tiny_engine, lines, kind="pairwise", chunk_size=16)
    model_dir = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-b", "tiny", seed=1)
    other = Scorer.load(str(model_dir), device="cpu")
    assert other.name != tiny_engine.name
    items = [p for p in (parse_object(o, n) for n, o in enumerate(lines, start=1)) if not isinstance(p, LineError)]
    rows = [result_row(job_id, other.name, r, other.identity, utcnow()) for r in score_items(other, items)]
    with writing(report_db) as conn:
        upsert_results(conn, rows)
    return job_id, other.name


def test_two_models_side_by_side(report_db: Any, tiny_engine: Any, two_model_job: tuple[str, str]) -> None:
    job_id, second = two_model_job
    data = collect(report_db, job_id)
    assert data.models == [tiny_engine.name, second]
    evs = data.evaluations
    assert all(ev is not None and ev["overall"]["n"] == LINES for ev in evs.values())
    assert evs[tiny_engine.name] != evs[second]  # different weights, different answers
    for h in data.histograms:
        assert len(h.counts) == 2
    assert sum(data.histograms[0].counts[1]) == LINES
    assert [sum(s) for s in data.throughput["series"]] == [LINES, LINES]  # type: ignore[index]

    page = Page(build_report(report_db, job_id))
    header, *rows = page.tables["accuracy"]
    assert header == ["subset", "pairs", tiny_engine.name, second]
    overall = rows[-1]
    assert overall[2:] == [pct(evs[m]["overall"]["accuracy"]) for m in data.models]  # type: ignore[index]
    bias_header = page.tables["evalbiasbench"][0]
    assert bias_header[2:4] == [tiny_engine.name, second]
    want = evaluate(
        {r["subset"]: (r["correct"], r["n"]) for r in evs[second]["subsets"]}  # type: ignore[index]
    )
    assert want is not None and want["evalbiasbench"] == evs[second]["evalbiasbench"]  # type: ignore[index]
