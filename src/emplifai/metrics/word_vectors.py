"""Word-vector cosine between label names (the paper's 'FastText' column): chiVe through ja-ginza by default, a
user's fastText .bin through the fasttext package. Missing and shared rows of the pruned chiVe table are
detected and a composed vector is used instead, with the fallback reported; two different words never get a
silent 1.0."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emplifai.errors import UserError
from emplifai.metrics.cache import SCORER_VERSION, PairCache
from emplifai.provenance import dist_version, file_sha256_remembered


# -------------------------------------------------------------------------------------- word vectors
@dataclass(frozen=True)
class WordVec:
    vector: np.ndarray | None
    how: str  # word | normalized | subtokens | characters | fasttext-subwords | none
    row: int | None = None  # the table row when the vector is one row (chiVe)


@dataclass(frozen=True)
class PairCosine:
    value: float | None  # None when no vector could be built for one side (counted, never NaN)
    how: str  # e.g. "word/word", "word/subtokens (shared row)", "identical"


def _sudachi() -> Any:
    from sudachipy import dictionary

    return dictionary.Dictionary().create()


class ChiveVectors:
    """ja-ginza's pruned chiVe table (300-d), read directly (no spaCy pipeline needed)."""

    def __init__(self) -> None:
        import ja_ginza

        base = Path(ja_ginza.__file__).parent
        dirs = sorted(base.glob("ja_ginza-*/vocab"))
        if not dirs:
            raise UserError(f"ja-ginza's vectors were not found under {base}")
        self.vocab_dir = dirs[-1]
        self._vectors: Any = None
        self._tok: Any = None

    def signature(self) -> dict[str, Any]:
        return {"vectors": "chiVe (ja-ginza, pruned)", "ja_ginza": dist_version("ja-ginza"),
                "spacy": dist_version("spacy"),
                "tokenizer": f"sudachipy {dist_version('sudachipy')} + "
                             f"sudachidict_core {dist_version('sudachidict-core')}",
                "fallbacks": ["normalized", "subtokens", "characters"]}

    def _load(self) -> None:
        if self._vectors is None:
            from spacy.vectors import Vectors

            self._vectors = Vectors().from_disk(str(self.vocab_dir))
            self._tok = _sudachi()

    def _row(self, word: str) -> int | None:
        from spacy.strings import get_string_id

        row = self._vectors.key2row.get(get_string_id(word))
        return None if row is None or row < 0 else int(row)

    def _mean(self, words: Sequence[str]) -> np.ndarray | None:
        rows = [r for r in (self._row(w) for w in words) if r is not None]
        if not rows:
            return None
        return np.asarray(self._vectors.data[rows], dtype=np.float64).mean(axis=0)

    def lookup(self, text: str, *, whole: bool = True) -> WordVec:
        """The text's vector: its own row, else its Sudachi normalised form, else the mean of its morphemes'
        vectors, else of its characters' vectors. ``whole=False`` skips the whole-word rows."""
        from sudachipy import tokenizer as st

        self._load()
        if whole:
            for how, w in (("word", text), ("normalized", self._normalized(text))):
                if w and (r := self._row(w)) is not None:
                    return WordVec(np.asarray(self._vectors.data[r], dtype=np.float64), how, r)
        morphs = self._tok.tokenize(text, st.Tokenizer.SplitMode.A)
        parts = [m.surface() if self._row(m.surface()) is not None else m.normalized_form() for m in morphs]
        if len(parts) > 1 or not whole:
            v = self._mean(parts) if len(parts) > 1 else None
            if v is not None:
                return WordVec(v, "subtokens")
        chars = [c for c in text if not c.isspace()]
        v = self._mean(chars) if len(chars) > 1 or not whole else None
        return WordVec(v, "characters") if v is not None else WordVec(None, "none")

    def _normalized(self, text: str) -> str | None:
        from sudachipy import tokenizer as st

        morphs = self._tok.tokenize(text, st.Tokenizer.SplitMode.C)
        return morphs[0].normalized_form() if len(morphs) == 1 else None

    def splits(self, text: str) -> bool:
        from sudachipy import tokenizer as st

        self._load()
        return len(self._tok.tokenize(text, st.Tokenizer.SplitMode.A)) > 1


class FastTextVectors:
    """A user's fastText ``.bin`` (e.g. cc.ja.300.bin); out-of-vocabulary words use fastText's subwords."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise UserError(f"fastText model not found: {self.path}")
        try:
            import fasttext
        except ImportError as exc:
            raise UserError("a fastText .bin needs the fasttext package: pip install fasttext") from exc
        self._model = fasttext.load_model(str(self.path))
        self._tok: Any = None

    def signature(self) -> dict[str, Any]:
        return {"vectors": f"fastText {self.path.name}", "sha256": file_sha256_remembered(self.path),
                "fasttext": dist_version("fasttext") or dist_version("fasttext-wheel")}

    def lookup(self, text: str, *, whole: bool = True) -> WordVec:
        if " " not in text and self._model.get_word_id(text) >= 0 and whole:
            return WordVec(np.asarray(self._model.get_word_vector(text), dtype=np.float64), "word")
        if self._tok is None:
            self._tok = _sudachi()
        words = [m.surface() for m in self._tok.tokenize(text)]
        if len(words) <= 1:
            return WordVec(np.asarray(self._model.get_word_vector(text), dtype=np.float64), "fasttext-subwords")
        vecs = [np.asarray(self._model.get_word_vector(w), dtype=np.float64) for w in words]
        return WordVec(np.mean(vecs, axis=0), "subtokens")

    def splits(self, text: str) -> bool:
        return False


class VectorScorer:
    """Cosine between predicted and gold label words, each distinct pair once (cached on disk)."""

    def __init__(self, vectors: str = "chive", disk_cache: bool = True):
        self.spec = vectors
        self.disk_cache = disk_cache
        self._impl: ChiveVectors | FastTextVectors | None = None
        self._sig: dict[str, Any] | None = None
        self._cache: PairCache | None = None

    @property
    def impl(self) -> ChiveVectors | FastTextVectors:
        if self._impl is None:
            self._impl = ChiveVectors() if self.spec == "chive" else FastTextVectors(self.spec)
        return self._impl

    def signature(self) -> dict[str, Any]:
        if self._sig is None:
            self._sig = {"metric": "word-vector cosine", **self.impl.signature(),
                         "versions": {"numpy": dist_version("numpy"), "emplifai_scorer": SCORER_VERSION}}
        return self._sig

    def cosine(self, a: str, b: str) -> PairCosine:
        if a == b:
            return PairCosine(1.0, "identical")
        va, vb = self.impl.lookup(a), self.impl.lookup(b)
        note = ""
        if va.row is not None and va.row == vb.row:
            # Pruning mapped both words to one row: compose whichever side splits into morphemes (both
            # from characters when neither does), so the cosine says something about the two words.
            note = " (shared row)"
            sa, sb = self.impl.splits(a), self.impl.splits(b)
            if sa or not sb:
                va = self.impl.lookup(a, whole=False)
            if sb or not sa:
                vb = self.impl.lookup(b, whole=False)
        how = f"{va.how}/{vb.how}{note}"
        if va.vector is None or vb.vector is None:
            return PairCosine(None, how)
        if np.allclose(va.vector, vb.vector):
            return PairCosine(None, how + " indistinguishable")
        na, nb = np.linalg.norm(va.vector), np.linalg.norm(vb.vector)
        if na == 0 or nb == 0:
            return PairCosine(None, how + " zero vector")
        return PairCosine(float(va.vector @ vb.vector / (na * nb)), how)

    def score_pairs(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PairCosine]:
        wanted = sorted(set(pairs))
        if self._cache is None:
            self._cache = PairCache(self.signature(), self.disk_cache)
        cache = self._cache
        missing = [p for p in wanted if PairCache.key(*p) not in cache.data]
        for p in missing:
            pc = self.cosine(*p)
            cache.data[PairCache.key(*p)] = [pc.value, pc.how]
        if missing:
            cache.save()
        return {p: PairCosine(*cache.data[PairCache.key(*p)]) for p in wanted}
