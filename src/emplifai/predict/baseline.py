"""A cheap supervised reference for Table 2: TF-IDF over fugashi (UniDic) tokens + logistic regression.

Trained on the training split of the same split manifest and scored on the same evaluation items with the
same metrics, so an LLM's figures can be read against what a bag-of-words classifier already achieves. On
``split="all"`` there is no held-out part, so every pair is predicted out of fold: five folds of situations
(seeded), each predicted by a model trained on the other four, so no pair is scored by a model that saw it.
Its predictions are stored in the predictions table like any model's (spec ``baseline:tfidf-lr``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from emplifai import taxonomy
from emplifai.errors import UserError
from emplifai.predict.runs import ItemResult, PredictConfig, finished_ids, run_id, save, select_items
from emplifai.provenance import dist_version
from emplifai.records import Record
from emplifai.store.predict import PredStatus
from emplifai.store.repo import ALL

if TYPE_CHECKING:
    from emplifai.store.db import Store

SPEC = "baseline:tfidf-lr"
VERSION = "tfidf-lr-v1"
PARAMS: dict[str, Any] = {"ngram_range": [1, 2], "min_df": 1, "sublinear_tf": True, "C": 10.0, "max_iter": 2000}
FOLDS = 5


def text_of(r: Record) -> str:
    return "\n".join((r.situation, r.patient, r.supporter))


class Tokenizer:
    """fugashi + unidic-lite surface forms; a picklable callable for scikit-learn."""

    def __init__(self) -> None:
        self._tagger: Any = None

    def __call__(self, text: str) -> list[str]:
        if self._tagger is None:
            import fugashi

            self._tagger = fugashi.Tagger()
        return [w.surface for w in self._tagger(text)]


class TfidfBaseline:
    def __init__(self, seed: int = 42):
        self.seed = seed
        self._pipe: Any = None

    def signature(self, folds: int | None = None) -> dict[str, Any]:
        return {
            "backend": "scikit-learn", "model": VERSION, "params": PARAMS, "seed": self.seed,
            **({"cross_validation": {"folds": folds, "grouped_by": "situation"}} if folds else {}),
            "versions": {"scikit-learn": dist_version("scikit-learn"), "fugashi": dist_version("fugashi"),
                         "unidic-lite": dist_version("unidic-lite")},
        }

    def fit(self, train: Sequence[Record]) -> TfidfBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if len({r.emotion for r in train}) < 2:
            raise UserError("the training split needs at least two emotions to train the baseline")
        vec = TfidfVectorizer(tokenizer=Tokenizer(), lowercase=False, token_pattern=None,
                              ngram_range=tuple(PARAMS["ngram_range"]), min_df=PARAMS["min_df"],
                              sublinear_tf=PARAMS["sublinear_tf"])
        clf = LogisticRegression(C=PARAMS["C"], max_iter=PARAMS["max_iter"], random_state=self.seed)
        self._pipe = make_pipeline(vec, clf).fit([text_of(r) for r in train], [r.emotion for r in train])
        return self

    def distribution(self, items: Sequence[Record]) -> list[dict[str, float]]:
        """Probability of every one of the 28 labels per item (0 for labels absent from training)."""
        probs = self._pipe.predict_proba([text_of(r) for r in items])
        classes = list(self._pipe.classes_)
        out = []
        for row in probs:
            d = dict.fromkeys((lab.en for lab in taxonomy.LABELS), 0.0)
            d.update({c: float(p) for c, p in zip(classes, row, strict=True)})
            out.append(d)
        return out


def run_baseline(store: Store, *, split: str = "test", limit: int | None = None, seed: int = 42) -> str:
    """Train, predict and store; returns the run id. A finished run is not recomputed."""

    items, pool, mid, mhash = select_items(store, split, limit)
    model = TfidfBaseline(seed)
    folds = FOLDS if split == ALL else None
    cfg = PredictConfig(mode="score", shots=0, seed=seed, definitions=False)
    rid = run_id(SPEC, model.signature(folds), cfg, mid, mhash, split)
    todo = [it for it in items if it.dialogue_id not in finished_ids(store, rid)]
    if not todo:
        return rid
    if not pool:
        raise UserError("the training split is empty; the baseline needs training data")
    sig = {"model": SPEC, "llm": model.signature(folds), "mode": "classifier", "prompt_version": VERSION,
           "config": {"seed": seed}, "split": split, "manifest_id": mid}
    dists = _out_of_fold(pool, todo, seed) if folds else model.fit(pool).distribution(todo)
    for item, dist in zip(todo, dists, strict=True):
        order = sorted(dist, key=lambda k: -dist[k])
        loglik = {k: math.log(max(v, 1e-300)) for k, v in dist.items()}
        result = ItemResult(PredStatus.OK, order[0], "argmax probability", top3=order[:3],
                            distribution={"prob": dist, "loglik": loglik})
        save(store, rid=rid, model=SPEC, signature=sig, manifest_id=mid, split=split, item=item, result=result)
    return rid


def fold_of(situation_ids: Sequence[str], seed: int, folds: int = FOLDS) -> dict[str, int]:
    """Situation id -> fold, seeded and balanced (sorted ids shuffled, then dealt round-robin)."""
    import random

    ids = sorted(set(situation_ids))
    random.Random(seed).shuffle(ids)
    return {sid: i % folds for i, sid in enumerate(ids)}


def _out_of_fold(pool: Sequence[Record], todo: Sequence[Record], seed: int) -> list[dict[str, float]]:
    """Each item's distribution from a model trained on the folds its situation is not in."""
    fold = fold_of([r.situation_id for r in pool], seed)
    out: dict[str, dict[str, float]] = {}
    for k in sorted({fold[r.situation_id] for r in todo}):
        part = [r for r in todo if fold[r.situation_id] == k]
        model = TfidfBaseline(seed).fit([r for r in pool if fold[r.situation_id] != k])
        out.update(zip((r.dialogue_id for r in part), model.distribution(part), strict=True))
    return [out[r.dialogue_id] for r in todo]
