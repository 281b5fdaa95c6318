"""A cheap supervised reference for Table 2: TF-IDF over fugashi (UniDic) tokens + logistic regression.

Trained on the training split of the same split manifest and scored on the same evaluation items with the
same metrics, so an LLM's figures can be read against what a bag-of-words classifier already achieves.
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

if TYPE_CHECKING:
    from emplifai.store.db import Store

SPEC = "baseline:tfidf-lr"
VERSION = "tfidf-lr-v1"
PARAMS: dict[str, Any] = {"ngram_range": [1, 2], "min_df": 1, "sublinear_tf": True, "C": 10.0, "max_iter": 2000}


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

    def signature(self) -> dict[str, Any]:
        return {
            "backend": "scikit-learn", "model": VERSION, "params": PARAMS, "seed": self.seed,
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
    cfg = PredictConfig(mode="score", shots=0, seed=seed, definitions=False)
    rid = run_id(SPEC, model.signature(), cfg, mid, mhash, split)
    todo = [it for it in items if it.dialogue_id not in finished_ids(store, rid)]
    if not todo:
        return rid
    if not pool:
        raise UserError("the training split is empty; the baseline needs training data")
    model.fit(pool)
    sig = {"model": SPEC, "llm": model.signature(), "mode": "classifier", "prompt_version": VERSION,
           "config": {"seed": seed}, "split": split, "manifest_id": mid}
    for item, dist in zip(todo, model.distribution(todo), strict=True):
        order = sorted(dist, key=lambda k: -dist[k])
        loglik = {k: math.log(max(v, 1e-300)) for k, v in dist.items()}
        result = ItemResult(PredStatus.OK, order[0], "argmax probability", top3=order[:3],
                            distribution={"prob": dist, "loglik": loglik})
        save(store, rid=rid, model=SPEC, signature=sig, manifest_id=mid, split=split, item=item, result=result)
    return rid
