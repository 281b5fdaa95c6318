"""What every router of the web app shares: role-typed request contexts, form fields, page rendering,
Japanese labels and messages, and the review-queue helpers used by several pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from emplifai.collect import campaigns, review
from emplifai.collect.assign import Conflict, NotFound
from emplifai.collect.deps import (
    LEADS,
    STAFF,
    Ctx,
    anonymous,
    guard,
    redirect,
    render,
    store_of,
)
from emplifai.collect.inputs import MAX_ID
from emplifai.errors import UserError
from emplifai.records import Kind
from emplifai.store import repo
from emplifai.store.collect import Campaign, Claim, Role, User
from emplifai.store.models import Dialogue, Situation

Worker = Annotated[Ctx, Depends(guard(Role.WORKER))]
Staff = Annotated[Ctx, Depends(guard(*STAFF))]
Lead = Annotated[Ctx, Depends(guard(*LEADS))]
Admin = Annotated[Ctx, Depends(guard(Role.ADMIN))]
Anyone = Annotated[Ctx, Depends(anonymous)]
# Ids from the URL or a form: a number beyond the id columns' range is simply not found (never an overflow 500).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
FormId = Annotated[int, Form(ge=1, le=MAX_ID)]
Text = Annotated[str, Form()]
OptText = Annotated[str | None, Form()]

KIND_JA = {Kind.SITUATION: "状況を書く（第1ラウンド）", Kind.DIALOGUE: "会話を書く（第2ラウンド）",
           Kind.RATING: "会話を評価する"}
STATUS_JA = {"leased": "作業中", "expired": "期限切れ", "released": "返却", "pending": "審査待ち", "approved": "承認",
             "rejected": "却下", "flagged": "要確認", "removed": "削除"}
# The review history in Japanese: decisions, the fields they changed (status values through STATUS_JA).
ACTION_JA = {"import": "取り込み", "approve": "承認", "reject": "却下", "flag": "要確認", "modify": "修正",
             "keep": "残す", "remove": "削除"}
HISTORY_FIELD_JA = {"status": "状態", "text": "本文", "situation": "状況", "patient": "患者の発話",
                    "supporter": "支援者の応答"}
MESSAGES = {
    "submitted": "提出しました。ありがとうございました。",
    "draft": "下書きを保存しました。このページを開き直すと続きから書けます。",
    "released": "タスクを返却しました。",
    "nowork": "いま取り組めるタスクはありません。時間をおいて再度お試しください。",
    "approved": "承認しました。", "rejected": "却下しました。", "flagged": "要確認にしました。",
    "modified": "修正を保存しました（履歴に残ります）。", "kept": "残すことにしました。", "removed": "削除しました。",
    "user": "ユーザーを作成しました。", "campaign": "キャンペーンを作成しました。", "login": "ログインしました。",
    "welcome": "パスワードを設定しました。ようこそ。",
    "deactivated": "アカウントを無効化しました（ログイン中の画面も閉じられます）。",
    "state_open": "キャンペーンを受付中にしました。",
    "state_paused": "キャンペーンを一時停止しました（作業中のタスクは提出できます）。",
    "state_closed": "キャンペーンを終了しました（受付も提出もできません）。",
    "quota": "1人あたりの上限を保存しました。",
}
ERROR_STATUS = {NotFound: 404, Conflict: 409}


def page(ctx: Ctx, name: str, status_code: int = 200, **kw: object) -> Response:
    msg = ctx.request.query_params.get("msg")
    return render(ctx, name, status_code, message=MESSAGES.get(msg or ""), KIND_JA=KIND_JA, STATUS_JA=STATUS_JA,
                  ACTION_JA=ACTION_JA, HISTORY_FIELD_JA=HISTORY_FIELD_JA, **kw)


def error_page(request: Request, exc: UserError) -> Response:
    return error(anonymous(request), exc)


def error(ctx: Ctx, exc: UserError) -> Response:
    code = next((c for t, c in ERROR_STATUS.items() if isinstance(exc, t)), 400)
    return page(ctx, "message.html", code, title="エラー", error=str(exc))


def campaigns_of(ctx: Ctx) -> list[Campaign]:
    """Every campaign, closed ones included: the staff still review, pay and reconcile them."""
    with store_of(ctx.request).open_session() as s:
        return list(s.scalars(select(Campaign).order_by(Campaign.id)))


def claim_content(s, c: Claim) -> dict[str, object]:  # type: ignore[no-untyped-def]
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


def review_rows(ctx: Ctx, statuses: list[str], campaign_id: int | None, kind: str | None,
                limit: int = 200) -> list[dict]:
    with store_of(ctx.request).open_session() as s:
        q = (select(Claim, User.username, Campaign.name).join(User, User.id == Claim.worker_id)
             .join(Campaign, Campaign.id == Claim.campaign_id).where(Claim.status.in_(statuses)))
        if campaign_id:
            q = q.where(Claim.campaign_id == campaign_id)
        if kind:
            q = q.where(Claim.kind == kind)
        out = []
        for c, worker, camp in s.execute(q.order_by(Claim.submitted_at, Claim.id).limit(limit)):
            out.append({"claim": c, "worker": worker, "campaign": camp, **claim_content(s, c)})
        return out


def caps(ctx: Ctx) -> list[dict[str, object]]:
    with store_of(ctx.request).open_session() as s:
        out = []
        for camp in s.scalars(select(Campaign).order_by(Campaign.id)):
            rejected, submitted = campaigns.rejection_state(s, camp)
            out.append({"campaign": camp, "rejected": rejected, "submitted": submitted,
                        "cap": camp.rejection_cap, "can_reject": review.rejection_allowed(
                            rejected, submitted, camp.rejection_cap)})
        return out


def act(ctx: Ctx, fn, msg: str, back: str) -> Response:  # type: ignore[no-untyped-def]
    try:
        fn()
    except UserError as exc:
        return error(ctx, exc)
    return redirect(f"{back}?msg={msg}")
