"""Human rating tasks (paper 5.4): the sample's generations in groups of 10, each group rated by 3 raters on
the 7 metrics of Table 3 (1–5). Groups come from ``emplifai.evaluate.groups.rating_groups`` so the web app and
the rating sheets hand out the same groups; answers land in the evaluation stage's ``ratings`` table (origin
"web"). A group is a task whose target is the number of raters, so it shares the claim/lease machinery.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai import taxonomy
from emplifai.errors import UserError
from emplifai.evaluate.groups import GROUP_SIZE, rating_groups
from emplifai.records import Kind
from emplifai.store.collect import Campaign, Task
from emplifai.store.models import Situation


def create_rating_tasks(s: Session, camp: Campaign, sample_name: str, source: str,
                        group_size: int = GROUP_SIZE) -> int:
    """One rating task per group of the sample's generations from ``source``; returns how many were added."""
    groups = rating_groups(s, sample_name, source, group_size)
    if not groups:
        raise UserError(f"no generations from {source!r} for sample {sample_name!r}; generate them first")
    existing = {(t.payload.get("sample"), t.payload.get("source"), t.group_no)
                for t in s.scalars(select(Task).where(Task.campaign_id == camp.id, Task.kind == Kind.RATING))}
    added = 0
    for number, group in enumerate(groups, 1):
        if (sample_name, source, number) in existing:
            continue
        items = []
        for pos, g in enumerate(group, 1):
            sit = s.get(Situation, g.situation_id)
            assert sit is not None
            lab = taxonomy.get(sit.emotion)
            items.append({"generation_id": g.id, "position": pos, "emotion": lab.en, "emotion_ja": lab.ja,
                          "situation": sit.text, "patient": g.patient, "supporter": g.supporter,
                          "raw": g.raw if g.malformed else None})
        s.add(Task(campaign_id=camp.id, kind=Kind.RATING, emotion=None, situation_id=None, group_no=number,
                   payload={"sample": sample_name, "source": source, "items": items},
                   target=camp.rating_raters, filled=0, enabled=True))
        added += 1
    s.flush()
    return added
