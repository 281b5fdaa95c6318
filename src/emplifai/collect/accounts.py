"""User accounts: creation with argon2 hashes, sign-in checks, roles."""

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
        raise UserError(f"user name {username!r}: use 1–64 letters, digits, '_', '.', '@' or '-'")
    if role not in {r.value for r in Role}:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
    if s.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role,
                display_name=display_name or username, active=True, session_version=1)
    s.add(user)
    s.flush()
    return user


def set_password(s: Session, username: str, password: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"no user {username!r}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters")
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
        raise UserError(f"no user {username!r}")
    user.active = False
    user.session_version += 1
    return user


def authenticate(s: Session, username: str, password: str) -> User | None:
    user = s.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        burn_time(password)
        return None
    return user if verify_password(user.password_hash, password) else None
