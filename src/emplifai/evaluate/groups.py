"""How sampled dialogues are split into rating groups (the paper: 100 dialogues, 10 groups of 10, 3 raters each).

Shared by the rating-sheet export and the web app's rating tasks, so both hand out the same groups.
Group numbers are 1-based; order follows the sample manifest's positions, hence deterministic.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai.store.evaluation import EvalSampleItem, Generation

GROUP_SIZE = 10
RATERS_PER_GROUP = 3


def rating_groups(
    session: Session, sample_name: str, source: str, group_size: int = GROUP_SIZE
) -> list[list[Generation]]:
    """Generations of ``source`` for the sample, in manifest order, cut into consecutive groups.

    The last group is shorter when the count is not a multiple of ``group_size``.
    """
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    rows = session.scalars(
        select(Generation)
        .join(
            EvalSampleItem,
            (EvalSampleItem.sample_name == Generation.sample_name)
            & (EvalSampleItem.situation_id == Generation.situation_id),
        )
        .where(Generation.sample_name == sample_name, Generation.source == source)
        .order_by(EvalSampleItem.position)
    ).all()
    return [list(rows[i : i + group_size]) for i in range(0, len(rows), group_size)]


def group_of(session: Session, generation: Generation, group_size: int = GROUP_SIZE) -> int:
    """The 1-based group number of one generation within its sample and source."""
    for number, group in enumerate(rating_groups(session, generation.sample_name, generation.source, group_size), 1):
        if any(g.id == generation.id for g in group):
            return number
    raise LookupError(f"generation {generation.id} is not in sample {generation.sample_name!r}")
