"""What every route depends on: the request context (signed session → user), role and CSRF guards, rendering.

Every route declares the roles it admits through ``guard(...)``; every state-changing route also depends on
``csrf``. The store, codec and templates are the app's state, set up by ``create_app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from emplifai.collect import inputs
from emplifai.collect.security import COOKIE, SessionCodec, SessionData, csrf_ok, new_session
from emplifai.collect.settings import Settings
from emplifai.store.collect import Role, User
from emplifai.store.db import Store

T = TypeVar("T")
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STAFF = (Role.REVIEWER, Role.LEAD, Role.ADMIN)
LEADS = (Role.LEAD, Role.ADMIN)


class LoginRequired(Exception):
    pass


@dataclass(slots=True)
class Ctx:
    request: Request
    session: SessionData | None
    user: User | None

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


def store_of(request: Request) -> Store:
    return request.app.state.store


def codec_of(request: Request) -> SessionCodec:
    return request.app.state.codec


def context_of(request: Request) -> Ctx:
    sess = codec_of(request).loads(request.cookies.get(COOKIE))
    user = None
    if sess is not None and sess.uid is not None:
        with store_of(request).open_session() as s:
            u = s.get(User, sess.uid)
            if u is not None and u.active and u.session_version == sess.version:
                user = u
    return Ctx(request, sess, user)


def guard(*roles: Role):  # type: ignore[no-untyped-def]
    """Dependency: the signed-in user must hold one of ``roles`` (403 otherwise; sign-in page when anonymous)."""
    allowed = {str(r) for r in roles}

    def dep(request: Request) -> Ctx:
        ctx = context_of(request)
        if ctx.user is None:
            raise LoginRequired
        if ctx.user.role not in allowed:
            raise HTTPException(403, "この操作を行う権限がありません")
        return ctx

    return dep


def authorize(s: Session, sess: SessionData | None, roles: tuple[Role, ...]) -> User:
    """The role check inside a caller's own transaction (the claim hot path: one thread hop per request)."""
    user = s.get(User, sess.uid) if sess is not None and sess.uid is not None else None
    if user is None or not user.active or user.session_version != sess.version:  # type: ignore[union-attr]
        raise LoginRequired
    if user.role not in {str(r) for r in roles}:
        raise HTTPException(403, "この操作を行う権限がありません")
    return user


def session_of(request: Request) -> SessionData | None:
    return codec_of(request).loads(request.cookies.get(COOKIE))


async def run_db(request: Request, fn: Callable[[], T]) -> T:
    """Run blocking database work off the event loop. On SQLite all writes queue on one thread: the database
    has a single writer anyway, and one thread avoids dozens of threads fighting over the GIL and the lock."""
    writer: ThreadPoolExecutor | None = request.app.state.writer
    if writer is None:
        return await run_in_threadpool(fn)
    return await asyncio.get_running_loop().run_in_executor(writer, fn)


def anonymous(request: Request) -> Ctx:
    return context_of(request)


def url_guard(request: Request) -> None:
    """Every route: path and query values must be UTF-8 without control characters (a NUL in an id reached
    PostgreSQL, which answered with a 500)."""
    try:
        for key, value in [*request.path_params.items(), *request.query_params.multi_items()]:
            if isinstance(value, str):
                inputs.check_text(key, value)
    except inputs.BadText as exc:
        raise HTTPException(400, str(exc)) from None


# Long texts whose routes check them and show the form again with what was typed (assign.validate, review.modify).
FREE_TEXT = frozenset({"situation", "patient", "supporter"})


async def csrf(request: Request) -> None:
    """Dependency for every state-changing request: the form must echo the session's CSRF token, be UTF-8
    and hold no control characters (collect.inputs)."""
    try:
        inputs.check_charset(request.headers.get("content-type", ""))
    except inputs.BadText as exc:
        raise HTTPException(400, str(exc)) from None
    form = await request.form()
    if request.scope.get(inputs.RAW_BYTES):  # set by app.RawBytes while the body was read
        raise HTTPException(400, inputs.ENCODING_JA)
    token = form.get("csrf_token")
    sess = codec_of(request).loads(request.cookies.get(COOKIE))
    if not csrf_ok(sess, token if isinstance(token, str) else None):
        raise HTTPException(403, "フォームの有効期限が切れたか、不正な送信です（CSRF）。ページを開き直してください")
    try:
        for key, value in form.multi_items():
            if isinstance(value, str) and key not in FREE_TEXT:
                inputs.check_text(key, value)
    except inputs.BadText as exc:
        raise HTTPException(400, str(exc)) from None


CSRF = Depends(csrf)


def set_session(response: Response, request: Request, data: SessionData) -> None:
    settings: Settings = request.app.state.settings
    response.set_cookie(COOKIE, codec_of(request).dumps(data), max_age=settings.session_max_age, httponly=True,
                        samesite="lax", secure=settings.cookie_secure, path="/")


def render(ctx: Ctx, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = ctx.request.app.state.templates
    fresh = ctx.session is None
    if fresh:  # first visit: give the browser a session so that its first form (sign-in) carries a token
        ctx.session = new_session()
    resp = templates.TemplateResponse(ctx.request, name, {"ctx": ctx, "user": ctx.user, "csrf": ctx.csrf,
                                                           **context}, status_code=status_code)
    if fresh:
        set_session(resp, ctx.request, ctx.session)  # type: ignore[arg-type]
    return resp


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def format_timestamp(ts: float | None, time_zone: str = "Asia/Tokyo") -> str:
    """A stored UNIX time in the campaign's time zone, labelled (never the server's local time)."""
    if not ts:
        return ""
    when = datetime.fromtimestamp(ts, ZoneInfo(time_zone))
    return when.strftime("%Y-%m-%d %H:%M ") + (when.tzname() or time_zone)


