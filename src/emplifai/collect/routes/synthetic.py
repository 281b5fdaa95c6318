"""Review of synthetic items (no campaign, no claim) with the same decisions and history as crowd work."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from emplifai.collect.deps import CSRF, LEADS, store_of
from emplifai.collect.routes.common import OptText, Staff, act, page
from emplifai.dataset import review as review_rules
from emplifai.records import Action, Source, Status
from emplifai.store.collect import Role

router = APIRouter()


# Synthetic items (`emplifai synth`) come from no campaign, so they have no claim, pay or rejection cap; the
# decisions and the history are the same as for crowd work (emplifai.dataset.review, also `emplifai dataset decide`).
SYNTH_MSG = {"approve": "approved", "reject": "rejected", "flag": "flagged", "keep": "kept", "remove": "removed"}


@router.get("/synthetic")
def synthetic_queue(ctx: Staff, status: str = "pending") -> Response:
    st = Status(status) if status in {x.value for x in Status} else Status.PENDING
    rows = review_rules.queue(store_of(ctx.request), status=st, source=str(Source.SYNTHETIC))
    return page(ctx, "synthetic.html", rows=rows, status=str(st), lead=Role(ctx.user.role) in LEADS)


@router.post("/synthetic/{dialogue_id}/{action}", dependencies=[CSRF])
def synthetic_decide(ctx: Staff, dialogue_id: str, action: str, reason: OptText = None) -> Response:
    if action not in SYNTH_MSG:
        raise HTTPException(404, "不明な操作です")
    if ctx.user.role not in review_rules.RULES[Action(action)].roles:
        raise HTTPException(403, "残す・削除はリーダーの操作です")

    def decide() -> None:
        review_rules.decide(store_of(ctx.request), [dialogue_id], Action(action), actor=ctx.user.username,
                            reason=reason, role=ctx.user.role, lang="ja")

    return act(ctx, decide, SYNTH_MSG[action], "/synthetic")
