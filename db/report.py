"""The job report's numbers, read from the job store: `collect` fills a `rmscore.report_data.ReportData`.

Read-only, with bounded work however large the job: histograms are binned and extremes picked by the
database. Everything is per model, so a job scored by several models (results carry a `model`) has a
series or a column per model. The HTML is the core's (`rmscore.report.render`); it lives apart from
these queries so the core never imports the database layer. `build_report` does both, for the API
route and `rmscore report`.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection, Engine, Integer, Row, and_, cast, func, select

from db.chunks import chunk_counts
from db.jobs import JobInfo, get_job
from db.listwise import best_of_n_spread, listwise_evaluation
from db.models import items, results
from db.results import NOT_SCORED, job_accuracy
from db.session import reading, utcnow
from rmscore.evaluation import evaluate, tallies_from_accuracy
from rmscore.formats import ListwiseItem, item_from_payload
from rmscore.report import render
from rmscore.report_data import Example, Histogram, ReportData

HIST_BINS = 50  # at most about this many bins per histogram
MAX_SUBSET_CHARTS = 24  # the largest subsets get a chart each; the rest are in "all subsets"
EXAMPLES = 10  # per example table: most confident right and wrong pairs, highest and lowest lines
MAX_CHARS = 1500  # of one message shown in the report; the rest is cut with a note
MAX_BUCKETS = 60  # throughput chart resolution: at most this many bins
ALL = "all subsets"
NO_SUBSET = "(no subset)"
BEST, WORST = "best response", "worst response"  # the listwise charts


def _value(kind: str) -> Any:
    """What a histogram counts and examples sort by: the score (chat), the chosen-minus-rejected
    margin (pairwise), the best-minus-worst margin (listwise)."""
    if kind == "listwise":
        return results.c.best_score - results.c.worst_score
    return results.c.chosen_score - results.c.rejected_score if kind == "pairwise" else results.c.score


def job_models(conn: Connection, job: JobInfo) -> list[str]:
    """Models with results for the job, the job's own model first."""
    found = conn.execute(select(results.c.model).where(results.c.job_id == job.id).distinct()).scalars().all()
    return [job.model, *sorted(m for m in found if m != job.model)]


def job_evaluations(db: Engine, job: JobInfo) -> dict[str, dict[str, Any] | None]:
    """Per model: accuracy per subset and overall, RewardBench sections and the EvalBiasBench
    table where they apply (`rmscore.evaluation.evaluate`); every value None for chat jobs."""
    with reading(db) as conn:
        models = job_models(conn, job)
        if job.kind == "listwise":
            return {m: listwise_evaluation(conn, job.id, m)[1] for m in models}
        if job.kind != "pairwise":
            return dict.fromkeys(models)
        return {m: evaluate(tallies_from_accuracy(job_accuracy(conn, job.id, m))) for m in models}


def _nice_step(raw: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `raw`: bin edges people can read."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw * (1 - 1e-9):
            return m * power
    return 10 * power


def _binning(conn: Connection, values: list[Any], where: Any) -> tuple[float, float, int] | None:
    """(start, step, bins) of readable bins covering every value of `values` (columns) under `where`."""
    bounds = [conn.execute(select(func.min(v), func.max(v)).where(where, v.is_not(None))).one() for v in values]
    found = [b for b in bounds if b[0] is not None]
    if not found:
        return None
    lo, hi = min(b[0] for b in found), max(b[1] for b in found)
    step = _nice_step((hi - lo) / HIST_BINS)
    start = math.floor(lo / step) * step
    return start, step, max(1, min(int((hi - start) // step) + 1, 4 * HIST_BINS))


def _bin(conn: Connection, value: Any, start: float, step: float) -> Any:
    offset = (value - start) / step
    # PostgreSQL rounds a float cast to integer; SQLite truncates, which is floor here (offset >= 0).
    return cast(func.floor(offset), Integer) if conn.dialect.name == "postgresql" else cast(offset, Integer)


def _listwise_histograms(conn: Connection, job: JobInfo, models: list[str]) -> list[Histogram]:
    """Two charts on the same bins: each line's best response's score, and its worst's, per model."""
    mine = and_(results.c.job_id == job.id, results.c.model.in_(models))
    columns = {BEST: results.c.best_score, WORST: results.c.worst_score}
    binning = _binning(conn, list(columns.values()), mine)
    if binning is None:
        return []
    start, step, nbins = binning
    index = {m: i for i, m in enumerate(models)}
    out = []
    for name, value in columns.items():
        h = Histogram(name, [start + i * step for i in range(nbins + 1)], [[0] * nbins for _ in models])
        b_ = _bin(conn, value, start, step)
        for model, b, n in conn.execute(
            select(results.c.model, b_, func.count()).where(mine, value.is_not(None)).group_by(results.c.model, b_)
        ).all():
            h.counts[index[model]][min(max(int(b), 0), nbins - 1)] += int(n)
            h.n += int(n) if index[model] == 0 else 0
        out.append(h)
    return out


def _histograms(conn: Connection, job: JobInfo, models: list[str]) -> list[Histogram]:
    if job.kind == "listwise":
        return _listwise_histograms(conn, job, models)
    value = _value(job.kind)
    scored = and_(results.c.job_id == job.id, results.c.model.in_(models), value.is_not(None))
    binning = _binning(conn, [value], scored)
    if binning is None:
        return []
    start, step, nbins = binning
    bin_ = _bin(conn, value, start, step)
    rows = conn.execute(
        select(results.c.model, results.c.subset, bin_.label("bin"), func.count())
        .where(scored)
        .group_by(results.c.model, results.c.subset, bin_)
    ).all()
    edges = [start + i * step for i in range(nbins + 1)]
    index = {m: i for i, m in enumerate(models)}
    by_subset: dict[str, Histogram] = {}
    total = Histogram(ALL, edges, [[0] * nbins for _ in models])
    for model, subset, b, n in rows:
        name = subset if subset is not None else NO_SUBSET
        h = by_subset.setdefault(name, Histogram(name, edges, [[0] * nbins for _ in models]))
        b = min(max(int(b), 0), nbins - 1)
        for target in (h, total):
            target.counts[index[model]][b] += int(n)
            if index[model] == 0:
                target.n += int(n)
    if len(by_subset) == 1:
        (only,) = by_subset.values()
        return [total if only.subset == NO_SUBSET else only]
    shown = sorted(by_subset.values(), key=lambda h: (-h.n, h.subset))[:MAX_SUBSET_CHARTS]
    return [total, *sorted(shown, key=lambda h: h.subset)]


def _clip(conv: list[dict[str, str]]) -> list[dict[str, str]]:
    """The turns with long messages cut (a note says how much)."""
    out = []
    for m in conv:
        text = m.get("content", "")
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS] + f"\n… ({len(text) - MAX_CHARS:,} more characters)"
        out.append({"role": m.get("role", "?"), "content": text})
    return out


def _split(payload: dict[str, Any] | None, kind: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(shared prompt turns, chosen/reply turns, rejected turns) with long messages cut."""
    if not payload:
        return [], [], []
    if kind != "pairwise":
        conv = payload.get("messages", [])
        return _clip(conv[:-1]), _clip(conv[-1:]), []
    chosen, rejected = payload.get("chosen", []), payload.get("rejected", [])
    k = 0
    while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
        k += 1
    return _clip(chosen[:k]), _clip(chosen[k:]), _clip(rejected[k:])


def _examples(conn: Connection, job: JobInfo, model: str) -> dict[str, list[Example]]:
    value = _value(job.kind)
    base = (
        select(
            results.c.line,
            results.c.custom_id,
            results.c.subset,
            results.c.score,
            results.c.chosen_score,
            results.c.rejected_score,
            results.c.best,
            results.c.worst,
            results.c.best_score,
            results.c.worst_score,
            items.c.payload,
        )
        .select_from(results.join(items, and_(items.c.job_id == results.c.job_id, items.c.line == results.c.line)))
        .where(results.c.job_id == job.id, results.c.model == model, value.is_not(None))
        .limit(EXAMPLES)
    )
    lowest = base.order_by(value.asc(), results.c.line)
    if job.kind == "listwise":
        return {
            "widest": [_listwise_example(r) for r in conn.execute(base.order_by(value.desc(), results.c.line))],
            "closest": [_listwise_example(r) for r in conn.execute(lowest)],
        }
    if job.kind == "pairwise":
        queries = {
            # Right pairs only (chosen above rejected), the widest margin first: with fewer right pairs
            # than EXAMPLES, the table is shorter rather than padded with wrong ones.
            "right": base.where(results.c.correct.is_(True)).order_by(value.desc(), results.c.line),
            # Wrong (chosen not above rejected, ties included), the rejected reply ahead by the most first.
            "wrong": base.where(results.c.correct.is_(False)).order_by(value.asc(), results.c.line),
            "lowest": lowest,
        }
    else:
        queries = {"highest": base.order_by(value.desc(), results.c.line), "lowest": lowest}
    out: dict[str, list[Example]] = {}
    for name, q in queries.items():
        rows = []
        for r in conn.execute(q).all():
            prompt, chosen, rejected = _split(r.payload, job.kind)
            rows.append(
                Example(
                    r.line, r.custom_id, r.subset, r.score, r.chosen_score, r.rejected_score, prompt, chosen, rejected
                )
            )
        out[name] = rows
    return out


def _listwise_example(r: Row[*tuple[Any, ...]]) -> Example:
    """A listwise line shown as its prompt, its best response (chosen side) and its worst (rejected side)."""
    item = item_from_payload("listwise", r.line, r.custom_id, r.subset, r.payload)
    assert isinstance(item, ListwiseItem)
    prompt, best, worst = _clip(item.prompt_turns()), _clip(item.reply_turns(r.best)), _clip(item.reply_turns(r.worst))
    return Example(
        r.line, r.custom_id, r.subset, None, r.best_score, r.worst_score, prompt, best, worst, r.best, r.worst
    )


_BUCKETS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MIN_SPAN_S = 1e-3  # results all stamped at the start instant: treat the run as 1 ms long


def throughput_bins(span: float) -> tuple[int, float]:
    """(number of bins, bin width in seconds) tiling [0, span] exactly.

    The count comes from a readable width (the first of `_BUCKETS_S` giving at most MAX_BUCKETS bins),
    then the width is stretched so the bins end at the last result: every bin is equally long, the
    average rate over the run is the mean of the bins' rates, and the busiest bin is never below it.
    """
    span = max(span, MIN_SPAN_S)
    step = next((b for b in _BUCKETS_S if span / b <= MAX_BUCKETS), _BUCKETS_S[-1])
    nb = max(1, math.ceil(span / step - 1e-9))
    return nb, span / nb


def _throughput(conn: Connection, job: JobInfo, models: list[str]) -> dict[str, Any] | None:
    """Lines finished per bin of elapsed time since the job started, per model, from results' scored_at.

    Lines that failed to parse were written at submission, before the start: they are not work
    done by a worker and are left out of the bins, the average and the peak (they are `before`).
    """
    if job.started_at is None:
        return None
    rows = conn.execute(
        select(results.c.model, results.c.scored_at, func.count())
        .where(results.c.job_id == job.id, results.c.model.in_(models), results.c.scored_at >= job.started_at)
        .group_by(results.c.model, results.c.scored_at)
    ).all()
    if not rows:
        return None
    first = job.started_at
    span = max((max(r.scored_at for r in rows) - first).total_seconds(), MIN_SPAN_S)
    nb, width = throughput_bins(span)
    index = {m: i for i, m in enumerate(models)}
    series = [[0] * nb for _ in models]
    for model, at, n in rows:
        series[index[model]][min(int((at - first).total_seconds() / width), nb - 1)] += int(n)
    combined = [sum(col) for col in zip(*series, strict=True)]
    # Lines that ended before the start (bad input) are already done when the chart begins.
    before: dict[str, int] = dict(
        conn.execute(
            select(results.c.model, func.count())
            .where(results.c.job_id == job.id, results.c.model.in_(models), results.c.scored_at < job.started_at)
            .group_by(results.c.model)
        ).all()
    )
    return {
        "before": [int(before.get(m, 0)) for m in models],
        "bucket_seconds": width,
        "series": series,
        "done": [sum(s) for s in series],
        "lines": sum(combined),
        "span_seconds": span,
        # All models together, over the same bins: average = mean bin rate <= the busiest bin's rate.
        "average": sum(combined) / span,
        "peak": max(combined) / width,
    }


def collect(db: Engine, job_id: str, *, tenant: str | None = None) -> ReportData:
    """Everything the report shows, numbers only (`rmscore.report.render` draws the charts).
    NotFound (code job_not_found) for an unknown job or another tenant's."""
    job = get_job(db, job_id, tenant=tenant)
    with reading(db) as conn:
        models = job_models(conn, job)
        lines = conn.execute(select(func.count()).select_from(items).where(items.c.job_id == job.id)).scalar_one()
        stored = conn.execute(
            select(results.c.error_code, func.count())
            .where(results.c.job_id == job.id, results.c.model == job.model)
            .group_by(results.c.error_code)
        ).all()
        histograms = _histograms(conn, job, models)
        examples = _examples(conn, job, job.model)
        throughput = _throughput(conn, job, models)
        spread = {m: best_of_n_spread(conn, job.id, m) for m in models} if job.kind == "listwise" else {}
    counts = {code: int(n) for code, n in stored}
    errors = {code: n for code, n in counts.items() if code is not None}
    # An ended job's lines without a result are reported by its results as errors (`cancelled`,
    # `not_scored`): the table counts them too, so it says what `rmscore results --errors` lists.
    unscored_code = NOT_SCORED.get(job.status)
    missing = int(lines) - sum(counts.values())
    if unscored_code is not None and missing > 0:
        errors[unscored_code[0]] = errors.get(unscored_code[0], 0) + missing
    return ReportData(
        job=job,
        models=models,
        lines=int(lines),
        chunks=chunk_counts(db, job.id),
        errors=sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])),
        unscored=max(job.total - job.done, 0),
        unscored_label="pending" if unscored_code is None else unscored_code[0].replace("_", " "),
        evaluations=job_evaluations(db, job),
        histograms=histograms,
        examples=examples,
        throughput=throughput,
        generated_at=utcnow(),
        best_of_n=spread,
    )


def build_report(db: Engine, job_id: str, *, tenant: str | None = None) -> str:
    """The report of a job as one self-contained HTML document: these numbers, drawn by the core."""
    return render(collect(db, job_id, tenant=tenant))
