"""The HTML report of real finished jobs: its numbers agree with the stored results, charts are
drawn, and untrusted text is shown as text."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from report_jobs import XSS, Page, pct, tallies_from_results

from db.jobs import create_job, get_job
from db.report import build_report, collect
from db.results import iter_results
from rmscore.errors import NotFound
from rmscore.evaluation import EVALBIASBENCH_ROWS, evaluate
from rmscore.formats import parse_object
from rmscore.report import CSP


@pytest.fixture(scope="module")
def page(pairwise_report: Path) -> Page:
    return Page(pairwise_report.read_text(encoding="utf-8"))


def test_pairwise_report_tables_match_the_results(report_db: Any, pairwise_job: str, page: Page) -> None:
    ev = evaluate(tallies_from_results(report_db, pairwise_job))
    assert ev is not None and ev["rewardbench"] and ev["evalbiasbench"]

    accuracy = page.tables["accuracy"]
    assert accuracy[0] == ["subset", "pairs", "right", "accuracy"]
    body = {row[0]: row[1:] for row in accuracy[1:]}
    for row in ev["subsets"]:
        assert body[row["subset"]] == [str(row["n"]), str(row["correct"]), pct(row["accuracy"])]
    assert body["overall"] == [str(ev["overall"]["n"]), str(ev["overall"]["correct"]), pct(ev["overall"]["accuracy"])]

    sections = {row[0]: row[1] for row in page.tables["rewardbench"][1:]}
    for s in ev["rewardbench"]["sections"]:
        assert sections[s["section"]] == pct(s["score"])
    assert sections["Score (mean of sections)"] == pct(ev["rewardbench"]["score"])

    bias_rows = page.tables["evalbiasbench"][1:]
    # The card's row order itself is pinned in tests/evaluation/test_sections.py; here, the page keeps it.
    assert [r[0].split(" (")[0] for r in bias_rows] == [*EVALBIASBENCH_ROWS, "All biases"]
    assert [r[3] for r in bias_rows[:6]] == ["82.4%", "92.9%", "46.2%", "100.0%", "83.3%", "58.3%"]
    for r, want in zip(bias_rows, ev["evalbiasbench"]["rows"], strict=False):
        assert r[2] == pct(want["accuracy"])

    assert page.tables["errors"][1:] == [["unknown_format", "1"]]


def test_report_draws_charts_and_runs_nothing(page: Page, pairwise_report: Path) -> None:
    assert page.tags.get("svg", 0) >= 2  # margins (all subsets, then one per subset) and throughput
    assert page.svg_paths > 10
    # No script at all, nothing to load: a strict CSP backs that up in any browser.
    assert "script" not in page.tags and "iframe" not in page.tags and "img" not in page.tags
    assert page.meta_csp == CSP and "default-src 'none'" in CSP
    source = pairwise_report.read_text(encoding="utf-8")
    assert "<script" not in source.lower()
    assert "http://" not in source.replace("http://www.w3.org/", "") and "https://" not in source


def test_untrusted_text_is_escaped(report_db: Any, pairwise_job: str, page: Page, pairwise_report: Path) -> None:
    source = pairwise_report.read_text(encoding="utf-8")
    text = "".join(page.text)
    # The job's metadata, the hostile subset's row and its chart caption, shown as the text they are.
    assert text.count(XSS) >= 3
    assert html.escape(XSS, quote=False) in source
    assert f"hostile {XSS}" in [row[0] for row in page.tables["accuracy"]]
    # Its conversation is shown when the pair is among the examples (the chat report always shows it).
    shown = [e for rows in collect(report_db, pairwise_job).examples.values() for e in rows]
    if any(e.subset == f"hostile {XSS}" for e in shown):
        assert f"I will not run {XSS}" in text and f"xss {XSS}" in text
        assert "<img src=x" not in source and "&lt;img src=x onerror=alert(2)&gt;" in source


def test_histograms_and_examples_agree_with_the_results(report_db: Any, pairwise_job: str) -> None:
    data = collect(report_db, pairwise_job)
    records = [r for r in iter_results(report_db, pairwise_job) if "correct" in r]
    margins = {r["line"]: r["chosen_score"] - r["rejected_score"] for r in records}

    total, *per_subset = data.histograms
    assert total.subset == "all subsets" and total.n == len(records)
    edges = total.edges
    assert edges[0] <= min(margins.values()) and max(margins.values()) < edges[-1]
    want = [0] * (len(edges) - 1)
    for m in margins.values():
        want[max(i for i, e in enumerate(edges[:-1]) if e <= m)] += 1
    assert total.counts == [want]
    assert sum(h.n for h in per_subset) == len(records)

    right = sorted((r["line"] for r in records if r["correct"]), key=lambda line: (-margins[line], line))
    assert [e.line for e in data.examples["right"]] == right[:10]
    assert all(e.margin is not None and e.margin > 0 for e in data.examples["right"])
    wrong = sorted((r["line"] for r in records if not r["correct"]), key=lambda line: (margins[line], line))
    assert [e.line for e in data.examples["wrong"]] == wrong[:10]
    assert all(e.margin is not None and e.margin <= 0 for e in data.examples["wrong"])
    # Pairs show their shared prompt once, then each reply.
    first = data.examples["right"][0]
    assert first.prompt and first.prompt[-1]["role"] == "user"
    assert first.chosen[-1]["role"] == first.rejected[-1]["role"] == "assistant"

    t = data.throughput
    assert t is not None and sum(t["series"][0]) + t["before"][0] == get_job(report_db, pairwise_job).done


def test_chat_report(report_db: Any, chat_job: str) -> None:
    source = build_report(report_db, chat_job)
    page = Page(source)
    assert "accuracy" not in page.tables and "rewardbench" not in page.tables
    assert page.tags.get("svg", 0) >= 2 and page.svg_paths > 5
    scores = {r["line"]: r["score"] for r in iter_results(report_db, chat_job)}
    data = collect(report_db, chat_job)
    assert [e.line for e in data.examples["highest"]] == sorted(scores, key=lambda k: (-scores[k], k))[:10]
    assert [e.line for e in data.examples["lowest"]] == sorted(scores, key=lambda k: (scores[k], k))[:10]
    (only,) = data.histograms
    assert only.n == len(scores) == sum(only.counts[0])
    # The hostile line (custom_id, user turn, reply) is among the examples, as text.
    assert "".join(page.text).count(XSS) >= 3 and "<script" not in source


def test_a_job_with_nothing_scored_yet(report_db: Any, tiny_engine: Any) -> None:
    created = create_job(
        report_db,
        [parse_object({"prompt": "p", "chosen": "a", "rejected": "b", "subset": "s"}, 1)],
        model=tiny_engine.name,
    )
    page = Page(build_report(report_db, created.job.id))
    assert "svg" not in page.tags
    text = " ".join("".join(page.text).split())
    assert "No pair has been scored yet." in text and "No chunk has finished yet." in text


def test_another_tenants_job_is_not_found(report_db: Any, pairwise_job: str) -> None:
    with pytest.raises(NotFound) as e:
        build_report(report_db, pairwise_job, tenant="someone-else")
    assert e.value.code == "job_not_found"
