"""The FastAPI application factory: the store, the session codec, templates, error pages and security headers.

No engine is built at import time: ``create_app(settings)`` opens (and migrates) the store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from emplifai import taxonomy
from emplifai.collect.accounts import ROLE_JA
from emplifai.collect.deps import TEMPLATES, LoginRequired, context_of, format_timestamp, redirect, render
from emplifai.collect.routes import router
from emplifai.collect.security import SessionCodec
from emplifai.collect.settings import Settings
from emplifai.collect.throttle import HashGate, default_slots
from emplifai.store.db import Store, resolve_url

HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
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
        ctx = context_of(request)
        return render(ctx, "message.html", status_code=exc.status_code, title=f"エラー {exc.status_code}",
                      message=str(exc.detail))

    app.include_router(router)
    app.add_middleware(_SecurityHeaders)
    return app
