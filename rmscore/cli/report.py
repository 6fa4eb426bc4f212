"""`rmscore report JOB -o report.html`: a job's report as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="HTML file to write ('-' = stdout).", dir_okay=False)
    ] = Path("report.html"),
) -> None:
    """Write a job's report (tables, charts, examples, throughput) as one HTML file that opens
    offline. Reads the database at RMSCORE_DATABASE_URL; works on running jobs too."""
    from rich.console import Console
    from rich.markup import escape

    from db.migrate import ensure_schema
    from db.session import get_engine
    from rmscore.errors import RmscoreError
    from rmscore.report import build_report

    err = Console(stderr=True)
    try:
        db = get_engine()
        ensure_schema(db)
        html = build_report(db, job_id)
    except RmscoreError as e:
        # Escaped: rich would take "[job_not_found]" for a style tag and print nothing of it.
        err.print(f"[red]error[/red] {escape(f'[{e.code}]: {e.message}')}")
        raise typer.Exit(2 if e.http_status < 500 else 1) from None
    if str(output) == "-":
        typer.echo(html, nl=False)
        return
    output.write_text(html, encoding="utf-8")
    err.print(escape(f"report of job {job_id} written to {output} ({len(html.encode()) / 1024:,.0f} KiB)"))


def register(app: typer.Typer) -> None:
    app.command("report")(report)
