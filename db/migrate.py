"""Bring a database to the current schema (`rmscore db upgrade`), safely from several processes at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from db.session import reading, retrying, writing

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant will do: it names the PostgreSQL advisory lock that serializes concurrent upgrades.
_PG_LOCK_KEY = 0x726D73636F7265


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Engine) -> str | None:
    with reading(db) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(db: Engine) -> bool:
    return current_revision(db) == head_revision()


def upgrade(db: Engine, revision: str = "head") -> str | None:
    """Migrate to `revision`; returns the revision the database is at afterwards.

    The whole upgrade runs in one write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock), so a second process starting at the same moment waits, then finds nothing to do.
    """
    cfg = alembic_config()

    def once() -> None:
        with writing(db) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    # Several processes opening one fresh SQLite file at once can meet "database is locked" while
    # one of them switches it to WAL (SQLite does not wait on the busy handler there): retry.
    retrying(once, what="migration")
    return retrying(lambda: current_revision(db), what="reading the schema revision")


def ensure_schema(db: Engine) -> None:
    """Upgrade when behind: a fresh SQLite file (the one-machine default) then just works."""
    if not is_current(db):
        upgrade(db)
