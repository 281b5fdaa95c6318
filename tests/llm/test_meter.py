"""What a run spent, counted at the LLM interface (issue 15 item 6): calls, re-asks, failures, tokens, time."""

from __future__ import annotations

from pathlib import Path

from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.llm import FakeLLM, GenParams, LLMError, registry
from emplifai.llm.meter import Ledger, MeteredLLM, metering
from emplifai.study.config import RunConfig
from emplifai.study.spend import stage_spend, totals
from tests.evaluate.fixtures import answer, human_sample


def test_load_model_is_metered_only_while_a_stage_meters() -> None:
    assert isinstance(registry.load_model("fake:plain"), FakeLLM)
    ledger = Ledger()
    with metering(ledger, "generate"):
        llm = registry.load_model("fake:m")
    assert isinstance(llm, MeteredLLM) and llm.spec == "fake:m" and llm.signature()["backend"] == "fake"
    FakeLLM.named("m").enqueue(["はい", "いいえ", LLMError("server down"), "もう一度"])
    conv = [{"role": "user", "content": "こんにちは"}]
    first = llm.chat(conv, GenParams())
    out = llm.batch_chat([conv, [{"role": "user", "content": "別の質問"}], conv], GenParams())
    u = ledger.stage("generate")["fake:m"]
    assert (u["calls"], u["failures"], u["retries"]) == (3, 1, 2)  # conv was sent three times: two re-asks
    # the fake reports len(str(input)) prompt and len(text) completion tokens: the ledger sums what came back
    assert u["completion_tokens"] == len("はい") + len("いいえ") + len("もう一度")
    assert u["prompt_tokens"] == first.prompt_tokens + sum(c.prompt_tokens for c in out if hasattr(c, "text"))
    assert u["usage_missing"] == 0 and u["seconds"] >= 0


def test_judge_retries_and_score_calls_are_counted_and_priced(store, tmp_path: Path) -> None:
    human_sample(store, tmp_path, 1)
    FakeLLM.named("judge").enqueue([answer(0), answer(3)])  # invalid, then valid: one re-ask
    ledger = Ledger()
    with metering(ledger, "judge"):
        r = judge(store, JudgeConfig(spec="fake:judge", metrics=("general_empathy",), shots=0))
    assert r.scored == 1 and r.attempts == 2
    cfg = RunConfig.model_validate({"prices": [{"model": "fake:judge", "prompt_per_million": 2.0,
                                                 "completion_per_million": 10.0, "currency": "JPY"}]})
    spent = stage_spend(cfg, ledger, "judge")["fake:judge"]
    assert (spent["calls"], spent["retries"], spent["failures"]) == (2, 1, 0)
    pt, ct = spent["prompt_tokens"], spent["completion_tokens"]
    # constrained answers (the default) carry no stop string: the fake returns each answer whole
    assert pt > 0 and ct == len(answer(0)) + len(answer(3))
    assert spent["cost"] == {"amount": round((pt * 2 + ct * 10) / 1e6, 6), "currency": "JPY"}
    with metering(ledger, "predict"):
        scorer = registry.load_model("fake:sc")
    FakeLLM.named("sc").enqueue([[-1.0, -2.0]])
    scorer.score("感情：", ["喜び", "悲しみ"])
    assert ledger.stage("predict")["fake:sc"]["usage_missing"] == 1  # score() reports no tokens: never hidden
    t = totals({"judge": {"spend": stage_spend(cfg, ledger, "judge")},
                "predict": {"spend": stage_spend(cfg, ledger, "predict")}})
    assert t["cost"] == {"JPY": spent["cost"]["amount"]} and t["models"]["fake:sc"]["calls"] == 1
