"""What the CLI says when a command fails for a reason the user can fix.

`rmscore.cli.main` runs every command through `explain`: an expected failure (a bad setting, a
model that is not there, Redis, the database or the API unreachable, a file that cannot be opened,
any `RmscoreError`) becomes one or two lines, the cause and the fix, and a non-zero exit code.
Anything else is a bug and keeps its traceback; `rmscore --debug …` shows the traceback always.
Library modules are imported only here, on the failure path, so a healthy command never pays for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Exit codes: 2 = the user's input or configuration, 1 = a service or resource unavailable.
USAGE, UNAVAILABLE = 2, 1


@dataclass(frozen=True)
class Failure:
    """A failure told to the user: what happened, how to fix it (may be empty), the exit code."""

    cause: str
    fix: str
    code: int

    def lines(self) -> list[str]:
        return [f"error: {self.cause}", *([f"fix: {self.fix}"] if self.fix else [])]


def _redact(url: str) -> str:
    """A URL fit to print: any password replaced by ***."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def _setting(name: str) -> str:
    """The configured value of a setting, or its environment variable's raw text if settings do not load."""
    try:
        from rmscore.settings import get_settings

        return str(getattr(get_settings(), name) or "")
    except Exception:  # noqa: BLE001 - settings themselves may be what is broken
        return os.environ.get(f"RMSCORE_{name.upper()}", "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _settings_error(e: Exception) -> Failure | None:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(e, SettingsError):
        # A value that is not JSON where a list is expected, e.g. RMSCORE_MODELS=a,b.
        return Failure(f"bad setting: {_first_line(e)}", 'lists are JSON, e.g. RMSCORE_MODELS=\'["a", "b"]\'', USAGE)
    if not isinstance(e, ValidationError) or e.title != "Settings":
        return None
    parts = []
    for err in e.errors():
        var = "RMSCORE_" + str(err["loc"][0]).upper() if err.get("loc") else "settings"
        given = f"={err['input']!r}" if err.get("loc") and not isinstance(err.get("input"), dict) else ""
        parts.append(f"{var}{given}: {err['msg'].removeprefix('Value error, ')}")
    return Failure(
        "bad setting " + "; ".join(parts),
        "change it in the environment (or .env); README's Configuration table lists every setting",
        USAGE,
    )


def _service_error(e: Exception) -> Failure | None:
    import httpx
    import redis
    from kombu.exceptions import OperationalError as KombuOperationalError
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(e, redis.ConnectionError | redis.TimeoutError | redis.AuthenticationError | KombuOperationalError):
        return Failure(
            f"cannot reach Redis at {_redact(_setting('broker_url'))}: {_first_line(e)}",
            "start Redis (`rmscore up` starts one) or point RMSCORE_BROKER_URL at a running one",
            UNAVAILABLE,
        )
    if isinstance(e, OperationalError | InterfaceError):
        return Failure(
            f"cannot use the database at {_redact(_setting('database_url'))}: {_first_line(e.orig or e)}",
            "start the database, or point RMSCORE_DATABASE_URL at one that runs",
            UNAVAILABLE,
        )
    if isinstance(e, httpx.TransportError):
        return Failure(
            f"cannot reach the API at {_setting('api_url')}: {_first_line(e)}",
            "start it (`rmscore up`), or unset RMSCORE_API_URL to work on the database directly",
            UNAVAILABLE,
        )
    return None


def explain(e: BaseException) -> Failure | None:
    """The failure to print for `e`, or None when it is unexpected (a bug: keep the traceback)."""
    from rmscore.errors import RmscoreError

    if isinstance(e, RmscoreError):
        cause, _, fix = e.message.partition("\nfix: ")
        return Failure(f"[{e.code}] {cause}", fix, USAGE if e.http_status < 500 or e.code == "model_not_found" else 1)
    if not isinstance(e, Exception):
        return None
    found = _settings_error(e) or _service_error(e)
    if found is not None:
        return found
    if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return Failure(f"{e.strerror or type(e).__name__}: {e.filename}", "", USAGE)
    return None
