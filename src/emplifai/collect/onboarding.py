"""Onboarding workers from a crowdsourcing platform: a CSV of platform IDs → accounts → one-time invite links.

No password travels: an imported worker has no usable password until they open their invite link and choose
one. A link is a random 256-bit token; only its SHA-256 is stored (the token is already high-entropy, so a
fast hash is enough), it expires, works once, and issuing a new one kills the old.

The CSV is all or nothing: every row is checked (and every problem reported with file, line and field) before
a single account is written. UTF-8 with or without BOM is read, and so is the Shift_JIS (cp932) that Japanese
Excel writes for "CSV (コンマ区切り)".
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from emplifai.collect.accounts import MIN_PASSWORD, USERNAME, deactivate
from emplifai.collect.assign import release_all
from emplifai.collect.security import hash_password
from emplifai.errors import UserError
from emplifai.store.collect import Invite, Role, User

PLATFORM_ID = USERNAME  # CrowdWorks / Lancers user names: letters, digits and a few marks
MAX_DISPLAY = 128
MAX_ROWS = 5000
MAX_BYTES = 1_000_000
INVITE_DAYS = 7.0
# Header names accepted for each column (English, and what a Japanese lead would type in Excel).
COLUMNS = {"platform_id": ("platform_id", "プラットフォームid", "クラウドワークスid", "id"),
           "display_name": ("display_name", "表示名", "名前", "name"),
           "username": ("username", "ユーザー名", "ログイン名")}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class WorkerRow:
    line: int
    platform_id: str
    display_name: str
    username: str


@dataclass(frozen=True, slots=True)
class Issued:
    username: str
    platform_id: str | None
    display_name: str
    token: str
    expires_at: float


def decode_csv(data: bytes, name: str) -> tuple[str, str]:
    """The text of an uploaded CSV and the encoding it was read as (utf-8, utf-8-sig or cp932)."""
    if len(data) > MAX_BYTES:
        raise UserError(f"{name}: ファイルが大きすぎます（{len(data):,} バイト、上限 {MAX_BYTES:,}）")
    encodings = ("utf-8-sig",) if data.startswith(b"\xef\xbb\xbf") else ("utf-8", "cp932")
    for enc in encodings:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    bad = data.decode("utf-8", errors="replace").split("\n")
    line = next((i for i, t in enumerate(bad, 1) if "\ufffd" in t), 1)
    raise UserError(f"{name}:{line}: 文字コードを読めません。UTF-8（BOM 付き可）か Shift_JIS で保存してください")


def _header(fields: list[str], name: str) -> dict[str, int]:
    norm = [f.strip().lower().replace(" ", "") for f in fields]
    where: dict[str, int] = {}
    for col, aliases in COLUMNS.items():
        for i, f in enumerate(norm):
            if f in aliases:
                where[col] = i
                break
    if "platform_id" not in where:
        raise UserError(f"{name}:1: 見出し行に platform_id（プラットフォームID）の列がありません"
                        f"（見出し: {', '.join(fields) or '空'}）")
    return where


def parse_workers_csv(text: str, name: str) -> list[WorkerRow]:
    """Every row checked; all problems reported at once as ``file:line: field: message``."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise UserError(f"{name}: ファイルが空です")
    where = _header(rows[0], name)
    problems: list[str] = []
    out: list[WorkerRow] = []
    seen: dict[str, dict[str, int]] = {"platform_id": {}, "username": {}}
    for line, raw in enumerate(rows[1:], 2):
        if not any(c.strip() for c in raw):
            continue  # Excel leaves blank lines at the end
        if len(out) >= MAX_ROWS:
            raise UserError(f"{name}:{line}: 行が多すぎます（上限 {MAX_ROWS} 人）")
        values = {col: _cell(raw, where.get(col)) for col in COLUMNS}
        values["username"] = values["username"] or values["platform_id"]
        values["display_name"] = values["display_name"] or values["platform_id"]
        bad = False
        for col, value in values.items():
            msg = _check(col, value)
            if msg:
                problems.append(f"{name}:{line}: {col}: {msg}（{value[:40]!r}）")
                bad = True
        for col in ("platform_id", "username"):
            first = seen[col].setdefault(values[col], line)
            if first != line and not bad:
                problems.append(f"{name}:{line}: {col}: {values[col]!r} は {first} 行目と重複しています")
                bad = True
        if not bad:
            out.append(WorkerRow(line, values["platform_id"], values["display_name"], values["username"]))
    if problems:
        raise UserError(_summary(problems))
    if not out:
        raise UserError(f"{name}: ワーカーの行がありません（1行目は見出し）")
    return out


def _cell(raw: list[str], i: int | None) -> str:
    return raw[i].strip() if i is not None and i < len(raw) else ""


def _check(col: str, value: str) -> str | None:
    if col == "display_name":
        if _CONTROL.search(value):
            return "制御文字は使えません"
        return f"{MAX_DISPLAY}文字以内にしてください" if len(value) > MAX_DISPLAY else None
    if not value:
        return "空です"
    if not PLATFORM_ID.match(value):
        return "半角英数字と _ . @ - の1〜64文字にしてください"
    return None


def _summary(problems: list[str], limit: int = 20) -> str:
    more = f"\nほか {len(problems) - limit} 件" if len(problems) > limit else ""
    return f"取り込みませんでした（{len(problems)} 件の問題。1件も登録していません）:\n" + "\n".join(
        problems[:limit]) + more


def import_workers(s: Session, rows: list[WorkerRow], name: str) -> list[User]:
    """Create one worker account per row, or none: a clash with an existing account refuses the whole file."""
    problems = []
    names = {r.username for r in rows}
    pids = {r.platform_id for r in rows}
    taken_names = set(s.scalars(select(User.username).where(User.username.in_(names))))
    taken_pids = set(s.scalars(select(User.platform_id).where(User.platform_id.in_(pids))))
    for r in rows:
        if r.username in taken_names:
            problems.append(f"{name}:{r.line}: username: {r.username!r} はすでに登録されています")
        if r.platform_id in taken_pids:
            problems.append(f"{name}:{r.line}: platform_id: {r.platform_id!r} はすでに登録されています")
    if problems:
        raise UserError(_summary(problems))
    # One hash of a random, discarded secret: nobody can sign in until they set a password through an invite,
    # and a failed sign-in costs the same time as for any other account.
    unusable = hash_password(secrets.token_urlsafe(32))
    users = [User(username=r.username, platform_id=r.platform_id, display_name=r.display_name,
                  password_hash=unusable, role=Role.WORKER, active=True, session_version=1) for r in rows]
    s.add_all(users)
    s.flush()
    return users


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_invites(s: Session, users: list[User], created_by: str, *, days: float = INVITE_DAYS,
                  now: float | None = None) -> list[Issued]:
    """A fresh one-time link per user; any older unused link of theirs stops working."""
    if not 0 < days <= 60:
        raise UserError(f"招待リンクの有効期間は0より長く60日以内にしてください（{days}）")
    now = time.time() if now is None else now
    ids = [u.id for u in users]
    s.execute(update(Invite).where(Invite.user_id.in_(ids), Invite.used_at.is_(None), Invite.expires_at > now)
              .values(expires_at=now))
    out = []
    for u in users:
        if not u.active:
            raise UserError(f"{u.username!r} は無効化されたアカウントです")
        token = secrets.token_urlsafe(32)
        s.add(Invite(user_id=u.id, token_hash=token_hash(token), created_at=now, expires_at=now + days * 86400,
                     used_at=None, created_by=created_by))
        out.append(Issued(u.username, u.platform_id, u.display_name, token, now + days * 86400))
    s.flush()
    return out


def invite_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + "/invite/" + token


def live_invite(s: Session, token: str, now: float | None = None, *, lock: bool = False) -> tuple[Invite, User] | None:
    """The unused, unexpired invite behind a token, and its (active) user; None for anything else."""
    if not token or len(token) > 128:
        return None
    now = time.time() if now is None else now
    q = select(Invite).where(Invite.token_hash == token_hash(token))
    inv = s.scalar(q.with_for_update() if lock else q)
    if inv is None or inv.used_at is not None or inv.expires_at <= now:
        return None
    user = s.get(User, inv.user_id)
    if user is None or not user.active:
        return None
    return inv, user


def check_new_password(password: str, again: str) -> None:
    if password != again:
        raise UserError("確認用のパスワードが一致しません")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"パスワードは{MIN_PASSWORD}文字以上にしてください")
    if len(password) > 256:
        raise UserError("パスワードは256文字以内にしてください")


def redeem(s: Session, token: str, password_hash: str, now: float | None = None) -> User:
    """Use the invite (once): the user's password becomes the one they chose, every older session ends."""
    now = time.time() if now is None else now
    found = live_invite(s, token, now, lock=s.get_bind().dialect.name != "sqlite")
    if found is None:
        raise UserError("この招待リンクは使用済みか期限切れです。責任者に新しいリンクを依頼してください")
    inv, user = found
    inv.used_at = now
    user.password_hash = password_hash
    user.session_version += 1
    return user


def may_manage(actor_role: str, target: User) -> bool:
    """Leads invite and deactivate workers; only an admin may do it to staff accounts."""
    return actor_role == Role.ADMIN or (actor_role == Role.LEAD and target.role == Role.WORKER)


def offboard(s: Session, username: str) -> tuple[User, int]:
    """Deactivate an account: its sessions end, its unused invites die, its open leases return to the pool."""
    user = deactivate(s, username)
    s.execute(update(Invite).where(Invite.user_id == user.id, Invite.used_at.is_(None)).values(expires_at=0.0))
    return user, release_all(s, user.id)
