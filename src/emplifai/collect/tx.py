"""Write transactions that take the lock up front, and retries for PostgreSQL's deadlock/serialization errors.

SQLite allows one writer: a transaction that reads first and writes later can fail at the upgrade, so every
write here starts with ``BEGIN IMMEDIATE``. Inside one server process the writers also queue on a lock, which
is much faster than SQLite's sleeping busy handler when 50 requests arrive at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from emplifai.store.db import Store

T = TypeVar("T")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
RETRYABLE_PG = {"40001", "40P01"}  # serialization failure, deadlock detected


def is_sqlite(s: Session | Store) -> bool:
    bind = s.engine if isinstance(s, Store) else s.get_bind()
    return bind.dialect.name == "sqlite"


def _lock(url: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(url, threading.Lock())


@contextmanager
def write_tx(store: Store) -> Iterator[Session]:
    """A unit of work holding the database write lock from its first statement; commits on success."""
    sqlite = is_sqlite(store)
    with (_lock(store.url) if sqlite else nullcontext()), store.open_session() as s, s.begin():
        if sqlite:
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield s


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in RETRYABLE_PG


def run_write(store: Store, fn: Callable[[Session], T], attempts: int = 5) -> T:
    """Run fn in a write transaction, retrying the transaction on deadlock or serialization failure."""
    for attempt in range(attempts):
        try:
            with write_tx(store) as s:
                return fn(s)
        except DBAPIError as exc:
            if attempt == attempts - 1 or not _retryable(exc):
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")
