"""Label metrics on hand-made predictions, the once-per-pair rule, and the word-vector fallbacks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import f1_score

from emplifai import taxonomy
from emplifai.metrics import PRF, PairCosine, Scored, Scorers, VectorScorer, evaluate

NAMES = [lab.en for lab in taxonomy.LABELS]


class CountingBert:
    """P = 1 for identical strings, else 0.5; records each call's pairs."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def score_pairs(self, pairs: Any) -> dict[tuple[str, str], PRF]:
        got = list(pairs)
        self.calls.append(got)
        return {(c, r): PRF(1.0, 1.0, 1.0) if c == r else PRF(0.5, 0.4, 0.45) for c, r in got}

    def signature(self) -> dict[str, Any]:
        return {"metric": "fake-bert"}

    def hash(self) -> str:
        return "fake"


class CountingVectors:
    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def score_pairs(self, pairs: Any) -> dict[tuple[str, str], PairCosine]:
        got = list(pairs)
        self.calls.append(got)
        return {(c, r): PairCosine(1.0 if c == r else 0.2, "word/word") for c, r in got}

    def signature(self) -> dict[str, Any]:
        return {"metric": "fake-vectors"}


GOLD = ["Joy", "Joy", "Joy", "Anger", "Anger", "Fear", "Fear", "Sadness"]
PRED = ["Joy", "Joy", "Anger", "Anger", None, "Fear", "Joy", "Sadness"]
TOP3 = [("Joy",), ("Joy",), ("Anger", "Joy"), ("Anger",), None, ("Fear",), ("Joy", "Love"), ("Sadness",)]


def _items() -> list[Scored]:
    out = []
    for i, (g, p, t3) in enumerate(zip(GOLD, PRED, TOP3, strict=True)):
        text = taxonomy.BY_EN[p].ja if p else "わからない"
        out.append(Scored(f"d{i}", g, p, text, t3 or ("Neutral",), "ok" if p else "unparsed"))
    return out


def test_label_metrics_match_hand_counts_and_sklearn() -> None:
    bert, vec = CountingBert(), CountingVectors()
    m = evaluate(_items(), Scorers(bert, vec, lang="ja"))  # type: ignore[arg-type]
    assert m["n"] == 8 and m["unparsed"] == 1 and m["failed"] == 0
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["top3_accuracy"] == pytest.approx(6 / 8)  # item 2 has Joy in its top 3; the unparsed one not
    pred = [p or "(unparsed)" for p in PRED]
    present = [n for n in NAMES if n in set(GOLD) | set(pred)]
    assert m["macro_f1"] == pytest.approx(f1_score(GOLD, pred, labels=present, average="macro", zero_division=0))
    assert m["per_emotion"]["Joy"]["f1"] == pytest.approx(f1_score(GOLD, pred, labels=["Joy"], average="macro"))
    assert m["per_emotion"]["Joy"]["accuracy"] == pytest.approx(2 / 3)
    assert m["per_emotion"]["Joy"]["predicted_count"] == 3 and m["per_emotion"]["Love"]["n"] == 0
    # similarity: 5 exact (1.0), 3 different (0.45 F1 / 0.2 cosine), unparsed text compared too
    assert m["bertscore_f1"] == pytest.approx((5 * 1.0 + 3 * 0.45) / 8)
    assert m["bertscore_precision"] == pytest.approx((5 + 3 * 0.5) / 8)
    assert m["fasttext_cosine"] == pytest.approx((5 + 3 * 0.2) / 8)

    conf = m["confusion"]
    mat = np.array(conf["matrix"])
    assert mat.shape == (28, 29) and mat.sum() == 8 and conf["cols"][-1] == "(unparsed)"
    r, c = conf["rows"].index, conf["cols"].index
    assert mat[r("Joy"), c("Joy")] == 2 and mat[r("Joy"), c("Anger")] == 1
    assert mat[r("Anger"), c("(unparsed)")] == 1 and mat[r("Fear"), c("Joy")] == 1
    assert np.trace(mat[:, :28]) == 5

    groups = {lab.en: str(lab.group) for lab in taxonomy.LABELS}
    joy_group = m["per_group"][groups["Joy"]]
    assert joy_group["n"] == sum(1 for g in GOLD if groups[g] == groups["Joy"])


def test_each_distinct_pair_is_scored_once() -> None:
    bert, vec = CountingBert(), CountingVectors()
    items = _items() * 50  # 400 predictions, still 7 distinct (prediction, gold) texts
    m = evaluate(items, Scorers(bert, vec, lang="ja"))  # type: ignore[arg-type]
    assert len(bert.calls) == 1 and len(vec.calls) == 1
    assert len(bert.calls[0]) == len(set(bert.calls[0])) == m["distinct_pairs"] == 7
    assert ("わからない", "怒り") in bert.calls[0]  # (candidate, reference) order
    assert m["accuracy"] == pytest.approx(5 / 8) and m["n"] == 400


def test_failed_items_score_zero_and_count_as_wrong() -> None:
    items = [Scored("a", "Joy", "Joy", "喜び", ("Joy",)), Scored("b", "Joy", None, None, None, "failed")]
    m = evaluate(items, Scorers(CountingBert(), CountingVectors(), lang="ja"))  # type: ignore[arg-type]
    # unparsed and failed are kept apart (a failed item used to count as unparsed too)
    assert m["failed"] == 1 and m["unparsed"] == 0 and m["accuracy"] == 0.5
    assert m["bertscore_f1"] == pytest.approx(0.5) and m["fasttext_cosine"] == pytest.approx(0.5)
    # one failed item no longer hides top-3: it is reported over the items that have a ranking, with their n
    assert m["top3_accuracy"] == 1.0 and m["top3_n"] == 1


def test_ties_follow_the_recorded_rule_and_a_full_tie_is_undecided() -> None:
    from emplifai.llm.fake import FakeLLM
    from emplifai.predict.prompt import score_item

    flat = score_item(FakeLLM("t").enqueue([[-1.0] * 28]), "x")
    assert flat.status == "unparsed" and flat.predicted is None and "undecided" in flat.reason
    two = score_item(FakeLLM("t2").enqueue([[0.0 if i in (3, 1) else -5.0 for i in range(28)]]), "x")
    assert two.predicted == NAMES[1] and two.top3[:2] == [NAMES[1], NAMES[3]]  # tie kept in Table-1 order
    m = evaluate(_items(), Scorers(CountingBert(), CountingVectors(), lang="ja"))  # type: ignore[arg-type]
    assert "Table-1 order" in m["signature"]["policy"]["ties"] and "top3_n" in m["signature"]["policy"]["top3"]
    pred = [p or "(unparsed)" for p in PRED]
    assert m["macro_f1_sklearn_default"] == pytest.approx(f1_score(GOLD, pred, average="macro", zero_division=0))


@pytest.fixture(scope="module")
def chive() -> VectorScorer:
    return VectorScorer("chive", disk_cache=False)


def test_labels_without_their_own_vector_are_detected(chive: VectorScorer) -> None:
    for word in ("思いやり", "恥ずかしさ"):
        wv = chive.impl.lookup(word)
        assert wv.how != "word"  # pruned away: composed from its normalised form / parts
        c = chive.cosine(word, "喜び")
        assert c.value is None or c.value < 0.99
        assert not c.how.startswith("word/")


def test_words_sharing_a_pruned_row_never_get_a_silent_one(chive: VectorScorer) -> None:
    a, b = chive.impl.lookup("承認"), chive.impl.lookup("不承認")
    assert a.row is not None and a.row == b.row  # the pruned table maps both to one row
    c = chive.cosine("承認", "不承認")
    assert "shared row" in c.how
    assert c.value is None or c.value < 0.99
    assert chive.cosine("承認", "承認") == PairCosine(1.0, "identical")
    ja = [lab.ja for lab in taxonomy.LABELS]
    scores = chive.score_pairs((x, y) for x in ja for y in ja if x != y)
    assert all(v.value is None or v.value < 0.999 for v in scores.values())
