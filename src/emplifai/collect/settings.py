"""Web app settings. Outside development a real secret key is mandatory: signed sessions are only as safe as it."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emplifai.errors import UserError

DEV_SECRET = "emplifai-development-secret-do-not-use-in-production"
MIN_SECRET_CHARS = 32


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    db: str | None = Field(None, description="Database URL or SQLite path (default: EMPLIFAI_DB or emplifai.db).")
    secret_key: str = Field(DEV_SECRET, description="Signs session cookies; EMPLIFAI_SECRET_KEY.")
    # Only `emplifai serve --dev` (on loopback) sets development: no environment variable can turn the built-in key
    # on, so a stray EMPLIFAI_ENV on a server cannot make its cookies forgeable.
    environment: Literal["development", "production"] = Field("production", description="--dev only.")
    session_max_age: int = Field(12 * 3600, ge=60, description="Seconds a sign-in stays valid.")
    cookie_secure: bool = Field(False, description="Send cookies over HTTPS only (set behind TLS).")
    time_zone: str = Field("Asia/Tokyo", description="Time zone every page shows times in; EMPLIFAI_TIME_ZONE.")
    public_url: str | None = Field(None, description="Base of invite links (https://…); EMPLIFAI_PUBLIC_URL. "
                                                     "Default: the address the lead's browser used.")
    # Login throttling (collect.throttle): failed sign-ins allowed per sliding window, per user name and per
    # client address; EMPLIFAI_LOGIN_MAX_PER_USER / EMPLIFAI_LOGIN_MAX_PER_CLIENT.
    login_window_s: int = Field(600, ge=1, description="Seconds of the sliding window.")
    login_max_per_user: int = Field(8, ge=1, description="Failed sign-ins per user name and window.")
    login_max_per_client: int = Field(30, ge=1, description="Failed sign-ins per client address and window.")
    login_hash_slots: int | None = Field(None, ge=1, description="Concurrent password checks (default: cores/4).")
    login_queue: int = Field(64, ge=1, description="Password checks allowed to wait before refusing as busy.")

    @model_validator(mode="after")
    def _time_zone_exists(self) -> Settings:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.time_zone!r} (an IANA name such as Asia/Tokyo)") from None
        return self

    @model_validator(mode="after")
    def _public_url_is_http(self) -> Settings:
        if self.public_url is not None and not self.public_url.startswith(("https://", "http://")):
            raise ValueError(f"public URL {self.public_url!r} must start with https:// or http://")
        return self

    @model_validator(mode="after")
    def _secret_is_real(self) -> Settings:
        if self.environment != "development":
            if self.secret_key == DEV_SECRET:
                raise ValueError(
                    "the default secret key is only allowed with environment=development; set EMPLIFAI_SECRET_KEY "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
            if len(self.secret_key) < MIN_SECRET_CHARS:
                raise ValueError(f"secret key must have at least {MIN_SECRET_CHARS} characters")
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Environment variables (EMPLIFAI_SECRET_KEY, EMPLIFAI_COOKIE_SECURE, EMPLIFAI_TIME_ZONE,
        EMPLIFAI_LOGIN_MAX_PER_USER, EMPLIFAI_LOGIN_MAX_PER_CLIENT), then overrides."""
        values: dict[str, object] = {}
        if key := os.environ.get("EMPLIFAI_SECRET_KEY"):
            values["secret_key"] = key
        if tz := os.environ.get("EMPLIFAI_TIME_ZONE"):
            values["time_zone"] = tz
        if public := os.environ.get("EMPLIFAI_PUBLIC_URL"):
            values["public_url"] = public
        for var, name in (("EMPLIFAI_LOGIN_MAX_PER_USER", "login_max_per_user"),
                          ("EMPLIFAI_LOGIN_MAX_PER_CLIENT", "login_max_per_client")):
            if raw := os.environ.get(var):
                values[name] = raw
        if os.environ.get("EMPLIFAI_COOKIE_SECURE"):
            values["cookie_secure"] = os.environ["EMPLIFAI_COOKIE_SECURE"].lower() in ("1", "true", "yes")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_dev_host(host: str) -> None:
    """--dev signs cookies with a key everyone can read: refuse it on any interface but loopback."""
    if host not in LOOPBACK and not host.startswith("127."):
        raise UserError(f"--dev uses the built-in secret key and only listens on loopback (127.0.0.1), not {host!r}; "
                        "set EMPLIFAI_SECRET_KEY and drop --dev to serve other machines")
