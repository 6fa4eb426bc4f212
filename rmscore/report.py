"""The job report: one self-contained HTML page (inline CSS and SVG charts, no script, no network).

`render` turns a `ReportData` (`rmscore.report_data`, filled from the job store by `db.report.collect`)
into HTML with Jinja2 autoescaping, since conversations, ids, subset names and metadata are user
input; `draw` makes its SVG charts. Only drawing lives here, so the shared core never imports the
database layer; `db.report.build_report` does both steps. Everything is per model, so a job scored by
several models shows them side by side: tables get a column per model, charts a series each.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from rmscore import report_charts as charts
from rmscore.report_data import ReportData

# Strict: the report has no script, loads nothing, and a browser refuses anything else even if
# escaping ever failed. Styles are inline (the page's <style> and the SVGs' attributes).
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def draw(data: ReportData) -> None:
    """Render the charts of `data` to SVG (in place)."""
    xlabel = "chosen − rejected score" if data.pairwise else "score"
    for i, h in enumerate(data.histograms):
        # All subsets together (or the only histogram) goes full width; so do both listwise charts.
        big = i == 0 or data.listwise
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
    """The page for `data`, its charts drawn first (drawing is part of rendering, not of the queries)."""
    draw(data)
    job = data.job
    end = job.completed_at or job.cancelled_at or job.failed_at
    elapsed = ((end or data.generated_at) - job.started_at).total_seconds() if job.started_at else None
    subsets = _subset_rows(data)
    from importlib.metadata import PackageNotFoundError, version

    try:
        rmscore_version = version("rmscore")
    except PackageNotFoundError:  # running from a checkout without an install
        rmscore_version = "dev"
    page: str = _template().render(
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
    return page


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
