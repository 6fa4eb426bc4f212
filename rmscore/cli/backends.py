"""Where the job commands find jobs: the database and broker on this host (`Local`), or the API
when RMSCORE_API_URL is set (`Remote`, over `rmscore.client`).

Each command (`submit`, `status`, `cancel`, `results`, `jobs`, `report`, `compare`, `preferences`,
`best`) is written once over `Backend`, so every one works in both modes with the same flags, output and exit codes; a
backend holds only what differs: the calls, and how submitting shows its progress (storing here,
uploading there). Both give jobs as `rmscore.client.Job` over the same summary dict
(`db.jobs.job_summary` is what `GET /v1/jobs/{id}` returns)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from rmscore.client import Client, Job
    from rmscore.preferences import Spec

err = Console(stderr=True)


@dataclass(frozen=True)
class Submission:
    """What `rmscore submit` asks for, checked, in either mode."""

    kind: str
    model: str | None
    chunk_size: int | None
    overflow: str | None
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    cache: bool
    models: list[str] | None

    def arguments(self) -> dict[str, Any]:
        """What both `db.producer.submit` and `rmscore.client.Client.submit` take, by name."""
        options = {**({"overflow": self.overflow} if self.overflow else {}), **({} if self.cache else {"cache": False})}
        return {
            "kind": self.kind,
            "model": self.model,
            "metadata": self.metadata,
            "options": options or None,
            "idempotency_key": self.idempotency_key,
            "models": self.models,
        }


class Backend(Protocol):
    where: str  # "the database …" or "the API at …": named where a command says where jobs came from
    poll_s: float  # between polls while following a job

    def submit(self, input: Path, request: Submission) -> Job:
        """Store INPUT as a job, showing progress and what was stored on stderr."""

    def job(self, job_id: str) -> Job:
        """The job's full summary (counts, accuracy, evaluation, models)."""

    def progress(self, job_id: str) -> Job:
        """Enough to follow a job: status, counts, rate and models (cheaper than `job` where it can be)."""

    def cancel(self, job_id: str) -> Job: ...

    def results(self, job_id: str, *, errors_only: bool, model: str) -> Iterable[dict[str, Any]]:
        """One model's result records in input order."""

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """At most `limit` jobs, newest first, as summary dicts."""

    def report(self, job_id: str) -> str: ...

    def compare(self, job_id: str, models: list[str] | None, limit: int) -> dict[str, Any]: ...

    def preferences(self, job_id: str, spec: Spec, output: str) -> str:
        """Write the job's preference rows to `output` ('-': stdout); what was written, to print."""

    def best(self, job_id: str, spec: Spec, output: str) -> str:
        """Write each line's best response to `output` ('-': stdout); what was written, to print."""

    def unserved(self, models: list[str]) -> dict[str, str]:
        """Model -> problem, for those of `models` no live worker serves; {} when that cannot be checked."""


def announce(job: Job, how: str) -> None:
    """The line a submission ends with on stderr, in both modes."""
    err.print(
        f"job {job.id}: {job.total:,} lines ({job.failed:,} failed to parse), {job.kind}, model {job.model}, {how}"
    )


def _to(output: str) -> str:
    return "" if output == "-" else f" to {output}"


def database_label() -> str:
    """Where the local commands keep jobs, fit to print (no password): users should know which file."""
    from sqlalchemy.engine import make_url

    from rmscore.settings import get_settings

    url = make_url(get_settings().database_url)
    if url.drivername.startswith("sqlite"):
        return f"the database {url.database}"
    return f"the database {url.render_as_string(hide_password=True)}"


def local_only(command: str) -> None:
    """Commands with no API counterpart (keys, migrations, reconcile, cache) say so when RMSCORE_API_URL
    is set, and which database they use instead, rather than quietly working somewhere else."""
    from rmscore.settings import get_settings

    if get_settings().api_url:
        err.print(
            escape(f"note: `rmscore {command}` works on {database_label()} directly (the API offers no such call); "
                   "RMSCORE_API_URL is not used"),
            style="yellow", highlight=False, soft_wrap=True,
        )  # fmt: skip


def local_db() -> Engine:
    """The database at RMSCORE_DATABASE_URL, its tables created or migrated on first use."""
    from db.migrate import ensure_schema
    from db.session import get_engine

    db = get_engine()
    ensure_schema(db)
    return db


@contextmanager
def user_errors() -> Iterator[None]:
    """Known errors end the command with their code and message, not a traceback: 2 for the
    caller's mistakes (4xx), 1 for the service's."""
    from rmscore.errors import RmscoreError

    try:
        yield
    except RmscoreError as e:
        err.print(f"[red]error[/red] {escape(f'[{e.code}]')}: {escape(e.message)}")
        raise typer.Exit(2 if e.http_status < 500 else 1) from None


@contextmanager
def open_backend() -> Iterator[Backend]:
    """The API's backend when RMSCORE_API_URL is set, else the local one; known errors (and an
    unreachable API) end the command cleanly."""
    from rmscore.settings import get_settings

    url = get_settings().api_url
    with user_errors():
        if not url:
            yield Local(local_db())
            return
        import httpx

        from rmscore.client import Client

        try:
            with Client() as client:
                yield Remote(client, url)
        except httpx.HTTPError as e:
            err.print(f"[red]error[/red]: cannot reach the API at {url}: {e}")
            raise typer.Exit(1) from None


class Local:
    """Jobs in the database, queued through the broker, as the API would store them itself."""

    poll_s = 0.5

    def __init__(self, db: Engine) -> None:
        self.db = db
        self.where = database_label()

    def _view(self, info: Any) -> Job:
        from db.jobs import job_models
        from rmscore.client import Job

        return Job.from_dict({**info.to_dict(), "models": job_models(self.db, info)})

    def submit(self, input: Path, request: Submission) -> Job:
        from db.producer import submit

        t0 = time.perf_counter()
        with err.status(f"storing {input.name}"):
            created = submit(input, chunk_size=request.chunk_size, db=self.db, **request.arguments())
        job = self._view(created.job)
        if created.created:
            announce(job, f"stored in {time.perf_counter() - t0:.1f}s")
            err.print(escape(f"in {self.where}"), highlight=False, soft_wrap=True)
        else:
            err.print(f"job {job.id} was already submitted with this idempotency key ({job.status})")
        return job

    def job(self, job_id: str) -> Job:
        from db.jobs import job_summary
        from rmscore.client import Job

        return Job.from_dict(job_summary(self.db, job_id))

    def progress(self, job_id: str) -> Job:
        from db.jobs import get_job

        # Not job_summary: its accuracy queries would rescan a large job's results at every poll.
        return self._view(get_job(self.db, job_id))

    def cancel(self, job_id: str) -> Job:
        from db.jobs import cancel_job

        return self._view(cancel_job(self.db, job_id))

    def results(self, job_id: str, *, errors_only: bool, model: str) -> Iterable[dict[str, Any]]:
        from db.results import iter_results

        return iter_results(self.db, job_id, errors_only=errors_only, model=model)

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        from db.jobs import list_jobs

        found: list[dict[str, Any]] = []
        cursor = None
        while len(found) < limit:
            page, cursor = list_jobs(self.db, status=status, limit=min(limit - len(found), 100), cursor=cursor)
            found += [j.to_dict() for j in page]
            if cursor is None:
                break
        return found

    def report(self, job_id: str) -> str:
        from db.report import build_report

        return build_report(self.db, job_id)

    def compare(self, job_id: str, models: list[str] | None, limit: int) -> dict[str, Any]:
        from db.compare import compare_job

        return compare_job(self.db, job_id, models=models, limit=limit)

    def preferences(self, job_id: str, spec: Spec, output: str) -> str:
        return self._export(job_id, spec, output)

    best = preferences  # which rows is the spec's `what`

    def _export(self, job_id: str, spec: Spec, output: str) -> str:
        from db.preferences import open_export
        from rmscore import preferences

        export = open_export(self.db, job_id, spec)
        n = preferences.write(export.rows, output, spec.what, export.form)
        rows = "preference rows" if spec.what == "preferences" else "best responses"
        return f"{n:,} {rows} of job {job_id} (model {export.model}, {export.form} form) written{_to(output)}"

    def unserved(self, models: list[str]) -> dict[str, str]:
        """Read from the broker's Redis; a broker that is down says nothing (the job is stored)."""
        import redis

        from rmscore.broker import get_redis
        from rmscore.liveness import model_liveness
        from rmscore.settings import get_settings

        try:
            r = get_redis(get_settings().broker_url)
            return {m: p for m in models if (p := model_liveness(r, m).problem())}
        except (redis.RedisError, OSError):
            return {}


class Remote:
    """Jobs through the API: the tenant of RMSCORE_API_KEY, the server's settings."""

    poll_s = 1.0

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.where = f"the API at {url}"

    def submit(self, input: Path, request: Submission) -> Job:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        if request.chunk_size is not None:
            err.print("[yellow]--chunk-size is set by the server (RMSCORE_CHUNK_SIZE); ignored[/yellow]")
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
            # The client sends one idempotency key (a fresh one unless given) on every retry, so a
            # retry after a dropped connection finds this job rather than making a second.
            job = self.client.submit(
                input, on_progress=lambda sent, total: progress.update(task, completed=sent), **request.arguments()
            )
        announce(job, job.status)
        return job

    def job(self, job_id: str) -> Job:
        return self.client.job(job_id)

    progress = job  # the API's summary is the only view it offers

    def cancel(self, job_id: str) -> Job:
        return self.client.cancel(job_id)

    def results(self, job_id: str, *, errors_only: bool, model: str) -> Iterable[dict[str, Any]]:
        return self.client.results(job_id, errors_only=errors_only, model=model)

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        return [j.raw for j in islice(self.client.jobs(status=status, page_size=min(limit, 100)), limit)]

    def report(self, job_id: str) -> str:
        return self.client.report(job_id)

    def compare(self, job_id: str, models: list[str] | None, limit: int) -> dict[str, Any]:
        return self.client.compare(job_id, models, limit=limit)

    def preferences(self, job_id: str, spec: Spec, output: str) -> str:
        size = self.client.preferences(job_id, output, pairs=spec.pairs, min_margin=spec.min_margin, model=spec.model)
        return f"preferences of job {job_id} written{_to(output)} ({size:,} bytes)"

    def best(self, job_id: str, spec: Spec, output: str) -> str:
        size = self.client.best(job_id, output, min_score=spec.min_score, model=spec.model)
        return f"best of job {job_id} written{_to(output)} ({size:,} bytes)"

    def unserved(self, models: list[str]) -> dict[str, str]:
        """From the API's /readyz (which reads the same Redis); an API that cannot say, says nothing."""
        import httpx

        try:
            found = self.client.ready().get("models") or {}
        except (httpx.HTTPError, ValueError):
            return {}
        return {m: found[m]["problem"] for m in models if (found.get(m) or {}).get("problem")}
