"""Judge panels, the EPITOME rubric set, `--reparse` and the answer schema, with the fake backend (fast), on
SQLite and PostgreSQL. The real-model and real-server halves are in test_evaluate_constrained.py."""

from __future__ import annotations

import json
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from emplifai.cli import app
from emplifai.errors import UserError
from emplifai.evaluate import panel, rubrics
from emplifai.evaluate.judge import JudgeConfig, answer_params, judge
from emplifai.evaluate.reparse import reparse, split_attempts
from emplifai.evaluate.tables import md4, table4
from emplifai.llm import FakeLLM
from emplifai.prompts import judge as jp
from emplifai.store.evaluation import Generation, JudgeScore
from tests.evaluate.fixtures import answer, human_sample

PV = "judge-v1/ja/2shot"


def _judge(store, spec: str, answers: list[str], metrics: tuple[str, ...], **kw: object):
    FakeLLM.named(spec.split(":", 1)[1]).enqueue(answers)
    return judge(store, JudgeConfig(spec=spec, metrics=metrics, retries=0, shots=0, **kw))


# ------------------------------------------------------------------------------------------------ EPITOME
def test_rubric_sets_are_the_single_home_of_metric_names() -> None:
    assert rubrics.rubric_set("paper") == rubrics.METRICS and len(rubrics.METRICS) == 7
    assert rubrics.rubric_set("epitome") == ("emotional_reactions", "interpretations", "explorations")
    assert rubrics.rubric_set("all") == (*rubrics.METRICS, *rubrics.EPITOME)
    assert {rubrics.scale(m) for m in rubrics.EPITOME} == {(0, 2)}
    with pytest.raises(UserError, match="unknown rubric set 'sharma'"):
        rubrics.rubric_set("sharma")
    with pytest.raises(UserError, match="unknown metric 'empathy'"):
        rubrics.check_metrics(["empathy"])


@pytest.mark.parametrize("metric", rubrics.EPITOME)
def test_epitome_prompts_are_japanese_with_the_three_levels(metric: str) -> None:
    text = jp.rubric(metric, "ja")
    assert "0から2までの整数で採点" in text and '"score": 0から2の整数' in text
    for level in ("0：", "1：", "2："):
        assert level in text
    assert "1から5" not in text
    msgs = jp.messages(metric, emotion="Sadness", situation="入院した。", patient="つらいです。",
                       supporter="そうですか。", shots=2, examples=rubrics.BY_KEY[metric].examples)
    shown = [json.loads(m["content"])["score"] for m in msgs if m["role"] == "assistant"]
    assert all(0 <= s <= 2 for s in shown) and shown[1] == 0


def test_epitome_scale_is_enforced_and_malformed_gets_its_lowest(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 3)
    r = _judge(store, "fake:ep", [answer(2), answer(0), answer(3)], ("interpretations",))
    assert (r.scored, r.failed) == (2, 1)
    with store.transaction() as s:
        rows = s.scalars(select(JudgeScore).order_by(JudgeScore.id)).all()
    assert [x.score for x in rows] == [2, 0, None]
    assert rows[2].failure == "attempt 1: score 3 is outside the 0–2 scale"
    assert rows[0].signature["parser"] == jp.PARSER_VERSION
    t = table4(store, "fake:ep", metrics=rubrics.EPITOME)
    assert t["metrics"] == list(rubrics.EPITOME) and t["scales"]["interpretations"] == [0, 2]
    assert t["rows"]["human"]["metrics"]["interpretations"]["mean"] == 1.0
    assert "EPITOME" in md4(t) and "理解の伝達 (0–2)" in md4(t)


def test_answer_schema_follows_the_metric_scale() -> None:
    cfg = JudgeConfig(spec="fake:x")
    p = answer_params(cfg, "explorations", 0, 0)
    schema = json.loads(p.json_schema or "")
    assert schema["properties"]["score"]["enum"] == [0, 1, 2] and p.stop == ()
    assert json.loads(answer_params(cfg, "fluency", 0, 0).json_schema or "")["properties"]["score"]["enum"] == [
        1, 2, 3, 4, 5]
    plain = answer_params(cfg.model_copy(update={"constrained": False}), "fluency", 0, 0)
    assert plain.json_schema is None and plain.stop == ("}",)


# -------------------------------------------------------------------------------------------------- panel
def test_panel_table4_agreement_checked_against_krippendorff(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 6)
    a = [4, 3, 5, 2, 4, 1]
    b = [4, 2, 5, 3, 3, 1]
    _judge(store, "fake:a", [answer(x) for x in a], ("fluency",))
    _judge(store, "fake:b", [answer(x) for x in b], ("fluency",))
    t = panel.panel_table4(store, ["fake:a", "fake:b"], metrics=("fluency",))
    cell = t["rows"]["human"]["metrics"]["fluency"]
    assert cell["mean"] == pytest.approx((np.mean(a) + np.mean(b)) / 2, abs=1e-4) and cell["judges"] == 2
    with store.transaction() as s:
        order = [g for g in s.scalars(select(Generation.id).order_by(Generation.id))]
    assert len(order) == 6
    expected = krippendorff.alpha(reliability_data=np.array([a, b], dtype=float), level_of_measurement="ordinal",
                                  value_domain=[1, 2, 3, 4, 5])
    assert t["agreement"]["fluency"]["alpha_ordinal"] == pytest.approx(expected, abs=1e-4)
    assert t["agreement"]["fluency"]["note"] is None
    md = panel.md_panel(t)
    assert "mean of the judges' means" in md and "`fake:a`" in md and "`fake:b`" in md


def test_agreement_degenerate_inputs_give_a_reason_not_nan() -> None:
    assert panel.ordinal_alpha([[1, 2, 3]], (1, 5)) == (None, "fewer than two judges")
    assert panel.ordinal_alpha([[1, None], [None, 2]], (1, 5)) == (None, "no item was scored by two or more judges")
    alpha, why = panel.ordinal_alpha([[3, 3, 3], [3, 3, 3]], (1, 5))
    assert alpha is None and "same score" in (why or "")
    alpha, why = panel.ordinal_alpha([[0, 1, 2], [0, 1, 2]], (0, 2))
    assert alpha == 1.0 and why is None


def test_blind_rule_applies_to_each_judge_of_a_panel(store, tmp_path: Path) -> None:
    from tests.evaluate.fixtures import seeded_store

    seeded_store(store, 2, malformed=0)
    FakeLLM.named("other").enqueue([answer(4)] * 8)
    runner = CliRunner()
    url = store.engine.url.render_as_string(hide_password=False)
    r = runner.invoke(app, ["judge", "--judge", "fake:other", "--judge", "fake:gen", "--metric", "fluency",
                            "--retries", "0", "--shots", "0", "--db", url])
    assert r.exit_code != 0 and "'fake:gen'" in str(r.exception) and "own generations" in str(r.exception)
    assert "fake:other: 4 scored" in r.output
    # the first judge of the panel ran; the second was refused before calling anything
    with store.transaction() as s:
        judges = set(s.scalars(select(JudgeScore.judge)))
    assert judges == {"fake:other"}


# ------------------------------------------------------------------------------------------------ reparse
def test_split_attempts_undoes_the_join() -> None:
    assert split_attempts("one", 1) == ["one"]
    joined = "----- attempt 1 -----\nfirst\n----- attempt 2 -----\nsecond {x}\n"
    assert split_attempts(joined, 2) == ["first", "second {x}"]
    assert split_attempts(None, 1) == []


def test_reparse_rereads_stored_raw_answers_without_a_model(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 3)
    with store.transaction() as s:
        gids = list(s.scalars(select(Generation.id).order_by(Generation.id)))
        # stored by the old parser (judge-parse-v1, strict JSON): a raw newline inside the feedback was a failure
        newline = '{"feedback": "丁寧に\n受け止めている。", "score": 4}'
        s.add_all([
            JudgeScore(generation_id=gids[0], judge="fake:old", metric="fluency", score=None, raw=newline,
                       failure="attempt 1: no JSON object in the output", attempts=1, prompt_version=PV,
                       signature={"parser": "judge-parse-v1"}),
            JudgeScore(generation_id=gids[1], judge="fake:old", metric="fluency", score=None, attempts=2,
                       raw=f"----- attempt 1 -----\nだめ\n----- attempt 2 -----\n{newline}\n",
                       failure="attempt 1: no JSON object; attempt 2: no JSON object", prompt_version=PV),
            # a score the current parser refuses (out of the scale it was stored under)
            JudgeScore(generation_id=gids[2], judge="fake:old", metric="explorations", score=3,
                       raw=answer(3), attempts=1, prompt_version=PV),
        ])
    # dry run stores nothing
    r = reparse(store, "fake:old", dry_run=True)
    assert (r.rows, r.now_scored, r.now_failed) == (3, 2, 1)
    with store.transaction() as s:
        assert sorted(str(x) for x in s.scalars(select(JudgeScore.score))) == ["3", "None", "None"]
    # through the CLI: the spec names no loadable model, so any model call would fail the command
    url = store.engine.url.render_as_string(hide_password=False)
    out = CliRunner().invoke(app, ["judge", "--judge", "fake:old", "--reparse", "--db", url])
    assert out.exit_code == 0, out.output
    assert "2 failures now scored, 1 scores now failures" in " ".join(out.output.split())
    with store.transaction() as s:
        rows = s.scalars(select(JudgeScore).order_by(JudgeScore.id)).all()
    assert [x.score for x in rows] == [4, 4, None]
    assert rows[0].feedback == "丁寧に\n受け止めている。" and rows[0].failure is None
    assert rows[2].failure == "attempt 1: score 3 is outside the 0–2 scale"
    for x in rows:
        assert x.signature["parser"] == jp.PARSER_VERSION
        assert x.signature["reparsed"]["from_parser"] in ("judge-parse-v1",)
    assert rows[0].signature["reparsed"]["failure_before"].startswith("attempt 1")
    # a second reparse changes nothing
    again = reparse(store, "fake:old")
    assert again.unchanged == 3
