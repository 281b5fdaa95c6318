"""The FastAPI application factory: the store, the session codec, templates, error pages and security headers.

No engine is built at import time: ``create_app(settings)`` opens (and migrates) the store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from emplifai import taxonomy
from emplifai.collect import inputs
from emplifai.collect.accounts import ROLE_JA
from emplifai.collect.deps import STATIC, TEMPLATES, LoginRequired, context_of, format_timestamp, redirect, render
from emplifai.collect.routes import router
from emplifai.collect.security import SessionCodec
from emplifai.collect.settings import Settings
from emplifai.collect.throttle import HashGate, default_slots
from emplifai.store.db import Store, resolve_url

HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class _SecurityHeaders:
    """Plain ASGI middleware (cheaper than BaseHTTPMiddleware on the claim hot path)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


_PHRASES = {s.value: s.phrase for s in HTTPStatus}


async def _error_page(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
    """A Japanese error page in the error style (never the green notice), for a signed-in user or not."""
    ctx = await run_in_threadpool(context_of, request)
    resp = render(ctx, "message.html", status_code=status, title=f"エラー（{status}）", error=detail)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class _RawBytes:
    """Marks an URL-encoded body that is not ASCII (collect.inputs.RAW_BYTES); the CSRF check then refuses it.
    Watching the chunks as they pass keeps the body a stream, read once by whoever parses the form."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        ctype = dict(scope.get("headers") or []).get(b"content-type", b"") if scope["type"] == "http" else b""
        if not ctype.startswith(b"application/x-www-form-urlencoded"):
            await self.app(scope, receive, send)
            return

        async def watched() -> dict:
            message = await receive()
            if message["type"] == "http.request" and not message.get("body", b"").isascii():
                scope[inputs.RAW_BYTES] = True
            return message

        await self.app(scope, watched, send)


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="emplifai collect", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.store = Store(resolve_url(settings.db))
    sqlite = app.state.store.engine.dialect.name == "sqlite"
    app.state.writer = ThreadPoolExecutor(1, thread_name_prefix="emplifai-writer") if sqlite else None
    app.state.codec = SessionCodec(settings.secret_key, settings.session_max_age)
    app.state.login_gate = HashGate(settings.login_hash_slots or default_slots(), settings.login_queue)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(ROLE_JA={str(k): v for k, v in ROLE_JA.items()}, ja=lambda e: taxonomy.get(e).ja,
                                 label=taxonomy.get, fmt_ts=lambda ts: format_timestamp(ts, settings.time_zone))
    app.state.templates = templates

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return redirect("/login")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = str(exc.detail)
        if detail == _PHRASES.get(exc.status_code):  # Starlette's own English reason
            detail = inputs.STATUS_JA.get(exc.status_code, "エラーが起きました")
        return await _error_page(request, exc.status_code, detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(tuple(e.get("loc", ()))[:1] == ("path",) for e in errors):  # /claims/abc, /claims/99…9
            return await _error_page(request, 404, inputs.STATUS_JA[404])
        messages = list(dict.fromkeys(inputs.validation_ja(e) for e in errors))
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "text/html" not in accept:  # an API client
            return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "msg": inputs.validation_ja(e)}
                                            for e in errors]}, status_code=422)
        return await _error_page(request, 422, "。".join(messages))

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")  # the one script and stylesheet
    app.add_middleware(_RawBytes)
    app.add_middleware(_SecurityHeaders)
    return app
