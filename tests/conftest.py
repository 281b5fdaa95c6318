"""Test fixtures: every test gets its own database, on SQLite and on PostgreSQL alike.

PostgreSQL comes from EMPLIFAI_TEST_PG_URL (scripts/test.sh starts one on loopback). Under CI its absence is
an error, not a skip, so the PostgreSQL half of the suite can never silently vanish.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from emplifai.llm.fake import FakeLLM
from emplifai.store.db import Store, resolve_url
from tests.helpers import CHROMIUM

PG_URL = os.environ.get("EMPLIFAI_TEST_PG_URL")
# llama.cpp's OpenMP threads spin while waiting: passive waiting keeps the suite fast on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Every browser test runs Debian's chromium, without background networking."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """State a command writes by default (emplifai.db) lands in the test's tmpdir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMPLIFAI_DB", raising=False)


def _pg_database() -> Iterator[str]:
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("EMPLIFAI_TEST_PG_URL is not set under CI: run the tests through scripts/test.sh")
        pytest.skip("no PostgreSQL: set EMPLIFAI_TEST_PG_URL (scripts/test.sh does)")
    admin = create_engine(resolve_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield resolve_url(PG_URL).rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(autouse=True)
def _fresh_fakes() -> Iterator[None]:
    """Named fakes are shared per process (like a loaded model): every test starts with none."""
    FakeLLM.reset_all()
    yield
    FakeLLM.reset_all()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.dispose()


def _llama_server_binary() -> Path:
    """The llama-server that scripts/llama-server.sh built into this checkout (or $EMPLIFAI_LLAMA_SERVER)."""
    from emplifai.llm.local_server import find_llama_server

    found = find_llama_server()
    if found is None:
        script = Path(__file__).resolve().parents[1] / "scripts" / "llama-server.sh"
        out = subprocess.run(["bash", str(script), "path"], capture_output=True, text=True, check=False)
        found = Path(out.stdout.strip()) if out.returncode == 0 else None
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("llama-server is not built under CI: scripts/test.sh builds it (scripts/llama-server.sh)")
        pytest.skip("llama-server not built: bash scripts/llama-server.sh build")
    return found


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    return _llama_server_binary()


@pytest.fixture(scope="session")
def llama_server_url(llama_server_binary: Path) -> Iterator[str]:
    """llama.cpp's own llama-server on loopback with the embedded model: 8 slots, continuous batching."""
    from emplifai.llm import embedded_model
    from emplifai.llm.local_server import batching_server

    with batching_server(embedded_model()[0], binary=llama_server_binary, parallel=8, n_threads=2) as url:
        yield url
