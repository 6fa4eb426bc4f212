"""`rmscore worker`: one scoring worker process (one per GPU)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from rmscore.cli.helptext import DeviceOption, ModelPathOption, env_default


def worker(
    model: ModelPathOption = None,
    device: DeviceOption = None,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(
            help=f"Token budget per micro-batch. {env_default('max_batch_tokens', '1024 on CPU, 32768 on CUDA')}",
            min=16,
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name [default: MODEL@HOST-DEVICE].")] = None,
    suffix: Annotated[
        str | None, typer.Option(help="Appended to the default name: several workers per host [default: none].")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port for this worker's Prometheus /metrics; 0 = off. Several workers on one host need "
            "one port each. " + env_default("worker_metrics_port", "off"),
            min=0,
            max=65535,
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 0 if a worker on this host has a live heartbeat.")
    ] = False,
    burst: Annotated[
        bool,
        typer.Option(
            "--burst",
            help="Exit 0 once no chunk of this model is queued or being scored: score what was submitted, "
            "then free the device (a batch node).",
        ),
    ] = False,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING …")] = "INFO",
) -> None:
    """Load the model once, warm it up, then score chunks from its queue until stopped (SIGTERM
    finishes the chunk in hand). Concurrency is always 1: one process holds one model on one device."""
    from rmscore.settings import get_settings, model_name

    s = get_settings()
    model_id = model or s.model
    if check:
        from rmscore.broker import get_redis
        from worker.runner import check_heartbeat

        live = check_heartbeat(get_redis(s.broker_url), name=name, model_name=model_name(model_id))
        typer.echo("\n".join(live) if live else "no live worker", err=not live)
        raise typer.Exit(0 if live else 1)

    if metrics_port is not None:
        s = s.model_copy(update={"worker_metrics_port": metrics_port})
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from worker.runner import run_worker

    code = run_worker(
        s,
        model=model_id,
        device=device or s.device,
        max_batch_tokens=max_batch_tokens,
        name=name,
        suffix=suffix,
        loglevel=loglevel.upper(),
        burst=burst,
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
