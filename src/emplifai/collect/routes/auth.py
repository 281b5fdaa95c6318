"""Sign-in, sign-out and the health check."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from emplifai.collect import accounts
from emplifai.collect.deps import (
    CSRF,
    redirect,
    set_session,
    store_of,
)
from emplifai.collect.routes.common import Anyone, Text, page
from emplifai.collect.security import new_session
from emplifai.collect.tx import run_write
from emplifai.store.collect import Role

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
def login(ctx: Anyone, username: Text, password: Text) -> Response:
    with store_of(ctx.request).open_session() as s:
        user = accounts.authenticate(s, username.strip(), password)
    if user is None:
        return page(ctx, "login.html", 401, error="ユーザー名またはパスワードが違います", username=username)
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
