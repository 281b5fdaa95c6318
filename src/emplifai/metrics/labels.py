"""Label metrics of Table 2 and the scoring of a run: accuracy, macro-F1, top-3, per group and emotion, the
confusion matrix, and BERTScore and word-vector cosine between predicted and gold labels."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emplifai import taxonomy
from emplifai.metrics.bertscore import BertScorer
from emplifai.metrics.word_vectors import VectorScorer
from emplifai.provenance import dist_version

UNPARSED_COL = "(unparsed)"


# ------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Scored:
    """One prediction as the metrics see it."""

    dialogue_id: str
    gold: str  # English label
    predicted: str | None  # English label, None when unparsed or failed
    text: str | None  # what the similarity metrics compare: the label name, the raw answer, or None (failed)
    top3: tuple[str, ...] | None = None
    status: str = "ok"


def answer_text(raw: str | None, limit: int = 100) -> str | None:
    """The compared text of an unparsed answer: its first non-empty line, NFKC-normalised, trimmed."""
    if not raw:
        return None
    lines = [ln.strip() for ln in unicodedata.normalize("NFKC", raw).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else None


#: How a score-mode ranking is read (applied by emplifai.predict.prompt.score_item, recorded in every signature).
TIE_RULE = ("labels with equal scores are ranked in Table-1 order (stable sort) for top-1 and top-3; a ranking in "
            "which all 28 labels tie is undecided and counted as unparsed, not as a prediction")


@dataclass
class Scorers:
    bert: BertScorer | None = None
    vectors: VectorScorer | None = None
    lang: str = "ja"
    extra: dict[str, Any] = field(default_factory=dict)

    def name(self, en: str) -> str:
        return taxonomy.BY_EN[en].ja if self.lang == "ja" else en

    def signature(self) -> dict[str, Any]:
        return {
            "bertscore": self.bert.signature() if self.bert else None,
            "bertscore_hash": self.bert.hash() if self.bert else None,
            "word_vectors": self.vectors.signature() if self.vectors else None,
            "label_language": self.lang,
            "policy": {
                "unparsed": "similarity on the answer's first line; counts as wrong for accuracy",
                "failed": "similarity 0.0; counts as wrong",
                "cosine_without_vector": "left out of the cosine mean and counted (cosine_missing)",
                "macro_f1": "mean F1 over the labels present in gold or predicted; '(unparsed)' is a miss, not a "
                            "class (macro_f1_sklearn_default counts it as a class, as scikit-learn does)",
                "top3": "over the items that have a ranking (top3_n); failed and unparsed items have none",
                "ties": TIE_RULE,
            },
            "versions": {"scikit-learn": dist_version("scikit-learn"), "emplifai": dist_version("emplifai")},
            **self.extra,
        }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate(items: Sequence[Scored], scorers: Scorers) -> dict[str, Any]:
    """Table-2 figures plus accuracy, macro-F1, top-3, per group, per emotion and the confusion matrix."""
    from sklearn.metrics import f1_score

    names = [lab.en for lab in taxonomy.LABELS]
    pairs = Counter((scorers.name(it.gold), it.text) for it in items if it.text)
    prf = scorers.bert.score_pairs((t, g) for g, t in pairs) if scorers.bert and pairs else {}
    cos = scorers.vectors.score_pairs((t, g) for g, t in pairs) if scorers.vectors and pairs else {}

    per_item: list[dict[str, Any]] = []
    for it in items:
        g = scorers.name(it.gold)
        row: dict[str, Any] = {"gold": it.gold, "predicted": it.predicted, "correct": it.predicted == it.gold,
                               "top3": None if it.top3 is None else it.gold in it.top3}
        if it.text:
            p = prf.get((it.text, g))
            c = cos.get((it.text, g))
            row.update(p=p.precision if p else None, r=p.recall if p else None, f=p.f1 if p else None,
                       cos=c.value if c else None, cos_how=c.how if c else None)
        else:
            b, v = (0.0 if scorers.bert else None), (0.0 if scorers.vectors else None)
            row.update(p=b, r=b, f=b, cos=v, cos_how="failed" if scorers.vectors else None)
        per_item.append(row)

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rows)
        top3 = [r["top3"] for r in rows if r["top3"] is not None]
        return {
            "n": n,
            "accuracy": sum(r["correct"] for r in rows) / n if n else None,
            # over the items that have a ranking (failed and unparsed items have none), with that n beside it
            "top3_accuracy": (sum(top3) / len(top3)) if top3 else None,
            "top3_n": len(top3),
            "fasttext_cosine": _mean([r["cos"] for r in rows if r.get("cos") is not None]) if scorers.vectors else None,
            "bertscore_precision": _mean([r["p"] for r in rows if r.get("p") is not None]) if scorers.bert else None,
            "bertscore_recall": _mean([r["r"] for r in rows if r.get("r") is not None]) if scorers.bert else None,
            "bertscore_f1": _mean([r["f"] for r in rows if r.get("f") is not None]) if scorers.bert else None,
        }

    gold = [it.gold for it in items]
    pred = [it.predicted or UNPARSED_COL for it in items]
    out = summary(per_item)
    # Macro over the labels that occur (gold or predicted), as scikit-learn does by default; on a full split
    # that is all 28. The unparsed column is not a class of its own, only a miss.
    present = [n for n in names if n in set(gold) | set(pred)]
    out["macro_f1"] = float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)) if items else None
    # scikit-learn's own default (labels = every value in gold or predicted, "(unparsed)" included as a class)
    out["macro_f1_sklearn_default"] = float(f1_score(gold, pred, average="macro", zero_division=0)) if items else None
    out["unparsed"] = sum(1 for it in items if it.predicted is None and it.status != "failed")
    out["failed"] = sum(1 for it in items if it.status == "failed")
    out["cosine_missing"] = sum(1 for r in per_item if r.get("cos") is None) if scorers.vectors else None
    out["cosine_fallbacks"] = dict(Counter(r["cos_how"] for r in per_item if r.get("cos_how")).most_common())
    out["distinct_pairs"] = len(pairs)

    by_group: dict[str, list[dict[str, Any]]] = {}
    for it, r in zip(items, per_item, strict=True):
        by_group.setdefault(str(taxonomy.BY_EN[it.gold].group), []).append(r)
    out["per_group"] = {}
    for grp, rows in by_group.items():
        s = summary(rows)
        group = taxonomy.BY_EN[rows[0]["gold"]].group
        s["group_accuracy"] = sum(1 for r in rows if r["predicted"] and taxonomy.BY_EN[r["predicted"]].group == group)
        s["group_accuracy"] /= len(rows)
        out["per_group"][grp] = s

    f1s = f1_score(gold, pred, labels=names, average=None, zero_division=0) if items else [0.0] * len(names)
    out["per_emotion"] = {}
    for lab, f1 in zip(names, f1s, strict=True):
        rows = [r for r in per_item if r["gold"] == lab]
        predicted_as = sum(1 for p in pred if p == lab)
        hits = sum(r["correct"] for r in rows)
        s = summary(rows)
        s.update(ja=taxonomy.BY_EN[lab].ja, precision=hits / predicted_as if predicted_as else None, f1=float(f1),
                 predicted_count=predicted_as)
        out["per_emotion"][lab] = s

    cols = [*names, UNPARSED_COL]
    idx = {c: i for i, c in enumerate(cols)}
    matrix = np.zeros((len(names), len(cols)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        matrix[idx[g], idx[p]] += 1
    out["confusion"] = {"rows": names, "cols": cols, "matrix": matrix.tolist()}
    out["signature"] = scorers.signature()
    return out
