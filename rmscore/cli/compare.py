"""`rmscore compare JOB`: two models of a job side by side (through the API when RMSCORE_API_URL is set)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rmscore.cli.helptext import comma_list

err = Console(stderr=True)


def _text(value: object) -> str:
    """A cell for an optional field: a dash when absent (not Python's `None`), markup shown as text."""
    return "—" if value is None else escape(str(value))


def print_comparison(c: dict[str, Any]) -> None:
    from rich.table import Table

    a, b = c["models"]

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    t = Table(title=f"job {c['job_id']}: {escape(a)} vs {escape(b)}")
    unit = "lines" if c.get("kind") == "listwise" else "pairs"
    t.add_column("subset", justify="left")
    for name in (unit, a, b, "agree"):
        t.add_column(escape(name), justify="right")
    for s in c["subsets"]:
        t.add_row(escape(s["subset"]), f"{s['n']:,}", pct(s["accuracy"][a]), pct(s["accuracy"][b]), pct(s["agreement"]))
    # A job without subsets has one row already, "all" (db.compare): a total under it would repeat it.
    if len(c["subsets"]) != 1:
        t.add_row(
            "[b]overall[/b]",
            f"{c['n']:,}",
            pct(c["accuracy"][a]),
            pct(c["accuracy"][b]),
            f"[b]{pct(c['agreement'])}[/b]",
        )
    err.print(t)
    listwise = c.get("kind") == "listwise"
    what = "lines whose best response they disagree on" if listwise else "pairs they disagree on"
    d = Table(title=f"{what}: {c['disagreements_total']:,} (first {len(c['disagreements'])})")
    column = "best" if listwise else "margin"
    for name in ("line", "custom_id", "subset", f"{a} {column}", f"{b} {column}"):
        d.add_column(escape(name))
    for row in c["disagreements"]:
        if listwise:
            cells = [f"#{row['scores'][m]['best']} ({row['scores'][m]['best_score']:.3f})" for m in (a, b)]
        else:
            cells = [f"{row['scores'][m]['chosen_score'] - row['scores'][m]['rejected_score']:+.3f}" for m in (a, b)]
        d.add_row(str(row["line"]), _text(row["custom_id"]), _text(row["subset"]), *cells)
    err.print(d)


def compare(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A pairwise or listwise job scored by several models.")],
    models: Annotated[
        str | None,
        typer.Option(metavar="A,B", help="Two of the job's models, comma-separated [default: its first two]."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Disagreements to list.", min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout.")] = False,
) -> None:
    """Accuracy of two models per subset, how often they agree, and the pairs where they do not."""
    names = comma_list(models)
    from rmscore.cli.backends import open_backend

    with open_backend() as backend:
        c = backend.compare(job_id, names, limit)
    if as_json:
        typer.echo(json.dumps(c, ensure_ascii=False))
    else:
        print_comparison(c)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
