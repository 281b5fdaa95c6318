"""Judge parsing rules, retries, failures, the malformed rule, blindness, repeats and G-Eval, with the fake LLM."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from emplifai.errors import UserError
from emplifai.evaluate import rubrics
from emplifai.evaluate.judge import JudgeConfig, item_scores, judge, spread
from emplifai.evaluate.rubrics import METRICS
from emplifai.llm.base import Completion
from emplifai.llm.fake import FakeLLM
from emplifai.prompts import judge as jp
from emplifai.store.evaluation import Generation, JudgeScore
from tests.evaluate.fixtures import judge_answer, seeded_store


@pytest.mark.parametrize(
    ("text", "score", "error"),
    [
        ('{"feedback": "良い", "score": 4}', 4, None),
        ('{"feedback": "良い", "score": 4.0}', 4, None),
        ('{"feedback": "良い", "score": "4"}', 4, None),
        ('{"feedback": "良い", "score": "５"}', 5, None),
        ('{"feedback": "良い", "score": 「５」}', 5, None),
        ('｛＂feedback＂：＂良い＂，＂score＂：３｝', 3, None),
        ('採点します。\n```json\n{"feedback": "良い", "score": 2}\n```\n以上です。', 2, None),
        ('{"Feedback": "良い", "SCORE": 1}', 1, None),
        ('{"feedback": "x", "score": 0}', None, "outside the 1–5 scale"),
        ('{"feedback": "x", "score": 6}', None, "outside the 1–5 scale"),
        ('{"feedback": "x", "score": 4.5}', None, "not a whole number"),
        ('{"feedback": "x", "score": "4.5"}', None, "not a whole number"),
        ('{"feedback": "x", "score": true}', None, "not a number"),
        ('{"feedback": "x", "score": "five"}', None, "not a number"),
        ('{"feedback": "x", "score": null}', None, "not a number"),
        ('{"feedback": "x"}', None, "missing field 'score'"),
        ('{"score": 3}', None, "missing field 'feedback'"),
        ('{"feedback": "", "score": 3}', None, "non-empty string"),
        ('{"feedback": "a", "score": 3} {"feedback": "b", "score": 5}', None, "ambiguous"),
        ("スコア：4", None, "no JSON object"),
        ("", None, "empty output"),
        ('{"feedback": "x", "score": 4', None, "no JSON object"),
    ],
)
def test_parse_judgement_rules(text: str, score: int | None, error: str | None) -> None:
    j = jp.parse_judgement(text)
    assert j.score == score
    if error is None:
        assert j.ok and j.feedback
    else:
        assert j.error is not None and error in j.error


def test_two_objects_with_the_same_score_are_accepted() -> None:
    assert jp.parse_judgement('{"feedback": "a", "score": 3}\n{"feedback": "a", "score": 3}').score == 3


def test_every_metric_has_a_rubric_with_five_levels_in_both_languages() -> None:
    for m in METRICS:
        ja, en = jp.rubric(m, "ja"), jp.rubric(m, "en")
        assert all(f"{i}：" in ja for i in range(1, 6)) and all(f"{i}: " in en for i in range(1, 6))
        assert rubrics.label(m) in ja and '"score"' in ja and '"score"' in en


def test_layouts_put_the_turns_differently() -> None:
    std = jp.layout_dialogue("P", "S", "standard")
    rev = jp.layout_dialogue("P", "S", "reversed")
    assert std == "患者：P\n支援者：S" and rev.index("S") < rev.index("P")
    with pytest.raises(ValueError):
        jp.layout_dialogue("P", "S", "diagonal")


def test_weighted_score_from_top_logprobs() -> None:
    lps = [{"token": t, "logprob": 0.0, "top": {}} for t in ['{"', "feedback", '":', ' "', "よい", '",', ' "', "score",
                                                              '":', " "]]
    lps.append({"token": "4", "logprob": math.log(0.6), "top": {"4": math.log(0.6), "5": math.log(0.3),
                                                                  "3": math.log(0.1), "x": math.log(0.5)}})
    assert jp.weighted_score(lps) == pytest.approx(0.6 * 4 + 0.3 * 5 + 0.1 * 3)
    assert jp.weighted_score(None) is None
    assert jp.weighted_score([{"token": "4", "logprob": 0.0, "top": {}}]) is None  # no "score": before it


def test_judge_retries_stores_failures_and_scores_malformed_by_rule(sqlite_url: str) -> None:
    from emplifai.store.db import Store

    store = seeded_store(Store(sqlite_url), n=3, malformed=1)
    j = FakeLLM.named("judge")
    # 5 well-formed items (3 human + 2 fake): item 2 is fixed on the retry, item 4 never answers validly.
    j.enqueue([judge_answer(5), judge_answer(6), judge_answer(4), judge_answer("4.5"), judge_answer(5)])
    j.enqueue([judge_answer(3), '{"feedback": "x"}'])
    j.enqueue(["no json at all"])
    r = judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), retries=2))
    assert (r.scored, r.failed, r.by_rule) == (4, 1, 1)
    with store.transaction() as s:
        rows = s.scalars(select(JudgeScore).order_by(JudgeScore.id)).all()
        rule = [x for x in rows if x.rule == "malformed"]
        assert len(rule) == 1 and rule[0].score == 1 and rule[0].attempts == 0
        failed = [x for x in rows if x.failure is not None]
        assert len(failed) == 1 and failed[0].score is None and failed[0].attempts == 3
        assert "attempt 1: score 4.5 is not a whole number" in failed[0].failure
        assert "attempt 3: no JSON object" in failed[0].failure and "no json at all" in failed[0].raw
        retried = [x for x in rows if x.attempts == 2]
        assert [x.score for x in retried] == [3]
        assert retried[0].signature["params"]["temperature"] == 0.7  # the retry is not greedy again
        assert retried[0].signature["earlier_failures"] == ["attempt 1: score 6 is outside the 1–5 scale"]
        assert all(x.signature["judge"] == "fake:judge" and x.prompt_version == "judge-v1/ja/2shot" for x in rows)
    # resumable: nothing left to do; --retry-failed redoes only the failure
    assert judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",))).skipped == 6
    j.enqueue([judge_answer(2)])
    r2 = judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), retry_failed=True))
    assert (r2.scored, r2.skipped) == (1, 5)
    store.dispose()


def test_judge_is_blind_unless_allowed(sqlite_url: str) -> None:
    from emplifai.store.db import Store

    store = seeded_store(Store(sqlite_url), n=2, model="fake:same", malformed=0)
    with pytest.raises(UserError, match="may not score its own generations"):
        judge(store, JudgeConfig(spec="fake:same", metrics=("fluency",)))
    FakeLLM.named("same").enqueue([judge_answer(4)] * 2)
    r = judge(store, JudgeConfig(spec="fake:same", metrics=("fluency",), sources=("human",)))
    assert r.scored == 2  # human dialogues are fine
    FakeLLM.named("same").enqueue([judge_answer(4)] * 2)
    assert judge(store, JudgeConfig(spec="fake:same", metrics=("fluency",), allow_self=True)).scored == 2
    store.dispose()


def test_repeats_spread_and_weighted_scores(sqlite_url: str) -> None:
    from emplifai.store.db import Store

    store = seeded_store(Store(sqlite_url), n=2, model=None)
    j = FakeLLM.named("judge")
    top = {"3": math.log(0.5), "4": math.log(0.5)}
    lps = [{"token": '"score": ', "logprob": 0.0, "top": {}}, {"token": "4", "logprob": math.log(0.5), "top": top}]
    j.enqueue([Completion(judge_answer(4), "stop", token_logprobs=lps)] * 2)  # repeat 0, both items
    j.enqueue([judge_answer(2), judge_answer(4)])  # repeat 1
    r = judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), repeats=2, weighted=True, temperature=0.8))
    assert r.scored == 4
    with store.transaction() as s:
        weighted = s.scalars(select(JudgeScore.weighted).where(JudgeScore.repeat == 0)).all()
    assert weighted == [pytest.approx(3.5)] * 2
    sp = spread(item_scores(store, "fake:judge", "default"))
    assert sp["fluency"]["items"] == 2 and sp["fluency"]["max_range"] == 2.0
    assert sp["fluency"]["share_disagreeing"] == 0.5
    calls = j.calls
    assert {c.params.seed for c in calls} == {42, 43} and all(c.params.logprobs == 5 for c in calls)
    store.dispose()


def test_prompt_version_change_needs_replace(sqlite_url: str) -> None:
    from emplifai.store.db import Store

    store = seeded_store(Store(sqlite_url), n=1, model=None)
    FakeLLM.named("judge").enqueue([judge_answer(3)])
    judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",)))
    with pytest.raises(UserError, match="prompt version"):
        judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), shots=0))
    FakeLLM.named("judge").enqueue([judge_answer(5)])
    assert judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), shots=0, replace=True)).scored == 1
    with store.transaction() as s:
        assert s.scalars(select(JudgeScore.score)).all() == [5]
        assert s.scalar(select(Generation.source)) == "human"
    store.dispose()


def test_table4_counts_failures_per_item_and_flags_rule_only_means(sqlite_url: str) -> None:
    """Regression: "1.00 (34 fail)" for n = 30 counted repeats and showed a mean of rule scores alone."""
    from emplifai.evaluate.tables import md4, table4
    from emplifai.store.db import Store

    store = seeded_store(Store(sqlite_url), n=3, malformed=1)
    j = FakeLLM.named("judge")
    # repeats=2: the three human items and the two well-formed fake items fail every attempt; the malformed fake
    # item gets the rule score, so the fake source's mean rests on the rule alone.
    j.enqueue(["no json"] * 5 * 2 * 3)
    judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), retries=2, repeats=2))
    t = table4(store, "fake:judge")
    by_src = {src: e["metrics"]["fluency"] for src, e in t["rows"].items()}
    fake = next(v for k, v in by_src.items() if k != "human")
    assert fake["failures"] == 2 and fake["failed_attempts"] == 4  # two items, two failed repeats each
    assert (fake["scored"], fake["judged"], fake["rule_scored"], fake["mean"]) == (1, 0, 1, 1.0)
    assert by_src["human"]["failures"] == 3 and by_src["human"]["mean"] is None
    md = md4(t)
    assert "1.00 (n=1, rule scores only, 2 failed)" in md and "– (3 failed)" in md
    store.dispose()
