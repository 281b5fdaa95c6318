"""The LLM interface without a real model: params, spec parsing, the fake, the disk cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from emplifai.llm import (
    SPEC_FORMS,
    BadSpecError,
    CachedLLM,
    Completion,
    FakeLLM,
    GenParams,
    LLMError,
    LLMFailure,
    Message,
    load,
    parse_spec,
)
from emplifai.llm.registry import Spec

CHAT = [{"role": "system", "content": "あなたは看護師です。"}, {"role": "user", "content": "眠れません。"}]


# ------------------------------------------------------------------------------------------ data types
def test_genparams_defaults_frozen_and_strict() -> None:
    p = GenParams()
    assert (p.max_tokens, p.temperature, p.top_p, p.seed, p.stop, p.logprobs) == (256, 0.0, 1.0, 42, (), None)
    with pytest.raises(ValidationError):
        GenParams(max_tokns=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GenParams(temperature=-1)
    with pytest.raises(ValidationError):
        p.seed = 1  # type: ignore[misc]
    assert hash(GenParams(stop=("a",))) == hash(GenParams(stop=("a",)))


def test_message_roles_are_checked() -> None:
    assert Message(role="user", content="x").role == "user"
    with pytest.raises(ValidationError):
        Message(role="tool", content="x")  # type: ignore[arg-type]
    llm = FakeLLM().enqueue(["x"])
    with pytest.raises(LLMError, match="invalid conversation"):
        llm.chat([{"role": "tool", "content": "x"}])
    out = llm.batch_chat([[{"role": "user"}], []])
    assert all(isinstance(r, LLMFailure) and r.reason.startswith("invalid conversation") for r in out)


def test_completion_round_trips_through_dict() -> None:
    c = Completion("a", "stop", [{"token": "a", "logprob": -0.1, "top": {"a": -0.1}}], 3, 1)
    assert Completion.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# ------------------------------------------------------------------------------------------------ specs
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("embedded", Spec("embedded")),
        ("embedded+lora:/a/ad.gguf", Spec("embedded", adapter="/a/ad.gguf")),
        ("gguf:/m/x.gguf", Spec("gguf", target="/m/x.gguf")),
        ("gguf:rel/x.gguf+lora:ad.gguf", Spec("gguf", target="rel/x.gguf", adapter="ad.gguf")),
        ("openai:qwen2.5-7b@http://127.0.0.1:8000", Spec("openai", target="qwen2.5-7b", url="http://127.0.0.1:8000")),
        (
            "openai:org/model:tag@https://api.example.com/v1",
            Spec("openai", "org/model:tag", url="https://api.example.com/v1"),
        ),
        ("hf:/models/gemma", Spec("hf", target="/models/gemma")),
        ("fake:judge", Spec("fake", target="judge")),
    ],
)
def test_parse_spec(spec: str, expected: Spec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "gemma", "embeddedx", "embedded+lora:", "gguf:", "gguf:/m.gguf+lora:", "openai:model",
             "openai:model@ftp://x", "hf:", "fake:", "llama:/x"],
)  # fmt: skip
def test_bad_spec_lists_valid_forms(spec: str) -> None:
    with pytest.raises(BadSpecError) as info:
        load(spec)
    for form in SPEC_FORMS:
        assert form in str(info.value)
    assert isinstance(info.value, ValueError)  # callers may treat it as a plain bad argument


def test_missing_gguf_is_backend_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from emplifai.llm import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="not found"):
        load(f"gguf:{tmp_path / 'nope.gguf'}")


def test_import_has_no_heavy_side_effects() -> None:
    code = (
        "import sys, emplifai.llm as m; m.load('fake:x'); m.parse_spec('embedded');"
        "print(sorted(k for k in ('llama_cpp', 'transformers', 'torch', 'httpx') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------- fake
def test_fake_is_scripted_and_shared_by_name() -> None:
    llm = load("fake:judge")
    assert load("fake:judge") is llm and llm.spec == "fake:judge"
    llm.enqueue(["5", Completion("x", "length"), [-1.0, -2.5], LLMError("boom")])
    assert llm.chat(CHAT).text == "5"
    assert llm.complete("p").finish_reason == "length"
    assert llm.score("p", ["a", "b"]) == [-1.0, -2.5]
    with pytest.raises(LLMError, match="boom"):
        llm.chat(CHAT)
    with pytest.raises(LLMError, match="no queued response"):
        llm.chat(CHAT)
    assert [c.method for c in llm.calls] == ["chat", "complete", "score", "chat", "chat"]
    assert llm.calls[0].input[0] == Message(role="system", content="あなたは看護師です。")


def test_fake_applies_stop_and_max_tokens() -> None:
    llm = FakeLLM().enqueue(["abc。def", "abcdef"])
    assert llm.complete("p", GenParams(stop=("。",))).text == "abc"
    c = llm.complete("p", GenParams(max_tokens=3))
    assert (c.text, c.finish_reason) == ("abc", "length")


def test_fake_rejects_wrong_item_kind() -> None:
    llm = FakeLLM().enqueue([[0.0], "text"])
    with pytest.raises(LLMError, match="score list"):
        llm.chat(CHAT)
    with pytest.raises(LLMError, match="not a score list"):
        llm.score("p", ["a"])


def test_fake_echo() -> None:
    llm = load("fake:echo")
    assert llm.chat(CHAT).text == "眠れません。"
    assert llm.score("p", ["a", "bbb"]) == [-1.0, -3.0]


def test_batch_chat_turns_item_failures_into_llmfailure() -> None:
    llm = FakeLLM().enqueue(["a", LLMError("bad item"), ValueError("bug"), "d"])
    seen: list[int] = []
    out = llm.batch_chat([CHAT] * 4, progress=lambda i, r: seen.append(i))
    assert [type(r) for r in out] == [Completion, LLMFailure, LLMFailure, Completion]
    assert out[1].reason == "bad item"  # type: ignore[union-attr]
    assert out[2].reason.startswith("internal error: ValueError")  # type: ignore[union-attr]
    assert seen == [0, 1, 2, 3]


def test_batch_complete_sends_raw_prompts_through_complete() -> None:
    llm = FakeLLM().enqueue(["x", LLMError("too long"), "z"])
    out = llm.batch_complete(["p0", "p1", "p2"])
    assert [c.method for c in llm.calls] == ["complete"] * 3 and [c.input for c in llm.calls] == ["p0", "p1", "p2"]
    assert out[0].text == "x" and isinstance(out[1], LLMFailure) and out[1].reason == "too long"  # type: ignore


# ------------------------------------------------------------------------------------------------ cache
def test_cache_hits_are_free_and_marked(tmp_path: Path) -> None:
    inner = FakeLLM().enqueue(["first", [-1.0, -2.0]])
    llm = CachedLLM(inner, tmp_path)
    a = llm.chat(CHAT, GenParams(max_tokens=8))
    b = llm.chat(CHAT, GenParams(max_tokens=8))
    assert (a.text, a.cached, b.text, b.cached) == ("first", False, "first", True)
    assert llm.score("p", ["x", "y"]) == llm.score("p", ["x", "y"]) == [-1.0, -2.0]
    assert inner.pending == 0 and len(inner.calls) == 2
    assert (llm.hits, llm.misses) == (2, 2)
    # default params and None share an entry; other params do not
    inner.enqueue(["other"])
    assert llm.chat(CHAT, GenParams(max_tokens=9)).text == "other"
    inner.enqueue(["c"])
    assert llm.complete("p", None).text == "c"
    assert llm.complete("p", GenParams()).cached


def test_cache_key_depends_on_signature(tmp_path: Path) -> None:
    a = CachedLLM(FakeLLM("a").enqueue(["from a"]), tmp_path)
    b = CachedLLM(FakeLLM("b").enqueue(["from b"]), tmp_path)
    assert a.complete("p").text == "from a"
    assert b.complete("p").text == "from b"


def test_corrupted_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    inner = FakeLLM().enqueue(["one", "two", "three"])
    llm = CachedLLM(inner, tmp_path)
    llm.complete("p")
    key = llm.key("complete", GenParams(), "p")
    path = llm.path(key)
    path.write_text('{"key": "' + key + '", "result": {"te')  # a truncated write
    assert llm.complete("p").text == "two"
    assert json.loads(path.read_text())["result"]["text"] == "two"
    path.write_text(json.dumps({"key": "someone else", "result": {"text": "x", "finish_reason": "stop"}}))
    assert llm.complete("p").text == "three"
    assert llm.complete("p").cached
    assert not list(path.parent.glob("*.tmp"))


def test_batch_resumes_and_does_not_cache_failures(tmp_path: Path) -> None:
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    first = CachedLLM(FakeLLM("r").enqueue(["a0", "a1", LLMError("flaky"), "a3"]), tmp_path)
    out = first.batch_chat(convs)
    assert isinstance(out[2], LLMFailure)
    # a rerun only asks for the failed item, and keeps input order
    inner = FakeLLM("r").enqueue(["a2"])
    order: list[int] = []
    again = CachedLLM(inner, tmp_path).batch_chat(convs, progress=lambda i, r: order.append(i))
    assert [c.text for c in again] == ["a0", "a1", "a2", "a3"]  # type: ignore[union-attr]
    assert [c.cached for c in again] == [True, True, False, True]  # type: ignore[union-attr]
    assert [c.input[0].content for c in inner.calls] == ["q2"]
    assert sorted(order) == [0, 1, 2, 3]


def test_cached_batch_isolates_malformed_items(tmp_path: Path) -> None:
    convs = [[{"role": "user", "content": "ok"}], [{"role": "robot", "content": "?"}], []]
    out = CachedLLM(FakeLLM().enqueue(["fine"]), tmp_path).batch_chat(convs)
    assert isinstance(out[0], Completion) and out[0].text == "fine"
    assert all(isinstance(r, LLMFailure) and "invalid conversation" in r.reason for r in out[1:])


def test_interrupted_batch_keeps_finished_items(tmp_path: Path) -> None:
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]

    def stop_after_two(i: int, _r: object) -> None:
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        CachedLLM(FakeLLM("k").enqueue(["a0", "a1", "a2"]), tmp_path).batch_chat(convs, progress=stop_after_two)
    inner = FakeLLM("k").enqueue(["a2"])
    out = CachedLLM(inner, tmp_path).batch_chat(convs)
    assert [c.text for c in out] == ["a0", "a1", "a2"]  # type: ignore[union-attr]
    assert len(inner.calls) == 1


def test_cached_batch_complete_shares_entries_with_complete(tmp_path: Path) -> None:
    inner = FakeLLM("bc").enqueue(["a", "b"])
    llm = CachedLLM(inner, tmp_path)
    assert [c.text for c in llm.batch_complete(["p", "q"])] == ["a", "b"]  # type: ignore[union-attr]
    assert llm.complete("q").cached and llm.batch_complete(["p"])[0].cached  # type: ignore[union-attr]
    assert [c.method for c in inner.calls] == ["complete", "complete"]
