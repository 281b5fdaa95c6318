"""Crowdsourcing collection and review web app (paper sections 3.2–3.4, 5.4).

Layout: ``settings`` (pydantic, refuses a default secret outside development), ``security`` (argon2 hashes,
signed session cookies, CSRF), ``accounts``/``campaigns`` (admin operations, dashboards, pay ledger), ``assign``
(atomic claims with leases), ``review`` (crowd claims through the dataset's review rules), ``rating`` (human
rating groups), ``onboarding`` (platform workers from CSV, one-time invite links), ``reconcile`` (completion
codes, the per-platform-ID reconciliation CSV), ``app`` (the FastAPI factory ``create_app(settings)``),
``server`` (one or several uvicorn processes), ``deps`` (request context, role and CSRF
guards, rendering) and ``routes/`` (one router per resource, server-rendered Japanese pages).
"""

from __future__ import annotations

from emplifai.collect.settings import Settings


def create_app(settings: Settings):  # type: ignore[no-untyped-def]
    """The FastAPI application (imported lazily: the CLI must not pay for FastAPI on every command)."""
    from emplifai.collect import app

    return app.create_app(settings)


__all__ = ["Settings", "create_app"]
