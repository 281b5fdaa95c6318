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

STAFF: frozenset[str] = frozenset({"reviewer", "lead", "admin"})
LEADS: frozenset[str] = frozenset({"lead", "admin"})


@dataclass(frozen=True)
class Rule:
    """One review decision: who may take it, on which status, what it sets, and whether it needs a reason."""

    action: Action
    roles: frozenset[str]
    applies_to: tuple[Status, ...]
    result: Status
    needs_reason: bool
    refused_ja: str  # shown in the web app when the item is in another status
    reason_ja: str = ""  # shown in the web app when a needed reason is missing


#: The one table of review decisions (paper §3.3–3.4). The CLI (`emplifai dataset decide`), the web app's crowd
#: review and its synthetic-items page all apply decisions through :func:`check`, so they cannot drift.
RULES: dict[Action, Rule] = {r.action: r for r in (
    Rule(Action.APPROVE, STAFF, (Status.PENDING,), Status.APPROVED, False, "承認できるのは未審査の提出物だけです"),
    Rule(Action.REJECT, STAFF, (Status.PENDING,), Status.REMOVED, True, "却下できるのは未審査の提出物だけです",
         "却下の理由を入力してください"),
    Rule(Action.FLAG, STAFF, (Status.PENDING, Status.APPROVED), Status.FLAGGED, True,
         "要確認にできるのは未審査または承認済みの提出物だけです", "要確認にする理由を入力してください"),
    Rule(Action.KEEP, LEADS, (Status.FLAGGED,), Status.APPROVED, False, "判断できるのは要確認の提出物だけです"),
    Rule(Action.REMOVE, LEADS, (Status.FLAGGED, Status.APPROVED, Status.PENDING), Status.REMOVED, True,
         "削除できるのは却下・削除されていない提出物だけです", "削除の理由を入力してください"),
)}
DECISIONS = tuple(RULES)


class NotAllowed(UserError):
    """The decision does not apply to the item's status, or the role may not take it."""


class ReasonMissing(UserError):
    """The decision needs a reason for the review history."""


def check(action: Action | str, status: Status | str, *, reason: str | None = None, role: str | None = None,
          what: str = "dialogue", lang: str = "en") -> Rule:
    """The rule for ``action`` if it may be applied to an item in ``status`` (by ``role``, when given);
    otherwise :class:`NotAllowed` / :class:`ReasonMissing` with an English (CLI) or Japanese (web) message."""
    try:
        rule = RULES[Action(action)]
    except (ValueError, KeyError):
        raise UserError(f"unknown decision {action!r}; one of: {', '.join(RULES)}") from None
    if role is not None and role not in rule.roles:
        raise NotAllowed("この操作はリードだけが行えます" if lang == "ja" else
                         f"{rule.action} is for {' or '.join(sorted(rule.roles))} only")
    if rule.needs_reason and not (reason or "").strip():
        raise ReasonMissing(rule.reason_ja if lang == "ja" else
                            f"{rule.action} needs a reason (it is kept in the review history)")
    if Status(status) not in rule.applies_to:
        raise NotAllowed(rule.refused_ja if lang == "ja" else
                         f"cannot {rule.action} a {status} {what} (only {', '.join(rule.applies_to)})")
    return rule


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
           reason: str | None = None, role: str | None = None, lang: str = "en") -> dict[str, str]:
    """Apply one decision to several dialogues in one transaction: all of them or none (a wrong id or a
    dialogue in the wrong state is an error naming it). ``role`` is checked when given (the web app); the CLI
    is the lead's own tool. ``lang="ja"`` gives the web app's Japanese refusals. Returns dialogue id -> new status."""
    out: dict[str, str] = {}
    with store.transaction() as s:
        for did in dict.fromkeys(dialogue_ids):
            d = s.get(Dialogue, did)
            if d is None:
                raise UserError(f"会話 {did} が見つかりません" if lang == "ja" else f"no dialogue {did!r}")
            try:
                rule = check(action, d.status, reason=reason, role=role, lang=lang)
            except NotAllowed as exc:
                raise NotAllowed(f"{did}: {exc}") from None
            repo.set_status(s, did, rule.result, actor=actor, action=rule.action, reason=reason)
            _follow(s, d.situation_id, actor)
            out[did] = str(rule.result)
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
