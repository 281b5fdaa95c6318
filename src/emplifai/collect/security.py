"""Password hashing (argon2id), signed session cookies (itsdangerous) and CSRF tokens.

The session cookie carries the user id, the user's session version (bumped to sign everyone out) and a random
CSRF token; every state-changing form posts that token back (synchronizer-token pattern). An anonymous visitor
gets a session without a user id so that the sign-in form is protected too.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from functools import cache

COOKIE = "emplifai_session"


@cache
def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: list[str] = []


def burn_time(password: str) -> None:
    """Verify against a throwaway hash so an unknown user name costs as long as a wrong password."""
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    verify_password(_DUMMY[0], password)


@dataclass(frozen=True, slots=True)
class SessionData:
    csrf: str
    uid: int | None = None
    version: int = 0


class SessionCodec:
    def __init__(self, secret_key: str, max_age: int):
        from itsdangerous import URLSafeTimedSerializer

        self._s = URLSafeTimedSerializer(secret_key, salt="emplifai.collect.session")
        self.max_age = max_age

    def dumps(self, data: SessionData) -> str:
        return self._s.dumps({"c": data.csrf, "u": data.uid, "v": data.version})

    def loads(self, token: str | None) -> SessionData | None:
        from itsdangerous import BadSignature

        if not token:
            return None
        try:
            raw = self._s.loads(token, max_age=self.max_age)
            return SessionData(csrf=str(raw["c"]), uid=raw["u"], version=int(raw["v"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None


def new_session(uid: int | None = None, version: int = 0) -> SessionData:
    return SessionData(csrf=secrets.token_urlsafe(32), uid=uid, version=version)


def csrf_ok(session: SessionData | None, token: str | None) -> bool:
    return bool(session and token) and hmac.compare_digest(session.csrf.encode(), token.encode())  # type: ignore[union-attr]
