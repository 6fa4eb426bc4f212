"""`rmscore report JOB -o report.html`: a job's report as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def report(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", metavar="FILE", help="HTML file to write ('-' = stdout).", dir_okay=False)
    ] = Path("report.html"),
) -> None:
    """Write a job's report (tables, charts, examples, throughput) as one HTML file that opens
    offline. Asks the API when RMSCORE_API_URL is set, else reads the database
    (RMSCORE_DATABASE_URL); works on running jobs too."""
    from rich.console import Console
    from rich.markup import escape

    from rmscore.cli.jobs import _db, _remote, _user_errors

    err = Console(stderr=True)
    if (remote := _remote()) is not None:
        with remote._client() as client:
            html = client.report(job_id)
    else:
        with _user_errors():
            from rmscore.report import build_report

            html = build_report(_db(), job_id)
    if str(output) == "-":
        typer.echo(html, nl=False)
        return
    output.write_text(html, encoding="utf-8")
    err.print(escape(f"report of job {job_id} written to {output} ({len(html.encode()) / 1024:,.0f} KiB)"))


def evaluation_tables(evaluation: dict[str, Any] | None) -> list[Any]:
    """Rich tables for `rmscore status`: RewardBench sections and the EvalBiasBench table, those that
    apply to `evaluation` (`rmscore.evaluation.evaluate` / `evaluate_accuracy` output)."""
    from rich.markup import escape
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    tables: list[Any] = []
    rb = (evaluation or {}).get("rewardbench")
    if rb:
        t = Table(title="RewardBench sections (per-prompt weighted, as RewardBench)")
        t.add_column("section")
        t.add_column("score", justify="right")
        t.add_column("subsets", justify="right")
        for s in rb["sections"]:
            t.add_row(s["section"], pct(s["score"]), f"{len(s['subsets'])} of {len(s['subsets']) + len(s['missing'])}")
        t.add_row("[b]score[/b]", f"[b]{pct(rb['score'])}[/b]", "mean of the four")
        tables.append(t)
    eb = (evaluation or {}).get("evalbiasbench")
    if eb:
        t = Table(title=f"EvalBiasBench (model card: {eb['reference_model']})")
        for name, justify in (("bias", "left"), ("pairs", "right"), ("accuracy", "right"), ("card", "right")):
            t.add_column(name, justify=justify)  # type: ignore[arg-type]
        t.add_column("Δ", justify="right")
        for r in eb["rows"]:
            delta = "—" if r["accuracy"] is None else f"{100 * r['accuracy'] - r['reference']:+.1f}"
            t.add_row(escape(r["bias"]), f"{r['n']:,}", pct(r["accuracy"]), f"{r['reference']:.1f}%", delta)
        t.add_row("[b]all biases[/b]", f"{eb['overall']['n']:,}", pct(eb["overall"]["accuracy"]), "", "")
        tables.append(t)
    return tables


def register(app: typer.Typer) -> None:
    app.command("report")(report)
