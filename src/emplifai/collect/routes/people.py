"""Running a campaign with platform workers: import from CSV, one-time invite links, deactivation, campaign
lifecycle (pause, close, per-worker quota), completion codes and the reconciliation CSV."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from emplifai.collect import campaigns, onboarding, reconcile
from emplifai.collect.deps import CSRF, Ctx, redirect, set_session, store_of
from emplifai.collect.routes.common import Anyone, Lead, OptText, Text, Worker, act, error, page
from emplifai.collect.security import hash_password, new_session
from emplifai.collect.settings import Settings
from emplifai.collect.tx import run_write
from emplifai.errors import UserError
from emplifai.store.collect import Campaign, Claim, Invite, Role, User

router = APIRouter()
NO_STORE = {"cache-control": "no-store"}  # pages that carry invite tokens


def _base_url(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return settings.public_url or str(request.base_url)


def _invite_state(inv: Invite | None, now: float) -> str:
    if inv is None:
        return "未発行"
    if inv.used_at is not None:
        return "使用済み"
    return "期限切れ" if inv.expires_at <= now else "有効"


def _workers_page(ctx: Ctx, status_code: int = 200, error: str | None = None) -> Response:
    now = time.time()
    with store_of(ctx.request).open_session() as s:
        users = list(s.scalars(select(User).where(User.role == Role.WORKER).order_by(User.id)))
        last = dict(s.execute(select(Invite.user_id, func.max(Invite.id)).group_by(Invite.user_id)).all())
        invites = {i.user_id: i for i in s.scalars(select(Invite).where(Invite.id.in_(list(last.values()))))}
        tasks = dict(s.execute(select(Claim.worker_id, func.count()).where(Claim.submitted_at.is_not(None))
                               .group_by(Claim.worker_id)).all())
    rows = [{"user": u, "invite": _invite_state(invites.get(u.id), now), "invite_obj": invites.get(u.id),
             "tasks": tasks.get(u.id, 0)} for u in users]
    return page(ctx, "workers.html", status_code, rows=rows, error=error, days=onboarding.INVITE_DAYS)


@router.get("/workers")
def workers(ctx: Lead) -> Response:
    return _workers_page(ctx)


def _issued_page(ctx: Ctx, issued: list[onboarding.Issued]) -> Response:
    base = _base_url(ctx.request)
    links = [{"i": i, "url": onboarding.invite_url(base, i.token)} for i in issued]
    resp = page(ctx, "invites.html", links=links,
                text="\n".join(f"{i.platform_id or i.username}\t{link['url']}" for i, link in
                               zip(issued, links, strict=True)))
    resp.headers.update(NO_STORE)
    return resp


def _days(raw: object) -> float:
    try:
        return float(str(raw or onboarding.INVITE_DAYS))
    except ValueError:
        raise UserError("有効期間（日）には数値を入力してください") from None


@router.post("/workers/import", dependencies=[CSRF])
async def import_workers(ctx: Lead) -> Response:
    form = await ctx.request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await run_in_threadpool(_workers_page, ctx, 400, "CSV ファイルを選んでください")
    data = await upload.read(onboarding.MAX_BYTES + 1)
    name = upload.filename[-80:]
    actor = ctx.user.username  # type: ignore[union-attr]

    def go(s) -> list[onboarding.Issued]:  # type: ignore[no-untyped-def]
        text, _ = onboarding.decode_csv(data, name)
        rows = onboarding.parse_workers_csv(text, name)
        return onboarding.issue_invites(s, onboarding.import_workers(s, rows, name), actor, days=_days(
            form.get("days")))

    try:
        issued = await run_in_threadpool(run_write, store_of(ctx.request), go)
    except UserError as exc:
        return await run_in_threadpool(_workers_page, ctx, 400, str(exc))
    return await run_in_threadpool(_issued_page, ctx, issued)


@router.post("/workers/invite", dependencies=[CSRF])
async def invite(ctx: Lead) -> Response:
    form = await ctx.request.form()
    try:
        ids = sorted({int(str(v)) for v in form.getlist("user_id")})
    except ValueError:
        ids = []
    if not ids or len(ids) > onboarding.MAX_ROWS:
        return await run_in_threadpool(_workers_page, ctx, 400, "招待リンクを発行するワーカーを選んでください")
    actor, role = ctx.user.username, ctx.user.role  # type: ignore[union-attr]

    def go(s) -> list[onboarding.Issued]:  # type: ignore[no-untyped-def]
        users = list(s.scalars(select(User).where(User.id.in_(ids)).order_by(User.id)))
        if len(users) != len(ids) or not all(onboarding.may_manage(role, u) for u in users):
            raise UserError("選ばれたアカウントの一部が見つからないか、招待できない役割です")
        return onboarding.issue_invites(s, users, actor, days=_days(form.get("days")))

    try:
        issued = await run_in_threadpool(run_write, store_of(ctx.request), go)
    except UserError as exc:
        return await run_in_threadpool(_workers_page, ctx, 400, str(exc))
    return await run_in_threadpool(_issued_page, ctx, issued)


@router.post("/users/{user_id}/deactivate", dependencies=[CSRF])
def deactivate(ctx: Lead, user_id: int) -> Response:
    actor = ctx.user  # type: ignore[union-attr]

    def go(s) -> None:  # type: ignore[no-untyped-def]
        target = s.get(User, user_id) if 0 < user_id < 2**31 else None
        if target is None or not onboarding.may_manage(actor.role, target):
            raise UserError("このアカウントは無効化できません")
        if target.id == actor.id:
            raise UserError("自分のアカウントは無効化できません")
        onboarding.offboard(s, target.username)

    back = "/workers" if ctx.user.role == Role.LEAD else "/admin"  # type: ignore[union-attr]
    return act(ctx, lambda: run_write(store_of(ctx.request), go), "deactivated", back)


# ------------------------------------------------------------------------------------------- invite links
def _invite_page(ctx: Ctx, token: str, status_code: int = 200, error: str | None = None) -> Response:
    with store_of(ctx.request).open_session() as s:
        found = onboarding.live_invite(s, token)
    if found is None:
        resp = page(ctx, "message.html", 410, title="招待リンク",
                    error="この招待リンクは使用済みか期限切れです。責任者に新しいリンクを依頼してください")
    else:
        resp = page(ctx, "invite.html", status_code, invitee=found[1], token=token, error=error)
    resp.headers.update(NO_STORE)
    return resp


@router.get("/invite/{token}")
def invite_form(ctx: Anyone, token: str) -> Response:
    return _invite_page(ctx, token)


@router.post("/invite/{token}", dependencies=[CSRF])
def invite_accept(ctx: Anyone, token: str, password: Text, password_again: Text) -> Response:
    try:
        onboarding.check_new_password(password, password_again)
    except UserError as exc:
        return _invite_page(ctx, token, 400, str(exc))
    with store_of(ctx.request).open_session() as s:
        if onboarding.live_invite(s, token) is None:
            return _invite_page(ctx, token)
    digest = hash_password(password)  # slow: outside the write transaction

    try:
        user = run_write(store_of(ctx.request), lambda s: onboarding.redeem(s, token, digest))
    except UserError:  # used by a concurrent request a moment ago
        return _invite_page(ctx, token)
    home = {Role.WORKER: "/work", Role.REVIEWER: "/review", Role.LEAD: "/lead", Role.ADMIN: "/admin"}
    resp = redirect(f"{home[Role(user.role)]}?msg=welcome")
    set_session(resp, ctx.request, new_session(user.id, user.session_version))
    return resp


# ------------------------------------------------------------------------------------- campaign lifecycle
def _campaign(s, campaign_id: int) -> Campaign:  # type: ignore[no-untyped-def]
    camp = s.get(Campaign, campaign_id) if 0 < campaign_id < 2**31 else None
    if camp is None:
        raise HTTPException(404, "キャンペーンが見つかりません")
    return camp


@router.post("/campaigns/{campaign_id}/state", dependencies=[CSRF])
def set_state(ctx: Lead, campaign_id: int, state: Text) -> Response:
    if state not in campaigns.STATES:
        return error(ctx, UserError("状態は受付中・一時停止中・終了のいずれかです"))

    def go() -> None:
        run_write(store_of(ctx.request), lambda s: campaigns.set_state(s, _campaign(s, campaign_id).id, state))

    return act(ctx, go, f"state_{state}", f"/dashboard/{campaign_id}")


@router.post("/campaigns/{campaign_id}/quota", dependencies=[CSRF])
def set_quota(ctx: Lead, campaign_id: int, quota: OptText = None) -> Response:
    raw = (quota or "").strip()

    def go() -> None:
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) <= campaigns.MAX_QUOTA):
            raise UserError(f"上限には0〜{campaigns.MAX_QUOTA}の整数を入力してください（空欄または0で上限なし）")
        n = int(raw) if raw else 0
        run_write(store_of(ctx.request), lambda s: campaigns.set_quota(s, _campaign(s, campaign_id).id, n or None))

    return act(ctx, go, "quota", f"/dashboard/{campaign_id}")


@router.get("/campaigns/{campaign_id}/reconcile.csv")
def reconcile_csv(ctx: Lead, campaign_id: int, since: str | None = None, until: str | None = None) -> Response:
    settings: Settings = ctx.request.app.state.settings
    try:
        lo, hi = reconcile.parse_day(since, "開始日"), reconcile.parse_day(until, "終了日")
        with store_of(ctx.request).open_session() as s:
            camp = _campaign(s, campaign_id)
            body = reconcile.reconciliation_csv(reconcile.reconciliation(s, camp, lo, hi, settings.time_zone))
    except UserError as exc:
        return error(ctx, exc)
    span = f"-{lo or 'start'}-{hi or 'now'}" if lo or hi else ""
    return PlainTextResponse(body, media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="reconcile-{camp.name}{span}.csv"'})


# ------------------------------------------------------------------------------------- completion codes
@router.get("/claims/{claim_id}/done")
def done(ctx: Worker, claim_id: int) -> Response:
    if not 0 < claim_id < 2**31:
        raise HTTPException(404, "提出物が見つかりません")
    with store_of(ctx.request).open_session() as s:
        c = reconcile.worker_code(s, claim_id, ctx.user.id)  # type: ignore[union-attr]
        camp = s.get(Campaign, c.campaign_id) if c is not None else None
    if c is None:
        raise HTTPException(404, "提出物が見つかりません")
    return page(ctx, "done.html", claim=c, campaign=camp)
