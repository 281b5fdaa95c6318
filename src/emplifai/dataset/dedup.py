"""Duplicate detection, the one home of its rules: text normalisation, character 3-gram MinHash settings, and
an index with exact (normalised text) and near (MinHash LSH, Jaccard checked) lookup.

Dataset statistics, the synthesis filters and the web app's near-duplicate warning all use it, so a
"near duplicate" means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NEAR_THRESHOLD = 0.8  # Jaccard over character 3-grams: the default for statistics and filters
NUM_PERM = 128
SEED = 1
SHINGLE = 3


def normalise(text: str) -> str:
    """NFKC, all white space removed: what two texts must share to be the same."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def exact_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode()).hexdigest()


def shingles(text: str, n: int = SHINGLE) -> list[bytes]:
    return [text[i : i + n].encode() for i in range(max(len(text) - n + 1, 1))]


def candidate_threshold(threshold: float) -> float:
    """LSH banding misses pairs near its threshold: query looser, then check the Jaccard estimate exactly."""
    return max(0.3, threshold - 0.2)


def _minhash(normalised: str, num_perm: int) -> Any:
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=SEED)
    m.update_batch(shingles(normalised))
    return m


@dataclass(frozen=True)
class Match:
    key: str
    jaccard: float  # 1.0 for an exact duplicate
    exact: bool


class DuplicateIndex:
    """Texts by key; :meth:`nearest` finds the closest stored text at or above the threshold."""

    def __init__(self, threshold: float = NEAR_THRESHOLD, num_perm: int = NUM_PERM):
        from datasketch import MinHashLSH

        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = MinHashLSH(threshold=candidate_threshold(threshold), num_perm=num_perm)
        self.exact: dict[str, str] = {}
        self.hashes: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.exact)

    def add(self, key: str, text: str) -> None:
        t = normalise(text)
        self.exact.setdefault(exact_key(t), key)
        if key not in self.hashes:
            m = _minhash(t, self.num_perm)
            self.hashes[key] = m
            self.lsh.insert(key, m)

    def add_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Bulk insert: MinHash.bulk hashes all texts in one vectorised pass."""
        from datasketch import MinHash

        new = []
        for key, text in items:
            t = normalise(text)
            self.exact.setdefault(exact_key(t), key)
            if key not in self.hashes:
                new.append((key, shingles(t)))
        hashes = MinHash.bulk([sh for _, sh in new], num_perm=self.num_perm, seed=SEED)
        for (key, _), m in zip(new, hashes, strict=True):
            self.hashes[key] = m
        with self.lsh.insertion_session() as session:
            for key, _ in new:
                session.insert(key, self.hashes[key])

    def best(self, text: str, exclude: str | None = None) -> tuple[Match | None, float]:
        """The duplicate of ``text`` if there is one (exact first), and the best Jaccard estimate seen."""
        t = normalise(text)
        hit = self.exact.get(exact_key(t))
        if hit is not None and hit != exclude:
            return Match(hit, 1.0, True), 1.0
        m = _minhash(t, self.num_perm)
        best, best_key = 0.0, None
        for key in self.lsh.query(m):
            if key == exclude:
                continue
            j = self.hashes[key].jaccard(m)
            if j > best:
                best, best_key = j, key
        if best_key is not None and best >= self.threshold:
            return Match(best_key, best, False), best
        return None, best


def near_duplicates(texts: Sequence[str], threshold: float = NEAR_THRESHOLD) -> int:
    """How many texts have at least one other text at or above the threshold."""
    index = DuplicateIndex(threshold)
    index.add_many([(str(i), t) for i, t in enumerate(texts)])
    return sum(1 for i in range(len(texts))
               if any(k != str(i) and index.hashes[k].jaccard(index.hashes[str(i)]) >= threshold
                      for k in index.lsh.query(index.hashes[str(i)])))
