"""Near-duplicate warnings for reviewers: does a submission repeat a text already in the store?

The rules are the dataset's (:mod:`emplifai.dataset.dedup`: normalisation, character 3-gram MinHash, Jaccard
threshold), so "near duplicate" means the same here as in ``emplifai dataset stats``. The index is kept per
process and brought up to date on each use: new texts are added, and an edited or deleted one rebuilds it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai.dataset.dedup import DuplicateIndex, exact_key, normalise
from emplifai.records import Kind
from emplifai.store.models import Dialogue, Situation


@dataclass(frozen=True, slots=True)
class Duplicate:
    entity_id: str  # the other situation or dialogue
    jaccard: float
    exact: bool
    status: str
    author: str | None
    text: str


def dialogue_text(patient: str, supporter: str) -> str:
    return f"{patient}\n{supporter}"  # as dataset stats compares dialogues


@dataclass
class _Cached:
    index: DuplicateIndex
    keys: dict[str, str]  # entity id -> exact key of the text indexed


_CACHE: dict[tuple[str, str], _Cached] = {}
_LOCK = threading.Lock()


def _texts(s: Session, kind: str) -> dict[str, str]:
    if kind == Kind.SITUATION:
        return {i: t for i, t in s.execute(select(Situation.id, Situation.text))}
    return {i: dialogue_text(p, q) for i, p, q in s.execute(select(Dialogue.id, Dialogue.patient, Dialogue.supporter))}


def _index(s: Session, kind: str) -> DuplicateIndex:
    url = str(s.get_bind().engine.url)
    texts = _texts(s, kind)
    keys = {i: exact_key(t) for i, t in texts.items()}
    with _LOCK:
        cached = _CACHE.get((url, kind))
        stale = cached is None or any(keys.get(i) != k for i, k in cached.keys.items())
        if stale:
            cached = _Cached(DuplicateIndex(), {})
            _CACHE[(url, kind)] = cached
        assert cached is not None
        new = [(i, texts[i]) for i in texts if i not in cached.keys]
        if new:
            cached.index.add_many(new)
            cached.keys.update({i: keys[i] for i, _ in new})
        return cached.index


def find(s: Session, kind: str, entity_id: str | None) -> Duplicate | None:
    """The closest other situation/dialogue to this one at or above the dataset's threshold, if any."""
    if not entity_id or kind not in (Kind.SITUATION, Kind.DIALOGUE):
        return None
    return find_many(s, kind, [entity_id]).get(entity_id)


def find_many(s: Session, kind: str, entity_ids: list[str]) -> dict[str, Duplicate]:
    """:func:`find` for several entities of one kind (one index refresh)."""
    if not entity_ids or kind not in (Kind.SITUATION, Kind.DIALOGUE):
        return {}
    index = _index(s, kind)
    model = Situation if kind == Kind.SITUATION else Dialogue
    out: dict[str, Duplicate] = {}
    for eid in entity_ids:
        row = s.get(model, eid)
        if row is None:
            continue
        text = row.text if isinstance(row, Situation) else dialogue_text(row.patient, row.supporter)
        match, _ = index.best(text, exclude=eid)
        if match is None:
            continue
        other = s.get(model, match.key)
        if other is None:
            continue
        other_text = other.text if isinstance(other, Situation) else dialogue_text(other.patient, other.supporter)
        same = normalise(text) == normalise(other_text)
        out[eid] = Duplicate(match.key, 1.0 if same else match.jaccard, same, other.status, other.author, other_text)
    return out
