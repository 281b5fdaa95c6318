"""Routes: sign-in, worker pages (claim → form → submit), review, lead decisions, dashboards, export, admin.

Pages are server-rendered Japanese HTML with plain forms (no JavaScript). Messages after a redirect are codes
looked up in MESSAGES, never text taken from the URL.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from emplifai import taxonomy
from emplifai.collect import accounts, assign, campaigns, review
from emplifai.collect.app import (
    CSRF,
    LEADS,
    STAFF,
    Ctx,
    anonymous,
    authorize,
    guard,
    redirect,
    render,
    run_db,
    session_of,
    set_session,
    store_of,
)
from emplifai.collect.assign import Conflict, NotFound
from emplifai.collect.rating import METRIC_JA
from emplifai.collect.security import new_session
from emplifai.dataset import review as dataset_review
from emplifai.dataset.export import export_store
from emplifai.errors import UserError
from emplifai.prompts.generation import instruction
from emplifai.records import Action, Kind, Source, Status
from emplifai.store import repo
from emplifai.store.collect import Campaign, Claim, ClaimStatus, PayEntry, Role, Task, User
from emplifai.store.evaluation import METRICS
from emplifai.store.models import Dialogue, Situation

router = APIRouter()
Worker = Annotated[Ctx, Depends(guard(Role.WORKER))]
Staff = Annotated[Ctx, Depends(guard(*STAFF))]
Lead = Annotated[Ctx, Depends(guard(*LEADS))]
Admin = Annotated[Ctx, Depends(guard(Role.ADMIN))]
Anyone = Annotated[Ctx, Depends(anonymous)]
Text = Annotated[str, Form()]
OptText = Annotated[str | None, Form()]

KIND_JA = {Kind.SITUATION: "状況を書く（第1ラウンド）", Kind.DIALOGUE: "会話を書く（第2ラウンド）",
           Kind.RATING: "会話を評価する"}
STATUS_JA = {"leased": "作業中", "expired": "期限切れ", "released": "返却", "pending": "審査待ち", "approved": "承認",
             "rejected": "却下", "flagged": "要確認", "removed": "削除"}
MESSAGES = {
    "submitted": "提出しました。ありがとうございました。",
    "released": "タスクを返却しました。",
    "nowork": "いま取り組めるタスクはありません。時間をおいて再度お試しください。",
    "approved": "承認しました。", "rejected": "却下しました。", "flagged": "要確認にしました。",
    "modified": "修正を保存しました（履歴に残ります）。", "kept": "残すことにしました。", "removed": "削除しました。",
    "user": "ユーザーを作成しました。", "campaign": "キャンペーンを作成しました。", "login": "ログインしました。",
}
ERROR_STATUS = {NotFound: 404, Conflict: 409}


def _page(ctx: Ctx, name: str, status_code: int = 200, **kw: object) -> Response:
    msg = ctx.request.query_params.get("msg")
    return render(ctx, name, status_code, message=MESSAGES.get(msg or ""), KIND_JA=KIND_JA, STATUS_JA=STATUS_JA,
                  **kw)


def _error_page(request: Request, exc: UserError) -> Response:
    return _error(anonymous(request), exc)


def _error(ctx: Ctx, exc: UserError) -> Response:
    code = next((c for t, c in ERROR_STATUS.items() if isinstance(exc, t)), 400)
    return _page(ctx, "message.html", code, title="エラー", error=str(exc))


# ------------------------------------------------------------------------------------------------ sign-in
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
    return _page(ctx, "login.html")


@router.post("/login", dependencies=[CSRF])
def login(ctx: Anyone, username: Text, password: Text) -> Response:
    with store_of(ctx.request).open_session() as s:
        user = accounts.authenticate(s, username.strip(), password)
    if user is None:
        return _page(ctx, "login.html", 401, error="ユーザー名またはパスワードが違います", username=username)
    resp = redirect("/")
    set_session(resp, ctx.request, new_session(user.id, user.session_version))  # fresh token: no fixation
    return resp


@router.post("/logout", dependencies=[CSRF])
def logout(ctx: Anyone) -> Response:
    resp = redirect("/login")
    set_session(resp, ctx.request, new_session())
    return resp


# ------------------------------------------------------------------------------------------------- worker
def _campaigns(ctx: Ctx) -> list[Campaign]:
    with store_of(ctx.request).open_session() as s:
        return list(s.scalars(select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.id)))


@router.get("/work")
def work(ctx: Worker) -> Response:
    uid = ctx.user.id  # type: ignore[union-attr]
    now = time.time()
    with store_of(ctx.request).open_session() as s:
        camps = list(s.scalars(select(Campaign).where(Campaign.active.is_(True)).order_by(Campaign.id)))
        open_kinds = {(c, k): n for c, k, n in s.execute(
            select(Task.campaign_id, Task.kind, func.count()).where(Task.enabled.is_(True), Task.filled < Task.target)
            .group_by(Task.campaign_id, Task.kind))}
        leases = list(s.scalars(select(Claim).where(Claim.worker_id == uid, Claim.status == ClaimStatus.LEASED,
                                                    Claim.expires_at > now).order_by(Claim.id)))
        counts = dict(s.execute(select(Claim.status, func.count()).where(Claim.worker_id == uid)
                                .group_by(Claim.status)).all())
        yen = s.scalar(select(func.coalesce(func.sum(PayEntry.amount_yen), 0)).where(PayEntry.worker_id == uid))
    return _page(ctx, "work.html", campaigns=camps, open_kinds=open_kinds, leases=leases, counts=counts, yen=yen,
                 now=now)


@router.post("/work/claim", dependencies=[CSRF])
async def claim(request: Request, campaign_id: Annotated[int, Form()], kind: Text) -> Response:
    """The hot path: the worker role is checked inside the claim's own transaction (one thread hop)."""
    sess = session_of(request)

    def work() -> assign.Claimed | None:
        return assign.claim(store_of(request), campaign_id, sess.uid if sess and sess.uid else 0, kind,
                            before=lambda s: authorize(s, sess, (Role.WORKER,)))

    try:
        got = await run_db(request, work)
    except UserError as exc:
        return await run_in_threadpool(_error_page, request, exc)
    return redirect(f"/claims/{got.claim_id}") if got else redirect("/work?msg=nowork")


def _own(ctx: Ctx, claim_id: int) -> tuple[Claim, Task, Campaign, Situation | None, Dialogue | None]:
    with store_of(ctx.request).open_session() as s:
        c = s.scalar(select(Claim).where(Claim.id == claim_id, Claim.worker_id == ctx.user.id))  # type: ignore[union-attr]
        if c is None:  # someone else's claim is indistinguishable from a missing one
            raise HTTPException(404, "タスクが見つかりません")
        task, camp = s.get(Task, c.task_id), s.get(Campaign, c.campaign_id)
        sit = s.get(Situation, task.situation_id) if task and task.situation_id else None
        if c.kind == Kind.SITUATION and c.entity_id:
            sit = s.get(Situation, c.entity_id)
        dlg = s.get(Dialogue, c.entity_id) if c.kind == Kind.DIALOGUE and c.entity_id else None
        return c, task, camp, sit, dlg  # type: ignore[return-value]


def _task_page(ctx: Ctx, claim_id: int, status_code: int = 200, error: str | None = None,
               form: dict[str, str] | None = None) -> Response:
    c, task, camp, sit, dlg = _own(ctx, claim_id)
    lab = taxonomy.get(task.emotion) if task.emotion else None
    guide = instruction(task.emotion, sit.text) if task.kind == Kind.DIALOGUE and sit and lab else None
    return _page(ctx, "task.html", status_code, claim=c, task=task, campaign=camp, situation=sit, dialogue=dlg,
                 label=lab, guide=guide, error=error, form=form or {}, metrics=METRICS, METRIC_JA=METRIC_JA,
                 remaining=max(0, int((c.expires_at - time.time()) // 60)))


@router.get("/claims/{claim_id}")
def show_claim(ctx: Worker, claim_id: int) -> Response:
    return _task_page(ctx, claim_id)


@router.post("/claims/{claim_id}/submit", dependencies=[CSRF])
async def submit(ctx: Worker, claim_id: int) -> Response:
    form = {k: v for k, v in (await ctx.request.form()).items() if isinstance(v, str) and k != "csrf_token"}
    try:
        await run_in_threadpool(assign.submit, store_of(ctx.request), claim_id, ctx.user.id, form)  # type: ignore[union-attr]
    except (NotFound, Conflict) as exc:
        return _error(ctx, exc)
    except UserError as exc:  # a missing or oversized field: show the form again with what was typed
        return await run_in_threadpool(_task_page, ctx, claim_id, 400, str(exc), form)
    except IntegrityError:
        return _page(ctx, "message.html", 409, title="エラー", error="この会話はすでにあなたが評価しています")
    return redirect("/work?msg=submitted")


@router.post("/claims/{claim_id}/release", dependencies=[CSRF])
def release(ctx: Worker, claim_id: int) -> Response:
    try:
        assign.release(store_of(ctx.request), claim_id, ctx.user.id)  # type: ignore[union-attr]
    except UserError as exc:
        return _error(ctx, exc)
    return redirect("/work?msg=released")


@router.get("/my")
def my_submissions(ctx: Worker) -> Response:
    with store_of(ctx.request).open_session() as s:
        rows = s.execute(select(Claim, Task).join(Task, Task.id == Claim.task_id)
                         .where(Claim.worker_id == ctx.user.id, Claim.submitted_at.is_not(None))  # type: ignore[union-attr]
                         .order_by(Claim.id.desc()).limit(500)).all()
        pay = dict(s.execute(select(PayEntry.claim_id, PayEntry.amount_yen)
                             .where(PayEntry.worker_id == ctx.user.id)).all())  # type: ignore[union-attr]
    return _page(ctx, "my.html", rows=rows, pay=pay)


# ------------------------------------------------------------------------------------------------- review
def _content(s, c: Claim) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What a reviewer sees of a submission: current text (after edits) and its situation."""
    out: dict[str, object] = {}
    if c.kind == Kind.SITUATION and c.entity_id:
        sit = s.get(Situation, c.entity_id)
        out.update(situation=sit.text if sit else "", emotion=sit.emotion if sit else None)
        out["history"] = repo.history(s, "situation", c.entity_id)
    elif c.kind == Kind.DIALOGUE and c.entity_id:
        d = s.get(Dialogue, c.entity_id)
        sit = s.get(Situation, d.situation_id) if d else None
        out.update(patient=d.patient if d else "", supporter=d.supporter if d else "",
                   situation=sit.text if sit else "", emotion=sit.emotion if sit else None)
        out["history"] = repo.history(s, "dialogue", c.entity_id)
    else:
        out["history"] = []
    return out


def _rows(ctx: Ctx, statuses: list[str], campaign_id: int | None, kind: str | None, limit: int = 200) -> list[dict]:
    with store_of(ctx.request).open_session() as s:
        q = (select(Claim, User.username, Campaign.name).join(User, User.id == Claim.worker_id)
             .join(Campaign, Campaign.id == Claim.campaign_id).where(Claim.status.in_(statuses)))
        if campaign_id:
            q = q.where(Claim.campaign_id == campaign_id)
        if kind:
            q = q.where(Claim.kind == kind)
        out = []
        for c, worker, camp in s.execute(q.order_by(Claim.submitted_at, Claim.id).limit(limit)):
            out.append({"claim": c, "worker": worker, "campaign": camp, **_content(s, c)})
        return out


def _caps(ctx: Ctx) -> list[dict[str, object]]:
    with store_of(ctx.request).open_session() as s:
        out = []
        for camp in s.scalars(select(Campaign).order_by(Campaign.id)):
            rejected, submitted = campaigns.rejection_state(s, camp)
            out.append({"campaign": camp, "rejected": rejected, "submitted": submitted,
                        "cap": camp.rejection_cap, "can_reject": review.rejection_allowed(
                            rejected, submitted, camp.rejection_cap)})
        return out


@router.get("/review")
def review_queue(ctx: Staff, status: str = "pending", campaign_id: int | None = None,
                 kind: str | None = None) -> Response:
    statuses = [status] if status in STATUS_JA else ["pending"]
    return _page(ctx, "review.html", rows=_rows(ctx, statuses, campaign_id, kind), status=statuses[0],
                 caps=_caps(ctx), campaigns=_campaigns(ctx), campaign_id=campaign_id, kind=kind)


@router.get("/review/{claim_id}")
def review_one(ctx: Staff, claim_id: int) -> Response:
    with store_of(ctx.request).open_session() as s:
        c = s.get(Claim, claim_id)
        if c is None or c.submitted_at is None:
            raise HTTPException(404, "提出物が見つかりません")
        worker = s.get(User, c.worker_id)
        task = s.get(Task, c.task_id)
        row = {"claim": c, "worker": worker.username if worker else "", "task": task, **_content(s, c)}
    return _page(ctx, "review_one.html", row=row, caps=_caps(ctx), metrics=METRICS, METRIC_JA=METRIC_JA)


def _act(ctx: Ctx, fn, msg: str, back: str) -> Response:  # type: ignore[no-untyped-def]
    try:
        fn()
    except UserError as exc:
        return _error(ctx, exc)
    return redirect(f"{back}?msg={msg}")


@router.post("/review/{claim_id}/approve", dependencies=[CSRF])
def approve(ctx: Staff, claim_id: int) -> Response:
    return _act(ctx, lambda: review.approve(store_of(ctx.request), claim_id, ctx.user), "approved", "/review")


@router.post("/review/{claim_id}/reject", dependencies=[CSRF])
def reject(ctx: Staff, claim_id: int, reason: OptText = None) -> Response:
    return _act(ctx, lambda: review.reject(store_of(ctx.request), claim_id, ctx.user, reason or ""), "rejected",
                "/review")


@router.post("/review/{claim_id}/flag", dependencies=[CSRF])
def flag(ctx: Staff, claim_id: int, reason: OptText = None) -> Response:
    return _act(ctx, lambda: review.flag(store_of(ctx.request), claim_id, ctx.user, reason or ""), "flagged",
                "/review")


@router.post("/review/{claim_id}/modify", dependencies=[CSRF])
def modify(ctx: Staff, claim_id: int, situation: OptText = None, patient: OptText = None,
           supporter: OptText = None, reason: OptText = None) -> Response:
    fields = {k: v for k, v in (("situation", situation), ("patient", patient), ("supporter", supporter)) if v}
    return _act(ctx, lambda: review.modify(store_of(ctx.request), claim_id, ctx.user, fields, reason),
                "modified", f"/review/{claim_id}")


# --------------------------------------------------------------------------------------- synthetic items
# Synthetic items (`emplifai synth`) come from no campaign, so they have no claim, pay or rejection cap; the
# decisions and the history are the same as for crowd work (emplifai.dataset.review, also `emplifai dataset decide`).
SYNTH_MSG = {"approve": "approved", "reject": "rejected", "flag": "flagged", "keep": "kept", "remove": "removed"}


@router.get("/synthetic")
def synthetic_queue(ctx: Staff, status: str = "pending") -> Response:
    st = Status(status) if status in {x.value for x in Status} else Status.PENDING
    rows = dataset_review.queue(store_of(ctx.request), status=st, source=str(Source.SYNTHETIC))
    return _page(ctx, "synthetic.html", rows=rows, status=str(st), lead=Role(ctx.user.role) in LEADS)


@router.post("/synthetic/{dialogue_id}/{action}", dependencies=[CSRF])
def synthetic_decide(ctx: Staff, dialogue_id: str, action: str, reason: OptText = None) -> Response:
    if action not in SYNTH_MSG:
        raise HTTPException(404, "不明な操作です")
    if action in ("keep", "remove") and Role(ctx.user.role) not in LEADS:
        raise HTTPException(403, "残す・削除はリーダーの操作です")
    def decide() -> None:
        dataset_review.decide(store_of(ctx.request), [dialogue_id], Action(action), actor=ctx.user.username,
                              reason=reason)

    return _act(ctx, decide, SYNTH_MSG[action], "/synthetic")


# --------------------------------------------------------------------------------------------------- lead
@router.get("/lead")
def lead_queue(ctx: Lead) -> Response:
    return _page(ctx, "lead.html", rows=_rows(ctx, [ClaimStatus.FLAGGED], None, None))


@router.post("/lead/{claim_id}/keep", dependencies=[CSRF])
def keep(ctx: Lead, claim_id: int, reason: OptText = None) -> Response:
    return _act(ctx, lambda: review.keep(store_of(ctx.request), claim_id, ctx.user, reason), "kept", "/lead")


@router.post("/lead/{claim_id}/remove", dependencies=[CSRF])
def remove(ctx: Lead, claim_id: int, reason: OptText = None) -> Response:
    return _act(ctx, lambda: review.remove(store_of(ctx.request), claim_id, ctx.user, reason), "removed", "/lead")


# ---------------------------------------------------------------------------------------------- dashboards
@router.get("/dashboard")
def dashboards(ctx: Staff) -> Response:
    return _page(ctx, "dashboards.html", campaigns=_campaigns(ctx), caps=_caps(ctx))


@router.get("/dashboard/{campaign_id}")
def dashboard(ctx: Staff, campaign_id: int) -> Response:
    with store_of(ctx.request).open_session() as s:
        camp = s.get(Campaign, campaign_id)
        if camp is None:
            raise HTTPException(404, "キャンペーンが見つかりません")
        rows = campaigns.buckets(s, camp)
        sits = dict(s.execute(select(Situation.id, Situation.text).where(Situation.id.in_(
            [b.situation_id for b in rows if b.situation_id]))).all())
        stats = campaigns.worker_stats(s, camp)
        rejected, submitted = campaigns.rejection_state(s, camp)
    return _page(ctx, "dashboard.html", campaign=camp, round1=campaigns.by_emotion(camp, rows, Kind.SITUATION),
                 round2=campaigns.by_emotion(camp, rows, Kind.DIALOGUE),
                 pairs=[b for b in rows if b.kind == Kind.DIALOGUE], ratings=[b for b in rows if b.kind == Kind.RATING],
                 sits=sits, stats=stats, rejected=rejected, submitted=submitted)


@router.get("/ledger/{campaign_id}.csv")
def ledger_csv(ctx: Lead, campaign_id: int) -> Response:
    with store_of(ctx.request).open_session() as s:
        camp = s.get(Campaign, campaign_id)
        if camp is None:
            raise HTTPException(404, "キャンペーンが見つかりません")
        body = campaigns.ledger_csv(campaigns.ledger(s, camp))
    return PlainTextResponse(body, media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="ledger-{camp.name}.csv"'})


# What each export scope contains. Request input only picks a key here: it never reaches a file path.
EXPORT_SCOPES: dict[str, tuple[str, ...]] = {"approved": ("approved",), "live": ("pending", "approved", "flagged")}
EXPORT_FORMATS = ("jsonl", "csv", "parquet")


@router.get("/export")
def export(ctx: Lead, background: BackgroundTasks, fmt: str = "jsonl", scope: str = "approved") -> Response:
    if fmt not in EXPORT_FORMATS:
        raise HTTPException(400, "形式は jsonl, csv, parquet のいずれかです")
    if scope not in EXPORT_SCOPES:
        raise HTTPException(400, "範囲は approved（承認済みのみ）か live（削除以外すべて）です")
    name = f"emplifai-{scope}.{fmt}"  # both checked against the tables above
    tmp = Path(tempfile.mkdtemp(prefix="emplifai-export-"))
    try:
        out = tmp / name
        export_store(store_of(ctx.request), out, fmt, statuses=list(EXPORT_SCOPES[scope]))  # type: ignore[arg-type]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    background.add_task(shutil.rmtree, tmp, ignore_errors=True)
    return FileResponse(out, filename=name)


# -------------------------------------------------------------------------------------------------- admin
@router.get("/admin")
def admin(ctx: Admin) -> Response:
    with store_of(ctx.request).open_session() as s:
        users = list(s.scalars(select(User).order_by(User.id)))
    return _page(ctx, "admin.html", users=users, campaigns=_campaigns(ctx), labels=taxonomy.LABELS,
                 roles=[r.value for r in Role])


@router.post("/admin/users", dependencies=[CSRF])
def create_user(ctx: Admin, username: Text, password: Text, role: Text, display_name: OptText = None) -> Response:
    def go() -> None:
        with store_of(ctx.request).transaction() as s:
            accounts.create_user(s, username.strip(), password, role, display_name or "")

    return _act(ctx, go, "user", "/admin")


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

    return await run_in_threadpool(_act, ctx, go, "campaign", "/admin")
