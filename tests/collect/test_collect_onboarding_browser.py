"""Onboarding 18 platform workers end to end, in a real headless Chromium against a real `emplifai serve`
(issue 12 items 12 and 13): the lead uploads a CSV as Japanese Excel saves it (Shift_JIS) → the app shows 18
one-time invite links → each worker opens theirs on a phone-sized screen, chooses a password, claims and
submits a situation and reads a completion code → reviewers decide → the lead downloads the reconciliation CSV,
which matches the database row for row. Screenshots land in the test's tmp dir (and EMPLIFAI_SCREENSHOTS)."""

from __future__ import annotations

import csv
import io
import secrets
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai import taxonomy
from emplifai.collect import review
from emplifai.store.collect import Claim, ClaimStatus, PayEntry, User
from emplifai.store.db import Store
from tests.collect.fixtures import campaign, screenshot, sign_in, start_server, users
from tests.helpers import CHROMIUM

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/test.sh installs it)"),
]
N = 18
PHONE = {"width": 375, "height": 812}
NAMES = ["佐藤 陽菜", "鈴木 蓮", "高橋 結衣", "田中 湊", "伊藤 葵", "渡辺 樹", "山本 凛", "中村 大翔", "小林 芽依",
         "加藤 悠真", "吉田 紬", "山田 陽翔", "佐々木 澪", "山口 蒼", "松本 咲良", "井上 律", "木村 心春", "林 朝陽"]



def test_eighteen_workers_from_csv_to_reconciliation(browser, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = Store(db_url)
    staff = users(store, ("boss", "lead"), ("rev", "reviewer"))
    cid = campaign(store, "cw2026", emotions=[lab.en for lab in taxonomy.LABELS], round1_target=1)
    server = start_server(db_url, secrets.token_urlsafe(48), tmp_path)
    try:
        # 1. the lead uploads the platform's worker list, saved by Excel as Shift_JIS
        src = tmp_path / "crowdworks_workers.csv"
        rows = [f"cw_user{i:02d},{NAMES[i]}" for i in range(N)]
        src.write_bytes(("クラウドワークスID,表示名\r\n" + "\r\n".join(rows) + "\r\n").encode("cp932"))
        lead = sign_in(browser, server.url, "boss")
        lead.goto("/workers")
        lead.locator("input[type=file]").set_input_files(str(src))
        lead.get_by_role("button", name="取り込んで招待リンクを発行").click()
        lead.wait_for_load_state()
        assert "招待リンク（18 件）" in lead.content()
        links = lead.locator("code.invite-url").all_inner_texts()
        assert len(links) == N and len(set(links)) == N
        assert all(link.startswith(server.url + "/invite/") for link in links)
        screenshot(lead, tmp_path, "onboarding_invites")

        # 2. each worker opens their link on a phone, sets a password, claims, submits, reads the code
        shown: dict[str, str] = {}
        for i, link in enumerate(links):
            ctx = browser.new_context(base_url=server.url, viewport=PHONE)
            page = ctx.new_page()
            page.goto(link)
            assert NAMES[i] in page.content()
            if i == 0:
                screenshot(page, tmp_path, "onboarding_set_password_375")
            page.get_by_label("新しいパスワード（8文字以上）").fill(f"pw-{i:02d}-{secrets.token_hex(4)}")
            page.get_by_label("もう一度").fill(page.get_by_label("新しいパスワード（8文字以上）").input_value())
            page.get_by_role("button", name="パスワードを設定してはじめる").click()
            page.wait_for_load_state()
            body = page.content()
            assert "パスワードを設定しました" in body and f"プラットフォームID：cw_user{i:02d}" in body
            page.get_by_role("button", name="状況を書く（第1ラウンド）").click()
            page.wait_for_load_state()
            page.locator("textarea[name=situation]").fill(
                f"通院{i + 1}回目の帰りに、待合室で隣の人と話したときのことです。")
            page.get_by_role("button", name="提出する").click()
            page.wait_for_load_state()
            code = page.locator("#completion-code").inner_text()
            assert "提出しました" in page.content() and len(code) == 14
            if i == 0:
                screenshot(page, tmp_path, "onboarding_completion_code_375")
            shown[f"cw_user{i:02d}"] = code
            # the link worked once: opening it again is refused
            assert page.goto(link).status == 410
            ctx.close()

        # 3. reviewers decide: 12 approved, 3 rejected (the 30% cap allows 5 of 18), 3 left pending
        with store.open_session() as s:
            rev = s.get(User, staff["rev"])
            claims = list(s.scalars(select(Claim).where(Claim.campaign_id == cid).order_by(Claim.id)))
        assert len(claims) == N
        for c in claims[:12]:
            review.approve(store, c.id, rev)
        for c in claims[12:15]:
            review.reject(store, c.id, rev, "感情と状況が合っていません")

        lead.goto("/workers")
        assert lead.content().count("使用済み") == N
        screenshot(lead, tmp_path, "onboarding_workers")

        # 4. the lead downloads the reconciliation CSV from the dashboard
        lead.goto(f"/dashboard/{cid}")
        screenshot(lead, tmp_path, "onboarding_dashboard_lifecycle")
        with lead.expect_download() as dl:
            lead.get_by_role("button", name="ダウンロード").last.click()
        raw = Path(dl.value.path()).read_bytes()
    finally:
        server.stop()
    assert raw.startswith(b"\xef\xbb\xbf")
    got = {r["platform_id"]: r for r in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))}
    # 5. every row matches the database: the codes the workers saw, counts by status, the pay owed
    expect: dict[str, dict[str, object]] = defaultdict(lambda: {"codes": [], "approved": 0, "rejected": 0,
                                                                "pending": 0, "yen": 0})
    with store.open_session() as s:
        pay = dict(s.execute(select(PayEntry.claim_id, PayEntry.amount_yen)).all())
        for c, pid, disp in s.execute(select(Claim, User.platform_id, User.display_name)
                                      .join(User, User.id == Claim.worker_id).where(Claim.campaign_id == cid)):
            e = expect[pid]
            e["codes"].append(c.completion_code)  # type: ignore[union-attr]
            e["display_name"] = disp
            e["approved"] += c.id in pay  # type: ignore[operator]
            e["rejected"] += c.status == ClaimStatus.REJECTED  # type: ignore[operator]
            e["pending"] += c.status == ClaimStatus.PENDING  # type: ignore[operator]
            e["yen"] += pay.get(c.id, 0)  # type: ignore[operator]
    assert sorted(got) == sorted(expect) == sorted(shown)
    for pid, e in expect.items():
        row = got[pid]
        assert row["codes"].split() == e["codes"] == [shown[pid]]
        assert (int(row["approved"]), int(row["rejected"]), int(row["pending"]), int(row["amount_yen"])) == (
            e["approved"], e["rejected"], e["pending"], e["yen"])
        assert row["display_name"] == e["display_name"] and row["submitted"] == "1"
    assert sum(int(r["approved"]) for r in got.values()) == 12 and sum(int(r["amount_yen"]) for r in got.values()) \
        == 12 * 10
    assert sum(int(r["rejected"]) for r in got.values()) == 3 and sum(int(r["pending"]) for r in got.values()) == 3
    store.dispose()
