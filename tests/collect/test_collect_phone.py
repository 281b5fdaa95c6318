"""The worker's pages on a phone (375×812) in a real headless Chromium against a real `emplifai serve`, with and
without JavaScript (issue 12 items 15, 16): nothing overflows sideways, targets are finger-sized, counters and
drafts work, the rating page shows progress and one dialogue at a time. Screenshots and page heights land in the
test's tmp dir and, when EMPLIFAI_SCREENSHOTS names a folder, there too (to be looked at)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from emplifai.collect.campaigns import get_campaign, seed_round2
from emplifai.collect.examples import default_examples
from emplifai.collect.rating import create_rating_tasks
from emplifai.evaluate.rubrics import METRICS
from emplifai.records import Kind
from emplifai.store.collect import Claim, ClaimStatus, Draft
from emplifai.store.db import Store
from emplifai.store.evaluation import Rating
from tests.collect.fixtures import PASSWORD, campaign, rating_sample, situations, start_server, users
from tests.helpers import CHROMIUM

PHONE = {"width": 375, "height": 812}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/test.sh installs it)"),
]



@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Store, int, list[int]]]:
    store = Store(db_url)
    users(store, ("w1", "worker"))
    gids = rating_sample(store, 10)
    cid = campaign(store, "phone", emotions=["Grief"], round1_target=2, round2_target=2)
    situations(store, ["Grief"], 1, prefix="g")
    with store.transaction() as s:
        camp = get_campaign(s, cid)
        seed_round2(s, camp)
        create_rating_tasks(s, camp, "default", "human")
    srv = start_server(db_url, secrets.token_urlsafe(48), tmp_path)
    yield srv.url, store, cid, gids
    srv.stop()
    store.dispose()


def _phone(browser, url: str, js: bool = True):  # type: ignore[no-untyped-def]
    page = browser.new_context(base_url=url, viewport=PHONE, is_mobile=True, has_touch=True,
                               java_script_enabled=js).new_page()
    page.goto("/login")
    page.get_by_label("ユーザー名").fill("w1")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_load_state()
    return page


def _record(page, tmp_path: Path, name: str) -> int:  # type: ignore[no-untyped-def]
    """Full-page screenshot + height; asserts nothing runs off the right edge."""
    height, width = page.evaluate("[document.documentElement.scrollHeight, document.documentElement.scrollWidth]")
    assert width <= PHONE["width"], f"{name}: the page is {width}px wide on a 375px screen"
    path = tmp_path / f"phone-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    heights = tmp_path / "phone-heights.json"
    data = json.loads(heights.read_text()) if heights.exists() else {}
    data[name] = height
    heights.write_text(json.dumps(data, indent=1, sort_keys=True))
    if out := os.environ.get("EMPLIFAI_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)
        kept = Path(out) / heights.name
        merged = {**(json.loads(kept.read_text()) if kept.exists() else {}), **data}
        kept.write_text(json.dumps(merged, indent=1, sort_keys=True))
    return height


def _claim(page, kind: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/work")
    page.locator(f"form:has(input[name=kind][value={kind}]) button").click()
    page.wait_for_load_state()


def _box(page, selector: str) -> dict:  # type: ignore[no-untyped-def]
    return page.locator(selector).first.bounding_box()


def test_worker_pages_on_a_phone_with_javascript(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, store, _, gids = server
    page = _phone(browser, url)
    page.goto("/work")
    _record(page, tmp_path, "work")
    for kind in ("situation", "dialogue", "rating"):
        b = _box(page, f"form:has(input[name=kind][value={kind}]) button")
        assert b["height"] >= 32 and b["x"] + b["width"] <= PHONE["width"]

    # round 1: the emotion's own example, a live counter, a draft that survives a reload
    _claim(page, "situation")
    grief = default_examples()["Grief"]
    assert page.locator(".example").inner_text().count(grief.situation) == 1
    _record(page, tmp_path, "round1")
    page.get_by_label("状況").fill("通院の帰り道、父の好きだった店の前を通りました。")
    assert page.locator("#f-situation-count").inner_text() == "24 / 2000 文字"
    expect(page.locator("#draft-status")).to_contain_text("下書きを保存しました")  # saved by the script
    page.reload()
    assert page.get_by_label("状況").input_value() == "通院の帰り道、父の好きだった店の前を通りました。"
    page.get_by_label("状況").fill("あ" * 2001)
    assert "1 文字多すぎます" in page.locator("#f-situation-count").inner_text()
    page.get_by_role("button", name="提出する").click()
    assert "2000文字以内" in page.locator(".err").inner_text()
    assert len(page.get_by_label("状況").input_value()) == 2001  # the text stays in the form
    page.get_by_label("状況").fill("通院の帰り道、父の好きだった店の前を通りました。")
    page.get_by_role("button", name="提出する").click()
    assert "提出しました" in page.content()

    # round 2: people's instructions and a two-turn example for Grief, not the model's prompt
    _claim(page, "dialogue")
    body = page.locator("main").inner_text()
    assert "次の形式の2行だけを書く" not in body and f"患者：{grief.patient}" in body
    page.get_by_label("患者の発話").fill("父の店の前を通ると、まだ足が止まってしまうんです。")
    page.get_by_label("支援者の応答").fill("足が止まるのは、それだけ大切な場所だからですね。")
    _record(page, tmp_path, "round2")
    page.get_by_role("button", name="提出する").click()
    assert "提出しました" in page.content()

    # rating: one dialogue at a time, finger-sized 1–5 segments, progress, drafts on each tap
    _claim(page, "rating")
    cards = page.locator("[data-item]")
    assert cards.count() == 10 and page.locator("[data-item]:visible").count() == 1
    seg = _box(page, ".rating-item.current .seg span")
    assert seg["height"] >= 44 and seg["width"] >= 40
    last = _box(page, ".rating-item.current fieldset.scale .seg label:last-child span")
    assert last["x"] + last["width"] <= PHONE["width"] - 8
    _record(page, tmp_path, "rating-js-empty")
    for m in METRICS:
        page.locator(f"label:has(input[name='score_{gids[0]}_{m}'][value='4'])").click()
    assert page.locator("#item-1 [data-progress]").inner_text().startswith("7 / 7")
    assert page.locator("#rating-progress [data-done]").inner_text() == "1 / 10"
    assert "complete" in (page.locator("[data-chip='0']").get_attribute("class") or "")
    expect(page.locator("#draft-status")).to_contain_text("下書きを保存しました")  # saved by the script
    _record(page, tmp_path, "rating-js-first-done")
    page.reload()  # the draft brings every choice back; the page opens at the first unfinished dialogue
    assert page.locator(f"input[name='score_{gids[0]}_fluency'][value='4']").is_checked()
    assert page.locator("[data-item]:visible").get_attribute("id") == "item-2"
    page.get_by_role("button", name="提出する").click()  # incomplete: the browser points at the missing answer
    assert page.locator("[data-item]:visible").get_attribute("id") == "item-2" and "/claims/" in page.url
    for gid in gids[1:]:
        for m in METRICS:
            page.locator(f"label:has(input[name='score_{gid}_{m}'][value='3'])").click()
        if gid != gids[-1]:
            page.locator(".rating-item.current [data-step='1']").click()
    assert page.locator("#rating-progress [data-answered]").inner_text() == "70 / 70"
    page.get_by_role("button", name="提出する").click()
    assert "提出しました" in page.content()
    scores = _submitted_scores(store)
    assert len(scores) == 70 and sorted(set(scores)) == [3, 4]
    with store.open_session() as s:
        assert s.scalars(select(Draft)).all() == []


def _submitted_scores(store: Store) -> list[int]:
    """The scores of the submitted (pending) rating claim: they enter ``ratings`` only once a reviewer approves."""
    with store.open_session() as s:
        assert s.scalars(select(Rating)).all() == []
        (claim,) = s.scalars(select(Claim).where(Claim.status == ClaimStatus.PENDING, Claim.kind == Kind.RATING)).all()
        return [v for per in claim.answer["scores"].values() for v in per.values()]


def test_rating_on_a_phone_without_javascript(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, store, _, gids = server
    page = _phone(browser, url, js=False)
    _claim(page, "rating")
    assert page.locator("[data-item]:visible").count() == 10  # every dialogue on the page, nothing hidden
    assert page.locator(".stepnav:visible").count() == 0
    _record(page, tmp_path, "rating-nojs")
    for m in METRICS[:3]:
        page.locator(f"label:has(input[name='score_{gids[4]}_{m}'][value='5'])").click()
    page.get_by_role("button", name="下書き保存").click()
    assert "下書きを保存しました" in page.locator(".msg").inner_text()
    assert page.locator("#item-5 [data-progress]").inner_text() == "3 / 7"
    assert page.locator(f"input[name='score_{gids[4]}_harmlessness']:checked").count() == 0
    assert page.locator(f"input[name='score_{gids[4]}_comprehensibility'][value='5']").is_checked()
    for gid in gids:
        for m in METRICS:
            page.locator(f"label:has(input[name='score_{gid}_{m}'][value='2'])").click()
    page.get_by_role("button", name="提出する").click()
    assert "提出しました" in page.content()
    assert _submitted_scores(store) == [2] * 70
