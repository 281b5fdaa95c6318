"""Queries and edits shared by every stage. Edits always append to the review history."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai.errors import UserError
from emplifai.records import Action, Record, Status
from emplifai.store.models import Dialogue, ReviewEvent, Situation, SplitManifest, SplitMember

LIVE = (Status.PENDING, Status.APPROVED, Status.FLAGGED)  # everything not removed
SPLITS = ("train", "validation", "test")
#: evaluate every live pair, no split needed (the paper scored all of its 4,125 pairs)
ALL = "all"
EVAL_SPLITS = (*SPLITS, ALL)


def latest_manifest(s: Session, name: str = "default") -> SplitManifest | None:
    q = select(SplitManifest).where(SplitManifest.name == name).order_by(SplitManifest.id.desc()).limit(1)
    return s.scalars(q).first()


def require_manifest(s: Session, name: str = "default") -> SplitManifest:
    m = latest_manifest(s, name)
    if m is None:
        raise UserError(f"no split named {name!r} yet; run `emplifai dataset split` first")
    return m


def iter_records(
    s: Session,
    statuses: Iterable[str] = LIVE,
    *,
    split: str | None = None,
    manifest: SplitManifest | None = None,
    emotions: Iterable[str] | None = None,
) -> Iterator[Record]:
    """Stream dialogues with their situations, ordered by situation then dialogue id; ``split="all"`` (or None)
    streams every one, with no split manifest needed."""
    d, sit = Dialogue.__table__.c, Situation.__table__.c
    # Plain columns, not ORM entities: exports stream hundreds of thousands of rows.
    q = (
        select(d.id, sit.id, sit.emotion, sit.text, d.patient, d.supporter, d.source, sit.condition, sit.stage,
               d.status, d.author, d.meta)
        .join(Situation.__table__, d.situation_id == sit.id)
        .where(d.status.in_([str(x) for x in statuses]))
        .order_by(sit.id, d.id)
    )
    if split is not None and split != ALL:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(EVAL_SPLITS)}")
        m = manifest or require_manifest(s)
        q = q.join(SplitMember, SplitMember.situation_id == sit.id).where(
            SplitMember.manifest_id == m.id, SplitMember.split == split
        )
    if emotions is not None:
        q = q.where(sit.emotion.in_(list(emotions)))
    for row in s.execute(q.execution_options(yield_per=5000)):
        yield Record(*row[:11], meta=dict(row[11] or {}))


def split_of(s: Session, manifest: SplitManifest) -> dict[str, str]:
    """situation id -> split name for a manifest."""
    q = select(SplitMember.situation_id, SplitMember.split).where(SplitMember.manifest_id == manifest.id)
    return dict(s.execute(q).all())


def record_event(
    s: Session, *, entity: str, entity_id: str, actor: str, action: Action, field: str | None = None,
    before: str | None = None, after: str | None = None, reason: str | None = None,
) -> ReviewEvent:
    ev = ReviewEvent(entity=entity, entity_id=entity_id, actor=actor, action=str(action), field=field,
                     before=before, after=after, reason=reason)
    s.add(ev)
    return ev


def set_status(s: Session, dialogue_id: str, status: Status, *, actor: str, action: Action,
               reason: str | None = None) -> Dialogue:
    d = s.get(Dialogue, dialogue_id)
    if d is None:
        raise UserError(f"no dialogue {dialogue_id!r}")
    record_event(s, entity="dialogue", entity_id=d.id, actor=actor, action=action, field="status",
                 before=d.status, after=str(status), reason=reason)
    d.status = str(status)
    return d


def modify_dialogue(s: Session, dialogue_id: str, *, actor: str, patient: str | None = None,
                    supporter: str | None = None, reason: str | None = None) -> Dialogue:
    """Edit a turn; the old text stays in the review history."""
    d = s.get(Dialogue, dialogue_id)
    if d is None:
        raise UserError(f"no dialogue {dialogue_id!r}")
    for fld, new in (("patient", patient), ("supporter", supporter)):
        if new is None or new == getattr(d, fld):
            continue
        if not new.strip():
            raise UserError(f"{fld} turn may not be empty")
        record_event(s, entity="dialogue", entity_id=d.id, actor=actor, action=Action.MODIFY, field=fld,
                     before=getattr(d, fld), after=new, reason=reason)
        setattr(d, fld, new)
    return d


def history(s: Session, entity: str, entity_id: str) -> list[ReviewEvent]:
    q = select(ReviewEvent).where(ReviewEvent.entity == entity, ReviewEvent.entity_id == entity_id)
    return list(s.scalars(q.order_by(ReviewEvent.id)))
