"""Job commands: `db upgrade`, `submit`, `status`, `cancel`, `results`, `reconcile`.

They work on the database and broker directly, or, when RMSCORE_API_URL is set, hand over to
`rmscore.cli.remote` (the API). Scripts get machine output on stdout (a job id, JSON, result
lines); progress and messages go to stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rmscore.cli.helptext import DEFAULT_MODEL, env_default
from rmscore.formats import KIND_CHOICES, KIND_CHOICES_MESSAGE

err = Console(stderr=True)
db_app = typer.Typer(help="The job database.", no_args_is_help=True)
TERMINAL = ("completed", "failed", "cancelled")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Known errors end the command with their code and message, not a traceback."""
    from rmscore.errors import RmscoreError

    try:
        yield
    except RmscoreError as e:
        err.print(f"[red]error[/red] {escape(f'[{e.code}]')}: {escape(e.message)}")
        raise typer.Exit(2 if e.http_status < 500 else 1) from None


def _remote() -> Any:
    """`rmscore.cli.remote` when RMSCORE_API_URL is set (talk to the API), else None (local database)."""
    from rmscore.settings import get_settings

    if not get_settings().api_url:
        return None
    from rmscore.cli import remote

    return remote


def database_label() -> str:
    """Where the local commands keep jobs, fit to print (no password): users should know which file."""
    from sqlalchemy.engine import make_url

    from rmscore.settings import get_settings

    url = make_url(get_settings().database_url)
    if url.drivername.startswith("sqlite"):
        return f"the database {url.database}"
    return f"the database {url.render_as_string(hide_password=True)}"


def local_only(command: str) -> None:
    """Commands with no API counterpart (keys, migrations, reconcile) say so when RMSCORE_API_URL is
    set, and which database they use instead, rather than quietly working somewhere else."""
    from rmscore.settings import get_settings

    if get_settings().api_url:
        err.print(
            escape(f"note: `rmscore {command}` works on {database_label()} directly (the API offers no such call); "
                   "RMSCORE_API_URL is not used"),
            style="yellow", highlight=False, soft_wrap=True,
        )  # fmt: skip


def _db() -> Any:
    from db.migrate import ensure_schema
    from db.session import get_engine

    db = get_engine()
    ensure_schema(db)
    return db


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision [default: head].")] = "head") -> None:
    """Create or migrate the tables at RMSCORE_DATABASE_URL (safe to run from several hosts at once)."""
    from db.migrate import upgrade
    from db.session import get_engine

    local_only("db upgrade")
    at = upgrade(get_engine(), revision)
    err.print(escape(f"{database_label()} is at revision {at}"), highlight=False, soft_wrap=True)


def submit(
    input: Annotated[Path, typer.Argument(help="JSONL (or .jsonl.gz, or one .json document) to score.", exists=True)],
    kind: Annotated[str, typer.Option(help="chat, pairwise, listwise, or auto (from the first line).")] = "auto",
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
    if kind not in KIND_CHOICES:
        raise typer.BadParameter(KIND_CHOICES_MESSAGE, param_hint="--kind")
    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as e:
            raise typer.BadParameter(f"not JSON: {e}", param_hint="--metadata") from None
        if not isinstance(meta, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    if (remote := _remote()) is not None:
        return remote.submit(
            input, kind, model, chunk_size, overflow, metadata, idempotency_key, wait, cache=cache, models=models
        )
    options: dict[str, Any] | None = {"overflow": overflow} if overflow else None
    if not cache:
        options = {**(options or {}), "cache": False}
    with _user_errors():
        from db.producer import submit as submit_job

        db = _db()
        t0 = time.perf_counter()
        with err.status(f"storing {input.name}"):
            created = submit_job(
                input,
                kind=kind,
                model=model,
                chunk_size=chunk_size,
                metadata=meta,
                options=options,
                idempotency_key=idempotency_key,
                models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
                db=db,
            )
        job = created.job
        if created.created:
            err.print(
                f"job {job.id}: {job.total:,} lines ({job.failed:,} failed to parse), {job.kind}, "
                f"model {job.model}, stored in {time.perf_counter() - t0:.1f}s"
            )
            err.print(escape(f"in {database_label()}"), highlight=False, soft_wrap=True)
        else:
            err.print(f"job {job.id} was already submitted with this idempotency key ({job.status})")
        typer.echo(job.id)
        sys.stdout.flush()
        if not job.terminal:
            from db.jobs import job_models
            from rmscore.cli import waiting

            served = job_models(db, job)
            waiting.warn(job.id, job.created_at, waiting.unserved_local(served))
        if wait:
            final = wait_for_job(db, job.id)
            _print_job(db, final.id)
            if final.status != "completed":
                raise typer.Exit(1)


def wait_for_job(db: Any, job_id: str, *, poll: float = 0.5) -> Any:
    """Follow a job with a progress bar (lines done / total, lines/s, ETA) until it ends."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from db.jobs import get_job, job_models
    from rmscore.cli import waiting
    from rmscore.cli.display import rate_unit

    job = get_job(db, job_id)
    models = job_models(db, job)
    watch = waiting.Watch(lambda: waiting.unserved_local(models))
    progress = Progress(
        TextColumn("{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    with progress:
        task = progress.add_task("job", total=job.total, completed=job.done, status=job.status, rate="")
        while True:
            job = get_job(db, job_id)
            rate = job.items_per_second()
            status = watch.status(job.status, job.terminal)
            shown = f"{rate:,.1f} {rate_unit(models)}" if rate else ""
            progress.update(task, completed=job.done, status=status, rate=shown)
            if job.terminal:
                return job
            time.sleep(poll)


def _print_job(db: Any, job_id: str) -> None:
    from db.jobs import job_summary
    from rmscore.cli.display import print_job

    print_job(job_summary(db, job_id))


def status(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON on stdout.")] = False,
) -> None:
    """Show a job: status, counts, timestamps, throughput, and accuracy for pairwise jobs."""
    if (remote := _remote()) is not None:
        return remote.status(job_id, as_json)
    with _user_errors():
        from db.jobs import job_summary
        from rmscore.cli import waiting

        db = _db()
        summary = job_summary(db, job_id)
        if as_json:
            typer.echo(json.dumps(summary, ensure_ascii=False))
        else:
            _print_job(db, job_id)
        if summary["status"] not in TERMINAL:
            waiting.warn(job_id, summary["created_at"], waiting.unserved_local(waiting.models_of(summary)))


def cancel(job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")]) -> None:
    """Cancel a job: chunks not yet started never run; results already scored are kept."""
    if (remote := _remote()) is not None:
        return remote.cancel(job_id)
    with _user_errors():
        from db.jobs import cancel_job

        job = cancel_job(_db(), job_id)
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
    if (remote := _remote()) is not None:
        return remote.results(job_id, output, errors_only, model=model)
    with _user_errors():
        from db.jobs import get_job, job_models, job_summary
        from db.results import iter_results
        from rmscore.cli.results import export, print_accuracy

        db = _db()
        job = get_job(db, job_id)
        if not job.terminal:
            err.print(f"[yellow]job {job.id} is {job.status}: writing the {job.done:,} results done so far[/yellow]")
        n = export(
            lambda m: iter_results(db, job_id, errors_only=errors_only, model=m),
            job_models(db, job),
            model,
            output,
            job.kind,
        )
        err.print(f"{n:,} result lines" + ("" if output == "-" else escape(f" written to {output}")))
        print_accuracy(job_summary(db, job_id), model)


def reconcile(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit (the only mode).")] = True,
    force: Annotated[bool, typer.Option("--force", help="Run even if another reconciler holds the lock.")] = False,
) -> None:
    """Re-send chunks the broker lost, re-queue chunks of stopped workers, finish jobs whose chunks all ended."""
    with _user_errors():
        from rmscore.broker import get_app, get_redis
        from rmscore.settings import get_settings
        from worker.reconcile import reconcile_once

        local_only("reconcile")
        s = get_settings()
        report = reconcile_once(_db(), get_redis(s.broker_url), get_app(s), s, use_lock=not force)
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
