"""`rmscore report JOB -o report.html`: a job's report as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Re-exported: the status tables moved to display (the module that prints them), which no longer
# imports this one; the report command imports the job commands, and they import display.
from rmscore.cli.display import evaluation_tables as evaluation_tables


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

    from rmscore.cli.backends import open_backend

    err = Console(stderr=True)
    with open_backend() as backend:
        html = backend.report(job_id)
    if str(output) == "-":
        typer.echo(html, nl=False)
        return
    output.write_text(html, encoding="utf-8")
    err.print(escape(f"report of job {job_id} written to {output} ({len(html.encode()) / 1024:,.0f} KiB)"))


def register(app: typer.Typer) -> None:
    app.command("report")(report)
