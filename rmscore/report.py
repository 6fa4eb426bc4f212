"""The job report: one self-contained HTML page (inline CSS and SVG charts, no script, no network).

`collect` reads what the page shows from the job store (read-only, bounded work however large
the job: histograms are binned and extremes picked by the database); `render` turns it into HTML
with Jinja2 autoescaping, since conversations, ids, subset names and metadata are user input.
`build_report` does both. Everything is per model, so a job scored by several models (results
carry a `model`) shows them side by side: tables get a column per model, charts a series each.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, Integer, and_, cast, func, select

from db.chunks import chunk_counts
from db.jobs import JobInfo, get_job
from db.models import items, results
from db.results import NOT_SCORED, job_accuracy
from db.session import reading, utcnow
from rmscore import report_charts as charts
from rmscore.evaluation import EVALBIASBENCH_REFERENCE_MODEL, evaluate, tallies_from_accuracy
from rmscore.settings import model_name

HIST_BINS = 50  # at most about this many bins per histogram
MAX_SUBSET_CHARTS = 24  # the largest subsets get a chart each; the rest are in "all subsets"
EXAMPLES = 10  # per example table: most confident right and wrong pairs, highest and lowest lines
MAX_CHARS = 1500  # of one message shown in the report; the rest is cut with a note
MAX_BUCKETS = 60  # throughput chart resolution: at most this many bins
ALL = "all subsets"
NO_SUBSET = "(no subset)"
# Strict: the report has no script, loads nothing, and a browser refuses anything else even if
# escaping ever failed. Styles are inline (the page's <style> and the SVGs' attributes).
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


@dataclass
class Histogram:
    subset: str
    edges: list[float]
    counts: list[list[int]]  # one series per model, in `ReportData.models` order
    n: int = 0
    svg: str = ""


@dataclass
class Example:
    """One item in the report's example tables, with its conversation split for display."""

    line: int
    custom_id: str | None
    subset: str | None
    score: float | None = None  # chat
    chosen_score: float | None = None
    rejected_score: float | None = None
    prompt: list[dict[str, str]] = field(default_factory=list)  # shared turns before the reply
    chosen: list[dict[str, str]] = field(default_factory=list)  # chat: the reply turns
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def margin(self) -> float | None:
        if self.chosen_score is None or self.rejected_score is None:
            return None
        return self.chosen_score - self.rejected_score


@dataclass
class ReportData:
    job: JobInfo
    models: list[str]
    lines: int  # input lines (each scored once per model)
    chunks: dict[str, int]
    errors: list[tuple[str, int]]  # error code -> lines of the job's model, as its results report them
    unscored: int  # lines × models without an outcome: pending while the job runs, then cancelled/not scored
    evaluations: dict[str, dict[str, Any] | None]  # model -> `rmscore.evaluation.evaluate`
    histograms: list[Histogram]
    examples: dict[str, list[Example]]  # chat: "highest", "lowest"; pairwise: "right", "wrong", "lowest"
    throughput: dict[str, Any] | None
    generated_at: datetime

    @property
    def pairwise(self) -> bool:
        return self.job.kind == "pairwise"

    @property
    def unscored_label(self) -> str:
        """What the lines without an outcome are: pending while the job runs; once it ended, what its
        results call them (`db.results.NOT_SCORED`: a cancelled job's are cancelled, not pending)."""
        code = NOT_SCORED.get(self.job.status)
        return "pending" if code is None else code[0].replace("_", " ")

    @property
    def card_model(self) -> bool:
        """Whether the job's model is the one whose model card gives the EvalBiasBench figures."""
        return self.job.model == model_name(EVALBIASBENCH_REFERENCE_MODEL)


# --------------------------------------------------------------------------- reading the job


def _value(kind: str) -> Any:
    """What a histogram counts: the score (chat) or the chosen-minus-rejected margin (pairwise)."""
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
        if job.kind != "pairwise":
            return dict.fromkeys(models)
        return {m: evaluate(tallies_from_accuracy(job_accuracy(conn, job.id, m))) for m in models}


def _nice_step(raw: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `raw`: bin edges people can read."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw * (1 - 1e-9):
            return m * power
    return 10 * power


def _histograms(conn: Connection, job: JobInfo, models: list[str]) -> list[Histogram]:
    value = _value(job.kind)
    scored = and_(results.c.job_id == job.id, results.c.model.in_(models), value.is_not(None))
    lo, hi = conn.execute(select(func.min(value), func.max(value)).where(scored)).one()
    if lo is None:
        return []
    step = _nice_step((hi - lo) / HIST_BINS)
    start = math.floor(lo / step) * step
    nbins = max(1, min(int((hi - start) // step) + 1, 4 * HIST_BINS))
    offset = (value - start) / step
    # PostgreSQL rounds a float cast to integer; SQLite truncates, which is floor here (offset >= 0).
    bin_ = cast(func.floor(offset), Integer) if conn.dialect.name == "postgresql" else cast(offset, Integer)
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


def _split(payload: dict[str, Any] | None, kind: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(shared prompt turns, chosen/reply turns, rejected turns) with long messages cut."""

    def clip(conv: list[dict[str, str]]) -> list[dict[str, str]]:
        out = []
        for m in conv:
            text = m.get("content", "")
            if len(text) > MAX_CHARS:
                text = text[:MAX_CHARS] + f"\n… ({len(text) - MAX_CHARS:,} more characters)"
            out.append({"role": m.get("role", "?"), "content": text})
        return out

    if not payload:
        return [], [], []
    if kind != "pairwise":
        conv = payload.get("messages", [])
        return clip(conv[:-1]), clip(conv[-1:]), []
    chosen, rejected = payload.get("chosen", []), payload.get("rejected", [])
    k = 0
    while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
        k += 1
    return clip(chosen[:k]), clip(chosen[k:]), clip(rejected[k:])


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
            items.c.payload,
        )
        .select_from(results.join(items, and_(items.c.job_id == results.c.job_id, items.c.line == results.c.line)))
        .where(results.c.job_id == job.id, results.c.model == model, value.is_not(None))
        .limit(EXAMPLES)
    )
    lowest = base.order_by(value.asc(), results.c.line)
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
    before = dict(
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


def collect(db: Engine, job_id: str, *, tenant: str | None = None, charts_: bool = True) -> ReportData:
    """Everything the report shows. NotFound (code job_not_found) for an unknown job or another
    tenant's. `charts_=False` skips drawing (the numbers only)."""
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
    counts = {code: int(n) for code, n in stored}
    errors = {code: n for code, n in counts.items() if code is not None}
    # An ended job's lines without a result are reported by its results as errors (`cancelled`,
    # `not_scored`): the table counts them too, so it says what `rmscore results --errors` lists.
    unscored_code = NOT_SCORED.get(job.status)
    missing = int(lines) - sum(counts.values())
    if unscored_code is not None and missing > 0:
        errors[unscored_code[0]] = errors.get(unscored_code[0], 0) + missing
    data = ReportData(
        job=job,
        models=models,
        lines=int(lines),
        chunks=chunk_counts(db, job.id),
        errors=sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])),
        unscored=max(job.total - job.done, 0),
        evaluations=job_evaluations(db, job),
        histograms=histograms,
        examples=examples,
        throughput=throughput,
        generated_at=utcnow(),
    )
    if charts_:
        draw(data)
    return data


def draw(data: ReportData) -> None:
    """Render the charts of `data` to SVG (in place)."""
    xlabel = "chosen − rejected score" if data.pairwise else "score"
    for i, h in enumerate(data.histograms):
        big = i == 0  # all subsets together (or the only histogram) goes full width
        h.svg = charts.histogram_svg(
            h.edges,
            h.counts,
            pairwise=data.pairwise,
            width=9.0 if big else 3.3,
            height=2.2 if big else 1.7,
            xlabel=xlabel if big else None,
        )
    t = data.throughput
    if t is not None:
        # Each model's share of the job's lines (a job scored by several models scores each line once per model).
        t["svg"] = charts.throughput_svg(t["bucket_seconds"], t["series"], [data.lines] * len(t["series"]), t["before"])


# --------------------------------------------------------------------------- HTML


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | int | None, digits: int = 0) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def _when(t: datetime | None) -> str:
    return "—" if t is None else t.replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _seconds(x: float) -> str:
    """A bin width, to three significant digits: 0.0412 s, 1.37 s, 250 s."""
    return f"{x:.3g} s"


def _signed(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def _hue(acc: float | None) -> str:
    """Bar color for an accuracy: red at 0.5 and below (no better than a coin) to green at 1."""
    if acc is None:
        return charts.MUTED
    t = min(max((acc - 0.5) / 0.5, 0.0), 1.0)
    return f"hsl({round(t * 130)}, 62%, 44%)"


@lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rmscore", "data"),
        autoescape=True,  # every value is escaped unless the template marks it safe (only our SVGs)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, num=_num, when=_when, duration=_duration, seconds=_seconds, signed=_signed, hue=_hue)
    env.globals.update(model_color=charts.model_color, RIGHT=charts.RIGHT, WRONG=charts.WRONG)
    return env.get_template("report.html.j2")


def render(data: ReportData) -> str:
    job = data.job
    end = job.completed_at or job.cancelled_at or job.failed_at
    elapsed = ((end or data.generated_at) - job.started_at).total_seconds() if job.started_at else None
    subsets = _subset_rows(data)
    from importlib.metadata import PackageNotFoundError, version

    try:
        rmscore_version = version("rmscore")
    except PackageNotFoundError:  # running from a checkout without an install
        rmscore_version = "dev"
    return _template().render(
        d=data,
        job=job,
        csp=CSP,
        elapsed=elapsed,
        # The throughput section's average, so the page gives one rate (None until a chunk finished).
        rate=data.throughput["average"] if data.throughput else None,
        metadata=json.dumps(job.metadata, ensure_ascii=False, indent=1) if job.metadata else None,
        options=json.dumps(job.options, ensure_ascii=False) if job.options else None,
        subsets=subsets,
        first=data.evaluations.get(job.model),
        version=rmscore_version,
    )


def _subset_rows(data: ReportData) -> list[dict[str, Any]]:
    """Accuracy table rows: one per subset, a cell per model (None where that model has no pairs)."""
    names: dict[str, int] = {}
    for ev in data.evaluations.values():
        for row in (ev or {}).get("subsets", []):
            names[row["subset"]] = max(names.get(row["subset"], 0), row["n"])
    rows = []
    for name in sorted(names):
        cells = []
        for m in data.models:
            ev = data.evaluations.get(m) or {}
            cells.append(next((r for r in ev.get("subsets", []) if r["subset"] == name), None))
        rows.append({"subset": name, "n": names[name], "cells": cells})
    return rows


def build_report(db: Engine, job_id: str, *, tenant: str | None = None) -> str:
    """The report of a job as one HTML document (see the module docstring)."""
    return render(collect(db, job_id, tenant=tenant))
