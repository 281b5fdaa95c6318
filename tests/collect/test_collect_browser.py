"""End to end in a real headless Chromium (Debian's, driven by Playwright) against a real `emplifai serve`:
admin sets up → worker writes a situation → reviewer approves → worker writes a dialogue → reviewer flags →
lead keeps → export and pay ledger download; and a rating task. Screenshots land in the test's tmp dir."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai.collect.campaigns import get_campaign
from emplifai.collect.rating import create_rating_tasks
from emplifai.evaluate.rubrics import METRICS
from emplifai.store.db import Store
from emplifai.store.evaluation import Rating
from emplifai.store.models import Dialogue, ReviewEvent
from tests.collect.fixtures import PASSWORD, rating_sample, screenshot, sign_in, start_server, users
from tests.helpers import CHROMIUM

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/test.sh installs it)"),
]



@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Store]]:
    store = Store(db_url)
    users(store, ("admin", "admin"), ("rev", "reviewer"), ("boss", "lead"))
    srv = start_server(db_url, secrets.token_urlsafe(48), tmp_path)
    yield srv.url, store
    srv.stop()
    store.dispose()


def test_campaign_end_to_end(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, store = server
    admin = sign_in(browser, url, "admin")
    admin.goto("/admin")
    admin.get_by_placeholder("ユーザー名").fill("worker1")
    admin.get_by_placeholder("パスワード（8文字以上）").fill(PASSWORD)
    admin.get_by_role("button", name="ユーザーを作成").click()
    assert "ユーザーを作成しました" in admin.content()
    admin.get_by_label("名前（英数字）").fill("e2e")
    admin.locator("input[name=round1_target]").fill("1")
    admin.locator("input[name=round2_target]").fill("1")
    admin.locator("details summary", has_text="感情").click()
    admin.get_by_label("喜び", exact=True).check()
    admin.get_by_role("button", name="キャンペーンを作成").click()
    assert "キャンペーンを作成しました" in admin.content()

    worker = sign_in(browser, url, "worker1")
    worker.get_by_role("button", name="状況を書く（第1ラウンド）").click()
    assert "喜び" in worker.content()
    worker.get_by_label("状況").fill("長く続いた治療が終わり、主治医から「もう通院しなくて大丈夫」と言われた。")
    worker.get_by_role("button", name="提出する").click()
    assert "提出しました" in worker.content()

    rev = sign_in(browser, url, "rev")
    rev.get_by_role("link", name="詳細・審査").first.click()
    rev.get_by_role("button", name="承認する").click()
    assert "承認しました" in rev.content()

    worker.goto("/work")  # nobody writes the dialogue for their own situation (issue 12 item 4)
    worker.get_by_role("button", name="会話を書く（第2ラウンド）").click()
    assert "いま取り組めるタスクはありません" in worker.content()
    users(store, ("worker2", "worker"))
    worker = sign_in(browser, url, "worker2")
    worker.get_by_role("button", name="会話を書く（第2ラウンド）").click()
    body = worker.content()
    assert "主治医から「もう通院しなくて大丈夫」" in body and "喜び" in body  # Figure 1: situation + emotion
    worker.get_by_label("患者の発話").fill("やっと治療が終わったんです。先生に大丈夫と言われて、涙が出ました。")
    worker.get_by_label("支援者の応答").fill("長い間よく頑張りましたね。その言葉を聞けて本当によかったです。")
    shot = screenshot(worker, tmp_path, "round2_form")
    assert shot.stat().st_size > 10_000
    worker.get_by_role("button", name="提出する").click()
    assert "提出しました" in worker.content()

    rev.goto("/review")
    rev.get_by_role("link", name="詳細・審査").first.click()
    rev.locator("textarea[name=supporter]").fill("長い間、本当によく頑張りましたね。")
    rev.get_by_role("button", name="修正を保存する").click()
    rev.locator("form[action$='/flag'] input[name=reason]").fill("表現を責任者に確認")
    rev.get_by_role("button", name="要確認にする").click()
    assert "要確認にしました" in rev.content()

    boss = sign_in(browser, url, "boss")
    boss.goto("/lead")
    assert "表現を責任者に確認" in boss.content()
    boss.get_by_role("button", name="残す").click()
    assert "残すことにしました" in boss.content()
    boss.goto("/dashboard")
    boss.get_by_role("link", name="e2e").click()
    screenshot(boss, tmp_path, "dashboard")
    with boss.expect_download() as dl:
        boss.get_by_role("link", name="承認済みデータ（JSONL）").click()
    rows = [json.loads(x) for x in Path(dl.value.path()).read_text(encoding="utf-8").splitlines()]
    assert [(r["supporter"], r["status"], r["source"]) for r in rows] == [
        ("長い間、本当によく頑張りましたね。", "approved", "crowd")]
    with boss.expect_download() as dl:
        boss.get_by_role("link", name="報酬台帳（CSV）").click()
    assert Path(dl.value.path()).read_text(encoding="utf-8-sig").splitlines() == [  # the file starts with a BOM
        "username,platform_id,display_name,situations,dialogues,ratings,amount_yen", "worker1,,worker1,1,0,0,10",
        "worker2,,worker2,0,1,0,50"]
    with store.open_session() as s:
        d = s.scalar(select(Dialogue))
        assert d.status == "approved" and d.author == "worker2"
        assert [e.action for e in s.scalars(select(ReviewEvent).where(ReviewEvent.entity == "dialogue")
                                            .order_by(ReviewEvent.id))] == ["modify", "flag", "keep"]


def test_rating_task_in_browser(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, store = server
    users(store, ("rater1", "worker"))
    rating_sample(store, 10)
    from tests.collect.fixtures import campaign

    cid = campaign(store, "rate", emotions=["Joy"])
    with store.transaction() as s:
        assert create_rating_tasks(s, get_campaign(s, cid), "default", "human") == 1
    page = sign_in(browser, url, "rater1")
    page.get_by_role("button", name="会話を評価する").click()
    radios = page.locator("input[type=radio][value='4']")
    assert radios.count() == 70
    for i in range(70):  # one dialogue at a time: 7 metrics, then on to the next
        radios.nth(i).check()
        if i % 7 == 6 and i < 69:
            page.locator(".rating-item.current [data-step='1']").click()
    screenshot(page, tmp_path, "rating_form")
    page.get_by_role("button", name="提出する").click()
    assert "提出しました" in page.content()
    with store.open_session() as s:
        assert s.scalars(select(Rating)).all() == []  # counted only once a reviewer approves them
    rev = sign_in(browser, url, "rev")
    rev.goto("/review")
    rev.locator("a[href^='/review/']").first.click()
    rev.get_by_role("button", name="承認する").click()
    assert "承認しました" in rev.content()
    with store.open_session() as s:
        rows = s.scalars(select(Rating)).all()
    assert len(rows) == 70 and {r.score for r in rows} == {4} and {r.metric for r in rows} == set(METRICS)
    assert {(r.rater, r.origin, r.group_no) for r in rows} == {("rater1", "web", 1)}


def test_synthetic_items_reviewed_in_the_browser(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`emplifai synth` output reaches reviewers through the 合成データ page of a real server."""
    from emplifai.synth import SynthConfig, Synthesizer
    from tests.synth.fixtures import RuleLLM, load_subset

    url, store = server
    load_subset(store, tmp_path, drop={"Grief": 2})
    Synthesizer(store, RuleLLM(), SynthConfig(emotions=("Grief",)), model="fake:rules").run()
    with store.open_session() as s:
        first, second = s.scalars(select(Dialogue.id).where(Dialogue.source == "synthetic").order_by(Dialogue.id))
    rev = sign_in(browser, url, "rev")
    rev.get_by_role("link", name="合成データ").click()
    assert "審査待ち（2 件）" in rev.content() and first in rev.content() and second in rev.content()
    screenshot(rev, tmp_path, "synthetic-queue")
    rev.locator(f"[id='{first}'] button", has_text="承認").click()
    assert "承認しました" in rev.content()
    card = rev.locator(f"[id='{second}']")
    card.locator("form[action$='/flag'] input[name=reason]").fill("言い回しが不自然")
    card.get_by_role("button", name="要確認にする").click()
    boss = sign_in(browser, url, "boss")
    boss.goto("/synthetic?status=flagged")
    card = boss.locator(f"[id='{second}']")
    card.locator("input[name=reason]").last.fill("意味が通らない")
    card.get_by_role("button", name="削除する").click()
    assert "削除しました" in boss.content()
    with store.open_session() as s:
        assert [s.get(Dialogue, i).status for i in (first, second)] == ["approved", "removed"]
        ev = s.scalars(select(ReviewEvent).where(ReviewEvent.entity_id == second).order_by(ReviewEvent.id)).all()
        assert [(e.actor, e.action) for e in ev][-2:] == [("rev", "flag"), ("boss", "remove")]
