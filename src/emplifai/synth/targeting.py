"""Targeting: how many dialogues each emotion (and each emotion–situation pair) lacks.

Counts are of *live* core rows (pending, approved, flagged; all sources), so synthetic items waiting for review
count too and a rerun never overshoots. The target is in dialogues per emotion; ``per_situation`` is the pair
target (dialogues per situation). A deficit is first met by topping up pairs below the pair target (synthetic
situations always; crowd/sample ones only with ``fill_pairs``), then by new situations of ``per_situation``
dialogues each. Open candidates from an interrupted run are subtracted, so they are finished, not duplicated.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emplifai import taxonomy
from emplifai.errors import UserError
from emplifai.records import Source
from emplifai.store.models import Dialogue, Situation
from emplifai.store.repo import LIVE


@dataclass
class PairGap:
    situation_id: str
    have: int
    missing: int


@dataclass
class EmotionPlan:
    emotion: str
    situations: int  # live situations (with at least one live dialogue)
    dialogues: int  # live dialogues
    target: int
    open_dialogues: int = 0  # planned by open candidates of earlier, interrupted runs
    top_ups: list[PairGap] = field(default_factory=list)
    new_situations: list[int] = field(default_factory=list)  # dialogues wanted for each new situation

    @property
    def deficit(self) -> int:
        return max(0, self.target - self.dialogues)

    @property
    def planned(self) -> int:
        return sum(g.missing for g in self.top_ups) + sum(self.new_situations)

    def as_row(self) -> dict[str, int | str]:
        lab = taxonomy.get(self.emotion)
        return {"emotion": lab.en, "ja": lab.ja, "situations": self.situations, "dialogues": self.dialogues,
                "target": self.target, "deficit": self.deficit, "open": self.open_dialogues,
                "pair_top_ups": sum(g.missing for g in self.top_ups), "new_situations": len(self.new_situations),
                "planned": self.planned}


def live_counts(s: Session) -> tuple[Counter[str], dict[str, set[str]], dict[str, tuple[str, str, int]]]:
    """(dialogues per emotion, live situation ids per emotion, situation id -> (emotion, source, dialogues))."""
    q = (
        select(Situation.id, Situation.emotion, Situation.source, func.count(Dialogue.id))
        .join(Dialogue, Dialogue.situation_id == Situation.id)
        .where(Dialogue.status.in_([str(x) for x in LIVE]))
        .group_by(Situation.id, Situation.emotion, Situation.source)
    )
    per_emotion: Counter[str] = Counter()
    sits: dict[str, set[str]] = defaultdict(set)
    pairs: dict[str, tuple[str, str, int]] = {}
    for sid, emo, src, n in s.execute(q):
        per_emotion[emo] += n
        sits[emo].add(sid)
        pairs[sid] = (emo, src, n)
    return per_emotion, sits, pairs


def plan(
    s: Session, *, emotions: list[str], target: int | None, per_situation: int, fill_pairs: bool,
    open_dialogues: dict[str, int] | None = None, busy_situations: set[str] | None = None, limit: int | None = None,
) -> list[EmotionPlan]:
    """What to generate for each emotion. ``busy_situations``: existing situations that already have open
    top-up candidates (not planned twice)."""
    per_emotion, sits, pairs = live_counts(s)
    goal = target if target is not None else max(per_emotion.values(), default=0)
    if goal <= 0:
        raise UserError("the store is empty: give --target N (dialogues wanted per emotion)")
    open_dialogues = open_dialogues or {}
    busy = busy_situations or set()
    budget = limit if limit is not None else math.inf
    plans = []
    for emo in emotions:
        p = EmotionPlan(emo, len(sits.get(emo, ())), per_emotion.get(emo, 0), goal, open_dialogues.get(emo, 0))
        need = max(0, p.deficit - p.open_dialogues)
        need = int(min(need, budget))
        for sid, (e, src, n) in sorted(pairs.items()):
            if need <= 0:
                break
            if e != emo or n >= per_situation or sid in busy or (src != Source.SYNTHETIC and not fill_pairs):
                continue
            gap = PairGap(sid, n, min(per_situation - n, need))
            p.top_ups.append(gap)
            need -= gap.missing
        while need > 0:
            k = min(per_situation, need)
            p.new_situations.append(k)
            need -= k
        budget -= p.planned
        plans.append(p)
    return plans
