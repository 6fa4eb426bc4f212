"""`rmscore demo` (what `make demo` runs): the whole stack on this machine, one pairwise job from a
sample that ships with rmscore, its summary, then everything stopped again."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rmscore.cli.display import accuracy_table, progress_bar

if TYPE_CHECKING:
    from rmscore.client import Client, Job

err = Console(stderr=True)
SAMPLE = "data/demo_pairs.jsonl"


def _free_port(preferred: int) -> int:
    from rmscore.stack import port_free

    if port_free("127.0.0.1", preferred):
        return preferred
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clip(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def demo(
    model: Annotated[str, typer.Option(help="Model directory or hub id (built if it is the default tiny one).")] = (
        "models/tiny"
    ),
    input: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Pairwise JSONL to submit [default: the bundled sample].")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="Where the demo keeps its database and logs.")] = Path(".demo"),
    api_port: Annotated[int, typer.Option(help="API port (another free one if taken).")] = 8000,
    flower_port: Annotated[int, typer.Option(help="Flower port (another free one if taken).")] = 5555,
    keep: Annotated[bool, typer.Option(help="Keep the stack running after the job until Ctrl-C.")] = False,
) -> None:
    """Run the whole stack, score a sample pairwise job through it, print the summary, stop."""
    from rmscore.client import Client
    from rmscore.stack import Stack

    state_dir.mkdir(parents=True, exist_ok=True)
    model_path = Path(model)
    if model == "models/tiny" and not (model_path / "config.json").exists():
        from worker.tiny_model import make_tiny_model

        with err.status("building the tiny test model"):
            make_tiny_model(model_path, "tiny")
    model_id = str(model_path.resolve()) if model_path.exists() else model

    env = dict(os.environ)
    env.update(
        RMSCORE_MODEL=model_id,
        RMSCORE_DATABASE_URL=f"sqlite:///{(state_dir / 'rmscore.db').resolve()}",
        # One local tenant: the demo's API listens on 127.0.0.1 only.
        RMSCORE_AUTH="disabled",
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1") if model_path.exists() else env.get("HF_HUB_OFFLINE", "0"),
    )
    env.pop("RMSCORE_API_URL", None)
    stack = Stack(
        model=model_id,
        env=env,
        api_port=_free_port(api_port),
        flower_port=_free_port(flower_port),
        workers=1 if not model_path.exists() else None,
        log_dir=state_dir / "logs",
        say=err.print,
    )
    sample = input or Path(str(resources.files("rmscore").joinpath(SAMPLE)))
    err.print(
        "[yellow]Note:[/yellow] the tiny model has [b]random weights[/b]: its scores are reproducible and "
        "meaningless. On a GPU machine, set RMSCORE_MODEL=NCSOFT/Llama-3-OffsetBias-RM-8B (the default) "
        "and run `rmscore up`."
    )
    job: Job | None = None
    try:
        with err.status("starting Redis, the database, a worker (model load + warm-up), the API and Flower"):
            stack.start(ready_timeout=600)
        with Client(stack.api_url, api_key="") as client:
            job = client.submit(sample, kind="pairwise", metadata={"source": "rmscore demo"})
            err.print(f"submitted job [b]{job.id}[/b] ({job.total} pairs)")
            job = _follow(client, job.id, job.total)
            records = list(client.results(job.id))
        _print_summary(job, records, sample)
        err.print(
            "\nWhile it runs (`rmscore demo --keep` keeps it up until Ctrl-C; `rmscore up` runs the stack alone):"
        )
        err.print(f"API docs   {stack.api_url}/docs")
        err.print(f"job        {stack.api_url}/v1/jobs/{job.id}")
        err.print(f"report     {stack.api_url}/v1/jobs/{job.id}/report")
        err.print(f"Flower     {stack.flower_url}")
        err.print(f"           login: {stack.flower_login}", highlight=False, soft_wrap=True)
        err.print(f"logs       {state_dir / 'logs'}")
        if keep:
            err.print("The stack keeps running; Ctrl-C stops it.")
            stack.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        err.print(f"[red]demo failed:[/red] {e}")
        raise typer.Exit(1) from None
    finally:
        with err.status("stopping everything the demo started"):
            stack.stop()
    err.print("stopped.")
    if job is None or job.status != "completed":
        raise typer.Exit(1)


def _follow(client: Client, job_id: str, total: int) -> Job:
    """A progress bar until the job ends. Its rate is the job's own (`items_per_second`, pairs scored
    since the first chunk started), the figure the summary prints after it: one unit, one number."""
    with progress_bar("scoring", err, eta=False) as progress:
        task = progress.add_task("job", total=total, rate="")

        def update(job: Job) -> None:
            rate = job.items_per_second
            progress.update(task, completed=job.done, rate=f"{rate:,.1f} pairs/s" if rate else "")

        return client.wait(job_id, poll=0.5, timeout=600, on_progress=update)


def _print_summary(job: Job, records: list[dict[str, Any]], sample: Path) -> None:
    rows = {n: json.loads(line) for n, line in enumerate(sample.read_text(encoding="utf-8").splitlines(), 1) if line}
    err.print(f"\njob {job.id}: [b]{job.status}[/b], {job.completed} scored, {job.failed} failed")
    rate = job.items_per_second
    if rate:
        err.print(f"throughput {rate:,.1f} pairs/s")
    if job.accuracy:
        err.print(accuracy_table(job.accuracy))
    scored = [r for r in records if "error" not in r]
    scored.sort(key=lambda r: r["chosen_score"] - r["rejected_score"], reverse=True)
    t = Table(title="largest and smallest margins (chosen − rejected)")
    for col in ("margin", "prompt", "chosen", "rejected"):
        t.add_column(col)
    picks = scored[:3] + scored[-3:] if len(scored) > 6 else scored
    for r in picks:
        src = rows.get(r["line"], {})
        t.add_row(
            f"{r['chosen_score'] - r['rejected_score']:+.3f}",
            _clip(str(src.get("prompt", "")), 40),
            _clip(str(src.get("chosen", "")), 40),
            _clip(str(src.get("rejected", "")), 40),
        )
    err.print(t)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
