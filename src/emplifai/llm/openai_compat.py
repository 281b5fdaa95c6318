"""OpenAI-compatible HTTP backend (vLLM, llama.cpp's ``llama-server``, ``llama_cpp.server``, OpenAI, ...) over httpx.

* ``chat`` -> ``/v1/chat/completions``, ``complete`` -> ``/v1/completions``; ``logprobs`` requested only
  when ``GenParams.logprobs`` is set (it is slow on some servers) and parsed when the server returns them.
* Retries with exponential backoff (and jitter) on connect errors, timeouts, HTTP 408/425/429 and 5xx; other
  4xx fail at once. An item that still fails becomes an :class:`LLMFailure` with the reason and the body.
* Batches (``batch_chat``, ``batch_complete``, ``batch_score``) run on one asyncio client: at most
  ``concurrency`` requests in flight, no other cap, so a server that batches (vLLM, llama-server with
  ``--parallel N``) gets enough work to fill its slots; one that queues (llama_cpp.server) gains little.
* ``score``: see :mod:`emplifai.llm.openai_score` (echo on vLLM, teacher forcing on llama-server); the
  server is probed once, and ``check_score`` lets a run stop before its first item when it cannot score.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .base import (
    LLM,
    BackendUnavailable,
    Completion,
    GenParams,
    LLMError,
    LLMFailure,
    Message,
    MessagesLike,
    ProgressCallback,
    ScoreItem,
    ScoreProgress,
    TokenLogprob,
    to_messages,
)
from .openai_score import Post, Scorer, probe

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
Body = dict[str, Any]
#: one item of a batch: a coroutine over the transport (one or many requests)
Job = Callable[[Post], Awaitable[Any]]
RETRY_STATUS = frozenset({408, 425, 429})  # plus every 5xx
#: how a JSON schema is sent, in order of preference: OpenAI's form (vLLM, llama-server, OpenAI), then the
#: json_object + schema form of llama-cpp-python's server and llama-server; past both, plain decoding
SCHEMA_FORMS = ("json_schema", "json_object")


class OpenAICompatLLM(LLM):
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        fold_system: bool = False,
        extra_body: dict[str, Any] | None = None,
        concurrency: int = 8,
    ) -> None:
        """``fold_system`` merges system messages into the first user turn, for servers whose chat template
        drops them (llama.cpp's ``--chat_format gemma`` does). ``extra_body`` is merged into every request,
        e.g. ``{"repeat_penalty": 1.0}`` for llama.cpp (whose default 1.1 changes greedy outputs).
        ``concurrency`` is the default number of requests in flight (a stage's own setting wins); 8 fills
        ``llama-server --parallel 8`` and is modest for vLLM, which takes far more."""
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendUnavailable("the openai backend needs httpx: pip install 'emplifai[llm]'") from exc
        self._httpx = httpx
        self.model = model
        self.base_url = _normalise_base(base_url)
        self.spec = f"openai:{model}@{self.base_url}"
        key = api_key or os.environ.get("EMPLIFAI_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fold_system = fold_system
        self.extra_body = dict(extra_body or {})
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.default_concurrency = concurrency
        self._client: httpx.Client | None = None
        # response_format forms still to try for a JSON schema; a refused form is dropped for the rest of the run
        self._schema_forms: list[str] = list(SCHEMA_FORMS)
        #: each refusal of a form, as (form, the server's reason): recorded with the results that fell back
        self.schema_refusals: list[tuple[str, str]] = []
        self._scorer: Scorer | None = None

    # ------------------------------------------------------------------------------------- public API
    def signature(self) -> dict[str, Any]:
        # A remote model cannot be hashed from here: the served model name and the URL identify it.
        return {
            "backend": "openai-compatible",
            "model": self.model,
            "base_url": self.base_url,
            "fold_system": self.fold_system,
            "extra_body": self.extra_body,
            "structured_output": "response_format: " + " > ".join(SCHEMA_FORMS) + " > none",
        }

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        params = params or GenParams()
        return _parse_completion(self._post("/completions", self._completion_body(prompt, params)))

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        params = params or GenParams()
        msgs = to_messages(messages)
        while True:
            form = self._schema_form(params)
            try:
                return _parse_chat(self._post("/chat/completions", self._chat_body(msgs, params, form)), form)
            except LLMError as exc:
                if not self._refused(form, exc):
                    raise

    def batch_chat(
        self,
        conversations: Sequence[MessagesLike],
        params: GenParams | None = None,
        *,
        concurrency: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Completion | LLMFailure]:
        params = params or GenParams()

        def job(conv: MessagesLike) -> Job:
            async def run(post: Post) -> Completion:
                msgs = to_messages(conv)
                while True:  # a refused response_format is retried in the next form; the form is read per
                    form = self._schema_form(params)  # request, so one request's refusal reaches the later ones
                    try:
                        return _parse_chat(await post("/chat/completions", self._chat_body(msgs, params, form)), form)
                    except LLMError as exc:
                        if not self._refused(form, exc):
                            raise
            return run

        return self._batch([job(c) for c in conversations], concurrency, progress)

    def batch_complete(
        self,
        prompts: Sequence[str],
        params: GenParams | None = None,
        *,
        concurrency: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Completion | LLMFailure]:
        params = params or GenParams()

        def job(prompt: str) -> Job:
            async def run(post: Post) -> Completion:
                return _parse_completion(await post("/completions", self._completion_body(prompt, params)))
            return run

        return self._batch([job(p) for p in prompts], concurrency, progress)

    def check_score(self) -> None:
        self._probe()

    def batch_score(
        self,
        items: Sequence[ScoreItem],
        *,
        concurrency: int = 1,
        progress: ScoreProgress | None = None,
    ) -> list[list[float] | LLMFailure]:
        """Items in parallel, and each item's candidates in parallel: ``concurrency`` requests in flight by echo;
        on llama-server ``concurrency`` items, each on its own slot with a short pipeline of requests."""
        scorer = self._probe()

        def job(prompt: str, candidates: Sequence[str]) -> Job:
            async def run(post: Post) -> list[float]:
                return await scorer.score(post, prompt, candidates)
            return run

        return self._batch([job(p, c) for p, c in items], concurrency, progress, per_item=scorer.requests_per_item)

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        out = self.batch_score([(prompt, candidates)], concurrency=self.default_concurrency)[0]
        if isinstance(out, LLMFailure):
            raise LLMError(out.reason, raw=out.raw)
        return out

    def _probe(self) -> Scorer:
        """How this server scores, found once (a failure is not remembered: the server may come up later)."""
        if self._scorer is None:

            async def run(post: Post) -> Scorer:
                return await probe(post, model=self.model, base_url=self.base_url, extra_body=self.extra_body)

            out = self._batch([run], 1, None)[0]
            if isinstance(out, LLMFailure):
                raise LLMError(out.reason, raw=out.raw)
            self._scorer = out
        return self._scorer

    def _batch(self, jobs: Sequence[Job], concurrency: int, progress: Callable[[int, Any], None] | None,
               *, per_item: int | None = None) -> list[Any]:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        return _run_sync(self._abatch(jobs, concurrency, progress, per_item))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---------------------------------------------------------------------------------- request bodies
    def _common(self, params: GenParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _chat_body(self, messages: list[Message], params: GenParams, form: str | None = None) -> dict[str, Any]:
        if self.fold_system:
            messages = _fold_system(messages)
        body = self._common(params) | {"messages": [m.model_dump() for m in messages]}
        if params.logprobs is not None:
            body |= {"logprobs": True, "top_logprobs": params.logprobs}
        if form is not None and params.json_schema is not None:
            schema = json.loads(params.json_schema)
            body["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
                if form == "json_schema" else {"type": "json_object", "schema": schema})
        return body | self.extra_body

    # ------------------------------------------------------------------------------ structured output
    def _schema_form(self, params: GenParams) -> str | None:
        if params.json_schema is None:
            return None
        forms = self._schema_forms
        return forms[0] if forms else None

    def _refused(self, form: str | None, exc: LLMError) -> bool:
        """Whether ``exc`` is the server refusing this response_format form (then the next form is tried)."""
        if form is None or not isinstance(exc, SchemaRefused):
            return False
        if form in self._schema_forms:
            self._schema_forms.remove(form)
            self.schema_refusals.append((form, (exc.raw or str(exc))[:300]))
        return True

    def _completion_body(self, prompt: str, params: GenParams) -> dict[str, Any]:
        body = self._common(params) | {"prompt": prompt}
        if params.logprobs is not None:
            body["logprobs"] = params.logprobs
        return body | self.extra_body

    # --------------------------------------------------------------------------------------- transport
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            self._client = self._httpx.Client(base_url=self.base_url, timeout=self._timeout, headers=self._headers)
        problems: list[str] = []  # every attempt's problem goes into the final error, not just the last
        raw: str | None = None
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                resp = self._client.post(path, json=body)
            except self._httpx.TransportError as exc:  # connect errors, timeouts, dropped connections
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            done, problem, raw, retry_after = self._check(resp)
            if done is not None:
                return done
            problems.append(problem)
        raise self._exhausted(path, problems, raw)

    async def _apost(self, client: httpx.AsyncClient, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """POST ``body`` (GET when it is None), retrying what a retry can fix."""
        problems: list[str] = []  # every attempt's problem goes into the final error, not just the last
        raw: str | None = None
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                resp = await (client.get(path) if body is None else client.post(path, json=body))
            except self._httpx.TransportError as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            done, problem, raw, retry_after = self._check(resp)
            if done is not None:
                return done
            problems.append(problem)
        raise self._exhausted(path, problems, raw)

    def _exhausted(self, path: str, problems: list[str], raw: str | None) -> LLMError:
        tries = "; ".join(f"attempt {i}: {p}" for i, p in enumerate(problems, 1))
        return LLMError(f"{path} failed after {len(problems)} attempts ({tries})", raw=raw)

    def _check(self, resp: httpx.Response) -> tuple[dict[str, Any] | None, str, str | None, str | None]:
        """(json, "", None, None) on success; (None, problem, body, Retry-After) when worth retrying;
        raises LLMError at once for errors a retry cannot fix (400, 401, 404, ...)."""
        if resp.status_code == 200:
            try:
                return resp.json(), "", None, None
            except ValueError as exc:
                raise LLMError(f"{resp.request.url}: response is not JSON", raw=resp.text[:2000]) from exc
        problem = f"HTTP {resp.status_code} from {resp.request.url}"
        if _refuses_schema(resp):
            raise SchemaRefused(f"{problem}: the server refused the response_format", raw=resp.text[:2000])
        if resp.status_code in RETRY_STATUS or resp.status_code >= 500:
            return None, problem, resp.text[:2000], resp.headers.get("retry-after")
        raise LLMError(problem, raw=resp.text[:2000])

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        # exponential backoff with jitter, so many workers do not retry in lockstep
        return min(self.backoff * 2 ** (attempt - 1), self.max_backoff) * (0.5 + random.random() / 2)

    async def _abatch(self, jobs: Sequence[Job], concurrency: int, progress: Callable[[int, Any], None] | None,
                      per_item: int | None = None) -> list[Any]:
        """At most ``concurrency`` requests in flight over all items (an item may send many: score), or
        ``per_item`` requests for each item when an item bounds its own, and at most ``concurrency`` items
        started, so a long batch does not hold thousands of waiting coroutines. Each item's requests are built
        inside it, so a malformed item fails alone."""
        in_flight = concurrency * (per_item or 1)
        requests = asyncio.Semaphore(in_flight)
        started = asyncio.Semaphore(concurrency)
        limits = self._httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with self._httpx.AsyncClient(
            base_url=self.base_url, timeout=self._timeout, headers=self._headers, limits=limits
        ) as client:

            async def post(path: str, body: Body | None) -> Body:
                async with requests:
                    return await self._apost(client, path, body)

            async def one(i: int, job: Job) -> Any:
                async with started:
                    try:
                        result = await job(post)
                    except LLMError as exc:
                        result = LLMFailure(reason=str(exc), raw=exc.raw)
                    except Exception as exc:  # one bad item must not sink the batch
                        result = LLMFailure(reason=f"internal error: {type(exc).__name__}: {exc}")
                if progress is not None:
                    progress(i, result)
                return result

            return list(await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs))))


# ---------------------------------------------------------------------------------------------- helpers
class SchemaRefused(LLMError):
    """The server does not take this response_format form (a validation error naming it; not worth a retry)."""


def _refuses_schema(resp: httpx.Response) -> bool:
    # llama-cpp-python's server answers an unknown response_format type with HTTP 500 (its error handler wraps
    # the validation error), vLLM and OpenAI with 400/422: what counts is an error that names the field
    if resp.status_code not in (400, 422, 500, 501) or b'"response_format"' not in (resp.request.content or b""):
        return False
    text = resp.text.lower()
    return "response_format" in text or "json_schema" in text


def _normalise_base(url: str) -> str:
    """Accept ``http://host:8000``, ``http://host:8000/`` or ``http://host:8000/v1``; return ``.../v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _fold_system(messages: list[Message]) -> list[Message]:
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if system and rest and rest[0].role == "user":
        rest[0] = Message(role="user", content=f"{system}\n\n{rest[0].content}")
    elif system:
        rest.insert(0, Message(role="user", content=system))
    return rest


def _usage(data: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = data.get("usage") or {}
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def _parse_chat(data: dict[str, Any], structured: str | None = None) -> Completion:
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError("malformed chat completion response", raw=str(data)[:2000]) from exc
    lps: list[TokenLogprob] | None = None
    content = (choice.get("logprobs") or {}).get("content")
    if content:
        lps = [
            {
                "token": e.get("token", ""),
                "logprob": float(e.get("logprob", 0.0)),
                "top": {t["token"]: float(t["logprob"]) for t in e.get("top_logprobs") or []},
            }
            for e in content
        ]
    prompt_tokens, completion_tokens = _usage(data)
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason") or "stop",
        token_logprobs=lps,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        structured=structured,
    )


def _parse_completion(data: dict[str, Any]) -> Completion:
    try:
        choice = data["choices"][0]
        text = choice["text"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError("malformed completion response", raw=str(data)[:2000]) from exc
    lps: list[TokenLogprob] | None = None
    lp = choice.get("logprobs")
    if lp and lp.get("tokens"):
        tops = lp.get("top_logprobs") or [None] * len(lp["tokens"])
        lps = [
            {"token": t, "logprob": float(v) if v is not None else float("nan"), "top": dict(top or {})}
            for t, v, top in zip(lp["tokens"], lp["token_logprobs"], tops, strict=False)
        ]
    prompt_tokens, completion_tokens = _usage(data)
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason") or "stop",
        token_logprobs=lps,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop (notebooks, ASGI)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
