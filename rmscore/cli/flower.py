"""`rmscore flower`: Flower on the project's Celery app, with basic auth unless bound to loopback.

Flower is open to anyone by default (CVE-2022-30034), so a non-loopback address without
RMSCORE_FLOWER_BASIC_AUTH is refused. The credentials reach Flower through its environment
(FLOWER_BASIC_AUTH), never the command line, so they do not show in `ps`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def flower(
    port: Annotated[int, typer.Option(help="Port for Flower's web UI and API.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs basic auth.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Monitor workers in Flower (task events, worker stats, Prometheus /metrics)."""
    from rmscore.settings import get_settings

    settings = get_settings()
    env = dict(os.environ)
    if settings.flower_basic_auth:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth
    elif address not in LOOPBACK:
        typer.echo(
            f"refusing to serve Flower on {address} without auth: "
            "set RMSCORE_FLOWER_BASIC_AUTH=user:password",
            err=True,
        )
        raise typer.Exit(2)
    else:
        # Loopback only: Flower 2 otherwise refuses its own HTTP API without credentials.
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    env.setdefault("FLOWER_PURGE_OFFLINE_WORKERS", "300")
    argv = [
        sys.executable, "-m", "celery", "--app", "worker.app:app", "flower",
        f"--port={port}", f"--address={address}",
    ]
    os.execve(sys.executable, argv, env)


def register(app: typer.Typer) -> None:
    app.command("flower")(flower)
