"""The lead's queue of flagged entries: keep or remove."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from emplifai.collect import review
from emplifai.collect.deps import (
    CSRF,
    store_of,
)
from emplifai.collect.routes.common import Id, Lead, OptText, act, page, review_rows
from emplifai.store.collect import ClaimStatus

router = APIRouter()


@router.get("/lead")
def lead_queue(ctx: Lead) -> Response:
    return page(ctx, "lead.html", rows=review_rows(ctx, [ClaimStatus.FLAGGED], None, None))


@router.post("/lead/{claim_id}/keep", dependencies=[CSRF])
def keep(ctx: Lead, claim_id: Id, reason: OptText = None) -> Response:
    return act(ctx, lambda: review.keep(store_of(ctx.request), claim_id, ctx.user, reason), "kept", "/lead")


@router.post("/lead/{claim_id}/remove", dependencies=[CSRF])
def remove(ctx: Lead, claim_id: Id, reason: OptText = None) -> Response:
    return act(ctx, lambda: review.remove(store_of(ctx.request), claim_id, ctx.user, reason), "removed", "/lead")
