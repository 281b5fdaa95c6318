"""Accounts and campaigns."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from emplifai import taxonomy
from emplifai.collect import accounts, campaigns
from emplifai.collect.deps import (
    CSRF,
    store_of,
)
from emplifai.collect.routes.common import Admin, OptText, Text, act, campaigns_of, page
from emplifai.errors import UserError
from emplifai.store.collect import Role, User

router = APIRouter()


@router.get("/admin")
def admin(ctx: Admin) -> Response:
    with store_of(ctx.request).open_session() as s:
        users = list(s.scalars(select(User).order_by(User.id)))
    return page(ctx, "admin.html", users=users, campaigns=campaigns_of(ctx), labels=taxonomy.LABELS,
                 roles=[r.value for r in Role])


@router.post("/admin/users", dependencies=[CSRF])
def create_user(ctx: Admin, username: Text, password: Text, role: Text, display_name: OptText = None) -> Response:
    def go() -> None:
        with store_of(ctx.request).transaction() as s:
            accounts.create_user(s, username.strip(), password, role, display_name or "")

    return act(ctx, go, "user", "/admin")


@router.post("/admin/campaigns", dependencies=[CSRF])
async def create_campaign(ctx: Admin) -> Response:
    form = await ctx.request.form()

    def go() -> None:
        def num(key: str, default: float) -> float:
            raw = str(form.get(key) or "").strip()
            try:
                return float(raw) if raw else default
            except ValueError:
                raise UserError(f"{key} には数値を入力してください") from None

        with store_of(ctx.request).transaction() as s:
            camp = campaigns.create_campaign(
                s, str(form.get("name") or "").strip(), [str(e) for e in form.getlist("emotions")] or None,
                round1_target=int(num("round1_target", 10)), round2_target=int(num("round2_target", 15)),
                pay_situation=int(num("pay_situation", 10)), pay_dialogue=int(num("pay_dialogue", 50)),
                rejection_cap=num("rejection_cap", 30) / 100, lease_seconds=int(num("lease_minutes", 30) * 60))
            if form.get("seed_round2"):
                campaigns.seed_round2(s, camp)

    return await run_in_threadpool(act, ctx, go, "campaign", "/admin")
