"""Serving the web app in one or several uvicorn processes.

Several processes are safe on PostgreSQL only: there every claim is one row-locked ``UPDATE … WHERE filled <
target`` and each worker's claims queue on that worker's row lock, whichever process runs them. SQLite's
writers queue on a lock inside one process, so a second process would turn that queue into busy-waiting on the
file: ``--workers > 1`` is refused there.

Every process must sign and check cookies with the same key and read the same database and time zone: the
parent validates the settings once, migrates the schema once (concurrent migrations would race), and hands the
settings to the children through one environment variable that the app factory reads.
"""

from __future__ import annotations

import os

from emplifai.collect.settings import Settings
from emplifai.errors import UserError

SETTINGS_ENV = "EMPLIFAI_SERVE_SETTINGS"
MAX_WORKERS = 64


def check_workers(settings: Settings, workers: int) -> str:
    """The database URL, after refusing a process count the database cannot take."""
    from emplifai.store.db import resolve_url

    url = resolve_url(settings.db)
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
    if workers > 1 and not url.startswith("postgresql"):
        raise UserError(f"--workers {workers} needs PostgreSQL: SQLite has a single writer and its write queue "
                        "lives inside one process; serve SQLite with --workers 1, or use a postgresql:// URL")
    return url


def app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn's factory in each worker process: the parent's settings, passed in the environment."""
    from emplifai.collect.app import create_app

    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start the server with `emplifai serve`")
    return create_app(Settings.model_validate_json(raw))


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    from emplifai.store.db import Store

    url = check_workers(settings, workers)
    if workers == 1:
        from emplifai.collect.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
        return
    Store(url).dispose()  # migrate once, here, before the children open the database
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run("emplifai.collect.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning")
