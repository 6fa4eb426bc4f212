"""`rmscore submit/status/cancel/results` against the API, used when `RMSCORE_API_URL` is set.

Plain functions taking the same arguments as the local commands in `rmscore.cli.jobs`, which
hand over to them. Machine output on stdout (a job id, JSON, result lines), progress on stderr.
This module defines no commands (no `register`).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


@contextmanager
def _client() -> Iterator[Any]:
    """The API client, with known errors (and an unreachable server) ending the command cleanly."""
    import httpx

    from rmscore.client import Client
    from rmscore.errors import RmscoreError

    try:
        with Client() as c:
            yield c
    except RmscoreError as e:
        err.print(f"[red]error[/red] {escape(f'[{e.code}]: {e.message}')}")
        raise typer.Exit(2 if e.http_status < 500 else 1) from None
    except httpx.HTTPError as e:
        from rmscore.settings import get_settings

        err.print(f"[red]error[/red]: cannot reach the API at {get_settings().api_url}: {e}")
        raise typer.Exit(1) from None


def submit(
    input: Path,
    kind: str = "auto",
    model: str | None = None,
    chunk_size: int | None = None,
    overflow: str | None = None,
    metadata: str | None = None,
    idempotency_key: str | None = None,
    wait: bool = False,
    *,
    cache: bool = True,
    models: str | None = None,
) -> None:
    """Upload INPUT as a job (with a progress bar) and print its id; `wait` follows it to the end."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as e:
            raise typer.BadParameter(f"not JSON: {e}", param_hint="--metadata") from None
        if not isinstance(meta, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    if chunk_size is not None:
        err.print("[yellow]--chunk-size is set by the server (RMSCORE_CHUNK_SIZE); ignored[/yellow]")
    # Always one key: a retry after a dropped connection must find this job, not make a second.
    key = idempotency_key or uuid.uuid4().hex
    with _client() as c:
        progress = Progress(
            TextColumn(f"uploading {input.name}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=True,
        )
        with progress:
            task = progress.add_task("upload", total=input.stat().st_size)
            job = c.submit(
                input,
                kind=kind,
                model=model,
                metadata=meta,
                options={**({"overflow": overflow} if overflow else {}), **({} if cache else {"cache": False})},
                models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
                idempotency_key=key,
                on_progress=lambda sent, total: progress.update(task, completed=sent),
            )
        err.print(
            f"job {job.id}: {job.total:,} lines ({job.failed:,} failed to parse), {job.kind}, "
            f"model {job.model}, {job.status}"
        )
        typer.echo(job.id)
        sys.stdout.flush()
        if not job.terminal:
            from rmscore.cli import waiting

            waiting.warn(job.id, job.raw["created_at"], waiting.unserved_remote(c, waiting.models_of(job.raw)))
        if wait:
            final = follow(c, job.id)
            print_job(final.raw)
            if final.status != "completed":
                raise typer.Exit(1)


def follow(c: Any, job_id: str, *, poll: float = 1.0) -> Any:
    """A progress bar (lines done / total, lines/s, ETA) until the job ends."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    from rmscore.cli import waiting
    from rmscore.cli.display import rate_unit

    models: list[str] = []  # the job's, filled in from the first poll
    watch = waiting.Watch(lambda: waiting.unserved_remote(c, models))
    with progress:
        task = progress.add_task("job", total=None, status="", rate="")

        def show(job: Any) -> None:
            rate = job.items_per_second
            models[:] = waiting.models_of(job.raw)
            progress.update(
                task,
                total=job.total,
                completed=job.done,
                status=watch.status(job.status, job.terminal),
                rate=f"{rate:,.1f} {rate_unit(models)}" if rate else "",
            )

        return c.wait(job_id, poll=poll, on_progress=show)


def print_job(s: dict[str, Any]) -> None:
    from rmscore.cli.display import print_job as show

    show(s)


def status(job_id: str, as_json: bool = False) -> None:
    from rmscore.cli import waiting

    with _client() as c:
        job = c.job(job_id)
        problems = {} if job.terminal else waiting.unserved_remote(c, waiting.models_of(job.raw))
    if as_json:
        typer.echo(json.dumps(job.raw, ensure_ascii=False))
    else:
        print_job(job.raw)
    waiting.warn(job.id, job.raw["created_at"], problems)


def cancel(job_id: str) -> None:
    with _client() as c:
        job = c.cancel(job_id)
    err.print(f"job {job.id}: {job.status} ({job.done:,} of {job.total:,} lines have results)")
    typer.echo(job.status)


def results(job_id: str, output: str = "-", errors_only: bool = False, *, model: str | None = None) -> None:
    """Results in input order, as the local command writes them: read as JSON lines from the API, one
    model at a time, and written here in the format the suffix names (the same writers)."""
    from rmscore.cli.results import export, print_accuracy

    with _client() as c:
        job = c.job(job_id)
        if not job.terminal:
            err.print(f"[yellow]job {job.id} is {job.status}: writing the {job.done:,} results done so far[/yellow]")
        models = job.raw.get("models") or [job.model]
        n = export(lambda m: c.results(job_id, errors_only=errors_only, model=m), models, model, output, job.kind)
        err.print(f"{n:,} result lines" + ("" if output == "-" else escape(f" written to {output}")))
        summary = c.job(job_id).raw
    print_accuracy(summary, model)
