"""`rmscore jobs`: your jobs, newest first, with status and counts.

From the API when RMSCORE_API_URL is set (the key's tenant's jobs), else from the database
(every tenant's: whoever can open the database sees all of it). A table on stdout, or `--json`
lines; where the list came from goes to stderr.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rmscore.vocabulary import JobStatus

err = Console(stderr=True)
# Not `cancelling`: a passing state on the way to cancelled, not one to list jobs by.
STATUSES = tuple(s for s in JobStatus if s is not JobStatus.cancelling)


def jobs(
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only jobs in this state: " + ", ".join(STATUSES) + ".")
    ] = None,
    limit: Annotated[int, typer.Option("-n", "--limit", metavar="N", help="At most N jobs.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job on stdout.")] = False,
) -> None:
    """List jobs, newest first: id, status, kind, model, lines scored and failed, when created."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"must be one of {', '.join(STATUSES)}", param_hint="--status")
    from rmscore.cli.backends import open_backend

    with open_backend() as backend:
        found = backend.jobs(status, limit)
        source = backend.where
    if as_json:
        for j in found:
            typer.echo(json.dumps(j, ensure_ascii=False))
    elif found:
        _print_table(found)
    more = " (the newest; --limit for more)" if len(found) == limit else ""
    err.print(
        escape(f"{len(found)} job{'s' if len(found) != 1 else ''}{more} from {source}"), highlight=False, soft_wrap=True
    )


def _print_table(found: list[dict[str, Any]]) -> None:
    """Plain aligned columns, never truncated: ids get copied from here into the next command."""
    head = ("JOB", "STATUS", "KIND", "MODEL", "LINES", "SCORED", "FAILED", "CREATED (UTC)")
    right = {4, 5, 6}
    rows = [head]
    for j in found:
        c = j["request_counts"]
        created = str(j.get("created_at") or "")[:19].replace("T", " ")
        rows.append(
            (j["id"], j["status"], j["kind"], j["model"], f"{c['total']:,}", f"{c['completed']:,}", f"{c['failed']:,}",
             created)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        cells = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))]
        typer.echo("  ".join(cells).rstrip())


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs)
