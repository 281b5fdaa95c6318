"""Regression tests for the defects of the outside review (issue 12): each failed before its fix."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emplifai.cli import app as cli
from emplifai.collect import Settings, create_app
from emplifai.collect.settings import DEV_SECRET
from emplifai.dataset.export import export_store
from emplifai.dataset.formats import spreadsheet_safe, spreadsheet_unescape
from emplifai.dataset.ingest import import_file
from emplifai.errors import UserError
from emplifai.store.db import Store
from tests.collect.fixtures import campaign, login, post, settings, users
from tests.helpers import record, write_jsonl

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+2", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.fixture
def app(db_url: str) -> Iterator:
    a = create_app(settings(db_url))
    users(a.state.store, ("w1", "worker"), ("boss", "lead"))
    yield a
    a.state.store.dispose()


def test_logout_ends_the_session_on_the_server(app) -> None:  # type: ignore[no-untyped-def]
    """A cookie copied before POST /logout opened /work and claimed tasks for its 12-hour life."""
    cid = campaign(app.state.store, emotions=["Joy"], round1_target=2)
    w1 = TestClient(app)
    login(w1, "w1")
    stolen = dict(w1.cookies)
    assert w1.get("/work", follow_redirects=False).status_code == 200
    assert post(w1, "/logout", page="/work").headers["location"] == "/login"
    thief = TestClient(app, cookies=stolen)
    assert thief.get("/work", follow_redirects=False).headers["location"] == "/login"
    r = thief.post("/work/claim", data={"campaign_id": cid, "kind": "situation", "csrf_token": "x"},
                   follow_redirects=False)
    assert r.status_code in (303, 403) and r.headers.get("location", "/login") == "/login"
    again = TestClient(app)
    login(again, "w1")  # signing in again works
    assert again.get("/work", follow_redirects=False).status_code == 200


def test_deactivation_and_password_change_end_sessions(store: Store) -> None:
    from emplifai.collect import accounts
    from emplifai.store.collect import User

    users(store, ("w9", "worker"))
    with store.transaction() as s:
        before = s.query(User).filter_by(username="w9").one().session_version
        accounts.set_password(s, "w9", "another-password-123")
        accounts.deactivate(s, "w9")
        u = s.query(User).filter_by(username="w9").one()
        assert u.session_version == before + 2 and not u.active


@pytest.mark.parametrize("text", FORMULAS)
def test_cells_that_would_run_as_formulas_are_escaped_and_read_back(text: str) -> None:
    safe = spreadsheet_safe(text)
    assert isinstance(safe, str) and safe.startswith("'") and spreadsheet_unescape(safe) == text
    assert spreadsheet_safe("-0.25") == "-0.25" and spreadsheet_safe(3) == 3  # numbers stay numbers
    assert spreadsheet_safe("つらかったですね") == "つらかったですね"


@pytest.mark.parametrize("text", ["'=x", "''x", "'-0.25", "'普通の引用符", "-0.25", "'", "''"])
def test_texts_that_look_escaped_already_round_trip_too(text: str) -> None:
    """A typed leading apostrophe is not eaten by the reader (attack on the escaping itself)."""
    assert spreadsheet_unescape(str(spreadsheet_safe(text))) == text


def test_csv_export_is_formula_safe_with_a_bom_and_round_trips(store: Store, tmp_path: Path) -> None:
    rows = [record(i, sit=i) for i in range(3)]
    rows[0]["patient"], rows[1]["supporter"], rows[2]["author"] = FORMULAS[0], "-- 痛みが続いています", "=1+2"
    import_file(store, write_jsonl(tmp_path / "in.jsonl", rows))
    out = tmp_path / "out.csv"
    export_store(store, out, "csv", statuses=["approved"])
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Japanese Excel reads it as UTF-8
    cells = [c for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) for c in row]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells if c != "-")
    other = Store(f"sqlite:///{tmp_path / 'again.db'}")
    import_file(other, out)
    back = tmp_path / "back.jsonl"
    export_store(other, back, "jsonl", statuses=["approved"])
    got = {r["dialogue_id"]: r for r in map(json.loads, back.read_text("utf-8").splitlines())}
    assert got[rows[0]["dialogue_id"]]["patient"] == FORMULAS[0]
    assert got[rows[1]["dialogue_id"]]["supporter"] == "-- 痛みが続いています"
    assert got[rows[2]["dialogue_id"]]["author"] == "=1+2"
    other.dispose()


def test_pay_ledger_escapes_a_display_name_formula(app) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from emplifai.store.collect import User

    store = app.state.store
    with store.transaction() as s:
        s.scalar(select(User).where(User.username == "w1")).display_name = "=1+2"
    cid = campaign(store, emotions=["Joy"])
    boss = TestClient(app)
    login(boss, "boss")
    r = boss.get(f"/ledger/{cid}.csv")
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    assert "=1+2" not in [c for row in csv.reader(io.StringIO(r.content.decode("utf-8-sig"))) for c in row]


def test_the_development_key_needs_dev_and_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """EMPLIFAI_ENV=development alone turned the public built-in key on; --dev on 0.0.0.0 started silently."""
    monkeypatch.delenv("EMPLIFAI_SECRET_KEY", raising=False)
    monkeypatch.setenv("EMPLIFAI_ENV", "development")
    with pytest.raises(Exception, match="default secret"):
        Settings.from_env()
    assert Settings.from_env(environment="development").secret_key == DEV_SECRET
    r = CliRunner().invoke(cli, ["serve", "--dev", "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert r.exit_code != 0 and isinstance(r.exception, UserError) and "loopback" in str(r.exception)


def test_reviewers_notes_never_reach_the_worker(db_url: str) -> None:
    """Regression: a flag reason and the lead's keep comment showed on the worker's /my page."""
    a = create_app(settings(db_url))
    users(a.state.store, ("w1", "worker"), ("rev", "reviewer"), ("boss", "lead"))
    cid = campaign(a.state.store, emotions=["Joy"], round1_target=2)
    w1, rev, boss = TestClient(a), TestClient(a), TestClient(a)
    for c, name in ((w1, "w1"), (rev, "rev"), (boss, "boss")):
        login(c, name)
    loc = post(w1, "/work/claim", {"campaign_id": cid, "kind": "situation"}, page="/work").headers["location"]
    assert post(w1, f"{loc}/submit", {"situation": "通院の帰りに、主治医から数値が良くなったと言われました。"},
                page=loc).status_code == 303
    claim = int(loc.rsplit("/", 1)[1])
    assert "ワーカーに表示されます" in rev.get(f"/review/{claim}").text  # the reject form says who reads it
    post(rev, f"/review/{claim}/flag", {"reason": "内部メモ：表現を確認"}, page=f"/review/{claim}")
    assert "内部メモ" not in w1.get("/my").text and "内部メモ" not in w1.get(loc).text
    post(boss, f"/lead/{claim}/keep", {"reason": "社内コメント：問題なし"}, page="/lead")
    mine = w1.get("/my").text
    assert "社内コメント" not in mine and "内部メモ" not in mine and "承認" in mine
    a.state.store.dispose()


def test_times_are_shown_in_the_campaign_time_zone_with_a_label() -> None:
    from emplifai.collect.deps import format_timestamp

    noon_utc = 1767268800.0  # 2026-01-01 12:00 UTC
    assert format_timestamp(noon_utc) == "2026-01-01 21:00 JST"
    assert format_timestamp(noon_utc, "Europe/Berlin") == "2026-01-01 13:00 CET"
    with pytest.raises(Exception, match="unknown time zone"):
        Settings(secret_key="x" * 40, time_zone="Mars/Olympus")


def test_a_flagged_or_removed_situation_stops_collecting_dialogues(store: Store) -> None:
    """Regression: approve a situation, flag it, the lead removes it — its round-2 task stayed open (受付中)."""
    from emplifai.collect import assign, review
    from emplifai.records import Kind
    from emplifai.store.collect import User
    from tests.collect.fixtures import bulk_workers

    cid = campaign(store, emotions=["Joy"], round1_target=1, round2_target=3)
    ids = users(store, ("rev", "reviewer"), ("boss", "lead"))
    writer, other = bulk_workers(store, 2)

    def user(uid: int) -> User:
        with store.open_session() as s:
            return s.get(User, uid)  # type: ignore[return-value]

    c = assign.claim(store, cid, writer, Kind.SITUATION)
    assert c is not None
    assign.submit(store, c.claim_id, writer, {"situation": "検査の結果を待つ間、ずっと落ち着かない日が続きました。"})
    review.approve(store, c.claim_id, user(ids["rev"]))
    first = assign.claim(store, cid, other, Kind.DIALOGUE)
    assert first is not None  # open after approval
    assign.release(store, first.claim_id, other)
    review.flag(store, c.claim_id, user(ids["rev"]), "内容を確認したい")
    assert assign.claim(store, cid, other, Kind.DIALOGUE) is None  # closed while flagged
    review.keep(store, c.claim_id, user(ids["boss"]))
    again = assign.claim(store, cid, other, Kind.DIALOGUE)
    assert again is not None  # kept: open again
    assign.release(store, again.claim_id, other)
    review.flag(store, c.claim_id, user(ids["rev"]), "やはり不適切")
    review.remove(store, c.claim_id, user(ids["boss"]), "削除します")
    assert assign.claim(store, cid, other, Kind.DIALOGUE) is None  # removed: never handed out again
