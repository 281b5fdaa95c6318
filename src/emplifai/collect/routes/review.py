"""The review queue and one claim's review: approve, reject, flag, modify."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from emplifai.collect import review
from emplifai.collect.deps import (
    CSRF,
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
    page,
    review_rows,
)
from emplifai.evaluate.rubrics import RUBRICS
from emplifai.store.collect import Claim, Task, User

router = APIRouter()


@router.get("/review")
def review_queue(ctx: Staff, status: str = "pending", campaign_id: QueryId = None,
                 kind: str | None = None) -> Response:
    statuses = [status] if status in STATUS_JA else ["pending"]
    return page(ctx, "review.html", rows=review_rows(ctx, statuses, campaign_id, kind), status=statuses[0],
                 caps=caps(ctx), campaigns=campaigns_of(ctx), campaign_id=campaign_id, kind=kind)


@router.get("/review/{claim_id}")
def review_one(ctx: Staff, claim_id: Id) -> Response:
    with store_of(ctx.request).open_session() as s:
        c = s.get(Claim, claim_id)
        if c is None or c.submitted_at is None:
            raise HTTPException(404, "提出物が見つかりません")
        worker = s.get(User, c.worker_id)
        task = s.get(Task, c.task_id)
        row = {"claim": c, "worker": worker.username if worker else "", "task": task, **claim_content(s, c)}
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
