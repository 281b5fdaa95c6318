"""Draw the emotion–situation pairs every model and every rater sees (paper §5.1: 100 pairs, seed 42, scikit-learn).

The population is every situation that still has a live dialogue (the human source needs one), ordered by id;
``sklearn.utils.resample`` without replacement picks ``n`` of them. The manifest (one row per item, in drawn
order) is stored under a name, so reruns and other machines reuse exactly the same items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emplifai.errors import UserError
from emplifai.provenance import text_digest
from emplifai.store import repo
from emplifai.store.db import Store
from emplifai.store.evaluation import EvalSample, EvalSampleItem, Generation
from emplifai.store.models import Dialogue, Situation
from emplifai.store.repo import LIVE


@dataclass(frozen=True, slots=True)
class SampleResult:
    name: str
    n: int
    created: bool  # False when an identical sample already existed
    emotions: int


def population(s: Session, split: str | None = None) -> list[tuple[str, str]]:
    """(situation id, emotion) of every situation with at least one live dialogue, sorted by id; only those of
    one split of the stored manifest when ``split`` is given."""
    q = (
        select(Situation.id, Situation.emotion)
        .join(Dialogue, Dialogue.situation_id == Situation.id)
        .where(Dialogue.status.in_([str(x) for x in LIVE]), Situation.status.in_([str(x) for x in LIVE]))
        .group_by(Situation.id, Situation.emotion)
        .order_by(Situation.id)
    )
    rows = [(a, b) for a, b in s.execute(q)]
    if split is None:
        return rows
    members = repo.split_of(s, repo.require_manifest(s))
    return [(a, b) for a, b in rows if members.get(a) == split]


def draw(pop: list[tuple[str, str]], n: int, seed: int, stratify: bool = False) -> list[tuple[str, str]]:
    from sklearn.utils import resample

    if n < 1:
        raise UserError("--n must be at least 1")
    if n > len(pop):
        raise UserError(f"cannot sample {n} pairs: only {len(pop)} situations have a live dialogue")
    strata = [e for _, e in pop] if stratify else None
    return list(resample(pop, replace=False, n_samples=n, random_state=seed, stratify=strata))


def make_sample(store: Store, *, n: int = 100, seed: int = 42, name: str = "default", stratify: bool = False,
                replace: bool = False, split: str | None = None, meta: dict[str, Any] | None = None
                ) -> SampleResult:
    """Draw and store the sample ``name`` (the same draw again is a no-op). ``split`` restricts the population
    to one split of the stored manifest (the before/after comparison draws from the test split)."""
    import sklearn

    if not 0 <= seed < 2**32:  # scikit-learn's random_state range; say so instead of a traceback
        raise UserError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {seed}")
    with store.transaction() as s:
        pop = population(s, split)
        items = draw(pop, n, seed, stratify)
        digest = text_digest("\n".join(f"{a}\t{b}" for a, b in pop))
        old = s.get(EvalSample, name)
        if old is not None:
            same = [(i.situation_id, i.emotion) for i in old.items] == items
            if same:
                return SampleResult(name, n, False, len({e for _, e in items}))
            if not replace:
                raise UserError(
                    f"sample {name!r} exists with other items (seed {old.seed}, n {old.n}); pass --replace or "
                    "choose another --name"
                )
            used = s.scalar(select(func.count()).select_from(Generation).where(Generation.sample_name == name))
            if used:
                raise UserError(f"sample {name!r} already has {used} generations; use another --name")
            s.delete(old)
            s.flush()
        sample = EvalSample(
            name=name, seed=seed, n=n,
            meta={"sklearn": sklearn.__version__, "method": "sklearn.utils.resample(replace=False)",
                  "stratify": stratify, "population": len(pop), "population_sha256": digest,
                  **({"split": split} if split else {}), **(meta or {})},
        )
        sample.items = [EvalSampleItem(position=i, situation_id=sid, emotion=emo) for i, (sid, emo) in enumerate(items)]
        s.add(sample)
    return SampleResult(name, n, True, len({e for _, e in items}))


def require_sample(s: Session, name: str) -> EvalSample:
    sample = s.get(EvalSample, name)
    if sample is None:
        raise UserError(f"no sample named {name!r}; run `emplifai sample --n 100 --seed 42` first")
    return sample
