"""Engine and session factory: a SQLite file by default, PostgreSQL by URL. Migrations run on open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from emplifai.errors import UserError

DEFAULT_URL = "sqlite:///emplifai.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(db: str | None = None) -> str:
    """--db beats EMPLIFAI_DB beats the default; a bare path means a SQLite file."""
    url = db or os.environ.get("EMPLIFAI_DB") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3 is the driver we ship
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the single writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except Exception as exc:  # bad URL syntax or unknown driver
        raise UserError(f"cannot use database URL {url!r}: {exc}") from exc
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision of every branch (a no-op when current).

    Each stage owns an Alembic branch that starts from 0001_core, so stages evolve their tables independently.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    try:
        with engine.connect() as conn:
            if set(MigrationContext.configure(conn).get_current_heads()) == heads:
                return
    except Exception as exc:
        raise UserError(f"cannot connect to the database {engine.url!r}: {exc}") from exc
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


class Store:
    """A migrated database with a session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        # A plain session for reads (and for code that commits itself); `transaction()` for a unit of work.
        self.open_session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self.open_session() as s, s.begin():
            yield s

    def tables(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        self.engine.dispose()


@cache
def _cached_store(url: str) -> Store:
    return Store(url)


def open_store(db: str | None = None, *, fresh: bool = False) -> Store:
    """The store for a --db value (URL, path or None); one engine per URL per process."""
    url = resolve_url(db)
    return Store(url) if fresh else _cached_store(url)
