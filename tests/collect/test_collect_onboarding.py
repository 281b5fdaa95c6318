"""Onboarding platform workers (issue 12 item 12) and reconciliation (item 13) on the real store, both backends:
CSV import all-or-none with file:line:field errors, UTF-8/BOM/Shift_JIS, invite links stored hashed and used
once, completion codes, and the reconciliation CSV — through the library, the CLI and the web app."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from emplifai.cli import app as cli
from emplifai.collect import create_app, onboarding, reconcile
from emplifai.errors import UserError
from emplifai.store.collect import Claim, Invite, User
from emplifai.store.db import Store
from tests.collect.fixtures import campaign, csrf, login, post, settings, users

CSV_TEXT = "platform_id,display_name\ncw_tanaka,田中 花子\ncw_suzuki,鈴木 一郎\ncw_sato,\n"


@pytest.fixture
def app(db_url: str) -> Iterator:
    a = create_app(settings(db_url, public_url="https://collect.example.jp"))
    users(a.state.store, ("admin", "admin"), ("boss", "lead"), ("rev", "reviewer"))
    yield a
    a.state.store.dispose()


def client(app, name: str | None = None) -> TestClient:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    if name:
        login(c, name)
    return c


def _import(store: Store, text: str, name: str = "workers.csv") -> list[onboarding.Issued]:
    rows = onboarding.parse_workers_csv(text, name)
    with store.transaction() as s:
        return onboarding.issue_invites(s, onboarding.import_workers(s, rows, name), "test")


# ------------------------------------------------------------------------------------------- CSV import
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_csv_is_read_in_utf8_with_or_without_bom_and_in_shift_jis(encoding: str) -> None:
    text, used = onboarding.decode_csv(CSV_TEXT.encode(encoding), "w.csv")
    rows = onboarding.parse_workers_csv(text, "w.csv")
    assert used == encoding
    assert [(r.line, r.platform_id, r.display_name, r.username) for r in rows] == [
        (2, "cw_tanaka", "田中 花子", "cw_tanaka"), (3, "cw_suzuki", "鈴木 一郎", "cw_suzuki"),
        (4, "cw_sato", "cw_sato", "cw_sato")]


def test_undecodable_csv_names_the_file_and_line() -> None:
    data = b"platform_id\nok1\n" + b"\x82\xff\xfe\n"  # neither UTF-8 nor cp932
    with pytest.raises(UserError, match=r"^w\.csv:3: 文字コードを読めません"):
        onboarding.decode_csv(data, "w.csv")


def test_japanese_headers_are_accepted() -> None:
    rows = onboarding.parse_workers_csv("クラウドワークスID,表示名\nabc,エー\n", "w.csv")
    assert rows[0].platform_id == "abc" and rows[0].display_name == "エー"


def test_every_bad_row_is_reported_with_file_line_field_and_nothing_is_stored(store: Store) -> None:
    text = ("platform_id,display_name\n"
            "good_one,良い\n"
            "bad id,空白入り\n"                 # line 3: space in the ID
            ",名前だけ\n"                       # line 4: empty ID
            "good_one,重複\n"                  # line 5: duplicate of line 2
            "ctl,制御\x07文字\n")               # line 6: control character in the name
    with pytest.raises(UserError) as exc:
        _import(store, text)
    msg = str(exc.value)
    assert "1件も登録していません" in msg
    assert "workers.csv:3: platform_id: 半角英数字" in msg
    assert "workers.csv:4: platform_id: 空です" in msg
    assert "workers.csv:5: platform_id: 'good_one' は 2 行目と重複しています" in msg
    assert "workers.csv:6: display_name: 制御文字は使えません" in msg
    with store.open_session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0


def test_a_clash_with_an_existing_account_refuses_the_whole_file(store: Store) -> None:
    _import(store, "platform_id\ncw_a\n")
    with pytest.raises(UserError, match=r"w2\.csv:3: platform_id: 'cw_a' はすでに登録されています"):
        _import(store, "platform_id\ncw_new\ncw_a\n", "w2.csv")
    with store.open_session() as s:
        assert sorted(s.scalars(select(User.username))) == ["cw_a"]  # cw_new was not written either


def test_missing_header_and_empty_file_are_clear_errors() -> None:
    with pytest.raises(UserError, match=r"w\.csv:1: 見出し行に platform_id"):
        onboarding.parse_workers_csv("name\nx\n", "w.csv")
    with pytest.raises(UserError, match="ファイルが空です"):
        onboarding.parse_workers_csv("", "w.csv")
    with pytest.raises(UserError, match="ワーカーの行がありません"):
        onboarding.parse_workers_csv("platform_id\n\n", "w.csv")


# ------------------------------------------------------------------------------------------- invite links
def test_invite_link_sets_the_password_once_and_only_its_hash_is_stored(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    issued = _import(store, CSV_TEXT)
    token = issued[0].token
    with store.open_session() as s:
        hashes = list(s.scalars(select(Invite.token_hash)))
        assert onboarding.token_hash(token) in hashes and token not in hashes and len(hashes) == 3
        u = s.scalar(select(User).where(User.username == "cw_tanaka"))
        assert (u.platform_id, u.display_name, u.role) == ("cw_tanaka", "田中 花子", "worker")
    worker = TestClient(app)
    # no password works before the invite is used
    token0 = csrf(worker.get("/login").text)
    r = worker.post("/login", data={"username": "cw_tanaka", "password": "correct-horse-battery",
                                    "csrf_token": token0})
    assert r.status_code == 401
    form = worker.get(f"/invite/{token}")
    assert form.status_code == 200 and "田中 花子" in form.text and form.headers["cache-control"] == "no-store"
    r = worker.post(f"/invite/{token}", data={"password": "mein-geheimes-pw", "password_again": "mein-geheimes-pw",
                                               "csrf_token": csrf(form.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/work?msg=welcome"
    page = worker.get(r.headers["location"]).text
    assert "パスワードを設定しました" in page and "プラットフォームID：cw_tanaka" in page
    # used once: the link is dead, for a second browser as well
    again = TestClient(app)
    assert again.get(f"/invite/{token}").status_code == 410
    again_form = again.get("/login").text
    r = again.post(f"/invite/{token}", data={"password": "another-password", "password_again": "another-password",
                                              "csrf_token": csrf(again_form)}, follow_redirects=False)
    assert r.status_code == 410
    # and the password chosen works for the sign-in form
    fresh = TestClient(app)
    login(fresh, "cw_tanaka", "mein-geheimes-pw")


def test_invite_refuses_mismatch_expiry_reissue_and_missing_csrf(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    issued = _import(store, CSV_TEXT)
    c = TestClient(app)
    tok = issued[1].token
    page = c.get(f"/invite/{tok}").text
    r = c.post(f"/invite/{tok}", data={"password": "abcdefgh1", "password_again": "abcdefgh2",
                                        "csrf_token": csrf(page)})
    assert r.status_code == 400 and "確認用のパスワードが一致しません" in r.text
    r = c.post(f"/invite/{tok}", data={"password": "abcdefgh1", "password_again": "abcdefgh1"})
    assert r.status_code in (403, 422)  # no CSRF token: refused
    # a new link for the same person kills the old one
    with store.transaction() as s:
        new = onboarding.issue_invites(s, [s.scalar(select(User).where(User.username == "cw_suzuki"))], "test")
    assert c.get(f"/invite/{tok}").status_code == 410 and c.get(f"/invite/{new[0].token}").status_code == 200
    # expiry
    with store.transaction() as s:
        s.execute(Invite.__table__.update().values(expires_at=time.time() - 1))
    assert c.get(f"/invite/{new[0].token}").status_code == 410
    assert c.get("/invite/" + "x" * 5000).status_code == 410


def test_lead_imports_on_the_web_and_gets_links_once(app) -> None:  # type: ignore[no-untyped-def]
    boss = client(app, "boss")
    token = csrf(boss.get("/workers").text)
    r = boss.post("/workers/import", data={"csrf_token": token, "days": "3"},
                  files={"file": ("crowdworks.csv", CSV_TEXT.encode("cp932"), "text/csv")})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    links = [line.split("\t")[1] for line in r.text.split("<textarea readonly rows=\"6\">")[1]
             .split("</textarea>")[0].splitlines()]
    assert len(links) == 3 and all(u.startswith("https://collect.example.jp/invite/") for u in links)
    listing = boss.get("/workers").text
    assert "cw_suzuki" in listing and "鈴木 一郎" in listing and "有効" in listing
    # a bad file on the web: the Japanese error names file, line and field; nothing stored
    r = boss.post("/workers/import", data={"csrf_token": token},
                  files={"file": ("bad.csv", b"platform_id\nnew_one\ncw_sato\n", "text/csv")})
    assert r.status_code == 400 and "bad.csv:3: platform_id: &#39;cw_sato&#39; はすでに登録されています" in r.text
    with app.state.store.open_session() as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.username == "new_one")) == 0
    # a worker or reviewer cannot import; nor can anyone without the token
    rev = client(app, "rev")
    assert rev.post("/workers/import", data={"csrf_token": csrf(rev.get("/review").text)},
                    files={"file": ("x.csv", b"platform_id\nzz\n", "text/csv")}).status_code == 403
    assert boss.post("/workers/import", files={"file": ("x.csv", b"platform_id\nzz\n", "text/csv")}
                     ).status_code == 403


def test_a_lead_cannot_invite_or_deactivate_staff(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    with store.open_session() as s:
        admin_id = s.scalar(select(User.id).where(User.username == "admin"))
    boss = client(app, "boss")
    r = post(boss, "/workers/invite", {"user_id": str(admin_id)}, page="/workers")
    assert r.status_code == 400 and "招待できない役割" in r.text
    r = post(boss, f"/users/{admin_id}/deactivate", page="/workers")
    assert r.status_code == 400
    with store.open_session() as s:
        assert s.scalar(select(func.count()).select_from(Invite)) == 0
        assert s.get(User, admin_id).active


# ------------------------------------------------------------------------------------ completion codes
def _worker(app, store: Store, name: str = "cw_tanaka") -> TestClient:  # type: ignore[no-untyped-def]
    with store.open_session() as s:
        if s.scalar(select(User.id).where(User.username == name)) is None:
            users(store, (name, "worker"))
            with store.transaction() as s2:
                s2.execute(User.__table__.update().where(User.username == name).values(platform_id=f"p_{name}"))
    return client(app, name)


def _submit_situation(c: TestClient, cid: int, text: str = "手術の前の晩、眠れずにいました。") -> tuple[int, str]:
    r = post(c, "/work/claim", {"campaign_id": cid, "kind": "situation"}, page="/work")
    loc = r.headers["location"]
    r = post(c, f"{loc}/submit", {"situation": text}, page=loc)
    assert r.status_code == 303 and r.headers["location"] == f"{loc}/done", r.text
    return int(loc.rsplit("/", 1)[1]), c.get(r.headers["location"]).text


def test_each_submission_shows_a_unique_stored_code_only_to_its_worker(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Joy", "Fear", "Anger"], round1_target=2)
    w, other = _worker(app, store, "wa"), _worker(app, store, "wb")
    seen = []
    for _ in range(3):
        claim_id, page = _submit_situation(w, cid)
        with store.open_session() as s:
            code = s.get(Claim, claim_id).completion_code
        assert code and f'<code id="completion-code">{code}</code>' in page
        assert len(code) == 14 and set(code.replace("-", "")) <= set(reconcile.CODE_ALPHABET)
        seen.append(code)
        assert other.get(f"/claims/{claim_id}/done").status_code == 404  # someone else's code stays hidden
    assert len(set(seen)) == 3
    assert all(code in w.get("/my").text for code in seen)
    assert w.get("/claims/99999999999999999999999/done").status_code in (404, 422)


# ------------------------------------------------------------------------------------------ reconciliation
def test_reconciliation_matches_the_database_per_platform_id_and_date_range(app) -> None:  # type: ignore[no-untyped-def]
    from emplifai.collect import review

    store = app.state.store
    cid = campaign(store, emotions=["Joy", "Fear", "Anger", "Sadness"], round1_target=3)
    wa, wb = _worker(app, store, "wa"), _worker(app, store, "wb")
    with store.transaction() as s:  # a display name that is a formula
        s.execute(User.__table__.update().where(User.username == "wb").values(display_name="=1+2"))
    a = [_submit_situation(wa, cid)[0] for _ in range(3)]
    b = [_submit_situation(wb, cid)[0] for _ in range(2)]
    with store.open_session() as s:
        rev = s.scalar(select(User).where(User.username == "rev"))
    review.approve(store, a[0], rev)
    review.approve(store, a[1], rev)
    review.reject(store, b[0], rev, "内容が感情と合いません")
    # one of wa's submissions was made on 2026-11-30 (Tokyo), the rest today
    day = reconcile.day_bounds(__import__("datetime").date(2026, 11, 30), None, "Asia/Tokyo")[0]
    with store.transaction() as s:
        s.execute(Claim.__table__.update().where(Claim.id == a[2]).values(submitted_at=day + 3600))
        codes = {c.id: c.completion_code for c in s.scalars(select(Claim))}
    boss = client(app, "boss")
    r = boss.get(f"/campaigns/{cid}/reconcile.csv")
    assert r.status_code == 200 and r.text.startswith("\ufeff") and "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text.removeprefix("\ufeff"))))
    assert [(x["platform_id"], x["submitted"], x["approved"], x["rejected"], x["pending"], x["amount_yen"])
            for x in rows] == [("p_wa", "3", "2", "0", "1", "20"), ("p_wb", "2", "0", "1", "1", "0")]
    assert rows[1]["display_name"] == "'=1+2"  # escaped, not a live formula
    assert set(rows[0]["codes"].split()) == {codes[i] for i in a}
    assert rows[1]["codes"].split() == [codes[i] for i in b]
    # the date range: only 2026-11-30 (Tokyo days)
    r = boss.get(f"/campaigns/{cid}/reconcile.csv", params={"since": "2026-11-30", "until": "2026-11-30"})
    rows = list(csv.DictReader(io.StringIO(r.text.removeprefix("\ufeff"))))
    assert [(x["platform_id"], x["submitted"], x["codes"]) for x in rows] == [("p_wa", "1", codes[a[2]])]
    r = boss.get(f"/campaigns/{cid}/reconcile.csv", params={"since": "2026-13-01"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text and "2026-13-01" in r.text
    r = boss.get(f"/campaigns/{cid}/reconcile.csv", params={"since": "2026-12-05", "until": "2026-12-01"})
    assert r.status_code == 400 and "より後です" in r.text
    assert wa.get(f"/campaigns/{cid}/reconcile.csv").status_code == 403
    assert client(app, "rev").get(f"/campaigns/{cid}/reconcile.csv").status_code == 403


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli_imports_invites_and_reconciles(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    src = tmp_path / "workers.csv"
    src.write_bytes(CSV_TEXT.encode("utf-8-sig"))
    links = tmp_path / "links.csv"
    r = runner.invoke(cli, ["collect", "import-workers", str(src), "--base-url", "https://c.example.jp",
                            "--out", str(links), "--db", db_url])
    assert r.exit_code == 0, r.output
    raw = links.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [x["platform_id"] for x in rows] == ["cw_tanaka", "cw_suzuki", "cw_sato"]
    assert all(x["invite_url"].startswith("https://c.example.jp/invite/") for x in rows)
    store = Store(db_url)
    with store.open_session() as s:
        token = rows[0]["invite_url"].rsplit("/", 1)[1]
        assert onboarding.live_invite(s, token) is not None
    # all or none from the CLI too
    bad = tmp_path / "bad.csv"
    bad.write_text("platform_id\nfresh\ncw_sato\n", encoding="utf-8")
    r = runner.invoke(cli, ["collect", "import-workers", str(bad), "--base-url", "https://c.example.jp",
                            "--db", db_url])
    assert r.exit_code != 0 and "bad.csv:3: platform_id" in str(r.exception)
    # re-invite: the old link dies
    r = runner.invoke(cli, ["collect", "invite", "cw_tanaka", "--base-url", "https://c.example.jp", "--db", db_url])
    assert r.exit_code == 0 and "https://c.example.jp/invite/" in r.output
    with store.open_session() as s:
        assert onboarding.live_invite(s, token) is None
    cid = campaign(store, "camp", emotions=["Joy"])
    r = runner.invoke(cli, ["collect", "reconcile", str(cid), "--since", "2026-01-01", "--db", db_url])
    assert r.exit_code == 0 and r.output.splitlines()[0] == ",".join(reconcile.RECONCILE_COLUMNS)
    r = runner.invoke(cli, ["collect", "reconcile", "camp", "--since", "yesterday", "--db", db_url])
    assert r.exit_code != 0 and "--since" in str(r.exception)
    store.dispose()
