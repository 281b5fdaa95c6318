"""Worker pages: claim a task, write, submit or release it, and the list of own submissions."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from emplifai import taxonomy
from emplifai.collect import assign, drafts
from emplifai.collect.assign import LATE_JA, Conflict, LateWork, NotFound
from emplifai.collect.deps import (
    CSRF,
    Ctx,
    authorize,
    redirect,
    run_db,
    session_of,
    store_of,
)
from emplifai.collect.examples import example_for
from emplifai.collect.inputs import BadText, scrub
from emplifai.collect.routes.common import FormId, Id, Text, Worker, error, error_page, page
from emplifai.errors import UserError
from emplifai.evaluate.rubrics import RUBRICS, SCALE
from emplifai.records import MAX_SITUATION_CHARS, MAX_TURN_CHARS, Kind
from emplifai.store.collect import Campaign, Claim, ClaimStatus, PayEntry, Role, Task
from emplifai.store.models import Dialogue, Situation

router = APIRouter()


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
    return page(ctx, "work.html", campaigns=camps, open_kinds=open_kinds, leases=leases, counts=counts, yen=yen,
                 now=now)


@router.post("/work/claim", dependencies=[CSRF])
async def claim(request: Request, campaign_id: FormId, kind: Text) -> Response:
    """The hot path: the worker role is checked inside the claim's own transaction (one thread hop)."""
    sess = session_of(request)

    def work() -> assign.Claimed | None:
        return assign.claim(store_of(request), campaign_id, sess.uid if sess and sess.uid else 0, kind,
                            before=lambda s: authorize(s, sess, (Role.WORKER,)))

    try:
        got = await run_db(request, work)
    except UserError as exc:
        return await run_in_threadpool(error_page, request, exc)
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


def _rating_progress(task: Task, form: dict[str, str]) -> list[tuple[int, int]]:
    """Per dialogue to rate: (metrics answered, metrics) — the page shows it without JavaScript too."""
    items = task.payload.get("items", []) if task.kind == Kind.RATING else []
    return [(sum(1 for r in RUBRICS if form.get(f"score_{it['generation_id']}_{r.key}")), len(RUBRICS))
            for it in items]


def _task_page(ctx: Ctx, claim_id: int, status_code: int = 200, error: str | None = None,
               form: dict[str, str] | None = None) -> Response:
    c, task, camp, sit, dlg = _own(ctx, claim_id)
    lab = taxonomy.get(task.emotion) if task.emotion else None
    with store_of(ctx.request).open_session() as s:
        example = example_for(s, camp.id, task.emotion) if task.emotion else None
        if form is None:  # a fresh page: restore what was saved as a draft
            form = drafts.load(s, c)
    return page(ctx, "task.html", status_code, claim=c, task=task, campaign=camp, situation=sit, dialogue=dlg,
                 label=lab, example=example, error=error, form=form, rubrics=RUBRICS, scale=range(SCALE[0],
                 SCALE[1] + 1), progress=_rating_progress(task, form), max_situation=MAX_SITUATION_CHARS,
                 max_turn=MAX_TURN_CHARS, remaining=max(0, int((c.expires_at - time.time()) // 60)))


def _late_page(ctx: Ctx, claim_id: int, answer: dict, status_code: int) -> Response:
    """The worker's own text from a submission that came too late, shown back so it can be copied."""
    c, task, camp, sit, _ = _own(ctx, claim_id)
    lab = taxonomy.get(task.emotion) if task.emotion else None
    return page(ctx, "late.html", status_code, claim=c, task=task, campaign=camp, situation=sit, label=lab,
                answer=answer, error=LATE_JA)


@router.get("/claims/{claim_id}")
def show_claim(ctx: Worker, claim_id: Id) -> Response:
    c, *_ = _own(ctx, claim_id)
    if c.status in (ClaimStatus.EXPIRED, ClaimStatus.RELEASED) and c.answer:
        return _late_page(ctx, claim_id, c.answer, 200)
    return _task_page(ctx, claim_id)


@router.post("/claims/{claim_id}/submit", dependencies=[CSRF])
async def submit(ctx: Worker, claim_id: Id) -> Response:
    form = {k: v for k, v in (await ctx.request.form()).items() if isinstance(v, str) and k != "csrf_token"}
    try:
        await run_in_threadpool(assign.submit, store_of(ctx.request), claim_id, ctx.user.id, form)  # type: ignore[union-attr]
    except LateWork as exc:  # nothing is lost: the text is kept on the claim and shown back
        return await run_in_threadpool(_late_page, ctx, claim_id, exc.answer, 409)
    except (NotFound, Conflict) as exc:
        return error(ctx, exc)
    except BadText as exc:  # show the form again with what was typed, less the characters refused
        kept = {k: scrub(v) for k, v in form.items()}
        return await run_in_threadpool(_task_page, ctx, claim_id, 400, f"{exc}。その文字を除いた文章を下に残しました",
                                       kept)
    except UserError as exc:  # a missing or oversized field: show the form again with what was typed
        return await run_in_threadpool(_task_page, ctx, claim_id, 400, str(exc), form)
    except IntegrityError:
        return page(ctx, "message.html", 409, title="エラー", error="この会話はすでにあなたが評価しています")
    await run_in_threadpool(drafts.discard, store_of(ctx.request), claim_id)
    return redirect(f"/claims/{claim_id}/done")  # the completion code to paste back on the platform


@router.post("/claims/{claim_id}/draft", dependencies=[CSRF])
async def save_draft(ctx: Worker, claim_id: int) -> Response:
    """Keep what is typed so far. The page's script posts here on each change (and gets JSON back); without
    JavaScript the 下書き保存 button posts the same form here and comes back to the task."""
    form = {k: v for k, v in (await ctx.request.form()).items() if isinstance(v, str) and k != "csrf_token"}
    by_script = ctx.request.headers.get("x-emplifai-draft") == "1"
    try:
        n = await run_in_threadpool(drafts.save, store_of(ctx.request), claim_id, ctx.user.id, form)  # type: ignore[union-attr]
    except (NotFound, Conflict) as exc:
        if by_script:
            return JSONResponse({"ok": False, "error": str(exc)}, 404 if isinstance(exc, NotFound) else 409)
        return error(ctx, exc)
    except UserError as exc:
        if by_script:
            return JSONResponse({"ok": False, "error": str(exc)}, 400)
        return await run_in_threadpool(_task_page, ctx, claim_id, 400, str(exc), form)
    if by_script:
        return JSONResponse({"ok": True, "fields": n})
    return redirect(f"/claims/{claim_id}?msg=draft")


@router.post("/claims/{claim_id}/release", dependencies=[CSRF])
def release(ctx: Worker, claim_id: Id) -> Response:
    try:
        assign.release(store_of(ctx.request), claim_id, ctx.user.id)  # type: ignore[union-attr]
    except UserError as exc:
        return error(ctx, exc)
    return redirect("/work?msg=released")


@router.get("/my")
def my_submissions(ctx: Worker) -> Response:
    with store_of(ctx.request).open_session() as s:
        rows = s.execute(select(Claim, Task).join(Task, Task.id == Claim.task_id)
                         .where(Claim.worker_id == ctx.user.id, Claim.submitted_at.is_not(None))  # type: ignore[union-attr]
                         .order_by(Claim.id.desc()).limit(500)).all()
        pay = dict(s.execute(select(PayEntry.claim_id, PayEntry.amount_yen)
                             .where(PayEntry.worker_id == ctx.user.id)).all())  # type: ignore[union-attr]
    return page(ctx, "my.html", rows=rows, pay=pay)
