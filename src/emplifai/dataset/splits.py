"""Leak-free splits: grouped by situation (no situation in two splits), stratified by emotion.

Situations are grouped by their normalised text as well as their id (:func:`emplifai.dataset.dedup.normalise`):
two ids that carry the same situation text always land in the same split, and the result says how many were
merged that way.

Each emotion's situations are shuffled with the seed and cut by the fractions, so every split keeps the
emotion balance. The manifest (seed, sizes, content hash) is stored so later stages all use the same split.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import insert, select

from emplifai import __version__
from emplifai.dataset import dedup
from emplifai.errors import UserError
from emplifai.store.db import Store
from emplifai.store.models import Dialogue, Situation, SplitManifest, SplitMember
from emplifai.store.repo import LIVE, SPLITS


@dataclass(frozen=True)
class SplitResult:
    manifest_id: int
    seed: int
    sizes: dict[str, dict[str, int]]
    content_hash: str
    merged: int = 0  # situations that joined another id's group because their text is the same


def allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Split n items by fractions; validation and test get at least one each when n >= 3."""
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    return n - n_val - n_test, n_val, n_test


def assign(situations: dict[str, list[str]], seed: int,
           fractions: tuple[float, float, float]) -> dict[str, str]:
    """emotion -> situation ids  =>  situation id -> split name."""
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for emotion in sorted(situations):
        ids = sorted(situations[emotion])
        order = rng.permutation(len(ids))
        n_train, n_val, _ = allocate(len(ids), fractions)
        for rank, idx in enumerate(order):
            out[ids[idx]] = SPLITS[0] if rank < n_train else SPLITS[1] if rank < n_train + n_val else SPLITS[2]
    return out


def situation_splits(situations: Iterable[tuple[str, str, str]], seed: int, fractions: tuple[float, float, float]
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """(situation id, emotion, text) rows in id order => (situation id -> split, situation id -> the first id
    with the same normalised text). Pure, so ``emplifai run --plan`` sizes the split without storing it."""
    by_emotion: dict[str, set[str]] = defaultdict(set)
    group_of: dict[str, str] = {}
    first_with: dict[str, str] = {}
    for sid, emotion, text in situations:
        if sid not in group_of:
            group_of[sid] = first_with.setdefault(dedup.normalise(text), sid)
            if group_of[sid] == sid:
                by_emotion[emotion].add(sid)
    groups = assign({e: list(v) for e, v in by_emotion.items()}, seed, fractions)
    return {sid: groups[rep] for sid, rep in group_of.items()}, group_of


def make_split(store: Store, seed: int = 42, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               name: str = "default") -> SplitResult:
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise UserError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    with store.transaction() as s:
        rows = s.execute(
            select(Situation.id, Situation.emotion, Situation.text, Dialogue.id, Dialogue.patient, Dialogue.supporter)
            .join(Dialogue, Dialogue.situation_id == Situation.id)
            .where(Dialogue.status.in_([str(x) for x in LIVE]))
            .order_by(Situation.id, Dialogue.id)
        ).all()
        if not rows:
            raise UserError("the store has no dialogues to split; import a dataset first")
        digest = hashlib.sha256()
        for sid, emotion, text, did, patient, supporter in rows:
            digest.update("\x1f".join((sid, emotion, text, did, patient, supporter)).encode() + b"\x1e")
        mapping, group_of = situation_splits([(r[0], r[1], r[2]) for r in rows], seed, fractions)
        dialogues = Counter(mapping[r[0]] for r in rows)
        situations = Counter(mapping.values())
        sizes = {sp: {"situations": situations.get(sp, 0), "dialogues": dialogues.get(sp, 0)} for sp in SPLITS}
        m = SplitManifest(name=name, seed=seed, fractions=dict(zip(SPLITS, fractions, strict=True)), sizes=sizes,
                          content_hash=digest.hexdigest(), version=__version__)
        s.add(m)
        s.flush()
        s.execute(insert(SplitMember), [{"manifest_id": m.id, "situation_id": k, "split": v}
                                        for k, v in sorted(mapping.items())])
        return SplitResult(m.id, seed, sizes, m.content_hash, sum(sid != rep for sid, rep in group_of.items()))
