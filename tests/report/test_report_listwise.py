"""A listwise job's report in headless Chromium: best and worst scores, best-of-N accuracy and the
RewardBench 2 table, every number as a reader sees it checked against the job's stored records."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from report_jobs import SHARED, XSS, make_job
from test_browser import _clean, browse

from rmscore.formats import split_hh

DOMAINS = ("Factuality", "Precise IF", "Math", "Safety", "Focus")


def listwise_lines() -> list[dict[str, Any]]:
    """RewardBench 2's shape on HH-RLHF replies: one correct against three wrong in each of its five
    accuracy domains, a Ties sample (ref:N / tied:N), an unlabelled line, a hostile one and a bad one."""
    with gzip.open(SHARED / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        rows = [json.loads(x) for x in itertools.islice(f, 14)]
    pairs = [(split_hh(r["chosen"]), split_hh(r["rejected"])) for r in rows]
    lines: list[dict[str, Any]] = []
    for i in range(10):
        (c, r), (c2, r2) = pairs[i], pairs[i + 1]
        wrong = [r[-1]["content"], c2[-1]["content"], r2[-1]["content"]]
        lines.append({"subset": DOMAINS[i % 5], "prompt": c[:-1], "chosen": [c[-1]["content"]], "rejected": wrong})
    for k in range(2):
        (c, r), (c2, r2) = pairs[10 + k], pairs[12 + k]
        wrong = [r[-1]["content"], c2[-1]["content"], r2[-1]["content"]]
        good = c[-1]["content"]
        base = {"subset": "Ties", "prompt": c[:-1], "rejected": wrong}
        lines.append({**base, "custom_id": f"ref:{k}", "chosen": [good]})
        lines.append({**base, "custom_id": f"tied:{k}", "chosen": [good, good + " Sure.", "So: " + good]})
    lines.append({"custom_id": XSS, "prompt": XSS, "responses": [XSS, f"<b>{XSS}</b>", "fine"]})
    lines.append({"prompt": "no responses", "responses": []})
    return lines


@pytest.fixture(scope="module")
def listwise_job(report_db: Any, tiny_engine: Any) -> str:
    return make_job(report_db, tiny_engine, listwise_lines(), kind="listwise", chunk_size=5)


@pytest.fixture(scope="module")
def page(listwise_job: str, report_db: Any, shots_dir: Path) -> dict[str, Any]:
    from db.report import build_report

    html = shots_dir / "listwise.html"
    html.write_text(build_report(report_db, listwise_job), encoding="utf-8")
    (page,) = browse(shots_dir, html)["pages"]
    return page


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("listwise-report")


def _num(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def test_listwise_report_in_chromium_shows_the_jobs_numbers(
    page: dict[str, Any], listwise_job: str, report_db: Any
) -> None:
    from db.jobs import job_summary
    from db.results import iter_results

    _clean(page)
    tables = {t["id"]: t for t in page["tables"]}
    assert {"best-of-n", "rewardbench2", "accuracy", "errors"} <= set(tables)
    assert all(tables[t]["visible"] for t in ("best-of-n", "rewardbench2", "accuracy"))
    assert page["text"].count(XSS) >= 1  # shown as text, never run (_clean checked no script ran)
    drawn = [c for c in page["charts"] if c["width"] > 100 and c["paths"] > 0]
    assert len(drawn) >= 2, page["charts"]  # the best and the worst response's scores

    recs = [r for r in iter_results(report_db, listwise_job) if "error" not in r]
    best = [r["scores"][r["best"]] for r in recs]
    worst = [r["scores"][r["worst"]] for r in recs]
    margins = [b - w for b, w in zip(best, worst, strict=True)]
    shown = {row[0]: row[1:] for row in tables["best-of-n"]["cells"]}
    for label, values in (("best score", best), ("worst score", worst), ("best − worst", margins)):
        want = [sum(values) / len(values), min(values), max(values)]
        assert [_num(c) for c in shown[label]] == pytest.approx(want, abs=5e-5), label
    assert _num(shown["lines scored"][0]) == len(recs)

    # Best-of-N accuracy: each subset's mean credit, recomputed from the records.
    acc = {row[0]: row for row in tables["accuracy"]["cells"]}
    labelled = [r for r in recs if "correct" in r]
    for name in (*DOMAINS, "Ties", "overall"):
        got = [r["correct"] for r in labelled if name in (r["subset"], "overall")]
        _, n, credit, pct = acc[name]
        assert int(n) == len(got) and _num(credit) == pytest.approx(sum(got), abs=0.005)
        assert _num(pct) == pytest.approx(100 * sum(got) / len(got), abs=0.05)

    # RewardBench 2: five domains are those means; Ties and the overall are the summary's (whose
    # arithmetic tests/pipeline/test_listwise_jobs.py checks by hand); the overall the mean of six.
    table = job_summary(report_db, listwise_job)["evaluation"]["rewardbench2"]
    rb2 = {row[0]: row for row in tables["rewardbench2"]["cells"]}
    domains = []
    for name in (*DOMAINS, "Ties"):
        want = next(s["score"] for s in table["sections"] if s["section"] == name)
        if name != "Ties":
            got = [r["correct"] for r in labelled if r["subset"] == name]
            assert want == pytest.approx(sum(got) / len(got))
        domains.append(want)
        assert _num(rb2[name][2]) == pytest.approx(100 * want, abs=0.05), name
    overall = sum(domains) / 6
    assert _num(rb2["Score (mean of domains)"][2]) == pytest.approx(100 * overall, abs=0.05)
    assert f"{100 * overall:.1f}%" in page["text"]  # the KPI at the top
