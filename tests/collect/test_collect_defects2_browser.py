"""Issue 12 items 6, 8 and 10 in a real headless Chromium against a real `emplifai serve`, on a phone-sized
screen (375×812); screenshots land in the test's tmp dir (and in $EMPLIFAI_SCREENSHOTS when set)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from emplifai.collect import assign
from emplifai.records import Kind
from emplifai.store.collect import Claim
from tests.collect.fixtures import PASSWORD, campaign, screenshot, sign_in, users
from tests.collect.test_collect_browser import (  # noqa: F401  (fixtures: Debian Chromium, a real server)
    pytestmark,
    server,
)

PHONE = {"width": 375, "height": 812}


def test_late_work_is_shown_back_in_the_browser(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    url, store = server
    ids = users(store, ("late1", "worker"), ("quick1", "worker"))
    cid = campaign(store, "late", emotions=["Joy"], round1_target=1)
    page = sign_in(browser, url, "late1", viewport=PHONE)
    page.get_by_role("button", name="状況を書く（第1ラウンド）").click()
    text = "退院の日、主治医に「よく頑張りましたね」と言われて、思わず家族に電話しました。"
    page.locator("textarea[name=situation]").fill(text)
    with store.transaction() as s:  # the lease runs out while the worker is still writing …
        c = s.scalar(select(Claim))
        c.expires_at = c.leased_at = 1.0
    assert assign.claim(store, cid, ids["quick1"], Kind.SITUATION) is not None  # … and the slot goes to another
    page.get_by_role("button", name="提出する").click()
    body = page.content()
    assert "受け付けられませんでした" in body and "コピー" in body
    assert page.locator("textarea[readonly]").input_value() == text
    screenshot(page, tmp_path, "late-work-phone")
    page.reload()  # still there when the page is opened again
    assert page.locator("textarea[readonly]").input_value() == text


def test_error_pages_and_login_throttle_in_the_browser(browser, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    url, store = server
    users(store, ("victim", "worker"))
    page = sign_in(browser, url, "victim", viewport=PHONE)
    page.goto("/claims/99999999999999999999999")
    assert page.locator(".err").inner_text() == "ページが見つかりません" and page.locator(".msg").count() == 0
    screenshot(page, tmp_path, "not-found-phone")
    page.goto("/review")
    assert "権限がありません" in page.locator(".err").inner_text()
    attacker = browser.new_context(base_url=url, viewport=PHONE).new_page()
    for _ in range(8):
        attacker.goto("/login")
        attacker.get_by_label("ユーザー名").fill("victim")
        attacker.get_by_label("パスワード").fill("wrong-password")
        attacker.get_by_role("button", name="ログイン").click()
        assert "パスワードが違います" in attacker.content()
    attacker.goto("/login")
    attacker.get_by_label("ユーザー名").fill("victim")
    attacker.get_by_label("パスワード").fill(PASSWORD)
    attacker.get_by_role("button", name="ログイン").click()
    assert "しばらくログインできません" in attacker.locator(".err").inner_text()
    assert attacker.get_by_label("ユーザー名").input_value() == "victim"  # the typed name is kept
    screenshot(attacker, tmp_path, "login-throttled-phone")
