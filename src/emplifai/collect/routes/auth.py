"""Sign-in, sign-out and the health check."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from emplifai.collect import accounts, throttle
from emplifai.collect.deps import (
    CSRF,
    redirect,
    set_session,
    store_of,
)
from emplifai.collect.routes.common import Anyone, Text, page
from emplifai.collect.security import new_session
from emplifai.collect.tx import run_write
from emplifai.store.collect import Role, User

router = APIRouter()


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"ok": True})


@router.get("/")
def home(ctx: Anyone) -> Response:
    if ctx.user is None:
        return redirect("/login")
    return redirect({Role.WORKER: "/work", Role.REVIEWER: "/review", Role.LEAD: "/lead", Role.ADMIN: "/admin"}[
        Role(ctx.user.role)])


@router.get("/login")
def login_form(ctx: Anyone) -> Response:
    return page(ctx, "login.html")


@router.post("/login", dependencies=[CSRF])
async def login(ctx: Anyone, username: Text, password: Text) -> Response:
    """Throttled per user name and client before any password is checked; checks run on their own small pool
    (collect.throttle), so a login flood cannot take the threads that serve the workers' pages."""
    request, store, name = ctx.request, store_of(ctx.request), username.strip()
    settings = request.app.state.settings
    limits = throttle.Limits(settings.login_window_s, settings.login_max_per_user, settings.login_max_per_client)
    client = request.client.host if request.client else "unknown"
    now = time.time()

    def check() -> User | None:
        with store.open_session() as s:
            return accounts.authenticate(s, name, password)

    def over_limit() -> int | None:  # read only: a refused flood never takes the database's write lock
        with store.open_session() as s:
            return throttle.retry_after(s, name, client, now, limits)

    wait, attempt = await run_in_threadpool(over_limit), []
    if wait is None:
        wait, attempt = await run_in_threadpool(
            lambda: run_write(store, lambda s: throttle.begin(s, name, client, now, limits)))
    if wait is not None:
        resp = await run_in_threadpool(page, ctx, "login.html", 429, error=throttle.wait_ja(wait), username=username)
        resp.headers["retry-after"] = str(wait)
        return resp
    try:
        user = await request.app.state.login_gate.run(check)
    except throttle.Busy:  # not checked, so not a failure either
        await run_in_threadpool(lambda: run_write(store, lambda s: throttle.cancel(s, attempt)))
        resp = await run_in_threadpool(page, ctx, "login.html", 503, error=throttle.BUSY_JA, username=username)
        resp.headers["retry-after"] = "5"
        return resp
    if user is None:  # the attempt stays recorded as a failure
        return await run_in_threadpool(page, ctx, "login.html", 401, error="ユーザー名またはパスワードが違います",
                                       username=username)
    await run_in_threadpool(lambda: run_write(store, lambda s: throttle.succeeded(s, name, attempt)))
    resp = redirect("/")
    set_session(resp, ctx.request, new_session(user.id, user.session_version))  # fresh token: no fixation
    return resp


@router.post("/logout", dependencies=[CSRF])
def logout(ctx: Anyone) -> Response:
    # Ending the session on the server: a copy of the cookie taken before sign-out opens nothing afterwards.
    if ctx.user is not None:
        uid = ctx.user.id
        run_write(store_of(ctx.request), lambda s: accounts.end_sessions(s, uid))
    resp = redirect("/login")
    set_session(resp, ctx.request, new_session())
    return resp
