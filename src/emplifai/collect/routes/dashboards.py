"""Progress dashboards, the pay ledger and the dataset export."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, HTTPException
from fastapi.responses import FileResponse, PlainTextResponse, Response
from sqlalchemy import select

from emplifai.collect import campaigns
from emplifai.collect.deps import (
    store_of,
)
from emplifai.collect.routes.common import Id, Lead, Staff, campaigns_of, caps, page
from emplifai.dataset.export import export_store
from emplifai.records import Kind
from emplifai.store.collect import Campaign
from emplifai.store.models import Situation

router = APIRouter()


@router.get("/dashboard")
def dashboards(ctx: Staff) -> Response:
    return page(ctx, "dashboards.html", campaigns=campaigns_of(ctx), caps=caps(ctx))


@router.get("/dashboard/{campaign_id}")
def dashboard(ctx: Staff, campaign_id: Id) -> Response:
    with store_of(ctx.request).open_session() as s:
        camp = s.get(Campaign, campaign_id)
        if camp is None:
            raise HTTPException(404, "キャンペーンが見つかりません")
        rows = campaigns.buckets(s, camp)
        sits = dict(s.execute(select(Situation.id, Situation.text).where(Situation.id.in_(
            [b.situation_id for b in rows if b.situation_id]))).all())
        stats = campaigns.worker_stats(s, camp)
        rejected, submitted = campaigns.rejection_state(s, camp)
    return page(ctx, "dashboard.html", campaign=camp, round1=campaigns.by_emotion(camp, rows, Kind.SITUATION),
                 round2=campaigns.by_emotion(camp, rows, Kind.DIALOGUE),
                 pairs=[b for b in rows if b.kind == Kind.DIALOGUE], ratings=[b for b in rows if b.kind == Kind.RATING],
                 sits=sits, stats=stats, rejected=rejected, submitted=submitted, state=campaigns.state_of(camp),
                 STATES=campaigns.STATES, time_zone=ctx.request.app.state.settings.time_zone)


@router.get("/ledger/{campaign_id}.csv")
def ledger_csv(ctx: Lead, campaign_id: Id) -> Response:
    with store_of(ctx.request).open_session() as s:
        camp = s.get(Campaign, campaign_id)
        if camp is None:
            raise HTTPException(404, "キャンペーンが見つかりません")
        body = "\ufeff" + campaigns.ledger_csv(campaigns.ledger(s, camp))  # BOM: Japanese Excel reads UTF-8
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
