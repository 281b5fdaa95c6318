"""The review queue and one claim's review: approve, reject, flag, modify."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from emplifai.collect import duplicates, review
from emplifai.collect.deps import (
    CSRF,
    Ctx,
    store_of,
)
from emplifai.collect.routes.common import (
    STATUS_JA,
    Id,
    OptText,
    QueryId,
    Staff,
    act,
    campaigns_of,
    caps,
    claim_content,
    error,
    page,
    review_rows,
)
from emplifai.errors import UserError
from emplifai.evaluate.rubrics import RUBRICS
from emplifai.store.collect import Claim, Task, User

router = APIRouter()


def _with_duplicates(ctx: Ctx, rows: list[dict]) -> list[dict]:
    """Each row gets ``dup``: the closest other text at or above the dataset's near-duplicate threshold."""
    with store_of(ctx.request).open_session() as s:
        for kind in ("situation", "dialogue"):
            ids = [r["claim"].entity_id for r in rows if r["claim"].kind == kind and r["claim"].entity_id]
            found = duplicates.find_many(s, kind, ids)
            for r in rows:
                if r["claim"].kind == kind:
                    r["dup"] = found.get(r["claim"].entity_id)
    return rows


def _queue(ctx: Ctx, status: str = "pending", campaign_id: int | None = None, kind: str | None = None,
           status_code: int = 200, **kw: object) -> Response:
    statuses = [status] if status in STATUS_JA else ["pending"]
    rows = _with_duplicates(ctx, review_rows(ctx, statuses, campaign_id, kind))
    return page(ctx, "review.html", status_code, rows=rows, status=statuses[0], caps=caps(ctx),
                campaigns=campaigns_of(ctx), campaign_id=campaign_id, kind=kind, **kw)


@router.get("/review")
def review_queue(ctx: Staff, status: str = "pending", campaign_id: QueryId = None,
                 kind: str | None = None) -> Response:
    return _queue(ctx, status, campaign_id, kind)


@router.post("/review/bulk", dependencies=[CSRF])
async def review_bulk(ctx: Staff) -> Response:
    """Approve or reject the ticked submissions of the queue with one button (each decided on its own)."""
    form = await ctx.request.form()
    action, reason = str(form.get("action") or ""), str(form.get("reason") or "").strip()
    try:
        ids = [int(v) for v in form.getlist("claim_id") if isinstance(v, str)]
    except ValueError:
        return await run_in_threadpool(error, ctx, UserError("提出物の番号が正しくありません"))
    if not ids:
        return await run_in_threadpool(_queue, ctx, status_code=400, bulk_error="提出物を1件以上選んでください",
                                       bulk_reason=reason)
    try:
        results = await run_in_threadpool(review.decide_many, store_of(ctx.request), ids, action, ctx.user,
                                          reason)
    except UserError as exc:  # no reason for a rejection, an unknown action: nothing decided, the reason kept
        return await run_in_threadpool(_queue, ctx, status_code=400, bulk_error=str(exc), bulk_reason=reason)
    done = [cid for cid, why in results if why is None]
    failed = [(cid, why) for cid, why in results if why is not None]
    verb = "承認" if action == "approve" else "却下"
    return await run_in_threadpool(_queue, ctx, bulk_done=f"{len(done)}件を{verb}しました。", bulk_failed=failed)


@router.get("/review/{claim_id}")
def review_one(ctx: Staff, claim_id: Id) -> Response:
    with store_of(ctx.request).open_session() as s:
        c = s.get(Claim, claim_id)
        if c is None or c.submitted_at is None:
            raise HTTPException(404, "提出物が見つかりません")
        worker = s.get(User, c.worker_id)
        task = s.get(Task, c.task_id)
        row = {"claim": c, "worker": worker.username if worker else "", "task": task, **claim_content(s, c)}
        row["dup"] = duplicates.find(s, c.kind, c.entity_id)
    return page(ctx, "review_one.html", row=row, caps=caps(ctx), rubrics=RUBRICS)


@router.post("/review/{claim_id}/approve", dependencies=[CSRF])
def approve(ctx: Staff, claim_id: Id) -> Response:
    return act(ctx, lambda: review.approve(store_of(ctx.request), claim_id, ctx.user), "approved", "/review")


@router.post("/review/{claim_id}/reject", dependencies=[CSRF])
def reject(ctx: Staff, claim_id: Id, reason: OptText = None) -> Response:
    return act(ctx, lambda: review.reject(store_of(ctx.request), claim_id, ctx.user, reason or ""), "rejected",
                "/review")


@router.post("/review/{claim_id}/flag", dependencies=[CSRF])
def flag(ctx: Staff, claim_id: Id, reason: OptText = None) -> Response:
    return act(ctx, lambda: review.flag(store_of(ctx.request), claim_id, ctx.user, reason or ""), "flagged",
                "/review")


@router.post("/review/{claim_id}/modify", dependencies=[CSRF])
def modify(ctx: Staff, claim_id: Id, situation: OptText = None, patient: OptText = None,
           supporter: OptText = None, reason: OptText = None) -> Response:
    fields = {k: v for k, v in (("situation", situation), ("patient", patient), ("supporter", supporter)) if v}
    return act(ctx, lambda: review.modify(store_of(ctx.request), claim_id, ctx.user, fields, reason),
                "modified", f"/review/{claim_id}")
