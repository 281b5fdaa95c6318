"""Review of stored items that did not come through a campaign (synthetic ones above all), from the command line.

The decisions and their meaning are the paper's (§3.3–3.4), and they land in the same append-only history
(``review_events``) as the web app's: a reviewer approves, rejects or flags a pending dialogue; the lead keeps
(approves) or removes a flagged one. A situation follows its dialogues: it is approved with its first approved
dialogue and removed once none of its dialogues is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai.errors import UserError
from emplifai.records import Action, Status
from emplifai.store import repo
from emplifai.store.db import Store
from emplifai.store.models import Dialogue, Situation

#: action -> (statuses it applies to, status it sets)
DECISIONS: dict[Action, tuple[tuple[Status, ...], Status]] = {
    Action.APPROVE: ((Status.PENDING,), Status.APPROVED),
    Action.REJECT: ((Status.PENDING,), Status.REMOVED),
    Action.FLAG: ((Status.PENDING, Status.APPROVED), Status.FLAGGED),
    Action.KEEP: ((Status.FLAGGED,), Status.APPROVED),
    Action.REMOVE: ((Status.FLAGGED, Status.APPROVED, Status.PENDING), Status.REMOVED),
}


@dataclass(frozen=True)
class Item:
    dialogue_id: str
    situation_id: str
    emotion: str
    status: str
    source: str
    situation: str
    patient: str
    supporter: str
    flags: list[str]  # what the synth filters asked the reviewers to look at (e.g. self_harm)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def queue(store: Store, *, status: Status = Status.PENDING, source: str | None = None,
          emotions: Sequence[str] | None = None, limit: int | None = None) -> list[Item]:
    q = (select(Dialogue, Situation).join(Situation, Dialogue.situation_id == Situation.id)
         .where(Dialogue.status == str(status)).order_by(Situation.emotion, Dialogue.id))
    if source:
        q = q.where(Dialogue.source == source)
    if emotions:
        q = q.where(Situation.emotion.in_(list(emotions)))
    if limit:
        q = q.limit(limit)
    with store.open_session() as s:
        return [Item(d.id, sit.id, sit.emotion, d.status, d.source, sit.text, d.patient, d.supporter,
                     list((d.meta or {}).get("synth", {}).get("flags", [])))
                for d, sit in s.execute(q).all()]


def decide(store: Store, dialogue_ids: Sequence[str], action: Action, *, actor: str,
           reason: str | None = None) -> dict[str, str]:
    """Apply one decision to several dialogues in one transaction: all of them or none (a wrong id or a
    dialogue in the wrong state is an error naming it). Returns dialogue id -> new status."""
    if action not in DECISIONS:
        raise UserError(f"unknown decision {action!r}; one of: {', '.join(DECISIONS)}")
    if action in (Action.REJECT, Action.REMOVE, Action.FLAG) and not (reason or "").strip():
        raise UserError(f"{action} needs a reason (it is kept in the review history)")
    allowed, new = DECISIONS[action]
    out: dict[str, str] = {}
    with store.transaction() as s:
        for did in dict.fromkeys(dialogue_ids):
            d = s.get(Dialogue, did)
            if d is None:
                raise UserError(f"no dialogue {did!r}")
            if d.status not in allowed:
                raise UserError(f"{did}: cannot {action} a {d.status} dialogue (only {', '.join(allowed)})")
            repo.set_status(s, did, new, actor=actor, action=action, reason=reason)
            _follow(s, d.situation_id, actor)
            out[did] = str(new)
    return out


def _follow(s: Session, situation_id: str, actor: str) -> None:
    sit = s.get(Situation, situation_id)
    assert sit is not None
    s.flush()
    statuses = set(s.scalars(select(Dialogue.status).where(Dialogue.situation_id == situation_id)))
    if sit.status == Status.PENDING and Status.APPROVED in statuses:
        new, why = Status.APPROVED, "a dialogue of it was approved"
    elif sit.status != Status.REMOVED and statuses == {Status.REMOVED}:
        new, why = Status.REMOVED, "all of its dialogues were removed"
    else:
        return
    repo.record_event(s, entity="situation", entity_id=sit.id, actor=actor,
                      action=Action.APPROVE if new == Status.APPROVED else Action.REMOVE, field="status",
                      before=sit.status, after=str(new), reason=why)
    sit.status = str(new)
