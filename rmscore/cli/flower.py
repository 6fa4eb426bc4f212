"""`rmscore flower`: Flower on the project's Celery app, always behind basic auth.

Flower's HTTP API can shut workers down and revoke tasks. Without credentials it is either closed
(Flower 2) or, with FLOWER_UNAUTHENTICATED_API, open to anyone *and* to any web page: that flag
turns on `Access-Control-Allow-Origin: *` and skips Flower's cross-site check, so a page the
operator merely visits could POST /api/worker/shutdown/NAME. So rmscore never sets that flag (and
drops it from the environment): with RMSCORE_FLOWER_BASIC_AUTH unset it generates a user:password
for this run and prints it once on stderr. With basic auth on, Flower also refuses cross-site
requests (Sec-Fetch-Site / Origin), so a browser's remembered credentials cannot be replayed by a
page either.

The credentials reach Flower through its environment (FLOWER_BASIC_AUTH), never the command line,
so they do not show in `ps`. A non-loopback address still needs RMSCORE_FLOWER_BASIC_AUTH: Flower
speaks plain HTTP, and generated credentials are meant for the terminal that started it.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Annotated

import typer

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
GENERATED_USER = "rmscore"


def generate_basic_auth() -> str:
    """A fresh `rmscore:<password>` (144 random bits; URL-safe, so never the `,` Flower splits on)."""
    return f"{GENERATED_USER}:{secrets.token_urlsafe(18)}"


def flower(
    port: Annotated[int, typer.Option(help="Port for Flower's web UI and API.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs basic auth.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Monitor workers in Flower (task events, worker stats, Prometheus /metrics), behind basic auth."""
    from rmscore.settings import get_settings

    settings = get_settings()
    env = dict(os.environ)
    # Never open Flower's control API to unauthenticated callers (and so to cross-site pages).
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
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
        env["FLOWER_BASIC_AUTH"] = generated = generate_basic_auth()
        user, _, password = generated.partition(":")
        # Printed once, to this terminal only (stderr); set RMSCORE_FLOWER_BASIC_AUTH to choose them.
        typer.echo(
            f"Flower basic auth for this run: user {user} password {password} "
            "(generated; set RMSCORE_FLOWER_BASIC_AUTH=user:password to choose your own)",
            err=True,
        )
    env.setdefault("FLOWER_PURGE_OFFLINE_WORKERS", "300")
    argv = [
        sys.executable, "-m", "celery", "--app", "rmscore.broker:app", "flower",
        f"--port={port}", f"--address={address}",
    ]
    os.execve(sys.executable, argv, env)


def register(app: typer.Typer) -> None:
    app.command("flower")(flower)
