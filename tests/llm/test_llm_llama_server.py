"""Every LLM stage against a real batching server: llama.cpp's own llama-server (continuous batching, 8 slots)
running the embedded Gemma 3 270M, built by scripts/llama-server.sh and started by the ``llama_server_url``
fixture. llama-server ignores ``echo``, so score mode goes through its native teacher-forcing path."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

pytest.importorskip("httpx")

from emplifai.cli import app
from emplifai.evaluate.generate import generate
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.rubrics import METRICS
from emplifai.llm import Completion, GenParams, load
from emplifai.llm.openai_compat import OpenAICompatLLM
from emplifai.predict.prompt import build_prompt, candidates
from emplifai.predict.runs import PredictConfig, predict_split
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore
from emplifai.store.predict import Prediction
from emplifai.store.synth import State, SynthCandidate
from tests.evaluate.fixtures import human_sample
from tests.helpers import record
from tests.predict.fixtures import seed_store

pytestmark = pytest.mark.slow


@pytest.fixture
def server(llama_server_url: str) -> Iterator[OpenAICompatLLM]:
    llm = load(f"openai:gemma@{llama_server_url}", max_retries=1)
    assert isinstance(llm, OpenAICompatLLM) and llm.default_concurrency == 8
    yield llm
    llm.close()


def test_chat_completion_and_a_concurrent_batch(server: OpenAICompatLLM) -> None:
    c = server.chat([{"role": "user", "content": "こんにちは"}], GenParams(max_tokens=4))
    assert isinstance(c, Completion) and c.prompt_tokens and c.completion_tokens
    d = server.complete("日本の首都は", GenParams(max_tokens=4, logprobs=2))
    assert d.text and d.completion_tokens == 4
    convs = [[{"role": "user", "content": "あ" * (1 + 3 * i)}] for i in range(10)]
    out = server.batch_chat(convs, GenParams(max_tokens=3), concurrency=8)
    # (llama-server's usage counts only the prompt tokens it had to evaluate, not those from its prompt cache)
    assert all(isinstance(r, Completion) and r.completion_tokens == 3 for r in out)


@pytest.mark.xfail(strict=False, reason=(
    "open: on 3 items of ~640 tokens the server's teacher-forced scores differ from the in-process scorer by up "
    "to ~1.3 nats and agree on top-1 for 1 of 3 (flash attention off: same); the server alone differs by up to "
    "0.37 nats between concurrency 1 and 8, so batch shape explains part of it, not yet all of it"))
def test_score_on_llama_server_ranks_like_the_in_process_scorer(server: OpenAICompatLLM) -> None:
    """llama-server cannot echo; its teacher-forced scores should rank the 28 labels as llama.cpp in process
    does. The numbers are not bit-identical: the server batches the prompt differently (its own ubatch split
    and prompt cache), and llama.cpp's CPU kernels round differently per batch shape (ggml-org/llama.cpp#4479).
    The protocol itself (which tokens, which prefixes, the definition of the score) is checked exactly in
    test_llm_openai.py::test_server_without_echo_scores_by_teacher_forcing."""
    server.check_score()
    rows = [record(i, sit=i * 7) for i in range(3)]
    prompts = [build_prompt(r["situation"], r["patient"], r["supporter"]) for r in rows]
    remote = server.batch_score([(p, candidates()) for p in prompts], concurrency=8)
    local_llm = load("embedded", n_ctx=2048)
    try:
        local = [local_llm.score(p, candidates()) for p in prompts]
    finally:
        local_llm.close()
    for r, lo in zip(remote, local, strict=True):
        assert isinstance(r, list) and len(r) == 28 and all(math.isfinite(x) and x < 0 for x in r)
        assert max(abs(a - b) for a, b in zip(r, lo, strict=True)) < 0.25
        order_r = sorted(range(28), key=lambda i: -r[i])
        order_l = sorted(range(28), key=lambda i: -lo[i])
        assert order_r[:3] == order_l[:3]
        assert _spearman(r, lo) > 0.98


def _spearman(a: list[float], b: list[float]) -> float:
    ra = {i: k for k, i in enumerate(sorted(range(len(a)), key=lambda i: a[i]))}
    rb = {i: k for k, i in enumerate(sorted(range(len(b)), key=lambda i: b[i]))}
    n = len(a)
    return 1 - 6 * sum((ra[i] - rb[i]) ** 2 for i in range(n)) / (n * (n * n - 1))


@pytest.mark.parametrize(("mode", "chat"), [("score", False), ("generate", False), ("generate", True)])
def test_predict_on_llama_server(server: OpenAICompatLLM, sqlite_url: str, tmp_path: Path, mode: str,
                                 chat: bool) -> None:
    store = Store(sqlite_url)
    seed_store(store, tmp_path)
    cfg = PredictConfig(mode=mode, chat=chat, max_tokens=8)  # type: ignore[arg-type]
    summary = predict_split(store, server, server.spec, cfg, limit=6)
    assert summary.done == 6 and "failed" not in summary.counts, summary.counts
    with store.transaction() as s:
        rows = s.scalars(select(Prediction).where(Prediction.run_id == summary.run_id)).all()
        assert len(rows) == 6
        for row in rows:
            if mode == "score":
                assert row.status == "ok" and len(row.top3) == 3 and len(row.distribution["loglik"]) == 28
                assert math.isclose(sum(row.distribution["prob"].values()), 1.0, rel_tol=1e-9)
            else:  # free text from a 270M model: a label or kept as unparsed with its raw text
                assert row.status in ("ok", "unparsed") and row.raw_output is not None
    store.dispose()


def test_generate_and_judge_on_llama_server(server: OpenAICompatLLM, sqlite_url: str, tmp_path: Path,
                                            llama_server_url: str) -> None:
    store = Store(sqlite_url)
    human_sample(store, tmp_path, 4)
    r = generate(store, spec=server.spec, max_tokens=48, llm=server)  # concurrency: the backend's 8
    assert r.added == 4 and not r.backend_failures
    judge_llm = load(f"openai:judge@{llama_server_url}", max_retries=1)  # another name: not its own outputs
    cfg = JudgeConfig(spec=judge_llm.spec, metrics=METRICS[:2], weighted=True, retries=1, max_tokens=64)
    rep = judge(store, cfg, llm=judge_llm)
    judge_llm.close()
    assert rep.scored + rep.failed + rep.by_rule == 2 * 8  # 2 metrics x (4 human + 4 generated)
    with store.transaction() as s:
        scores = s.scalars(select(JudgeScore)).all()
        assert len(scores) == 16 and len(s.scalars(select(Generation)).all()) == 8
        for js in scores:  # a score with its G-Eval expectation, or a failure with the raw answers and why
            assert (js.score is not None and js.failure is None) or (js.failure and js.raw is not None)
            assert "backend" not in (js.failure or "")
            if js.score is not None and js.rule is None:
                assert js.weighted is not None and 1.0 <= js.weighted <= 5.0
    store.dispose()


def test_synth_on_llama_server(sqlite_url: str, tmp_path: Path, llama_server_url: str) -> None:
    from emplifai.dataset.ingest import bundled_corpus_path, import_file

    rows = [json.loads(x) for x in bundled_corpus_path().read_text("utf-8").splitlines()]
    src = tmp_path / "sadness.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["emotion"] == "Sadness"),
                   "utf-8")
    store = Store(sqlite_url)
    import_file(store, src)
    spec = f"openai:gemma@{llama_server_url}"
    r = CliRunner().invoke(app, ["synth", "--model", spec, "-e", "Sadness", "--target", "31", "--rounds", "2",
                                 "--prompt-style", "completion", "--json", "--db", sqlite_url])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["calls"] >= 2
    with store.open_session() as s:
        cands = s.scalars(select(SynthCandidate)).all()
        assert cands and all(c.state in State.terminal() for c in cands)
        assert not [c.reason for c in cands if c.state == State.FAILED]  # no call failed at the server
    store.dispose()
