"""A real `emplifai serve`: many simultaneous HTTP claimers, and a kill -9 in the middle of a campaign — with one
process (SQLite and PostgreSQL) and with `--workers 4` (PostgreSQL), where every request may land on another
process: the same guarantees (0 overshoot, 0 double assignment, nothing acknowledged lost) and one session
secret shared by all processes (a cookie minted once is accepted by whichever process answers)."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from emplifai.collect.campaigns import get_campaign, seed_round2
from emplifai.store.collect import Claim, ClaimStatus, Task
from emplifai.store.db import Store
from emplifai.store.models import Dialogue
from tests.collect.fixtures import bulk_workers, campaign, minted_client, situations, start_server

pytestmark = pytest.mark.slow
EMOTIONS = ["Joy", "Fear", "Anger", "Sadness"]


def _campaign(store: Store, per_pair: int, lease_seconds: int = 1800) -> int:
    situations(store, EMOTIONS, 2)
    cid = campaign(store, emotions=EMOTIONS, round2_target=per_pair, lease_seconds=lease_seconds)
    with store.transaction() as s:
        seed_round2(s, get_campaign(s, cid))
    return cid


def _gone(pgid: int) -> None:
    """No process of the killed server's group is left serving."""
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("processes of the killed server are still alive")


def _claim(base: str, secret: str, uid: int, cid: int) -> tuple[int, str | None]:
    c, token = minted_client(base, secret, uid)
    with c:
        r = c.post("/work/claim", data={"campaign_id": cid, "kind": "dialogue", "csrf_token": token})
        assert r.status_code == 303, r.text
        return uid, r.headers["location"]


def test_http_claimers_never_overshoot(db_url: str, tmp_path: Path) -> None:
    _never_overshoot(db_url, tmp_path, processes=1)


def test_http_claimers_never_overshoot_with_4_processes(pg_url: str, tmp_path: Path) -> None:
    _never_overshoot(pg_url, tmp_path, processes=4)


def test_kill_server_mid_campaign_loses_nothing(db_url: str, tmp_path: Path) -> None:
    _kill_loses_nothing(db_url, tmp_path, processes=1)


def test_kill_server_with_4_processes_mid_campaign_loses_nothing(pg_url: str, tmp_path: Path) -> None:
    _kill_loses_nothing(pg_url, tmp_path, processes=4)


def _never_overshoot(db_url: str, tmp_path: Path, processes: int) -> None:
    store = Store(db_url)
    cid = _campaign(store, per_pair=3)  # 8 pairs × 3 = 24 slots
    workers = bulk_workers(store, 60)
    secret = secrets.token_urlsafe(48)
    server = start_server(db_url, secret, tmp_path, workers=processes)
    try:
        with ThreadPoolExecutor(max_workers=60) as pool:  # 60 simultaneous claims for 24 slots
            results = list(pool.map(lambda w: _claim(server.url, secret, w, cid), workers))
    finally:
        server.stop()
    got = [loc for _, loc in results if loc.startswith("/claims/")]
    assert len(got) == 24 and len(set(got)) == 24  # every slot handed out exactly once
    assert sum(1 for _, loc in results if loc == "/work?msg=nowork") == 36
    with store.open_session() as s:
        for t in s.scalars(select(Task).where(Task.kind == "dialogue")):
            live = s.scalar(select(func.count()).select_from(Claim).where(Claim.task_id == t.id,
                                                                         Claim.status == ClaimStatus.LEASED))
            assert live == t.filled == t.target == 3
    store.dispose()


def _kill_loses_nothing(db_url: str, tmp_path: Path, processes: int) -> None:
    store = Store(db_url)
    cid = _campaign(store, per_pair=1, lease_seconds=3)  # 8 slots, short leases
    workers = bulk_workers(store, 10)
    secret = secrets.token_urlsafe(48)
    server = start_server(db_url, secret, tmp_path, workers=processes)
    submitted = []
    try:
        for w in workers[:4]:  # four submit, four more only hold a lease when the server dies
            c, token = minted_client(server.url, secret, w)
            loc = c.post("/work/claim", data={"campaign_id": cid, "kind": "dialogue", "csrf_token": token}
                         ).headers["location"]
            text = f"患者の発話（{w}）"
            r = c.post(f"{loc}/submit", data={"patient": text, "supporter": "支援者の応答", "csrf_token": token})
            assert r.status_code == 303
            submitted.append(text)
        for w in workers[4:8]:
            assert _claim(server.url, secret, w, cid)[1].startswith("/claims/")
        assert _claim(server.url, secret, workers[8], cid)[1] == "/work?msg=nowork"  # all 8 slots taken
    finally:
        server.stop(signal.SIGKILL)  # no clean shutdown, every process of the server at once
    assert server.proc.returncode == -signal.SIGKILL
    _gone(server.proc.pid)
    server = start_server(db_url, secret, tmp_path, workers=processes)
    try:
        with store.open_session() as s:
            assert sorted(s.scalars(select(Dialogue.patient))) == sorted(submitted)
            assert set(s.scalars(select(Dialogue.status))) == {"pending"}
        time.sleep(3.5)  # the four leases expire
        _, loc = _claim(server.url, secret, workers[8], cid)
        assert loc.startswith("/claims/")  # an expired lease went back to the pool
        _, loc2 = _claim(server.url, secret, workers[9], cid)
        assert loc2.startswith("/claims/") and loc2 != loc
    finally:
        server.stop()
    with store.open_session() as s:
        states = Counter(s.scalars(select(Claim.status)))
        assert states[ClaimStatus.EXPIRED] == 4 and states[ClaimStatus.PENDING] == 4
        assert states[ClaimStatus.LEASED] == 2
        assert s.scalar(select(func.sum(Task.filled)).where(Task.kind == "dialogue")) == 6
    store.dispose()
