"""Job commands: `db upgrade`, `submit`, `status`, `cancel`, `results`, `reconcile`.

Each is written once over a `rmscore.cli.backends.Backend`: the database and broker directly, or
the API when RMSCORE_API_URL is set. Scripts get machine output on stdout (a job id, JSON, result
lines); progress and messages go to stderr."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from rmscore.cli.backends import Backend, Submission, database_label, local_db, local_only, open_backend, user_errors
from rmscore.cli.display import print_job
from rmscore.cli.helptext import DEFAULT_MODEL, InputFile, KindOption, check_choice, comma_list, env_default
from rmscore.vocabulary import KIND_CHOICES

if TYPE_CHECKING:
    from rmscore.client import Job

err = Console(stderr=True)
db_app = typer.Typer(help="The job database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision [default: head].")] = "head") -> None:
    """Create or migrate the tables at RMSCORE_DATABASE_URL (safe to run from several hosts at once)."""
    from db.migrate import upgrade
    from db.session import get_engine

    local_only("db upgrade")
    at = upgrade(get_engine(), revision)
    err.print(escape(f"{database_label()} is at revision {at}"), highlight=False, soft_wrap=True)


def submit(
    input: InputFile,
    kind: KindOption = "auto",
    model: Annotated[
        str | None, typer.Option(help=f"Model to score with (its name or id). {env_default('model', DEFAULT_MODEL)}")
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Items per chunk of work; only without RMSCORE_API_URL (through the API, the server's "
            f"RMSCORE_CHUNK_SIZE decides). {env_default('chunk_size', 256)}",
            min=1,
        ),
    ] = None,
    overflow: Annotated[
        str | None,
        typer.Option(metavar="MODE", help=f"Over-long input: truncate or error. {env_default('overflow', 'truncate')}"),
    ] = None,
    metadata: Annotated[str | None, typer.Option(metavar="JSON", help="JSON object stored with the job.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Retrying with the same key returns the same job [default: a new key]."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the job ends.")] = False,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="Reuse scores this model already gave the same conversations.")
    ] = True,
    models: Annotated[
        str | None,
        typer.Option(metavar="A,B", help="Several models: score with each, to compare them (rmscore compare)."),
    ] = None,
) -> None:
    """Store INPUT as a scoring job and queue it for the workers; prints the job id on stdout."""
    check_choice(kind, KIND_CHOICES, "kind")
    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as e:
            raise typer.BadParameter(f"not JSON: {e}", param_hint="--metadata") from None
        if not isinstance(meta, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    # In field order: each option is the Submission field of its name.
    request = Submission(kind, model, chunk_size, overflow, meta, idempotency_key, cache, comma_list(models))
    with open_backend() as backend:
        job = backend.submit(input, request)
        typer.echo(job.id)
        sys.stdout.flush()
        _warn_unserved(backend, job)
        if wait:
            final = follow(backend, job.id)
            print_job(backend.job(final.id).raw)
            if final.status != "completed":
                raise typer.Exit(1)


def _warn_unserved(backend: Backend, job: Job) -> None:
    """Name the job's models no worker serves, if it still waits for one."""
    from rmscore.cli import waiting

    if not job.terminal:
        waiting.warn(job.id, job.raw["created_at"], backend.unserved(waiting.models_of(job.raw)))


def follow(backend: Backend, job_id: str) -> Job:
    """Follow a job with a progress bar (lines done / total, lines/s, ETA) until it ends."""
    from rmscore.cli import waiting
    from rmscore.cli.display import progress_bar, rate_unit

    progress = progress_bar("{task.fields[status]}", err)
    models: list[str] = []  # the job's, filled in from the first poll
    watch = waiting.Watch(lambda: backend.unserved(models))
    with progress:
        task = progress.add_task("job", total=None, status="", rate="")
        while True:
            job = backend.progress(job_id)
            models[:] = waiting.models_of(job.raw)
            rate = job.items_per_second
            progress.update(
                task,
                total=job.total,
                completed=job.done,
                status=watch.status(job.status, job.terminal),
                rate=f"{rate:,.1f} {rate_unit(models)}" if rate else "",
            )
            if job.terminal:
                return job
            time.sleep(backend.poll_s)


def status(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON on stdout.")] = False,
) -> None:
    """Show a job: status, counts, timestamps, throughput, and accuracy for pairwise jobs."""
    with open_backend() as backend:
        job = backend.job(job_id)
        if as_json:
            typer.echo(json.dumps(job.raw, ensure_ascii=False))
        else:
            print_job(job.raw)
        _warn_unserved(backend, job)


def cancel(job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")]) -> None:
    """Cancel a job: chunks not yet started never run; results already scored are kept."""
    with open_backend() as backend:
        job = backend.cancel(job_id)
    err.print(f"job {job.id}: {job.status} ({job.done:,} of {job.total:,} lines have results)")
    typer.echo(job.status)


def results(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Where to write: '-' = stdout (JSONL); a file's suffix picks the format: .jsonl, .jsonl.gz, "
            ".csv or .parquet (any other is refused).",
        ),
    ] = "-",
    errors_only: Annotated[bool, typer.Option("--errors", help="Only the lines that failed.")] = False,
    model: Annotated[
        str | None,
        typer.Option(help="For a job scored by several models: only this model's results [default: every model]."),
    ] = None,
) -> None:
    """Write a job's results in input order, in the format of `rmscore score`.

    A job scored by several models gives each line once per model (each model in input order, the
    job's own model first), every record naming its `model`."""
    from rmscore.cli import waiting
    from rmscore.cli.results import export, print_accuracy

    with open_backend() as backend:
        job = backend.progress(job_id)
        if not job.terminal:
            err.print(f"[yellow]job {job.id} is {job.status}: writing the {job.done:,} results done so far[/yellow]")
        n = export(
            lambda m: backend.results(job_id, errors_only=errors_only, model=m),
            waiting.models_of(job.raw),
            model,
            output,
            job.kind,
        )
        err.print(f"{n:,} result lines" + ("" if output == "-" else escape(f" written to {output}")))
        print_accuracy(backend.job(job_id).raw, model)


def reconcile(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit (the only mode).")] = True,
    force: Annotated[bool, typer.Option("--force", help="Run even if another reconciler holds the lock.")] = False,
) -> None:
    """Re-send chunks the broker lost, re-queue chunks of stopped workers, finish jobs whose chunks all ended."""
    with user_errors():
        from rmscore.broker import get_app, get_redis
        from rmscore.settings import get_settings
        from worker.reconcile import reconcile_once

        local_only("reconcile")
        s = get_settings()
        report = reconcile_once(local_db(), get_redis(s.broker_url), get_app(s), s, use_lock=not force)
        err.print(report.summary())
        if not report.ran:
            raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("results")(results)
    app.command("reconcile")(reconcile)
