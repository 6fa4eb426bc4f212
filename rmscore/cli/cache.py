"""`rmscore cache stats` / `rmscore cache clear` / `rmscore cache prune`: the score cache (`db.cache`).

They work on the database directly (RMSCORE_DATABASE_URL), as an operator's commands: the cache
holds every tenant's scores, so it has no API route. Machine output (JSON stats, a row count) goes
to stdout, tables and messages to stderr.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rmscore.cli.backends import local_db, user_errors

err = Console(stderr=True)
cache_app = typer.Typer(help="The score cache: what it holds, and emptying it.", no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `30d`, `2w`, or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 12h, 30d or 2w")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    if n < 1024:
        return f"{n:,} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


@cache_app.command("stats")
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print the stats as JSON on stdout.")] = False,
) -> None:
    """Rows in the score cache, per model identity (rows, tenants, oldest, newest), and its size."""
    with user_errors():
        from db.cache import stats as cache_stats
        from rmscore.settings import get_settings

        st = cache_stats(local_db())
        if as_json:
            typer.echo(json.dumps(st.as_dict()))
            return
        s = get_settings()
        table = Table(title=f"score cache: {st.rows:,} rows, {_size(st.size_bytes)}")
        for col in ("model", "identity", "rows", "scopes", "oldest", "newest"):
            table.add_column(col, justify="right" if col in ("rows", "scopes") else "left")
        for i in st.identities:
            table.add_row(
                i.model, i.identity_hash[:12], f"{i.rows:,}", str(i.scopes), f"{i.oldest:%Y-%m-%d %H:%M}",
                f"{i.newest:%Y-%m-%d %H:%M}",
            )  # fmt: skip
        err.print(table)
        err.print(
            f"scope {s.cache_scope}; bounds: {s.cache_max_rows:,} rows (0 = none), "
            f"{s.cache_max_age / 86400:g} days (0 = none)"
        )
        typer.echo(st.rows)


@cache_app.command("clear")
def clear(
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model's rows (its short name) [default: every model].")
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only rows scored longer ago than this (90s, 12h, 30d) [default: any age]."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="Only this tenant's rows ('*': the shared ones) [default: every tenant]."),
    ] = None,
) -> None:
    """Delete score cache rows (all of them unless narrowed): later jobs score those conversations again."""
    age = parse_duration(older_than) if older_than is not None else None
    with user_errors():
        from db.cache import clear as cache_clear
        from rmscore.settings import model_name

        name = model_name(model) if model is not None else None  # a path or hub id names its short name
        n = cache_clear(local_db(), model=name, older_than=age, scope=tenant)
        err.print(f"deleted {n:,} score cache rows")
        typer.echo(n)


@cache_app.command("prune")
def prune() -> None:
    """Enforce RMSCORE_CACHE_MAX_AGE and RMSCORE_CACHE_MAX_ROWS now (the reconciler does it periodically)."""
    with user_errors():
        from db.cache import prune as cache_prune
        from rmscore.settings import get_settings

        s = get_settings()
        report = cache_prune(local_db(), max_age_s=s.cache_max_age, max_rows=s.cache_max_rows)
        err.print(f"deleted {report.expired:,} rows past the age bound, {report.over_rows:,} beyond the row bound")
        typer.echo(report.deleted)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
