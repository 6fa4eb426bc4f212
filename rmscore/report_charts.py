"""Charts for the job report: matplotlib figures rendered to inline SVG (no network, no JavaScript).

Only numbers reach matplotlib: titles and labels that come from user data (subset and model
names) are written by the HTML template, escaped, because matplotlib would read `$…$` in them as
math and has no business holding untrusted text. Figures are built with the object API (no
pyplot global state) under one lock, since rc settings are process-wide and the API renders
reports from a thread pool.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# One palette for the whole report (the CSS uses the same values).
MODEL_COLORS = ("#4f46e5", "#d97706", "#0d9488", "#db2777", "#0284c7", "#65a30d")
RIGHT = "#16a34a"
WRONG = "#dc2626"
INK = "#1e293b"
MUTED = "#64748b"
GRID = "#e2e8f0"

_lock = threading.Lock()
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: the page's font, small files
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.edgecolor": "#cbd5e1",
    "axes.labelcolor": MUTED,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.major.size": 3,
    "ytick.major.size": 0,
    "legend.frameon": False,
}
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


def model_color(i: int) -> str:
    return MODEL_COLORS[i % len(MODEL_COLORS)]


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, transparent=True)
    # Inline in HTML: drop the XML declaration and DOCTYPE, keep the <svg> element.
    # and the RDF metadata block (namespaces and a creator line nobody reads).
    return _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1), count=1)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def histogram_svg(
    edges: Sequence[float],
    counts: Sequence[Sequence[int]],
    *,
    pairwise: bool,
    width: float = 3.3,
    height: float = 1.7,
    xlabel: str | None = None,
) -> str:
    """A histogram from pre-binned counts (one series per model).

    One pairwise series is drawn as bars, red left of 0 (the rejected reply scored higher) and
    green right of it; several series are drawn as outlines in their model's colors.
    """
    import matplotlib

    with _lock, matplotlib.rc_context(_RC):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        lefts = list(edges[:-1])
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        if len(counts) == 1:
            centers = [a + w / 2 for a, w in zip(lefts, widths, strict=True)]
            colors = [WRONG if c < 0 else RIGHT for c in centers] if pairwise else [model_color(0)] * len(centers)
            ax.bar(lefts, counts[0], width=widths, align="edge", color=colors, linewidth=0, alpha=0.85)
        else:
            for i, series in enumerate(counts):
                ax.stairs(series, edges, color=model_color(i), linewidth=1.4, fill=False)
        if pairwise and edges[0] < 0 < edges[-1]:
            ax.axvline(0, color=INK, linewidth=0.8, linestyle=(0, (3, 2)))
        ax.set_xlim(edges[0], edges[-1])
        ax.margins(y=0.08)
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4, integer=True))
        if xlabel:
            ax.set_xlabel(xlabel)
        return _svg(fig)


def elapsed_unit(span_seconds: float) -> tuple[str, float]:
    """(unit name, seconds per unit) for an axis of elapsed time this long: s, min or h."""
    if span_seconds < 120:
        return "s", 1.0
    if span_seconds < 2 * 3600:
        return "min", 60.0
    return "h", 3600.0


def throughput_svg(
    bucket_seconds: float,
    series: Sequence[Sequence[int]],
    totals: Sequence[int],
    before: Sequence[int] | None = None,
    *,
    width: float = 9.0,
    height: float = 2.4,
) -> str:
    """Lines per second in each bin of elapsed time since the job started (bars, or outlines for several
    models), with the share of `totals` lines done so far on a second axis (`before`: done at the start).

    The x axis is time since the start in s, min or h, never clock time: a run of a few minutes read
    as clock seconds wraps from 59 back to 0.
    """
    import matplotlib

    with _lock, matplotlib.rc_context(_RC):
        fig = _figure(width, height)
        ax = fig.add_subplot()
        nb = len(series[0])
        unit, per = elapsed_unit(nb * bucket_seconds)
        step = bucket_seconds / per
        edges = [i * step for i in range(nb + 1)]
        for i, counts in enumerate(series):
            rates = [c / bucket_seconds for c in counts]
            if len(series) == 1:
                ax.bar(edges[:-1], rates, width=step, align="edge", color=model_color(i), alpha=0.75, linewidth=0)
            else:
                ax.stairs(rates, edges, color=model_color(i), linewidth=1.4)
        ax.set_ylabel("lines / s")
        ax.set_xlabel(f"time since the job started ({unit})")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(8))
        done = ax.twinx()
        for i, counts in enumerate(series):
            total = totals[i] or 1
            run = before[i] if before else 0
            cum = [100 * run / total]
            for c in counts:
                run += c
                cum.append(100 * run / total)
            done.plot(edges, cum, color=INK if len(series) == 1 else model_color(i), linewidth=1.2)
        done.set_ylim(0, 105)
        done.set_ylabel("% of lines done")
        done.grid(False)
        done.spines["right"].set_visible(True)
        ax.set_xlim(0, edges[-1])
        return _svg(fig)
