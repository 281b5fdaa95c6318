"""Route tests with FastAPI's TestClient on the real store (SQLite and PostgreSQL): the flow and its security."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from emplifai.collect import Settings, create_app
from emplifai.collect.settings import DEV_SECRET
from emplifai.store.collect import Claim
from emplifai.store.evaluation import Rating
from emplifai.store.models import Dialogue, ReviewEvent, Situation
from tests.collect.fixtures import campaign, csrf, login, post, rating_sample, settings, situations, users

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SQL = "Robert'); DROP TABLE dialogues;-- \" OR 1=1 --"


@pytest.fixture
def app(db_url: str) -> Iterator:
    a = create_app(settings(db_url))
    users(a.state.store, ("admin", "admin"), ("w1", "worker"), ("w2", "worker"), ("rev", "reviewer"),
          ("boss", "lead"))
    yield a
    a.state.store.dispose()


def client(app, name: str | None = None) -> TestClient:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    if name:
        login(c, name)
    return c


def _claim(c: TestClient, cid: int, kind: str) -> str:
    r = post(c, "/work/claim", {"campaign_id": cid, "kind": kind}, page="/work")
    assert r.status_code == 303 and r.headers["location"].startswith("/claims/"), r.text
    return r.headers["location"]


def test_settings_refuse_default_secret_outside_development() -> None:
    with pytest.raises(ValidationError, match="default secret"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="at least"):
        Settings(secret_key="short", environment="production")
    with pytest.raises(ValidationError):
        Settings(secret_key="x" * 40, unknown=1)  # extra="forbid"
    assert Settings(environment="development").secret_key == DEV_SECRET


def test_full_flow_with_xss_and_sql_text(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Joy"], round1_target=2, round2_target=2)
    w1, w2, rev, boss = client(app, "w1"), client(app, "w2"), client(app, "rev"), client(app, "boss")
    loc = _claim(w1, cid, "situation")
    page = w1.get(loc).text
    assert "喜び" in page and "状況" in page
    r = post(w1, f"{loc}/submit", {"situation": XSS}, page=loc)
    assert r.status_code == 303 and r.headers["location"] == f"{loc}/done"
    claim1 = int(loc.rsplit("/", 1)[1])
    html = rev.get(f"/review/{claim1}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and XSS not in html  # escaped
    assert post(rev, f"/review/{claim1}/approve", page=f"/review/{claim1}").status_code == 303
    # the approved situation is a round-2 prompt: the form shows the situation and the target emotion
    loc2 = _claim(w2, cid, "dialogue")
    page2 = w2.get(loc2).text
    assert "&lt;script&gt;" in page2 and "<script>alert" not in page2 and "喜び" in page2
    r = post(w2, f"{loc2}/submit", {"patient": SQL, "supporter": "つらかったですね"}, page=loc2)
    assert r.status_code == 303
    claim2 = int(loc2.rsplit("/", 1)[1])
    with store.open_session() as s:
        d = s.scalar(select(Dialogue))
        assert d.patient == SQL and d.status == "pending" and d.author == "w2"  # stored verbatim
        assert s.scalar(select(Situation.text).where(Situation.id == d.situation_id)) == XSS
    r = post(rev, f"/review/{claim2}/modify", {"patient": "検査の結果を待っています", "supporter": "つらかったですね",
                                              "reason": "表現を修正"}, page=f"/review/{claim2}")
    assert r.status_code == 303
    assert post(rev, f"/review/{claim2}/flag", {"reason": "確認が必要"}, page=f"/review/{claim2}").status_code == 303
    assert "確認が必要" in boss.get("/lead").text
    assert post(boss, f"/lead/{claim2}/keep", page="/lead").status_code == 303
    with store.open_session() as s:
        events = [(e.action, e.field, e.before) for e in s.scalars(select(ReviewEvent).order_by(ReviewEvent.id))]
    assert ("modify", "patient", SQL) in events and ("keep", "status", "flagged") in events
    ledger = boss.get(f"/ledger/{cid}.csv")
    assert ledger.status_code == 200 and ledger.headers["content-type"].startswith("text/csv")
    assert ledger.text.splitlines()[1:] == ["w1,,w1,1,0,0,10", "w2,,w2,0,1,0,50"]
    export = boss.get("/export?fmt=jsonl&scope=approved")
    rows = [json.loads(x) for x in export.text.splitlines()]
    got = [(r["patient"], r["emotion"], r["status"]) for r in rows]
    assert got == [("検査の結果を待っています", "Joy", "approved")]
    dash = rev.get(f"/dashboard/{cid}").text
    assert "喜び" in dash and "w2" in dash
    mine = w2.get("/my").text
    assert "承認" in mine and "w1" not in mine


def test_security_rules(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Joy", "Fear"], round1_target=1)
    w1, w2 = client(app, "w1"), client(app, "w2")
    anon = client(app)
    # anonymous: every page sends to sign-in
    assert anon.get("/work", follow_redirects=False).headers["location"] == "/login"
    # missing or wrong CSRF token on a state-changing request -> 403, nothing changes
    assert w1.post("/work/claim", data={"campaign_id": cid, "kind": "situation"}).status_code == 403
    assert w1.post("/work/claim", data={"campaign_id": cid, "kind": "situation", "csrf_token": "x"}).status_code == 403
    token = csrf(anon.get("/login").text)
    assert anon.post("/login", data={"username": "w1", "password": "correct-horse-battery"}).status_code == 403
    assert anon.post("/login", data={"username": "w1", "password": "wrong-password", "csrf_token": token}
                     ).status_code == 401
    with store.open_session() as s:
        assert s.scalar(select(Claim)) is None
    # a worker on reviewer, lead and admin routes -> 403 (pages and actions alike)
    for path in ("/review", "/review/1", "/lead", "/dashboard", f"/dashboard/{cid}", f"/ledger/{cid}.csv",
                 "/export", "/admin"):
        assert w1.get(path).status_code == 403, path
    for path in ("/review/1/approve", "/review/1/reject", "/lead/1/keep", "/admin/users", "/admin/campaigns"):
        assert post(w1, path, {"reason": "x", "username": "evil", "password": "12345678", "role": "admin"},
                    page="/work").status_code == 403, path
    rev = client(app, "rev")
    assert rev.get("/admin").status_code == 403 and rev.get("/lead").status_code == 403
    assert rev.get("/work").status_code == 403  # staff do not take worker tasks
    # another worker's claim looks missing (404) and cannot be submitted or released
    loc = _claim(w1, cid, "situation")
    assert w2.get(loc).status_code == 404
    assert post(w2, f"{loc}/submit", {"situation": "乗っ取り"}, page="/work").status_code == 404
    assert post(w2, f"{loc}/release", page="/work").status_code == 404
    # a tampered session cookie is not a session
    bad = TestClient(app)
    bad.cookies.set("emplifai_session", w1.cookies.get("emplifai_session")[:-2] + "xx")
    assert bad.get("/work", follow_redirects=False).status_code == 303
    # security headers on every page
    h = w1.get("/work").headers
    # scripts only from the app itself (its one file), never inline
    assert "script-src 'self';" in h["content-security-policy"] and h["x-frame-options"] == "DENY"


def test_invalid_submission_keeps_text_and_lease(app) -> None:  # type: ignore[no-untyped-def]
    cid = campaign(app.state.store, emotions=["Joy"], round1_target=1, round2_target=1)
    situations(app.state.store, ["Joy"], 1)
    with app.state.store.transaction() as s:
        from emplifai.collect.campaigns import get_campaign, seed_round2

        seed_round2(s, get_campaign(s, cid))
    w1 = client(app, "w1")
    loc = _claim(w1, cid, "dialogue")
    r = post(w1, f"{loc}/submit", {"patient": "途中まで書いた発話", "supporter": "  "}, page=loc)
    assert r.status_code == 400 and "支援者の応答を入力してください" in r.text and "途中まで書いた発話" in r.text
    assert "提出する" in w1.get(loc).text  # still leased, can retry


def test_rejection_cap_shown_and_enforced(app) -> None:  # type: ignore[no-untyped-def]
    cid = campaign(app.state.store, emotions=["Joy", "Fear", "Anger"], round1_target=1, rejection_cap=0.3)
    w1, rev = client(app, "w1"), client(app, "rev")
    loc = _claim(w1, cid, "situation")
    post(w1, f"{loc}/submit", {"situation": "短い"}, page=loc)
    claim_id = loc.rsplit("/", 1)[1]
    page = rev.get(f"/review/{claim_id}").text
    assert "30%" in page and "上限に達しています" in page
    r = post(rev, f"/review/{claim_id}/reject", {"reason": "短すぎる"}, page=f"/review/{claim_id}")
    assert r.status_code == 409 and "上限" in r.text


def test_rating_task_writes_ratings(app) -> None:  # type: ignore[no-untyped-def]
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.rating import create_rating_tasks
    from emplifai.evaluate.rubrics import METRICS

    store = app.state.store
    gens = rating_sample(store, 20)
    cid = campaign(store, emotions=["Joy"])
    with store.transaction() as s:
        assert create_rating_tasks(s, get_campaign(s, cid), "default", "human") == 2
        assert create_rating_tasks(s, get_campaign(s, cid), "default", "human") == 0  # idempotent
    w1 = client(app, "w1")
    loc = _claim(w1, cid, "rating")
    page = w1.get(loc).text
    assert page.count('type="radio"') == 10 * 7 * 5 and "安心感" in page
    shown = list(dict.fromkeys(int(g) for g in re.findall(r'name="score_(\d+)_comprehensibility"', page)))
    assert len(shown) == 10 and shown in (gens[:10], gens[10:])  # one whole group, in sample order
    form = {f"score_{g}_{m}": str((i + j) % 5 + 1) for i, g in enumerate(shown) for j, m in enumerate(METRICS)}
    partial = dict(list(form.items())[:-1])
    assert post(w1, f"{loc}/submit", partial, page=loc).status_code == 400  # every score is required
    r = post(w1, f"{loc}/submit", form, page=loc)
    assert r.status_code == 303, r.text[-3000:]
    with store.open_session() as s:
        assert s.scalars(select(Rating)).all() == []  # pending review: not counted yet
    claim_id = loc.rsplit("/", 1)[1]
    assert post(client(app, "rev"), f"/review/{claim_id}/approve", page=f"/review/{claim_id}").status_code == 303
    with store.open_session() as s:
        rows = s.scalars(select(Rating).order_by(Rating.generation_id, Rating.metric)).all()
    group = 1 if shown == gens[:10] else 2
    assert len(rows) == 70 and {r.origin for r in rows} == {"web"} and {r.group_no for r in rows} == {group}
    assert {(r.generation_id, r.metric): r.score for r in rows}[(shown[0], "comprehensibility")] == 1
    assert {(r.generation_id, r.metric): r.score for r in rows}[(shown[1], "general_empathy")] == 3
    assert {r.rater for r in rows} == {"w1"} and {r.file for r in rows} == {None}


def test_synthetic_items_are_reviewed_in_the_web_app(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Items from `emplifai synth` (no campaign, no claim) get the same decisions and history as crowd work."""
    from emplifai.synth import SynthConfig, Synthesizer
    from tests.synth.fixtures import RuleLLM, load_subset

    store = app.state.store
    load_subset(store, tmp_path, drop={"Grief": 3})
    Synthesizer(store, RuleLLM(), SynthConfig(emotions=("Grief",), per_situation=2), model="fake:rules").run()
    with store.open_session() as s:
        ids = list(s.scalars(select(Dialogue.id).where(Dialogue.source == "synthetic").order_by(Dialogue.id)))
    a, b, _ = ids
    rev, boss, w1 = client(app, "rev"), client(app, "boss"), client(app, "w1")
    page = rev.get("/synthetic").text
    assert "合成データの審査" in page and "審査待ち（3 件）" in page and all(i in page for i in ids)
    assert w1.get("/synthetic", follow_redirects=False).status_code in (303, 403)  # workers do not review
    r = post(rev, f"/synthetic/{a}/approve", page="/synthetic")
    assert r.status_code == 303 and r.headers["location"] == "/synthetic?msg=approved"
    assert post(rev, f"/synthetic/{b}/reject", page="/synthetic").status_code == 400  # a reason is required
    assert post(rev, f"/synthetic/{b}/flag", {"reason": "不自然な言い回し"}, page="/synthetic").status_code == 303
    assert post(rev, f"/synthetic/{b}/remove", {"reason": "x"}, page="/synthetic").status_code == 403  # lead only
    assert "要確認（1 件）" in boss.get("/synthetic?status=flagged").text
    assert post(boss, f"/synthetic/{b}/remove", {"reason": "意味が通らない"}, page="/synthetic").status_code == 303
    assert post(rev, f"/synthetic/{a}/approve", page="/synthetic").status_code == 400  # already approved
    with store.open_session() as s:
        assert [s.get(Dialogue, i).status for i in ids] == ["approved", "removed", "pending"]
        ev = s.scalars(select(ReviewEvent).where(ReviewEvent.entity_id == b).order_by(ReviewEvent.id)).all()
        assert [(e.actor, e.action, e.reason) for e in ev] == [("rev", "flag", "不自然な言い回し"),
                                                               ("boss", "remove", "意味が通らない")]


def test_export_scope_never_reaches_a_path(app, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Regression: `scope` was put into the export's file name, so `../..` overwrote and deleted any file."""
    victim = tmp_path / "srv" / "notes" / "victim"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep me", encoding="utf-8")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    boss = client(app, "boss")
    traversal = "../" * 12 + str(victim).lstrip("/")
    for scope in (traversal, "a/b", "x" * 300, "pending", ""):
        r = boss.get("/export", params={"fmt": "jsonl", "scope": scope})
        assert r.status_code == 400 and "範囲" in r.text, scope
    assert victim.read_text(encoding="utf-8") == "keep me"
    for scope, fmt in (("approved", "jsonl"), ("live", "csv"), ("live", "parquet")):
        r = boss.get("/export", params={"fmt": fmt, "scope": scope})
        assert r.status_code == 200 and f'filename="emplifai-{scope}.{fmt}"' in r.headers["content-disposition"]
    assert list(scratch.iterdir()) == []  # every temporary folder removed after the download
