"""Campaign lifecycle (issue 12 item 14) on the real store, both backends: pause (no new claims, leases may
finish), close (no claims, no submissions, the typed text kept), a per-worker quota that holds under concurrent
claims, deactivation that ends sessions and frees leases — from the web (roles, CSRF) and the CLI; and
`serve --workers` refused on SQLite (item 18)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from emplifai.cli import app as cli
from emplifai.collect import assign, create_app
from emplifai.collect.assign import Conflict
from emplifai.collect.campaigns import get_campaign, seed_round2, set_quota
from emplifai.errors import UserError
from emplifai.store.collect import Campaign, Claim, ClaimStatus, Task, User
from emplifai.store.db import Store
from tests.collect.fixtures import bulk_workers, campaign, login, post, settings, situations, users

EMOTIONS = ["Joy", "Fear", "Anger"]


@pytest.fixture
def app(db_url: str) -> Iterator:
    a = create_app(settings(db_url))
    users(a.state.store, ("admin", "admin"), ("boss", "lead"), ("rev", "reviewer"), ("w1", "worker"),
          ("w2", "worker"))
    yield a
    a.state.store.dispose()


def client(app, name: str) -> TestClient:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    login(c, name)
    return c


def _claim(c: TestClient, cid: int, kind: str = "situation"):  # type: ignore[no-untyped-def]
    return post(c, "/work/claim", {"campaign_id": cid, "kind": kind}, page="/work")


def _state(c: TestClient, cid: int, state: str):  # type: ignore[no-untyped-def]
    return post(c, f"/campaigns/{cid}/state", {"state": state}, page=f"/dashboard/{cid}")


def test_pause_stops_new_claims_but_lets_leases_finish(app) -> None:  # type: ignore[no-untyped-def]
    cid = campaign(app.state.store, emotions=EMOTIONS)
    boss, w1, w2 = client(app, "boss"), client(app, "w1"), client(app, "w2")
    loc = _claim(w1, cid).headers["location"]
    r = _state(boss, cid, "paused")
    assert r.status_code == 303 and r.headers["location"] == f"/dashboard/{cid}?msg=state_paused"
    assert "一時停止中" in boss.get(f"/dashboard/{cid}").text
    r = _claim(w2, cid)
    assert r.status_code == 409 and "一時停止中です" in r.text
    assert "一時停止中です" in w2.get("/work").text and 'name="kind"' not in w2.get("/work").text
    r = post(w1, f"{loc}/submit", {"situation": "検査の結果を待つ間のことです。"}, page=loc)
    assert r.status_code == 303 and r.headers["location"].endswith("/done")  # in-flight work is accepted
    assert _state(boss, cid, "open").status_code == 303
    assert _claim(w2, cid).headers["location"].startswith("/claims/")


def test_close_refuses_claims_and_submissions_and_keeps_the_text(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=EMOTIONS)
    boss, w1, w2 = client(app, "boss"), client(app, "w1"), client(app, "w2")
    loc = _claim(w1, cid).headers["location"]
    assert _state(boss, cid, "closed").status_code == 303
    text = "母の付き添いで病院に通っていた頃の話です。"
    r = post(w1, f"{loc}/submit", {"situation": text}, page=loc)
    assert r.status_code == 400 and "終了したため、提出できません" in r.text and text in r.text
    r = _claim(w2, cid)
    assert r.status_code == 409 and "終了しています" in r.text
    with store.open_session() as s:
        assert s.scalar(select(func.count()).select_from(Claim).where(Claim.submitted_at.is_not(None))) == 0
    assert "（終了）" in boss.get("/dashboard").text  # still reachable for review, pay and reconciliation


def test_lifecycle_posts_need_a_lead_and_a_csrf_token(app) -> None:  # type: ignore[no-untyped-def]
    cid = campaign(app.state.store, emotions=EMOTIONS)
    for name in ("w1", "rev"):
        c = client(app, name)
        page = "/work" if name == "w1" else "/review"
        assert post(c, f"/campaigns/{cid}/state", {"state": "closed"}, page=page).status_code == 403
        assert post(c, f"/campaigns/{cid}/quota", {"quota": "1"}, page=page).status_code == 403
    boss = client(app, "boss")
    assert boss.post(f"/campaigns/{cid}/state", data={"state": "closed"}).status_code == 403  # no token
    assert _state(boss, cid, "archived").status_code == 400
    r = post(boss, "/campaigns/99999999999/state", {"state": "closed"}, page="/dashboard")
    assert r.status_code == 404
    for bad in ("-1", "abc", "9" * 5000, "１"):
        r = post(boss, f"/campaigns/{cid}/quota", {"quota": bad}, page=f"/dashboard/{cid}")
        assert r.status_code == 400 and "整数" in r.text
    with app.state.store.open_session() as s:
        camp = s.get(Campaign, cid)
        assert (camp.active, camp.paused, camp.worker_quota) == (True, False, None)


def test_quota_caps_tasks_per_worker_from_the_web(app) -> None:  # type: ignore[no-untyped-def]
    cid = campaign(app.state.store, emotions=EMOTIONS)
    boss, w1, w2 = client(app, "boss"), client(app, "w1"), client(app, "w2")
    r = post(boss, f"/campaigns/{cid}/quota", {"quota": "2"}, page=f"/dashboard/{cid}")
    assert r.status_code == 303
    for _ in range(2):
        loc = _claim(w1, cid).headers["location"]
        assert post(w1, f"{loc}/submit", {"situation": "待合室でのことです。"}, page=loc).status_code == 303
    r = _claim(w1, cid)
    assert r.status_code == 409 and "上限（2件）に達しました" in r.text
    assert _claim(w2, cid).headers["location"].startswith("/claims/")  # per worker, not per campaign
    assert post(boss, f"/campaigns/{cid}/quota", {"quota": ""}, page=f"/dashboard/{cid}").status_code == 303
    assert _claim(w1, cid).headers["location"].startswith("/claims/")


def test_quota_holds_under_concurrent_claims_of_one_worker(db_url: str) -> None:
    store = Store(db_url)
    situations(store, EMOTIONS, 2)
    cid = campaign(store, emotions=EMOTIONS)
    with store.transaction() as s:
        seed_round2(s, get_campaign(s, cid))
        set_quota(s, cid, 1)
    [w] = bulk_workers(store, 1)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def go(i: int) -> None:
        barrier.wait()
        try:  # two kinds, so a held lease of one kind is no excuse for the other
            results.append(assign.claim(store, cid, w, ("situation", "dialogue")[i % 2], rng=random.Random(i)))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.open_session() as s:
        assert s.scalar(select(func.count()).select_from(Claim)) == 1
        assert s.scalar(select(func.sum(Task.filled))) == 1
    kinds = {r.task_id for r in results if isinstance(r, assign.Claimed)}
    assert len(kinds) == 1 and sum(isinstance(r, Conflict) for r in results) >= 1
    store.dispose()


def test_deactivation_ends_sessions_and_frees_leases(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=EMOTIONS, round1_target=1)
    boss, w1 = client(app, "boss"), client(app, "w1")
    _claim(w1, cid)
    with store.open_session() as s:
        uid = s.scalar(select(User.id).where(User.username == "w1"))
        assert s.scalar(select(func.sum(Task.filled))) == 1
    r = post(boss, f"/users/{uid}/deactivate", page="/workers")
    assert r.status_code == 303 and r.headers["location"] == "/workers?msg=deactivated"
    r = w1.get("/work", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"  # the old cookie opens nothing
    with store.open_session() as s:
        assert not s.get(User, uid).active and s.scalar(select(func.sum(Task.filled))) == 0
        assert s.scalar(select(Claim.status)) == ClaimStatus.RELEASED
    assert "無効" in boss.get("/workers").text
    fresh = TestClient(app)
    with pytest.raises(AssertionError):
        login(fresh, "w1")  # and no new sign-in
    with store.open_session() as s:
        boss_id = s.scalar(select(User.id).where(User.username == "boss"))
    admin = client(app, "admin")
    assert post(admin, f"/users/{boss_id}/deactivate", page="/admin").status_code == 303  # admin: staff too
    with store.open_session() as s:
        admin_id = s.scalar(select(User.id).where(User.username == "admin"))
    r = post(admin, f"/users/{admin_id}/deactivate", page="/admin")
    assert r.status_code == 400 and "自分のアカウント" in r.text


def test_cli_lifecycle(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(db_url)
    users(store, ("w9", "worker"))
    cid = campaign(store, "life", emotions=EMOTIONS)
    runner = CliRunner()

    def ok(*args: str) -> str:
        r = runner.invoke(cli, ["collect", *args, "--db", db_url])
        assert r.exit_code == 0, (args, r.output, r.exception)
        return r.output

    def camp() -> tuple[bool, bool, int | None]:
        with store.open_session() as s:
            c = s.get(Campaign, cid)
            return c.active, c.paused, c.worker_quota

    assert "paused" in ok("pause", "life") and camp() == (True, True, None)
    assert "open" in ok("resume", "life") and camp() == (True, False, None)
    assert "at most 5" in ok("quota", "life", "5") and camp()[2] == 5
    assert "no quota" in ok("quota", "life", "0") and camp()[2] is None
    assert "closed" in ok("close", "life") and camp() == (False, False, None)
    with pytest.raises(Conflict, match="終了"):
        assign.claim(store, cid, 1, "situation")
    assert "deactivated 'w9'" in ok("deactivate", "w9")
    with store.open_session() as s:
        assert not s.scalar(select(User.active).where(User.username == "w9"))
    r = runner.invoke(cli, ["collect", "quota", "life", "200000", "--db", db_url])
    assert r.exit_code != 0 and isinstance(r.exception, UserError)
    store.dispose()


def test_serve_refuses_several_processes_on_sqlite(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPLIFAI_SECRET_KEY", "k" * 48)
    r = CliRunner().invoke(cli, ["serve", "--workers", "4", "--db", sqlite_url])
    assert r.exit_code != 0 and isinstance(r.exception, UserError)
    assert "--workers 4 needs PostgreSQL" in str(r.exception) and "--workers 1" in str(r.exception)
    r = CliRunner().invoke(cli, ["serve", "--workers", "0", "--db", sqlite_url])
    assert "between 1 and" in str(r.exception)


def test_every_server_process_gets_the_parents_settings(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --workers N` hands the validated settings to the children through one environment variable:
    the same secret (cookies signed by one process open pages in another), database and time zone."""
    from emplifai.collect.security import SessionCodec, new_session
    from emplifai.collect.server import SETTINGS_ENV, app_from_env

    parent = settings(sqlite_url, time_zone="America/New_York", public_url="https://c.example.jp")
    monkeypatch.setenv(SETTINGS_ENV, parent.model_dump_json())
    child_a, child_b = app_from_env(), app_from_env()
    try:
        assert child_a.state.settings == parent == child_b.state.settings
        cookie = child_a.state.codec.dumps(new_session(7, 1))
        assert child_b.state.codec.loads(cookie).uid == 7
        assert SessionCodec("another-secret-" * 4, 60).loads(cookie) is None
    finally:
        child_a.state.store.dispose()
        child_b.state.store.dispose()
    monkeypatch.delenv(SETTINGS_ENV)
    with pytest.raises(RuntimeError, match=SETTINGS_ENV):
        app_from_env()
