"""Login throttling and bounded password hashing.

Throttling: failed sign-ins are counted in a sliding window per user name and per client address, in the
database (``collect_login_failures``) so that every server process sees the same counts. Over the limit, a
sign-in is refused before any password is checked, with a Japanese message and ``Retry-After``. An attempt
counts as failed from the moment it is let through (so a concurrent burst cannot pass the limit) until its
password proves right; a refused attempt does not count, so a locked name opens again when its window has
passed; a successful sign-in clears the name's failures.

Hashing: argon2 is deliberately slow and memory-hungry. Password checks run on a small pool of their own, never
on the threads that serve the workers' pages, and when too many wait the sign-in is refused as busy: a login
flood then costs the other pages a few cores at most, at a lower CPU priority, and never the thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from emplifai.collect.tx import is_sqlite
from emplifai.store.collect import LoginFailure

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limits:
    window_s: int = 600
    per_user: int = 8
    per_client: int = 30


def _digest(scope: str, value: str) -> str:
    norm = unicodedata.normalize("NFKC", value).strip().casefold() if scope == "user" else value
    return hashlib.sha256(f"{scope}\0{norm}".encode("utf-8", "surrogatepass")).hexdigest()


def _keys(username: str, client: str, limits: Limits) -> list[tuple[str, str, int]]:
    return [("user", _digest("user", username), limits.per_user),
            ("client", _digest("client", client), limits.per_client)]


def retry_after(s: Session, username: str, client: str, now: float, limits: Limits) -> int | None:
    """Seconds until this name and client may try again, or None when they may try now."""
    wait = 0.0
    for scope, key, limit in _keys(username, client, limits):
        n, oldest = s.execute(select(func.count(), func.min(LoginFailure.at)).where(
            LoginFailure.scope == scope, LoginFailure.key == key, LoginFailure.at > now - limits.window_s)).one()
        if n >= limit:
            wait = max(wait, oldest + limits.window_s - now)
    return max(1, math.ceil(wait)) if wait > 0 else None


def begin(s: Session, username: str, client: str, now: float, limits: Limits) -> tuple[int | None, list[int]]:
    """In one write transaction: (seconds to wait, []) when over the limit, else (None, ids of the failure
    rows recorded for this attempt). Counting the attempt as failed *before* its password is checked means
    concurrent attempts see each other, so a burst cannot slip past the limit; a success takes it back."""
    keys = _keys(username, client, limits)
    if not is_sqlite(s):  # SQLite's write lock already serialises this; on PostgreSQL lock the two keys
        for _, key, _ in sorted(keys, key=lambda k: k[1]):
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(key[:15], 16)})
    wait = retry_after(s, username, client, now, limits)
    if wait is not None:
        return wait, []
    rows = [LoginFailure(scope=scope, key=key, at=now) for scope, key, _ in keys]
    s.add_all(rows)
    s.execute(delete(LoginFailure).where(LoginFailure.at <= now - limits.window_s))  # the window slides on
    s.flush()
    return None, [r.id for r in rows]


def cancel(s: Session, attempt: list[int]) -> None:
    """Take back an attempt whose password was never checked (refused as busy)."""
    s.execute(delete(LoginFailure).where(LoginFailure.id.in_(attempt)))


def succeeded(s: Session, username: str, attempt: list[int]) -> None:
    """A successful sign-in clears the name's failures and takes back its own attempt's client row."""
    s.execute(delete(LoginFailure).where(
        (LoginFailure.id.in_(attempt)) | ((LoginFailure.scope == "user")
                                          & (LoginFailure.key == _digest("user", username)))))


def wait_ja(seconds: int) -> str:
    when = f"{math.ceil(seconds / 60)}分" if seconds >= 60 else f"{seconds}秒"
    return f"ログインの失敗が続いたため、しばらくログインできません。{when}ほど待ってから、もう一度お試しください。"


BUSY_JA = "ただいまログインが混み合っています。数秒待ってから、もう一度お試しください。"


class Busy(Exception):
    """Too many password checks are already waiting."""


def default_slots() -> int:
    """A quarter of the cores (at least one): argon2 itself runs several lanes per check."""
    return max(1, (os.cpu_count() or 2) // 4)


def _yield_cpu() -> None:
    """Password checks give way to page requests: on Linux a thread's nice value is its own, and the threads
    argon2 starts for its lanes inherit it. Elsewhere this is a no-op; the pool size still bounds the cost."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class HashGate:
    """Password checks on their own small pool; refuses (``Busy``) beyond ``queue`` waiting checks."""

    def __init__(self, slots: int, queue: int):
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="emplifai-login", initializer=_yield_cpu)
        self._queue = queue
        self._waiting = 0  # touched only on the event loop's thread

    async def run(self, fn: Callable[[], T]) -> T:
        if self._waiting >= self._queue:
            raise Busy
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
