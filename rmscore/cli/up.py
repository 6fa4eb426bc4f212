"""`rmscore up`: the whole single-machine stack in one command; Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rmscore.cli.helptext import ModelPathOption

err = Console(stderr=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(
    model: ModelPathOption = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [default: one per GPU, or 1 CPU].")] = None,
    host: Annotated[str, typer.Option(help="API address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    flower_port: Annotated[int, typer.Option(help="Flower port (0 = no Flower).")] = 5555,
    log_dir: Annotated[
        Path | None, typer.Option(help="Write each process's log here [default: this terminal].")
    ] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for a loaded, warmed-up worker.")] = 900,
) -> None:
    """Start Redis (embedded if none answers), migrations, workers, the API and Flower.

    Workers: --workers for the model (one per GPU by default), plus one for each further model in
    RMSCORE_MODELS, so every model a job may name is served."""
    from rmscore.cli.backends import database_label
    from rmscore.settings import get_settings, model_name
    from rmscore.stack import Stack

    s = get_settings()
    env = dict(os.environ)
    env["RMSCORE_MODEL"] = model or s.model
    env.setdefault("RMSCORE_BROKER_URL", s.broker_url)
    extra = [m for m in s.models if model_name(m) != model_name(env["RMSCORE_MODEL"])]
    stack = Stack(
        model=env["RMSCORE_MODEL"],
        extra_models=extra,
        env=env,
        api_host=host,
        api_port=port,
        flower_port=flower_port or None,
        workers=workers,
        log_dir=log_dir,
        say=err.print,
        # The children's lines are text, not rich markup: a "[W …]" or "[tasks]" must print as is.
        write_log=lambda line: err.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with err.status("starting: loading the model and warming up a worker"):
            stack.start(ready_timeout)
        err.print(f"[green]ready[/green]  API {stack.api_url}/docs", highlight=False)
        served = ", ".join(model_name(m) for m in (stack.model, *extra))
        err.print(f"       workers for {served}; jobs in {database_label()}", highlight=False, soft_wrap=True)
        if stack.flower_url:
            err.print(f"       Flower {stack.flower_url}", highlight=False)
            err.print(f"       Flower login: {stack.flower_login}", highlight=False, soft_wrap=True)
        err.print("Ctrl-C stops everything.")
        code = stack.wait()
    except KeyboardInterrupt:
        code = 0
    except RuntimeError as e:
        err.print(f"[red]error:[/red] {e}")
        code = 1
    finally:
        with err.status("stopping"):
            stack.stop()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
