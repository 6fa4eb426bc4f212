"""Database engines and transactions: SQLite tuned for many writers on one machine, PostgreSQL for fleets.

Write transactions go through `writing()`. On SQLite that takes the write lock at BEGIN (BEGIN
IMMEDIATE): a deferred transaction that reads and then writes cannot wait for the lock and fails
with "database is locked" when another process wrote in between, whatever the busy timeout.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def utcnow() -> datetime:
    """Naive UTC: what the columns store, so SQLite and PostgreSQL compare timestamps the same way."""
    return datetime.now(UTC).replace(tzinfo=None)


def is_sqlite(db: Engine | Connection) -> bool:
    return db.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """A new engine for `url` (sqlite:///… or postgresql+psycopg://…)."""
    if url.startswith("sqlite"):
        _ensure_default_dir(url)
        db = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _tune_sqlite(db)
        return db
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _ensure_default_dir(url: str) -> None:
    """The default database's folder (the per-user data directory) is made on first use; any other
    SQLite path is taken as given, so a mistyped folder fails instead of appearing."""
    from pathlib import Path

    from rmscore.settings import default_database_url

    if url == default_database_url():
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: the configured RMSCORE_DATABASE_URL)."""
    if url is None:
        from rmscore.settings import get_settings

        url = get_settings().database_url
    with _engines_lock:
        db = _engines.get(url)
        if db is None:
            db = _engines[url] = make_engine(url)
        return db


def _tune_sqlite(db: Engine) -> None:
    @event.listens_for(db, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below); the driver's own transaction handling would get in the way.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe with WAL
        cur.close()

    @event.listens_for(db, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("rmscore_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(db: Engine) -> Iterator[Connection]:
    """A write transaction: committed on success, rolled back on error."""
    with db.connect() as conn:
        conn = conn.execution_options(rmscore_write=True)
        with conn.begin():
            yield conn


@contextmanager
def reading(db: Engine | Connection) -> Iterator[Connection]:
    """A read-only transaction (one consistent snapshot; never blocks writers). Given a connection
    (a caller already inside its own transaction), reads in that one: the caller's snapshot, and on
    SQLite no second connection waiting on the first's lock."""
    if isinstance(db, Connection):
        yield db
        return
    with db.connect() as conn, conn.begin():
        yield conn


def _transient(exc: BaseException) -> bool:
    """Errors a retry can cure: a lost connection, a deadlock, a locked SQLite file."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(s in text for s in ("deadlock detected", "could not serialize", "database is locked"))


def retrying(fn: Callable[[], T], *, attempts: int = 6, base_delay: float = 0.2, what: str = "database call") -> T:
    """Run `fn` (a whole transaction), retrying transient errors with jittered exponential backoff.

    `fn` must be safe to repeat: every write here is guarded (compare-and-set updates, upserts).
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except DBAPIError as exc:
            if attempt == attempts or not _transient(exc):
                raise
            delay = min(base_delay * 2 ** (attempt - 1), 10.0) * (0.5 + random.random())
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what, exc.orig, attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
