"""Each section of the report says what the job's stored results say.

Every number is recomputed here from the results (the records `rmscore results` gives, or the rows'
`scored_at` for throughput) and compared with the text of the rendered page, for a finished job and
for one cancelled after its first chunk.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from typing import Any

import pytest
from report_jobs import SHARED, Elements, Page, make_job, pairwise_lines, pct, tallies_from_results
from sqlalchemy import select

from db.jobs import get_job
from db.models import results
from db.report import MAX_BUCKETS, build_report, collect
from db.results import iter_results
from db.session import reading
from rmscore.evaluation import EVALBIASBENCH_REFERENCE, EVALBIASBENCH_REFERENCE_MODEL, evaluate
from rmscore.report import render

CARD = EVALBIASBENCH_REFERENCE_MODEL


@pytest.fixture(scope="module")
def pages(report_db: Any, pairwise_job: str, cancelled_job: str) -> dict[str, tuple[str, str]]:
    """job name -> (job id, HTML)."""
    return {
        name: (job, build_report(report_db, job))
        for name, job in (("done", pairwise_job), ("cancelled", cancelled_job))
    }


def margins(db: Any, job_id: str) -> dict[int, tuple[float, bool]]:
    """line -> (chosen − rejected, correct), from the job's result records."""
    return {
        r["line"]: (r["chosen_score"] - r["rejected_score"], r["correct"])
        for r in iter_results(db, job_id)
        if "correct" in r
    }


@pytest.mark.parametrize("job", ["done", "cancelled"])
def test_confident_right_and_wrong_pairs(report_db: Any, pages: dict[str, tuple[str, str]], job: str) -> None:
    job_id, source = pages[job]
    pairs = margins(report_db, job_id)
    right = sorted((ln for ln, (_, ok) in pairs.items() if ok), key=lambda ln: (-pairs[ln][0], ln))[:10]
    wrong = sorted((ln for ln, (_, ok) in pairs.items() if not ok), key=lambda ln: (pairs[ln][0], ln))[:10]
    assert right and wrong, "the tiny model gets some pairs right and some wrong"
    shown = Elements(source).examples
    for section, want, sign in (
        ("most-confident-right-pairs", right, "right"),
        ("most-confidently-wrong-pairs", wrong, "wrong"),
    ):
        cards = shown.get(section, [])
        assert [c["line"] for c in cards] == want, section
        for c in cards:
            margin = pairs[c["line"]][0]
            assert c["score"] == f"margin {margin:+.3f}" and c["class"] == sign
            assert (margin > 0) == (sign == "right")
    if job == "cancelled":
        # Fewer right pairs than the table holds: it is shorter, never padded with wrong ones.
        assert len(right) < 10 and len(shown["most-confident-right-pairs"]) == len(right)


def stored_times(db: Any, job_id: str) -> list[Any]:
    with reading(db) as conn:
        return list(conn.execute(select(results.c.scored_at).where(results.c.job_id == job_id)).scalars())


def number(text: str, label: str, unit: str) -> float:
    found = re.search(rf"{label} ([0-9,.]+) {re.escape(unit)}", text)
    assert found, f"no '{label} … {unit}' in {text!r}"
    return float(found.group(1).replace(",", ""))


@pytest.mark.parametrize("job", ["done", "cancelled"])
def test_throughput_average_and_peak(report_db: Any, pages: dict[str, tuple[str, str]], job: str) -> None:
    job_id, source = pages[job]
    info = get_job(report_db, job_id)
    start = info.started_at
    assert start is not None
    # Scored by workers: results stamped after the start (bad lines are written at submission).
    elapsed = sorted((t - start).total_seconds() for t in stored_times(report_db, job_id) if t >= start)
    n, span = len(elapsed), max(elapsed[-1], 1e-3)
    width = collect(report_db, job_id).throughput["bucket_seconds"]  # type: ignore[index]
    bins = round(span / width)
    assert math.isclose(bins * width, span, rel_tol=1e-9) and 1 <= bins <= MAX_BUCKETS, (span, width)
    counts = Counter(min(int(e / width), bins - 1) for e in elapsed)
    average, peak = n / span, max(counts.values()) / width
    assert peak >= average

    page = Elements(source)
    stats = page.of("throughput-stats")
    assert number(stats, "average", "lines/s") == round(average, 1)
    assert number(stats, "peak", "lines/s") == round(peak, 1)
    assert number(stats, "lines", "span") == n
    assert f"bin {width:.3g} s" in stats and f"bins of {width:.3g} s" in page.of("throughput")
    assert f"{average:,.1f} lines / s (average while scoring)" in page.of("summary"), "one rate on the page"

    # The x axis is time since the start, in seconds here (span < 2 min): labels rise from 0 to the span.
    assert "time since the job started (s)" in page.of("throughput-chart")
    ticks = [float(x.replace("−", "-")) for x in page.xticks["throughput-chart"]]
    assert ticks[0] == 0 and all(a < b for a, b in zip(ticks, ticks[1:], strict=False)) and ticks[-1] <= span


def test_a_cancelled_job_counts_cancelled_lines_not_pending(
    report_db: Any, cancelled_job: str, pages: dict[str, tuple[str, str]]
) -> None:
    _, source = pages["cancelled"]
    records = list(iter_results(report_db, cancelled_job))
    codes = Counter(r["error"]["code"] for r in records if "error" in r)
    cancelled = codes["cancelled"]
    scored = sum("error" not in r for r in records)
    assert cancelled == 32 and scored == 8  # 40 lines, the first chunk of 8 scored, then cancelled

    page = Elements(source)
    progress = page.of("progress")
    assert page.of("unscored") == f"cancelled {cancelled:,}"
    assert "pending" not in progress and f"scored {scored:,}" in progress
    assert page.of("unscored-kpi") == f"{cancelled:,} cancelled"
    # A finished job has no line without an outcome, so neither "pending" nor "cancelled" is shown.
    done_id, done_source = pages["done"]
    assert not {"cancelled", "not_scored"} & {
        r["error"]["code"] for r in iter_results(report_db, done_id) if "error" in r
    }
    assert "unscored" not in Elements(done_source).text and "pending" not in Elements(done_source).of("progress")
    # The failed-lines table lists what the results list as errors, the cancelled lines included.
    table = Page(source).tables["errors"][1:]
    assert table == [[code, f"{n:,}"] for code, n in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))]


def test_a_running_job_counts_pending_lines(report_db: Any, tiny_engine: Any) -> None:
    job_id = make_job(report_db, tiny_engine, pairwise_lines(SHARED)[:12], kind="pairwise", chunk_size=8, chunks=1)
    info = get_job(report_db, job_id)
    assert info.status == "running"
    unscored = sum(1 for _ in iter_results(report_db, job_id, include_unscored=False))
    page = Elements(build_report(report_db, job_id))
    assert page.of("unscored") == f"pending {12 - unscored:,}" and 12 - unscored == 4


def test_evalbiasbench_says_whose_figures_are_whose(report_db: Any, pairwise_job: str, page_done: Page) -> None:
    ev = evaluate(tallies_from_results(report_db, pairwise_job))
    assert ev is not None and ev["evalbiasbench"]
    model = get_job(report_db, pairwise_job).model
    header, *rows = page_done.tables["evalbiasbench"]
    assert header == ["bias", "pairs", model, f"model card ({CARD})", f"Δ {model} − card"]
    for row, want in zip(rows, ev["evalbiasbench"]["rows"], strict=False):
        ref = EVALBIASBENCH_REFERENCE[want["bias"]]
        assert row[1:] == [
            str(want["n"]),
            pct(want["accuracy"]),
            f"{ref:.1f}%",
            f"{100 * want['accuracy'] - ref:+.1f}",
        ], row
    assert rows[-1][:3] == [
        "All biases",
        str(ev["evalbiasbench"]["overall"]["n"]),
        pct(ev["evalbiasbench"]["overall"]["accuracy"]),
    ]
    # The tiny test model is not the card's model, and the page says so.
    note = Elements(page_done.source).of("evalbiasbench-other-model")
    assert f"scored with {model}, not {CARD}" in note


def test_the_card_model_gets_no_other_model_warning(report_db: Any, pairwise_job: str) -> None:
    data = collect(report_db, pairwise_job)
    card_job = dataclasses.replace(data, job=dataclasses.replace(data.job, model="llama-3-offsetbias-rm-8b"))
    assert "evalbiasbench-other-model" not in Elements(render(card_job)).text
    assert "evalbiasbench-other-model" in Elements(render(data)).text


@pytest.fixture(scope="module")
def page_done(pages: dict[str, tuple[str, str]]) -> Page:
    return Page(pages["done"][1])
