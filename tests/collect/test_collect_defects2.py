"""Regression tests for issue 12, items 4 (second half), 5, 6, 8 and 10: each failed before its fix."""

from __future__ import annotations

import random

import pytest

from emplifai.collect import assign, review
from emplifai.records import Kind
from emplifai.store.collect import Task, User
from emplifai.store.db import Store
from tests.collect.fixtures import bulk_workers, campaign, csrf, login, post, settings, users

SITUATION = "検査の結果を待つ間、ずっと落ち着かない日が続きました。"


def _user(store: Store, uid: int) -> User:
    with store.open_session() as s:
        u = s.get(User, uid)
        assert u is not None
        return u


def _approved_situation(store: Store, cid: int, writer: int, reviewer: User) -> str:
    c = assign.claim(store, cid, writer, Kind.SITUATION)
    assert c is not None
    claim = assign.submit(store, c.claim_id, writer, {"situation": SITUATION})
    review.approve(store, c.claim_id, reviewer)
    return str(claim.entity_id)


# ------------------------------------------------------------------------------------------- item 4
def test_a_worker_never_gets_the_round2_task_of_their_own_situation(store: Store) -> None:
    """Regression: the author of an approved situation was handed the dialogue task for it."""
    cid = campaign(store, emotions=["Joy", "Fear"], round1_target=1, round2_target=3)
    rev = _user(store, users(store, ("rev", "reviewer"))["rev"])
    writer, other = bulk_workers(store, 2)
    mine = _approved_situation(store, cid, writer, rev)
    for seed in range(5):
        assert assign.claim(store, cid, writer, Kind.DIALOGUE, rng=random.Random(seed)) is None
    theirs = _approved_situation(store, cid, other, rev)  # the other emotion's bucket
    got = assign.claim(store, cid, writer, Kind.DIALOGUE)
    assert got is not None
    with store.open_session() as s:
        assert s.get(Task, got.task_id).situation_id == theirs != mine  # type: ignore[union-attr]
    # round 1 and the other worker are unaffected by the filter
    got_other = assign.claim(store, cid, other, Kind.DIALOGUE)
    assert got_other is not None


def test_release_and_reclaim_cannot_reroll_the_emotion(store: Store) -> None:
    """Regression: releasing and claiming again drew a fresh random task each time, so a worker could repeat it
    until the emotion they wanted came up. Now the same task comes back until the released lease would end."""
    emotions = ["Joy", "Fear", "Anger", "Sadness", "Grief", "Pride"]
    cid = campaign(store, emotions=emotions, round1_target=2, lease_seconds=600)
    (w,) = bulk_workers(store, 1)
    first = assign.claim(store, cid, w, Kind.SITUATION, now=1000.0, rng=random.Random(0))
    assert first is not None
    seen = {first.task_id}
    for i in range(12):
        assign.release(store, (c := assign.claim(store, cid, w, Kind.SITUATION, now=1000.0 + i,
                                                 rng=random.Random(i + 1))).claim_id, w)  # type: ignore[union-attr]
        seen.add(c.task_id)  # type: ignore[union-attr]
    assert seen == {first.task_id}
    # once the released lease would have ended, claims draw freely again (the worker is not bound for ever)
    free = set()
    for i in range(6):
        c = assign.claim(store, cid, w, Kind.SITUATION, now=5000.0 + i * 1000, rng=random.Random(i))
        assert c is not None
        free.add(c.task_id)
        assign.release(store, c.claim_id, w)
    assert len(free) > 1
    # a pinned task that filled up meanwhile is not forced: the worker gets other work
    cid2 = campaign(store, "c2", emotions=["Joy", "Fear"], round1_target=1, lease_seconds=600)
    (a,) = bulk_workers(store, 1, prefix="x")
    ca = assign.claim(store, cid2, a, Kind.SITUATION, now=1000.0)
    assert ca is not None
    assign.release(store, ca.claim_id, a)
    with store.transaction() as s:
        s.get(Task, ca.task_id).filled = 1  # type: ignore[union-attr]  # as if someone else took it
    again = assign.claim(store, cid2, a, Kind.SITUATION, now=1001.0)
    assert again is not None and again.task_id != ca.task_id


# ------------------------------------------------------------------------------------------- item 5
def _rate(store: Store, cid: int, worker: int, score: int) -> int:
    from emplifai.evaluate.rubrics import METRICS

    c = assign.claim(store, cid, worker, Kind.RATING)
    assert c is not None
    with store.open_session() as s:
        items = s.get(Task, c.task_id).payload["items"]  # type: ignore[union-attr]
    form = {f"score_{it['generation_id']}_{m}": str(score) for it in items for m in METRICS}
    assign.submit(store, c.claim_id, worker, form)
    return c.claim_id


def test_only_approved_ratings_enter_the_analysis_and_reports_say_what_was_left_out(store: Store) -> None:
    """Regression: a pending rating claim wrote its rows straight into `ratings`, so `ratings summary`, `agree`
    and Table 5 averaged unreviewed scores with approved ones."""
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.rating import create_rating_tasks
    from emplifai.evaluate.ratings import human_scores, left_out_note, summary
    from tests.collect.fixtures import rating_sample

    rating_sample(store, 10)
    cid = campaign(store, emotions=["Joy"], rejection_cap=1.0)
    with store.transaction() as s:
        assert create_rating_tasks(s, get_campaign(s, cid), "default", "human") == 1
    rev = _user(store, users(store, ("rev", "reviewer"))["rev"])
    a, b, c = bulk_workers(store, 3)
    good, pending, bad = _rate(store, cid, a, 4), _rate(store, cid, b, 1), _rate(store, cid, c, 2)
    assert human_scores(store, "default", "human") == {}  # nothing reviewed yet: nothing counts
    review.approve(store, good, rev)
    review.reject(store, bad, rev, "全項目が同じ値で、読まずに付けたようです")
    scores = human_scores(store, "default", "human")
    assert len(scores) == 70 and {r for d in scores.values() for r in d} == {"w0000"}
    assert {v for d in scores.values() for v in d.values()} == {4}  # the pending 1s are not averaged in
    sm = summary(store, "default", "human")
    assert sm["raters"] == 1 and {v["mean"] for v in sm["metrics"].values()} == {4.0}
    assert sm["left_out"]["pending"] == {"claims": 1, "scores": 70}
    assert sm["left_out"]["rejected"] == {"claims": 1, "scores": 70}
    note = left_out_note(sm["left_out"])
    assert note is not None and "1 pending review (70 scores)" in note and "1 rejected" in note
    review.approve(store, pending, rev)  # approved later: now it counts
    sm = summary(store, "default", "human")
    assert sm["raters"] == 2 and sm["left_out"]["pending"] == {"claims": 0, "scores": 0}
    assert next(iter(sm["metrics"].values()))["mean"] == 2.5


def test_the_ratings_summary_command_reports_ratings_left_out(store: Store) -> None:
    from typer.testing import CliRunner

    from emplifai.cli import app as cli
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.rating import create_rating_tasks
    from tests.collect.fixtures import rating_sample

    rating_sample(store, 10)
    cid = campaign(store, emotions=["Joy"])
    with store.transaction() as s:
        create_rating_tasks(s, get_campaign(s, cid), "default", "human")
    rev = _user(store, users(store, ("rev", "reviewer"))["rev"])
    a, b = bulk_workers(store, 2)
    review.approve(store, _rate(store, cid, a, 3), rev)
    _rate(store, cid, b, 5)
    r = CliRunner().invoke(cli, ["ratings", "summary", "--source", "human", "--db", store.url])
    assert r.exit_code == 0, r.output
    assert "1 raters" in r.output and "1 pending review (70 scores)" in r.output


# ------------------------------------------------------------------------------------------ item 10
def _expire(store: Store, claim_id: int) -> None:
    from emplifai.store.collect import Claim

    with store.transaction() as s:
        c = s.get(Claim, claim_id)
        assert c is not None
        c.expires_at = c.leased_at = 1.0  # long past


def _web(db_url: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from emplifai.collect import create_app

    app = create_app(settings(db_url))
    users(app.state.store, ("w1", "worker"), ("w2", "worker"))
    clients = {}
    for name in ("w1", "w2"):
        clients[name] = TestClient(app)
        login(clients[name], name)
    return app, clients


def _claim_page(c, cid: int, kind: str = "situation") -> str:  # type: ignore[no-untyped-def]
    r = post(c, "/work/claim", {"campaign_id": cid, "kind": kind}, page="/work")
    assert r.status_code == 303 and r.headers["location"].startswith("/claims/"), r.text
    return r.headers["location"]


def test_late_work_is_shown_back_when_the_slot_went_to_someone_else(db_url: str) -> None:
    """Regression: a submit after the lease expired and the slot went to someone else gave a 409 page and the
    text was gone."""
    from sqlalchemy import select

    from emplifai.store.collect import Claim, ClaimStatus
    from emplifai.store.models import Situation

    app, cl = _web(db_url)
    store = app.state.store
    cid = campaign(store, emotions=["Joy"], round1_target=1)
    late = _claim_page(cl["w1"], cid)
    _expire(store, int(late.rsplit("/", 1)[1]))
    _claim_page(cl["w2"], cid)  # the sweep hands w1's slot to w2
    text = "退院の日、看護師さんが「よく頑張りましたね」と声をかけてくれて、涙が出そうになりました。"
    token = csrf(cl["w1"].get("/work").text)
    r = cl["w1"].post(f"{late}/submit", data={"situation": text, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 409 and text in r.text and "受け付けられませんでした" in r.text and "コピー" in r.text
    assert text in cl["w1"].get(late).text  # still there later, on the same page
    assert cl["w2"].get(late).status_code == 404  # and only for its author
    with store.open_session() as s:
        c = s.get(Claim, int(late.rsplit("/", 1)[1]))
        assert c.status == ClaimStatus.EXPIRED and c.answer == {"situation": text}  # type: ignore[union-attr]
        assert s.scalars(select(Situation)).all() == []  # nothing over the target
    assert post(cl["w1"], f"{late}/release", page="/work").status_code == 409
    app.state.store.dispose()


def test_late_work_is_filed_when_a_slot_is_free_or_under_the_workers_new_lease(db_url: str) -> None:
    from sqlalchemy import select

    from emplifai.store.collect import Claim, ClaimStatus
    from emplifai.store.models import Situation

    app, cl = _web(db_url)
    store = app.state.store
    cid = campaign(store, emotions=["Joy"], round1_target=2)
    old = _claim_page(cl["w1"], cid)
    _expire(store, int(old.rsplit("/", 1)[1]))
    new = _claim_page(cl["w1"], cid)  # the same worker, another tab: a new lease on the same task
    assert new != old
    text = "主治医に「数値が安定してきました」と言われ、家族と喜び合いました。"
    r = post(cl["w1"], f"{old}/submit", {"situation": text}, page="/work")
    assert r.status_code == 303, r.text  # filed under the worker's live lease, not lost and not a 500
    with store.open_session() as s:
        claims = {c.id: c for c in s.scalars(select(Claim))}
        assert claims[int(new.rsplit("/", 1)[1])].status == ClaimStatus.PENDING
        assert claims[int(old.rsplit("/", 1)[1])].status == ClaimStatus.EXPIRED
        assert [x.text for x in s.scalars(select(Situation))] == [text]
    app.state.store.dispose()


# ------------------------------------------------------------------------------------------- item 6
def _attempt(app, name: str, password: str, host: str = "198.51.100.7"):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    c = TestClient(app, client=(host, 40000))
    token = csrf(c.get("/login").text)
    return c.post("/login", data={"username": name, "password": password, "csrf_token": token},
                  follow_redirects=False)


def test_login_is_throttled_per_user_name_across_clients_and_processes(db_url: str) -> None:
    """Regression: 29 wrong passwords in 10 s from one client, 40 from 8, none refused. The count lives in the
    database: a second app (another server process) on the same database refuses too."""
    from emplifai.collect import create_app
    from tests.collect.fixtures import PASSWORD

    s1 = settings(db_url)  # the defaults: 8 failures per user name, 30 per client, per 10 minutes
    one, two = create_app(s1), create_app(s1)
    users(one.state.store, ("w1", "worker"), ("w2", "worker"))
    for i in range(8):  # eight clients, alternating between the two processes
        r = _attempt((one, two)[i % 2], "w1", "wrong-password", host=f"203.0.113.{i}")
        assert r.status_code == 401 and "パスワードが違います" in r.text
    r = _attempt(two, "W1 ", PASSWORD, host="203.0.113.99")  # even the right password, from a fresh client
    assert r.status_code == 429 and "しばらくログインできません" in r.text and "分ほど待って" in r.text
    assert 1 <= int(r.headers["retry-after"]) <= 600
    assert 'value="W1 "' in r.text  # the typed name is kept
    assert _attempt(one, "w2", PASSWORD).status_code == 303  # another user name is not affected
    from emplifai.store.collect import LoginFailure

    with one.state.store.transaction() as s:  # the window slides: old failures stop counting
        for f in s.query(LoginFailure).all():
            f.at -= 601
    assert _attempt(two, "w1", PASSWORD).status_code == 303
    with one.state.store.open_session() as s:  # a success clears the name; nothing readable is stored
        keys = [(f.scope, f.key) for f in s.query(LoginFailure).all()]
        assert all(len(k) == 64 and "w1" not in k and "203.0.113" not in k for _, k in keys)
    for a in (one, two):
        a.state.store.dispose()


def test_login_is_throttled_per_client(db_url: str) -> None:
    from emplifai.collect import create_app
    from tests.collect.fixtures import PASSWORD

    app = create_app(settings(db_url, login_max_per_user=100, login_max_per_client=5))
    users(app.state.store, ("w1", "worker"))
    for i in range(5):
        assert _attempt(app, f"guess{i}", "wrong-password").status_code == 401
    r = _attempt(app, "w1", PASSWORD)
    assert r.status_code == 429 and "retry-after" in r.headers
    assert _attempt(app, "w1", PASSWORD, host="192.0.2.50").status_code == 303  # other clients still sign in
    app.state.store.dispose()


def test_password_checks_run_on_a_bounded_pool_of_their_own() -> None:
    """Password checks never take the threads that serve pages, and refuse as busy beyond the queue."""
    import asyncio
    import threading

    from emplifai.collect.throttle import Busy, HashGate

    gate = HashGate(slots=1, queue=2)
    release, names = threading.Event(), []

    def slow() -> str:
        names.append(threading.current_thread().name)
        release.wait(10)
        return "ok"

    async def main() -> list:
        first = asyncio.ensure_future(gate.run(slow))
        second = asyncio.ensure_future(gate.run(slow))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await gate.run(slow)  # a third one waiting is refused at once
        release.set()
        return [await first, await second]

    got: list = []  # its own thread: Playwright's sync API may have left a running loop on this one
    runner = threading.Thread(target=lambda: got.append(asyncio.run(main())))
    runner.start()
    runner.join(30)
    assert got == [["ok", "ok"]]
    assert names and all(n.startswith("emplifai-login") for n in names) and len(set(names)) == 1  # one slot
    gate.close()


# ------------------------------------------------------------------------------------------- item 8
@pytest.fixture
def web(db_url: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from emplifai.collect import create_app

    app = create_app(settings(db_url))
    users(app.state.store, ("w1", "worker"), ("rev", "reviewer"), ("boss", "lead"))
    out = {}
    for name in ("w1", "rev", "boss"):
        out[name] = TestClient(app)
        login(out[name], name)
    out["anon"] = TestClient(app)
    yield app, out
    app.state.store.dispose()


def _count(store: Store, model) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    with store.open_session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_a_nul_byte_is_refused_in_japanese_and_the_typed_text_kept(web) -> None:  # type: ignore[no-untyped-def]
    """Regression: a NUL byte in a situation gave a 500 on PostgreSQL and the worker's text was lost."""
    from emplifai.store.models import Situation

    app, cl = web
    cid = campaign(app.state.store, emotions=["Joy"], round1_target=2)
    loc = _claim_page(cl["w1"], cid)
    typed = "外来の待合室で、\x00隣の方が声をかけてくれました。\x07"
    r = post(cl["w1"], f"{loc}/submit", {"situation": typed}, page=loc)
    assert r.status_code == 400 and "制御文字（U+0000）" in r.text and "9文字目" in r.text
    assert 'class="err"' in r.text and "外来の待合室で、隣の方が声をかけてくれました。</textarea>" in r.text
    assert _count(app.state.store, Situation) == 0
    assert post(cl["w1"], f"{loc}/submit", {"situation": "外来の待合室で、隣の方が声をかけてくれました。"},
                page=loc).status_code == 303  # the kept text goes through
    # NUL anywhere else (a reason, a user name, an id in the URL) is a Japanese 400, never a 500
    claim = loc.rsplit("/", 1)[1]
    r = post(cl["rev"], f"/review/{claim}/reject", {"reason": "理由\x00"}, page="/review")
    assert r.status_code == 400 and "理由に使えない制御文字" in r.text and 'class="err"' in r.text
    r = cl["anon"].post("/login", data={"username": "w1\x00", "password": "x" * 9,
                                        "csrf_token": csrf(cl["anon"].get("/login").text)})
    assert r.status_code == 400 and "ユーザー名に使えない制御文字" in r.text
    assert cl["rev"].get("/synthetic/%00abc").status_code in (400, 404, 405)
    r = post(cl["rev"], "/synthetic/d%00x/approve", page="/review")
    assert r.status_code == 400 and "制御文字" in r.text
    r = cl["rev"].get("/review", params={"kind": "dialogue\x00"})
    assert r.status_code == 400 and "種類に使えない制御文字" in r.text


@pytest.mark.parametrize("body", [
    "situation=" + "".join(f"%{b:02X}" for b in "外来で声をかけられました".encode("shift_jis")),  # a Shift_JIS page
    "situation=%E5%A4%96%E6%9D%A5%FF%FE",  # invalid UTF-8 bytes, percent-encoded
])
def test_undecodable_text_is_refused_not_stored_as_mojibake(web, body: str) -> None:  # type: ignore[no-untyped-def]
    from emplifai.store.models import Situation

    app, cl = web
    cid = campaign(app.state.store, emotions=["Joy"], round1_target=2)
    loc = _claim_page(cl["w1"], cid)
    token = csrf(cl["w1"].get(loc).text)
    r = cl["w1"].post(f"{loc}/submit", content=f"{body}&csrf_token={token}",
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "UTF-8 として読めません" in r.text
    assert _count(app.state.store, Situation) == 0


def test_raw_bytes_and_other_charsets_are_refused(web) -> None:  # type: ignore[no-untyped-def]
    from emplifai.store.collect import User

    app, cl = web
    token = csrf(cl["boss"].get("/").text)
    for content, ctype in (
        (b"name=c9&csrf_token=" + token.encode() + b"&display_name=" + "山田".encode("shift_jis"),
         "application/x-www-form-urlencoded"),
        (f"username=x1&password=aaaaaaaaaa&role=worker&csrf_token={token}".encode(),
         "application/x-www-form-urlencoded; charset=Shift_JIS"),
    ):
        r = cl["boss"].post("/admin/users", content=content, headers={"content-type": ctype})
        assert r.status_code == 400 and "UTF-8" in r.text, r.text[-500:]
    assert _count(app.state.store, User) == 3


def test_huge_or_malformed_ids_are_not_found_and_422_is_japanese(web) -> None:  # type: ignore[no-untyped-def]
    """Regression: /claims/99999999999999999999999 gave a 500; 422s came back as English JSON."""
    _, cl = web
    huge = "9" * 23
    for who, path in (("w1", f"/claims/{huge}"), ("w1", "/claims/abc"), ("w1", "/claims/0"),
                      ("rev", f"/review/{huge}"), ("boss", f"/dashboard/{huge}"), ("boss", f"/ledger/{huge}.csv")):
        r = cl[who].get(path)
        assert r.status_code == 404 and "見つかりません" in r.text and 'class="err"' in r.text, path
    r = post(cl["w1"], f"/claims/{huge}/submit", {"situation": "x"}, page="/work")
    assert r.status_code == 404
    r = cl["rev"].get("/review", params={"campaign_id": huge})
    assert r.status_code == 422 and "キャンペーンの値が範囲外です" in r.text and "detail" not in r.text
    r = post(cl["w1"], "/work/claim", {"campaign_id": huge, "kind": "situation"}, page="/work")
    assert r.status_code == 422 and "キャンペーン" in r.text and r.headers["content-type"].startswith("text/html")
    r = post(cl["w1"], "/work/claim", {"kind": "situation"}, page="/work")
    assert r.status_code == 422 and "キャンペーンを入力してください" in r.text
    api = cl["w1"].post("/work/claim", data={"kind": "situation", "csrf_token": csrf(cl["w1"].get("/work").text)},
                        headers={"accept": "application/json"})
    assert api.status_code == 422 and api.json()["detail"][0]["msg"] == "キャンペーンを入力してください"
    assert cl["w1"].get("/no-such-page").text.count("ページが見つかりません") >= 1


def test_403_and_404_pages_use_the_error_style(web) -> None:  # type: ignore[no-untyped-def]
    """Regression: 403/404 pages used the green success style (class="msg")."""
    _, cl = web
    for r in (cl["w1"].get("/review"), cl["w1"].get("/claims/12345"), cl["rev"].get("/admin")):
        assert r.status_code in (403, 404)
        assert 'class="err"' in r.text and 'class="msg"' not in r.text


def test_no_english_left_in_the_review_history_and_refusals(web) -> None:  # type: ignore[no-untyped-def]
    """Regression: `approve`, `status`, `pending` in the review history, "reject needs a reason", and
    "会話1・consistency" on the rating page."""
    import re

    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.rating import create_rating_tasks
    from tests.collect.fixtures import rating_sample

    app, cl = web
    store = app.state.store
    cid = campaign(store, emotions=["Joy"], round1_target=2)
    loc = _claim_page(cl["w1"], cid)
    post(cl["w1"], f"{loc}/submit", {"situation": "診察のあと、看護師さんが話を聞いてくれました。"}, page=loc)
    claim = loc.rsplit("/", 1)[1]
    assert post(cl["rev"], f"/review/{claim}/approve", page="/review").status_code == 303
    page = cl["rev"].get(f"/review/{claim}").text
    history = page[page.index("審査履歴"):]
    assert "<td>承認</td>" in history and "<td>状態</td>" in history and "審査待ち" in history
    assert not re.search(r">\s*(approve|status|pending|approved)\s*<", history)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d JST", history)  # in the campaign's time zone, labelled
    # a synthetic item rejected without a reason: Japanese, not "reject needs a reason"
    from emplifai.records import Source, Status
    from emplifai.store.models import Dialogue, Situation

    with store.transaction() as s:
        s.add(Situation(id="syn-s1", emotion="Joy", text="状況", source=Source.SYNTHETIC, status=Status.PENDING,
                        meta={}))
        s.add(Dialogue(id="syn-d1", situation_id="syn-s1", patient="患者", supporter="支援者",
                       source=Source.SYNTHETIC, status=Status.PENDING, meta={}))
    r = post(cl["rev"], "/synthetic/syn-d1/reject", page="/synthetic")
    assert r.status_code == 400 and "却下の理由を入力してください" in r.text and "needs a reason" not in r.text
    r = post(cl["rev"], "/synthetic/nope/approve", page="/synthetic")
    assert "会話 nope が見つかりません" in r.text and "no dialogue" not in r.text
    # a rating form with a missing score names the metric in Japanese
    rating_sample(store, 10)
    with store.transaction() as s:
        create_rating_tasks(s, get_campaign(s, cid), "default", "human")
    rloc = _claim_page(cl["w1"], cid, "rating")
    r = post(cl["w1"], f"{rloc}/submit", {}, page=rloc)
    assert r.status_code == 400 and "会話1の「" in r.text and "・comprehensibility" not in r.text
    assert not re.search(r"会話\d・[a-z_]+", r.text)


def test_a_concurrent_burst_of_wrong_passwords_cannot_pass_the_limit(db_url: str) -> None:
    """Attempts count from the moment they are let through: 16 at once against a limit of 8 get exactly 8
    password checks, the rest are refused (SQLite's write lock, PostgreSQL advisory locks)."""
    from concurrent.futures import ThreadPoolExecutor

    from emplifai.collect import create_app

    app = create_app(settings(db_url))
    users(app.state.store, ("w1", "worker"))
    with ThreadPoolExecutor(16) as pool:
        codes = sorted(pool.map(lambda i: _attempt(app, "w1", "wrong-password", host=f"192.0.2.{i}").status_code,
                                range(16)))
    assert codes == [401] * 8 + [429] * 8
    app.state.store.dispose()


def test_admin_errors_are_japanese(web) -> None:  # type: ignore[no-untyped-def]
    """Regression: account and campaign errors reached the admin page in English ("user 'w1' already exists")."""
    from fastapi.testclient import TestClient

    app, _ = web
    users(app.state.store, ("root", "admin"))
    admin = TestClient(app)
    login(admin, "root")
    for form, expected in (
        ({"username": "w1", "password": "aaaaaaaaaa", "role": "worker"}, "すでに存在します"),
        ({"username": "x y", "password": "aaaaaaaaaa", "role": "worker"}, "半角英数字"),
        ({"username": "newbie", "password": "short", "role": "worker"}, "8文字以上"),
        ({"username": "newbie", "password": "aaaaaaaaaa", "role": "boss"}, "役割"),
    ):
        r = post(admin, "/admin/users", form, page="/admin")
        assert r.status_code == 400 and expected in r.text, r.text[-400:]
        assert not any(w in r.text for w in ("already exists", "must have", "unknown role", "use 1–64")), form
    r = post(admin, "/admin/campaigns", {"name": "bad name!"}, page="/admin")
    assert r.status_code == 400 and "キャンペーン名" in r.text
