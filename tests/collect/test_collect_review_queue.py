"""Faster review (issue 12 item 17) on the real store: several submissions approved or rejected from the queue in
one action, each through the review rules and the rejection cap, and a near-duplicate warning naming the text
a submission repeats."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from emplifai.collect import create_app
from emplifai.dataset.review import RULES
from emplifai.records import Action
from emplifai.store.collect import Claim, PayEntry, Task
from emplifai.store.models import ReviewEvent, Situation
from tests.collect.fixtures import campaign, csrf, login, post, settings, users

FIRST = "退院の日、病棟の看護師さんたちが廊下に並んで見送ってくれて、胸がいっぱいになりました。"
NEAR = "退院の日、病棟の看護師さんたちが廊下に並んで見送ってくれて、胸がいっぱいになりました！"
OTHER = ("検査の結果を聞きに行く朝、待合室で名前を呼ばれるまでの時間がとても長く感じました。", "主治医から新しい薬の"
         "説明を受け、副作用のことばかり考えてしまいました。")


@pytest.fixture
def app(db_url: str) -> Iterator:
    a = create_app(settings(db_url))
    users(a.state.store, ("w1", "worker"), ("w2", "worker"), ("rev", "reviewer"))
    yield a
    a.state.store.dispose()


def client(app, name: str) -> TestClient:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    login(c, name)
    return c


def _write(c: TestClient, cid: int, text: str) -> int:
    r = post(c, "/work/claim", {"campaign_id": cid, "kind": "situation"}, page="/work")
    loc = r.headers["location"]
    assert post(c, f"{loc}/submit", {"situation": text}, page=loc).status_code == 303
    return int(loc.rsplit("/", 1)[1])


def _submissions(app) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    cid = campaign(app.state.store, emotions=["Joy", "Grief"], round1_target=2, rejection_cap=0.3)
    w1, w2 = client(app, "w1"), client(app, "w2")
    ids = [_write(w1, cid, FIRST), _write(w1, cid, OTHER[0]), _write(w2, cid, NEAR), _write(w2, cid, OTHER[1])]
    return cid, ids


def test_near_duplicate_is_named_on_the_queue_and_the_review_page(app) -> None:  # type: ignore[no-untyped-def]
    _, ids = _submissions(app)
    with app.state.store.open_session() as s:
        first_sid = s.get(Claim, ids[0]).entity_id
        near_sid = s.get(Claim, ids[2]).entity_id
    rev = client(app, "rev")
    queue = rev.get("/review").text
    cards = {m.group(1): m.group(0) for m in re.finditer(r'id="pick-(\d+)".*?(?=id="pick-|class="bulk")', queue, re.S)}
    assert "類似の可能性" in cards[str(ids[2])] and first_sid in cards[str(ids[2])]
    assert "類似の可能性" in cards[str(ids[0])] and near_sid in cards[str(ids[0])]  # each names the other
    assert "の可能性" not in cards[str(ids[1])] and "の可能性" not in cards[str(ids[3])]
    one = rev.get(f"/review/{ids[2]}").text
    assert "類似の可能性" in one and first_sid in one and FIRST in one and re.search(r"類似度 \d+%", one)
    # an exact repeat (after normalisation: spaces, full-width forms) is called a duplicate
    with app.state.store.transaction() as s:
        s.get(Situation, near_sid).text = FIRST.replace("、", "、 ")
    assert "重複の可能性" in rev.get(f"/review/{ids[2]}").text


def test_bulk_approve_and_reject_through_the_rules_and_the_cap(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    _, ids = _submissions(app)
    rev, w1 = client(app, "rev"), client(app, "w1")
    token = csrf(rev.get("/review").text)
    # a rejection needs a reason: nothing is decided, the page says so
    r = rev.post("/review/bulk", data={"claim_id": ids[:2], "action": "reject", "reason": "  ", "csrf_token": token})
    assert r.status_code == 400 and RULES[Action.REJECT].reason_ja in r.text
    # workers, and forms without the token, are refused
    assert w1.post("/review/bulk", data={"claim_id": ids[:1], "action": "approve",
                                         "csrf_token": csrf(w1.get("/work").text)}).status_code == 403
    assert rev.post("/review/bulk", data={"claim_id": ids[:1], "action": "approve"}).status_code == 403
    assert rev.post("/review/bulk", data={"claim_id": ["1x"], "action": "approve", "csrf_token": token}
                    ).status_code == 400
    assert rev.post("/review/bulk", data={"claim_id": ids[:1], "action": "flag", "reason": "x",
                                          "csrf_token": token}).status_code == 400
    with store.open_session() as s:
        assert {c.status for c in s.scalars(select(Claim))} == {"pending"}
    # approve two at once (one id repeated): each paid once, each a round-2 prompt
    r = rev.post("/review/bulk", data={"claim_id": [ids[0], ids[1], ids[0]], "action": "approve",
                                       "csrf_token": token})
    assert r.status_code == 200 and "2件を承認しました" in r.text
    # reject the other two: the 30% cap of 4 submissions allows one; the second is refused, named
    r = rev.post("/review/bulk", data={"claim_id": [ids[2], ids[3], ids[0]], "action": "reject",
                                       "reason": "内容が重複しています", "csrf_token": token})
    assert "1件を却下しました" in r.text and "次の2件は処理できませんでした" in r.text
    assert re.search(rf"#{ids[3]}：却下の上限", r.text) and f"#{ids[0]}：却下できるのは未審査の提出物だけです" in r.text
    with store.open_session() as s:
        status = {c.id: (c.status, c.reason) for c in s.scalars(select(Claim))}
        assert status == {ids[0]: ("approved", None), ids[1]: ("approved", None),
                          ids[2]: ("rejected", "内容が重複しています"), ids[3]: ("pending", None)}
        assert sorted(p.claim_id for p in s.scalars(select(PayEntry))) == sorted(ids[:2])
        assert len(s.scalars(select(Task).where(Task.kind == "dialogue")).all()) == 2
        ev = s.scalars(select(ReviewEvent).where(ReviewEvent.entity == "situation")).all()
        assert sorted(e.action for e in ev) == ["approve", "approve", "reject"]
        assert {e.actor for e in ev} == {"rev"}
