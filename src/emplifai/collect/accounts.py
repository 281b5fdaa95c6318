"""User accounts: creation with argon2 hashes, sign-in checks, roles. Messages are Japanese: the lead reads
them on the web admin pages as well as from `emplifai collect`."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai.collect.security import burn_time, hash_password, verify_password
from emplifai.errors import UserError
from emplifai.store.collect import Role, User

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
ROLE_JA = {Role.WORKER: "ワーカー", Role.REVIEWER: "レビュアー", Role.LEAD: "責任者", Role.ADMIN: "管理者"}


def create_user(s: Session, username: str, password: str, role: str, display_name: str = "") -> User:
    if not USERNAME.match(username):
        raise UserError(f"ユーザー名 {username!r}：半角英数字と _ . @ - で1〜64文字にしてください")
    if role not in {r.value for r in Role}:
        raise UserError(f"役割 {role!r} はありません。{', '.join(r.value for r in Role)} のいずれかにしてください")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"パスワードは{MIN_PASSWORD}文字以上にしてください")
    if s.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"ユーザー {username!r} はすでに存在します")
    user = User(username=username, password_hash=hash_password(password), role=role,
                display_name=display_name or username, active=True, session_version=1)
    s.add(user)
    s.flush()
    return user


def set_password(s: Session, username: str, password: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"ユーザー {username!r} は見つかりません")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"パスワードは{MIN_PASSWORD}文字以上にしてください")
    user.password_hash = hash_password(password)
    user.session_version += 1  # signs the user out everywhere
    return user


def end_sessions(s: Session, user_id: int) -> None:
    """Sign the user out everywhere: every cookie carries the session version it was issued under."""
    user = s.get(User, user_id)
    if user is not None:
        user.session_version += 1


def deactivate(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"ユーザー {username!r} は見つかりません")
    user.active = False
    user.session_version += 1
    return user


def authenticate(s: Session, username: str, password: str) -> User | None:
    user = s.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        burn_time(password)
        return None
    return user if verify_password(user.password_hash, password) else None
