"""Builders shared by the collect tests (imported explicitly): apps, users, sign-in, real servers, rating data."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from emplifai.collect import Settings
from emplifai.collect.accounts import create_user
from emplifai.collect.campaigns import create_campaign
from emplifai.records import Source, Status
from emplifai.store.collect import User
from emplifai.store.db import Store
from emplifai.store.evaluation import EvalSample, EvalSampleItem, Generation
from emplifai.store.models import Situation

PASSWORD = "correct-horse-battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
# Precomputed once: argon2 is deliberately slow, and bulk workers never sign in through the form anyway.
_FAST_HASH: list[str] = []


def settings(url: str, **over: object) -> Settings:
    return Settings(db=url, secret_key=secrets.token_urlsafe(48), environment="production", **over)


def users(store: Store, *specs: tuple[str, str]) -> dict[str, int]:
    """Create (username, role) accounts with PASSWORD; returns name -> id."""
    out = {}
    with store.transaction() as s:
        for name, role in specs:
            out[name] = create_user(s, name, PASSWORD, role).id
    return out


def bulk_workers(store: Store, n: int, prefix: str = "w") -> list[int]:
    """Many worker accounts quickly (one shared argon2 hash; they act through the API, not the sign-in form)."""
    from emplifai.collect.security import hash_password

    if not _FAST_HASH:
        _FAST_HASH.append(hash_password(PASSWORD))
    with store.transaction() as s:
        objs = [User(username=f"{prefix}{i:04d}", display_name=f"{prefix}{i}", password_hash=_FAST_HASH[0],
                     role="worker", active=True, session_version=1) for i in range(n)]
        s.add_all(objs)
        s.flush()
        return [u.id for u in objs]


def campaign(store: Store, name: str = "c1", **kw: object) -> int:
    with store.transaction() as s:
        return create_campaign(s, name, **kw).id  # type: ignore[arg-type]


def situations(store: Store, emotions: list[str], per: int, prefix: str = "seed") -> list[str]:
    """Approved situations in the store (as if imported), to seed round 2."""
    ids = []
    with store.transaction() as s:
        for e in emotions:
            for i in range(per):
                sid = f"{prefix}-{e}-{i}"
                s.add(Situation(id=sid, emotion=e, text=f"{e}の状況{i}：通院の帰り道のことです。", source=Source.SAMPLE,
                                status=Status.APPROVED, meta={}))
                ids.append(sid)
    return ids


def csrf(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> None:
    token = csrf(client.get("/login").text)
    r = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def post(client: httpx.Client, path: str, data: dict | None = None, page: str = "/", **kw: object) -> httpx.Response:
    """POST a form with the CSRF token taken from a page the client can see."""
    token = csrf(client.get(page).text)
    return client.post(path, data={**(data or {}), "csrf_token": token}, follow_redirects=False, **kw)


def rating_sample(store: Store, n: int = 20, source: str = "human") -> list[int]:
    """An evaluation sample of n situations with one generation each; returns generation ids in order."""
    sids = situations(store, ["Joy", "Fear"], n // 2, prefix="eval")
    with store.transaction() as s:
        s.add(EvalSample(name="default", seed=42, n=n, meta={}))
        s.flush()
        gens = []
        for pos, sid in enumerate(sids):
            s.add(EvalSampleItem(sample_name="default", position=pos, situation_id=sid,
                                 emotion="Joy" if "Joy" in sid else "Fear"))
            g = Generation(sample_name="default", situation_id=sid, source=source, raw="患者：はい\n支援者：はい",
                           patient=f"生成された患者の発話{pos}", supporter=f"生成された支援者の応答{pos}",
                           malformed=None,
                           japanese_share=1.0, non_japanese=False, signature={}, prompt_version="test", seed=1)
            s.add(g)
            gens.append(g)
        s.flush()
        return [g.id for g in gens]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group: with --workers N the worker processes die with the supervisor
        (a kill -9 of the machine's server, not of one process that leaves orphans serving)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        if sig == signal.SIGKILL:
            return
        with contextlib.suppress(ProcessLookupError):  # the group's stragglers after a clean stop
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_server(db_url: str, secret: str, cwd: Path, workers: int = 1) -> Server:
    """`emplifai serve` (``--workers N``) in its own process group on a free loopback port; returns when
    /healthz answers from every process."""
    port = free_port()
    env = {**os.environ, "EMPLIFAI_SECRET_KEY": secret, "EMPLIFAI_ENV": "production"}
    cmd = [sys.executable, "-c", "from emplifai.cli import main; main()", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--db", db_url, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True,
                            stdout=(cwd / f"server-{port}.log").open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(cwd / f'server-{port}.log').read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 and _all_up(proc, workers):
                return Server(proc, url)
        except httpx.HTTPError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("server did not start")


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _all_up(proc: subprocess.Popen, workers: int) -> bool:
    """With --workers N: at least N processes under the supervisor (a spawn helper may be one more)."""
    return workers == 1 or len(children(proc.pid)) >= workers


def minted_client(base_url: str, secret: str, uid: int, max_age: int = 3600) -> tuple[httpx.Client, str]:
    """A client signed in as user `uid` by minting the session cookie with the server's secret (no argon2 cost);
    returns the client and its CSRF token."""
    from emplifai.collect.security import COOKIE, SessionCodec, new_session

    sess = new_session(uid, 1)
    c = httpx.Client(base_url=base_url, cookies={COOKIE: SessionCodec(secret, max_age).dumps(sess)}, timeout=60)
    return c, sess.csrf


def sign_in(browser, url: str, name: str, password: str = PASSWORD, **context):  # type: ignore[no-untyped-def]
    """A new browser context signed in through the real login form (``context``: e.g. ``viewport=``)."""
    page = browser.new_context(base_url=url, accept_downloads=True, **context).new_page()
    page.goto("/login")
    page.get_by_label("ユーザー名").fill(name)
    page.get_by_label("パスワード").fill(password)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_load_state()
    return page


def screenshot(page, tmp_path: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    """A full-page PNG in the test's tmp dir, copied to $EMPLIFAI_SCREENSHOTS when set (to look at)."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if out := os.environ.get("EMPLIFAI_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)
    return path
