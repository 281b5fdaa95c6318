"""LLM-as-a-judge with the fake backend: every answer-parsing rule, retries, stored failures, malformed-by-rule,
the blind rule and resumption. Runs on SQLite and PostgreSQL (``store`` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai.errors import UserError
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.rubrics import METRICS
from emplifai.evaluate.tables import table4
from emplifai.llm import FakeLLM
from emplifai.prompts.judge import parse_judgement
from emplifai.store.evaluation import Generation, JudgeScore
from tests.evaluate.fixtures import GOOD, answer, count, fake_generations, human_sample


# ---------------------------------------------------------------------------------------------- parsing rules
@pytest.mark.parametrize(
    ("text", "score", "error"),
    [
        (answer(4), 4, None),
        (answer(0), None, "score 0 is outside the 1–5 scale"),
        (answer(6), None, "score 6 is outside the 1–5 scale"),
        (answer("4.5"), None, "score 4.5 is not a whole number on the 1–5 scale"),
        (answer(4.5), None, "score 4.5 is not a whole number on the 1–5 scale"),
        (answer("4"), 4, None),
        (answer(5.0), 5, None),
        ('{"feedback": "丁寧な返答。", "score": 「５」}', 5, None),
        ('｛＂feedback＂：＂丁寧。＂，＂score＂：３｝', 3, None),
        ('評価します。\n```json\n{"feedback": "良い", "score": 2}\n```\n以上です。', 2, None),
        ('{"feedback": "良い"}', None, "missing field 'score'"),
        ('{"score": 3}', None, "missing field 'feedback'"),
        ('{"feedback": "  ", "score": 3}', None, "field 'feedback' must be a non-empty string"),
        ('{"feedback": "a", "score": true}', None, "score true is not a number"),
        ('{"feedback": "a", "score": "とても良い"}', None, "score 'とても良い' is not a number"),
        ("スコアは5です。", None, "no JSON object in the output"),
        ("", None, "empty output"),
        ('{"feedback": "a", "score": 2} {"feedback": "b", "score": 4}', None,
         "2 JSON objects with different scores (ambiguous)"),
    ],
)
def test_parse_judgement_rules(text: str, score: int | None, error: str | None) -> None:
    j = parse_judgement(text)
    assert (j.score, j.error) == (score, error)
    assert j.ok is (error is None)


# ------------------------------------------------------------------------------------------------ judge runs
def _one_item(store, tmp: Path) -> int:
    human_sample(store, tmp, 1)
    with store.transaction() as s:
        return s.scalars(select(Generation.id)).one()


def _scores(store) -> list[JudgeScore]:
    with store.transaction() as s:
        rows = list(s.scalars(select(JudgeScore).order_by(JudgeScore.metric, JudgeScore.generation_id)))
        s.expunge_all()
        return rows


@pytest.mark.parametrize(
    ("first", "stored"),
    [
        (answer(0), 3),  # out of scale on attempt 1, valid retry
        (answer(6), 3),
        (answer("4.5"), 3),
        ('{"feedback": "良い"', 3),  # missing score (the brace is put back after the stop string)
        ("判断できません", 3),  # no JSON at all
    ],
)
def test_invalid_answer_is_retried_and_retry_is_stored(store, tmp_path: Path, first: str, stored: int) -> None:
    _one_item(store, tmp_path)
    llm = FakeLLM("judge").enqueue([first, answer(3)])
    cfg = JudgeConfig(spec="fake:judge", metrics=("general_empathy",), shots=0)
    r = judge(store, cfg, llm=llm)
    assert (r.scored, r.failed, r.attempts) == (1, 0, 2)
    [row] = _scores(store)
    assert row.score == stored and row.failure is None and row.attempts == 2
    assert first.split("}")[0] in row.raw  # both raw outputs are kept
    assert row.signature["earlier_failures"][0].startswith("attempt 1: ")
    # the retry samples (greedy would repeat the same invalid answer) with another seed
    t0, t1 = (c.params for c in llm.calls)
    assert (t0.temperature, t1.temperature) == (0.0, 0.7) and t0.seed != t1.seed


def test_text_around_json_and_fullwidth_score_accepted_first_time(store, tmp_path: Path) -> None:
    _one_item(store, tmp_path)
    llm = FakeLLM("judge").enqueue(['はい、評価します。{"feedback": "安心できる返答。", "score": 「５」} 以上。',
                                    '前置き {"score": 2, "feedback": "流暢さに欠ける。"} 後書き'])
    r = judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency", "security"), shots=0), llm=llm)
    assert (r.scored, r.failed, r.attempts) == (2, 0, 2)
    got = {row.metric: (row.score, row.feedback, row.attempts) for row in _scores(store)}
    assert got == {"fluency": (5, "安心できる返答。", 1), "security": (2, "流暢さに欠ける。", 1)}


def test_exhausted_retries_store_failure_with_raw_output_never_a_default(store, tmp_path: Path) -> None:
    gid = _one_item(store, tmp_path)
    llm = FakeLLM("judge").enqueue(["スコアは高いです", answer(6), answer("4.5")])
    r = judge(store, JudgeConfig(spec="fake:judge", metrics=("harmlessness",), shots=0, retries=2), llm=llm)
    assert (r.scored, r.failed, r.attempts) == (0, 1, 3)
    [row] = _scores(store)
    assert row.generation_id == gid and row.score is None and row.weighted is None and row.feedback is None
    assert row.attempts == 3
    assert "スコアは高いです" in row.raw and '"score": 6' in row.raw and '"score": "4.5"' in row.raw
    assert row.raw.count("----- attempt") == 3
    assert row.failure == ("attempt 1: no JSON object in the output; attempt 2: score 6 is outside the 1–5 scale; "
                           "attempt 3: score 4.5 is not a whole number on the 1–5 scale")
    # the failure is counted in table 4, not averaged in as a number
    t4 = table4_or_none(store)
    assert t4 is None  # no score at all → the report refuses rather than printing NaN
    # --retry-failed judges it again
    llm.enqueue([answer(4)])
    r2 = judge(store, JudgeConfig(spec="fake:judge", metrics=("harmlessness",), shots=0, retry_failed=True), llm=llm)
    assert (r2.scored, r2.failed) == (1, 0)
    assert [(x.score, x.failure) for x in _scores(store)] == [(4, None)]


def table4_or_none(store):
    try:
        return table4(store, "fake:judge")
    except UserError:
        return None


def test_backend_failure_is_retried_then_stored(store, tmp_path: Path) -> None:
    from emplifai.llm import LLMError

    _one_item(store, tmp_path)
    llm = FakeLLM("judge").enqueue([LLMError("context full", raw="ERR body"), LLMError("context full")])
    r = judge(store, JudgeConfig(spec="fake:judge", metrics=("fluency",), shots=0, retries=1), llm=llm)
    assert r.failed == 1
    [row] = _scores(store)
    assert row.score is None and "backend: context full" in row.failure and "ERR body" in row.raw


def test_malformed_generation_gets_lowest_score_by_rule_on_every_metric(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 3)
    fake_generations(store, "gen", [GOOD, "こんにちは。今日は良い天気ですね。", GOOD])
    llm = FakeLLM("judge").enqueue([answer(4)] * 4)
    cfg = JudgeConfig(spec="fake:judge", sources=("fake:gen",), metrics=("general_empathy", "fluency"), shots=0)
    r = judge(store, cfg, llm=llm)
    assert (r.scored, r.by_rule, r.failed) == (4, 2, 0)
    assert len(llm.calls) == 4  # the malformed one was never shown to the judge
    rule = [x for x in _scores(store) if x.rule == "malformed"]
    assert [(x.metric, x.score, x.attempts) for x in rule] == [("fluency", 1, 0), ("general_empathy", 1, 0)]
    t4 = table4(store, "fake:judge")
    row = t4["rows"]["fake:gen"]
    assert row["malformed"] == 1 and row["n"] == 3
    assert row["metrics"]["fluency"]["mean"] == pytest.approx(3.0)  # (4 + 1 + 4) / 3
    assert row["metrics"]["fluency"]["mean_wellformed"] == pytest.approx(4.0)
    # all 7 metrics: the rule scores every one
    judge(store, JudgeConfig(spec="fake:judge2", sources=("fake:gen",), shots=0),
          llm=FakeLLM("judge2").enqueue([answer(5)] * 14))
    with store.transaction() as s:
        ruled = s.scalars(select(JudgeScore.metric).where(JudgeScore.judge == "fake:judge2",
                                                          JudgeScore.rule == "malformed")).all()
    assert sorted(ruled) == sorted(METRICS)


def test_blind_rule_refuses_self_judging_unless_allowed(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 2)
    fake_generations(store, "gen", [GOOD, GOOD])
    cfg = JudgeConfig(spec="fake:gen", metrics=("fluency",), shots=0)
    with pytest.raises(UserError, match="may not score its own generations"):
        judge(store, cfg, llm=FakeLLM("gen"))
    # same weights under another spec (identity from the LLM signature) is refused too
    with pytest.raises(UserError, match="fake:gen"):
        judge(store, JudgeConfig(spec="alias", metrics=("fluency",), shots=0), llm=FakeLLM("gen"))
    assert count(store, JudgeScore) == 0
    # human-only or explicitly allowed: fine
    r = judge(store, JudgeConfig(spec="fake:gen", sources=("human",), metrics=("fluency",), shots=0),
              llm=FakeLLM("gen").enqueue([answer(4)] * 2))
    assert r.scored == 2
    r = judge(store, JudgeConfig(spec="fake:gen", metrics=("fluency",), shots=0, allow_self=True),
              llm=FakeLLM("gen").enqueue([answer(5)] * 2))
    assert (r.scored, r.skipped) == (2, 2)


def test_rerun_resumes_and_repeats_are_stored(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 2)
    llm = FakeLLM("judge").enqueue([answer(s) for s in (4, 5, 3, 5)])
    cfg = JudgeConfig(spec="fake:judge", metrics=("fluency",), shots=0, repeats=2, temperature=0.8)
    assert judge(store, cfg, llm=llm).scored == 4
    r = judge(store, cfg, llm=llm)
    assert (r.scored, r.skipped, r.attempts) == (0, 4, 0)
    from emplifai.evaluate.judge import item_scores, spread

    sc = item_scores(store, "fake:judge", "default")
    assert sorted(sorted(v) for v in sc.values()) == [[3, 4], [5, 5]]
    sp = spread(sc)["fluency"]
    assert sp["items"] == 2 and sp["max_range"] == 1 and sp["share_disagreeing"] == 0.5


def test_load_llm_maps_bad_spec_to_user_error() -> None:
    from emplifai.llm import registry

    with pytest.raises(UserError, match="cannot load model 'nonsense:x'"):
        registry.load_model("nonsense:x")
    assert isinstance(registry.load_model("fake:x"), FakeLLM)
