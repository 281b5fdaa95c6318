"""The OpenAI-compatible backend: retries against a scripted stdlib HTTP server, and the real thing against
llama-cpp-python's server running the embedded Gemma 3 270M."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("httpx")

from emplifai.llm import Completion, GenParams, LLMError, LLMFailure, load
from emplifai.llm.local_server import free_port
from emplifai.llm.openai_compat import OpenAICompatLLM
from emplifai.llm.openai_score import PIPELINE

CHAT = [{"role": "user", "content": "こんにちは"}]
OK_BODY = {
    "choices": [{"message": {"role": "assistant", "content": "はい"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
}

# ------------------------------------------------------------------------------- scripted HTTP server
Reply = tuple[int, dict[str, object], dict[str, str]]  # status, JSON body, headers
SLOTS = 4  # what the fake server's /props reports, as llama-server does for --parallel 4


class Scripted:
    """A tiny server whose replies come from a function of the request count."""

    def __init__(self, script: Callable[[int, dict[str, object]], Reply]) -> None:
        self.script = script
        self.requests: list[dict[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body | {"_path": self.path, "_auth": self.headers.get("Authorization")})
                status, payload, headers = outer.script(len(outer.requests), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers | {"Content-Type": "application/json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # llama-server's GET /props (slot count); the others: 404
                found = self.path == "/props"
                data = json.dumps({"total_slots": SLOTS} if found else {"error": "not found"}).encode()
                outer.requests.append({"_path": self.path, "_method": "GET"})
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def llm(self, **options: object) -> OpenAICompatLLM:
        llm = load(f"openai:test-model@{self.url}", backoff=0.01, **options)
        assert isinstance(llm, OpenAICompatLLM)
        return llm

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[int, dict[str, object]], Reply]], Scripted]]:
    servers: list[Scripted] = []

    def make(script: Callable[[int, dict[str, object]], Reply]) -> Scripted:
        servers.append(Scripted(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_retries_500_twice_then_succeeds(scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPLIFAI_API_KEY", "sk-test")
    srv = scripted(lambda n, _b: (500, {"error": "busy"}, {}) if n <= 2 else (200, OK_BODY, {}))
    c = srv.llm(max_retries=3).chat(CHAT, GenParams(max_tokens=4, stop=("。",)))
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("はい", "stop", 5, 1)
    assert len(srv.requests) == 3
    req = srv.requests[0]
    assert req["_path"] == "/v1/chat/completions" and req["_auth"] == "Bearer sk-test"
    assert req["model"] == "test-model" and req["max_tokens"] == 4 and req["stop"] == ["。"]
    assert req["seed"] == 42 and req["temperature"] == 0.0 and "logprobs" not in req


def test_always_500_becomes_failure_with_reason(scripted) -> None:
    srv = scripted(lambda n, _b: (503, {"error": f"overloaded {n}"}, {}))
    llm = srv.llm(max_retries=2)
    out = llm.batch_chat([CHAT, CHAT], concurrency=2)
    assert all(isinstance(r, LLMFailure) for r in out)
    assert "HTTP 503" in out[0].reason and "after 3 attempts" in out[0].reason  # type: ignore[union-attr]
    assert "overloaded" in (out[0].raw or "")  # type: ignore[union-attr]
    assert len(srv.requests) == 6
    with pytest.raises(LLMError, match="HTTP 503"):
        llm.chat(CHAT)


def test_batch_complete_posts_to_completions(scripted) -> None:
    def reply(n: int, body: dict[str, object]) -> Reply:
        text = f"続き{body['prompt']}"
        return 200, {"choices": [{"text": text, "finish_reason": "stop"}]}, {}

    srv = scripted(reply)
    out = srv.llm().batch_complete(["一", "二", "三"], GenParams(max_tokens=3, stop=("\n\n",)), concurrency=3)
    assert [c.text for c in out] == ["続き一", "続き二", "続き三"]  # type: ignore[union-attr]
    assert {r["_path"] for r in srv.requests} == {"/v1/completions"}
    assert all(r["stop"] == ["\n\n"] and r["max_tokens"] == 3 and "messages" not in r for r in srv.requests)


def test_429_honours_retry_after_and_4xx_is_not_retried(scripted) -> None:
    srv = scripted(lambda n, _b: (429, {}, {"Retry-After": "0"}) if n == 1 else (200, OK_BODY, {}))
    assert srv.llm(max_retries=1).chat(CHAT).text == "はい"
    bad = scripted(lambda n, _b: (400, {"error": "bad request: context too long"}, {}))
    with pytest.raises(LLMError, match="HTTP 400") as info:
        bad.llm(max_retries=5).chat(CHAT)
    assert "context too long" in (info.value.raw or "") and len(bad.requests) == 1


def test_connection_refused_becomes_failure_after_retries() -> None:
    llm = load(f"openai:m@http://127.0.0.1:{free_port()}", max_retries=2, backoff=0.05)
    start = time.monotonic()
    out = llm.batch_chat([CHAT])
    assert isinstance(out[0], LLMFailure) and "ConnectError" in out[0].reason
    assert "after 3 attempts" in out[0].reason
    assert time.monotonic() - start >= 0.05 * (0.5 + 1.0)  # two backoff sleeps (with jitter >= half)


def test_timeout_is_retried(scripted) -> None:
    def slow_first(n: int, _b: dict[str, object]) -> Reply:
        if n == 1:
            time.sleep(1.0)
        return 200, OK_BODY, {}

    srv = scripted(slow_first)
    assert srv.llm(max_retries=1, timeout=0.3).chat(CHAT).text == "はい"
    assert len(srv.requests) == 2


def test_logprobs_are_requested_and_parsed(scripted) -> None:
    body = {
        "choices": [{
            "message": {"content": "はい"}, "finish_reason": "length",
            "logprobs": {"content": [{"token": "はい", "logprob": -0.1,
                                      "top_logprobs": [{"token": "はい", "logprob": -0.1},
                                                       {"token": "いいえ", "logprob": -2.3}]}]},
        }],
    }  # fmt: skip
    srv = scripted(lambda n, _b: (200, body, {}))
    c = srv.llm().chat(CHAT, GenParams(logprobs=2))
    assert srv.requests[0]["logprobs"] is True and srv.requests[0]["top_logprobs"] == 2
    assert c.token_logprobs == [{"token": "はい", "logprob": -0.1, "top": {"はい": -0.1, "いいえ": -2.3}}]
    assert c.prompt_tokens is None  # no usage in the reply


def test_server_without_echo_logprobs_cannot_score(scripted) -> None:
    srv = scripted(lambda n, _b: (200, {"choices": [{"text": "x", "finish_reason": "length"}]}, {}))
    with pytest.raises(LLMError, match="cannot score"):
        srv.llm().score("prompt", ["a"])


def test_fold_system_and_extra_body(scripted) -> None:
    srv = scripted(lambda n, _b: (200, OK_BODY, {}))
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    srv.llm(fold_system=True, extra_body={"repeat_penalty": 1.0}).chat(msgs)
    assert srv.requests[0]["messages"] == [{"role": "user", "content": "S\n\nU"}]
    assert srv.requests[0]["repeat_penalty"] == 1.0


def test_base_url_forms() -> None:
    for url in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        assert load(f"openai:m@{url}").spec == "openai:m@http://h:1/v1"


# ----------------------------------------------------------------------------------- real llama server
@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    pytest.importorskip("llama_cpp.server")
    from emplifai.llm import embedded_model
    from emplifai.llm.local_server import llama_server

    path, _ = embedded_model()
    with llama_server(path, n_threads=2, n_ctx=512) as url:
        yield url


@pytest.fixture(scope="module")
def real(server: str) -> Iterator[OpenAICompatLLM]:
    # repeat_penalty 1.0: llama.cpp's server default (1.1) would make its greedy text differ from ours
    llm = load(f"openai:gemma@{server}", extra_body={"repeat_penalty": 1.0}, max_retries=1)
    assert isinstance(llm, OpenAICompatLLM)
    yield llm
    llm.close()


@pytest.mark.slow
def test_real_chat_and_completion(real: OpenAICompatLLM) -> None:
    c = real.chat([{"role": "user", "content": "こんにちは"}], GenParams(max_tokens=4))
    assert isinstance(c, Completion) and c.completion_tokens and c.prompt_tokens and c.finish_reason == "length"
    d = real.complete("日本の首都は", GenParams(max_tokens=4))
    assert d.text and d.completion_tokens == 4


@pytest.mark.slow
def test_real_logprobs(real: OpenAICompatLLM) -> None:
    c = real.complete("日本の首都は", GenParams(max_tokens=3, logprobs=2))
    assert c.token_logprobs and len(c.token_logprobs) == 3
    assert all(e["logprob"] <= 0 and len(e["top"]) >= 1 for e in c.token_logprobs)
    ch = real.chat(CHAT, GenParams(max_tokens=2, logprobs=2))
    assert ch.token_logprobs and len(ch.token_logprobs[0]["top"]) == 2


@pytest.mark.slow
def test_real_score_matches_embedded(real: OpenAICompatLLM) -> None:
    prompt, cands = "患者「手術が怖いです。」\n感情:", ["恐れ", "喜び"]
    remote = real.score(prompt, cands)
    assert len(remote) == 2 and all(s < 0 for s in remote)
    embedded = load("embedded", n_ctx=512)
    try:
        local = embedded.score(prompt, cands)
    finally:
        embedded.close()
    # the server also evaluates the prompt once and then only the candidate (its prefix cache), so the
    # numbers agree closely; a loose bound keeps the test robust to llama.cpp's batch-shape rounding
    assert remote == pytest.approx(local, abs=0.5)


@pytest.mark.slow
def test_real_batch_chat_keeps_input_order(real: OpenAICompatLLM) -> None:
    convs = [[{"role": "user", "content": "あ" * (1 + 3 * i)}] for i in range(6)]
    convs.insert(3, [{"role": "user", "content": "長い" * 600}])  # over n_ctx: this item alone fails
    seen: list[int] = []
    out = real.batch_chat(convs, GenParams(max_tokens=2), concurrency=4, progress=lambda i, r: seen.append(i))
    assert isinstance(out[3], LLMFailure) and "HTTP 400" in out[3].reason
    ok = [r for i, r in enumerate(out) if i != 3]
    assert all(isinstance(r, Completion) for r in ok)
    lengths = [r.prompt_tokens for r in ok]  # type: ignore[union-attr]
    assert lengths == sorted(lengths) and len(set(lengths)) == 6  # longer prompts in input order
    assert sorted(seen) == list(range(7))


# ------------------------------------------------------------------ scoring on servers that cannot echo
def _toy_lp(prefix: list[int], target: int) -> float:
    """A deterministic toy language model: log P(target | prefix)."""
    return -(0.1 + ((sum(prefix) * 31 + target) % 7) / 10)


def _llama_server_like(n: int, body: dict[str, object]) -> Reply:
    """llama-server's shape: /v1/completions ignores echo (chat-style logprobs of the generated token only);
    /tokenize is one token per character after BOS=1; /completion reports the forced token's log-probability."""
    if "content" in body:  # /tokenize
        return 200, {"tokens": [1] + [ord(c) for c in str(body["content"])]}, {}
    if "n_probs" in body:  # /completion
        prefix = list(body["prompt"])  # type: ignore[call-overload]
        target = body["logit_bias"][0][0]  # type: ignore[index]
        return 200, {"content": chr(target), "completion_probabilities": [
            {"id": target, "token": chr(target), "logprob": _toy_lp(prefix, target), "top_logprobs": []}]}, {}
    return 200, {"choices": [{"text": "x", "finish_reason": "length", "logprobs": {
        "content": [{"token": "x", "logprob": -0.5, "top_logprobs": []}]}}], "usage": {"completion_tokens": 1}}, {}


def _expected(prompt: str, cand: str) -> float:
    toks = [1] + [ord(c) for c in prompt + cand]
    k = 1 + len(prompt)
    return sum(_toy_lp(toks[:j], toks[j]) for j in range(k, len(toks)))


def test_server_without_echo_scores_by_teacher_forcing(scripted) -> None:
    srv = scripted(_llama_server_like)
    llm = srv.llm()
    cands = ["ab", "ac", "b", ""]
    assert llm.score("感情：", cands) == pytest.approx([_expected("感情：", c) for c in cands], abs=1e-12)
    paths = [r["_path"] for r in srv.requests]
    assert paths.count("/v1/completions") == 1  # the echo probe, once; then llama.cpp's native endpoints
    forced = [r for r in srv.requests if r["_path"] == "/completion"]
    assert all(r["n_predict"] == 1 and r["n_probs"] == 1 and r["temperature"] == 0.0 for r in forced)
    assert {r["id_slot"] for r in forced[1:]} == {0}  # one item: all its requests on one slot (its prompt cache)
    # the probe's one request, then one per distinct (prefix, token): "a" after the prompt is asked once for ab/ac
    assert len(forced) == 1 + 4
    before = len(srv.requests)
    out = llm.batch_score([("患者：", ["ab"]), ("感情：", ["b"])], concurrency=4)
    assert out == [pytest.approx([_expected("患者：", "ab")]), pytest.approx([_expected("感情：", "b")])]
    assert all(r["_path"] != "/v1/completions" for r in srv.requests[before:])  # probed once per backend


def test_server_that_cannot_score_stops_a_predict_run_before_its_first_item(scripted, sqlite_url: str,
                                                                           tmp_path) -> None:
    from sqlalchemy import func, select

    from emplifai.predict.runs import PredictConfig, predict_split
    from emplifai.store.db import Store
    from emplifai.store.predict import Prediction
    from tests.predict.fixtures import seed_store

    store = Store(sqlite_url)
    seed_store(store, tmp_path)
    srv = scripted(lambda n, _b: (200, {"choices": [{"text": "x", "finish_reason": "length"}]}, {}))
    with pytest.raises(LLMError, match="cannot score candidates") as info:
        predict_split(store, srv.llm(), "openai:test-model", PredictConfig(mode="score"), limit=5)
    assert "echo:" in str(info.value) and "llama.cpp:" in str(info.value)
    with store.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 0
    assert len(srv.requests) <= 3  # the probe only (echo, /tokenize), not a request per item
    store.dispose()


def test_every_failed_attempt_is_in_the_error(scripted) -> None:
    replies = iter([(503, {"error": "busy"}, {}), (429, {"error": "slow down"}, {"Retry-After": "0"})])
    srv = scripted(lambda n, _b: next(replies, (500, {"error": "boom"}, {})))
    with pytest.raises(LLMError) as info:
        srv.llm(max_retries=2).chat(CHAT)
    msg = str(info.value)
    assert "attempt 1: HTTP 503" in msg and "attempt 2: HTTP 429" in msg and "attempt 3: HTTP 500" in msg


def test_batch_score_keeps_items_apart_and_in_order(scripted) -> None:
    """Items in flight together take different slots. The fake server holds each pinned request until every
    slot has one (or 5 s pass), so the overlap does not depend on how fast the threads happen to run."""
    lock, pinned, all_slots = threading.Lock(), set[int](), threading.Event()

    def script(n: int, body: dict[str, object]) -> Reply:
        slot = int(body.get("id_slot", -1))  # type: ignore[call-overload]
        if "n_probs" in body and slot >= 0:
            with lock:
                pinned.add(slot)
                if len(pinned) == SLOTS:
                    all_slots.set()
            if not all_slots.wait(timeout=5.0):
                all_slots.set()  # a broken spread fails below once, instead of waiting 5 s per request
        return _llama_server_like(n, body)

    srv = scripted(script)
    items = [(f"文{i}：", ["あ", "い"]) for i in range(12)]
    seen: list[int] = []
    out = srv.llm().batch_score(items, concurrency=5, progress=lambda i, r: seen.append(i))
    assert out == [pytest.approx([_expected(p, "あ"), _expected(p, "い")]) for p, _ in items]
    assert sorted(seen) == list(range(12))
    slots = [r["id_slot"] for r in srv.requests if r["_path"] == "/completion" and r.get("id_slot", -1) >= 0]
    assert set(slots) == {0, 1, 2, 3}  # items spread over the 4 slots that /props reported


def test_an_item_keeps_its_next_request_queued_on_its_own_slot(scripted) -> None:
    """llama-server starts a slot's queued request in its very next batch; sent one at a time, the next request
    arrived while that batch ran and each slot sat out every other batch. Each item: its own free slot, exactly
    PIPELINE requests in flight there, never more."""
    lock, now, peak = threading.Lock(), Counter[int](), Counter[int]()

    def script(n: int, body: dict[str, object]) -> Reply:
        slot = int(body.get("id_slot", -1))  # type: ignore[call-overload]
        with lock:
            now[slot] += 1
            peak[slot] = max(peak[slot], now[slot])
        time.sleep(0.1)  # long enough for the pipeline's second request to arrive, with margin on a loaded CI box
        try:
            return _llama_server_like(n, body)
        finally:
            with lock:
                now[slot] -= 1

    srv = scripted(script)
    items = [(f"文{i}：", ["あいう", "いう", "うえお"]) for i in range(3)]
    out = srv.llm().batch_score(items, concurrency=3)
    assert out == [pytest.approx([_expected(p, c) for c in cands]) for p, cands in items]
    assert PIPELINE == 2 and [peak[s] for s in range(4)] == [2, 2, 2, 0]  # 3 items: slots 0-2, slot 3 unused
