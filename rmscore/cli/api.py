"""`rmscore api` (serve the HTTP API) and `rmscore keys create|list|revoke` (API keys)."""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

err = Console(stderr=True)
keys_app = typer.Typer(help="API keys: each belongs to a tenant; only a hash is stored.", no_args_is_help=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning …")] = "info",
    workers: Annotated[int, typer.Option(help="API processes (uvicorn workers).", min=1)] = 1,
) -> None:
    """Serve the HTTP API (docs at /docs, schema at /openapi.json) with uvicorn."""
    import uvicorn

    from rmscore.settings import get_settings

    s = get_settings()
    if s.auth == "disabled" and not _loopback(host):
        err.print(
            f"[red]error[/red]: RMSCORE_AUTH=disabled serves everyone as one tenant; "
            f"refusing to listen on {host}. Use --host 127.0.0.1, or create keys and enable auth."
        )
        raise typer.Exit(2)
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level.lower(),
        workers=workers,
        proxy_headers=False,
        server_header=False,
        # Room for long query strings (filters, cursors) before h11 refuses the request line.
        h11_max_incomplete_event_size=64 * 1024,
    )


def _db(command: str) -> Engine:
    from rmscore.cli.backends import local_db, local_only

    local_only(command)
    return local_db()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for (letters, digits, . _ @ -).")],
    admin: Annotated[bool, typer.Option("--admin", help="Sees every tenant's jobs.")] = False,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="Tenant whose jobs the key sees; `local` is the tenant of jobs submitted without RMSCORE_API_URL "
            "[default: NAME]."
        ),
    ] = None,
) -> None:
    """Create a key and print it, alone, on stdout. It is shown once: only its hash is stored."""
    from db.api_keys import create_key
    from rmscore.errors import RmscoreError

    try:
        key, info = create_key(_db("keys create"), name, tenant=tenant, admin=admin)
    except RmscoreError as e:
        err.print(f"[red]error[/red] [{e.code}]: {e.message}")
        raise typer.Exit(2) from None
    err.print(f"key {info.id} for tenant {info.tenant}{' (admin)' if admin else ''}; store it now, it is not kept")
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """Keys as JSON lines (id, name, tenant, admin, created_at, revoked_at); never the keys themselves."""
    from db.api_keys import list_keys

    for k in list_keys(_db("keys list")):
        typer.echo(
            json.dumps(
                {
                    "id": k.id,
                    "name": k.name,
                    "tenant": k.tenant,
                    "admin": k.admin,
                    "created_at": k.created_at.isoformat() + "Z",
                    "revoked_at": k.revoked_at.isoformat() + "Z" if k.revoked_at else None,
                }
            )
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (rk_<id>_…).")]) -> None:
    """Revoke a key (API processes stop accepting it within 30 seconds)."""
    from db.api_keys import revoke_key
    from rmscore.errors import RmscoreError

    try:
        info = revoke_key(_db("keys revoke"), key_id.removeprefix("rk_").split("_", 1)[0])
    except RmscoreError as e:
        err.print(f"[red]error[/red] [{e.code}]: {e.message}")
        raise typer.Exit(2) from None
    err.print(f"key {info.id} ({info.name}) revoked")


def register(app: typer.Typer) -> None:
    app.command("api")(api)
    app.add_typer(keys_app, name="keys")
