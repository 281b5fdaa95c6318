"""The one narrow interface every language-model backend implements.

Every stage of the pipeline (predict, generate, judge, synth) talks to an :class:`LLM` and nothing else, so
the embedded Gemma 3 270M, any GGUF file, a local transformers folder and an OpenAI-compatible server are
interchangeable. Four operations cover the paper: ``complete`` and ``chat`` (generation), ``score`` (total
log-probability of candidate continuations, used for zero-shot label prediction) and ``batch_chat`` /
``batch_complete`` (many conversations or prompts, one failure never sinks the batch). ``signature()`` says
everything that determines outputs; it is recorded with results and keys the disk cache.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emplifai.errors import UserError

__all__ = [
    "LLM",
    "BackendUnavailable",
    "BadSpecError",
    "Completion",
    "GenParams",
    "LLMError",
    "LLMFailure",
    "Message",
    "MessagesLike",
    "ProgressCallback",
    "ScoreItem",
    "ScoreProgress",
    "TokenLogprob",
    "as_failure",
    "schema_text",
    "to_messages",
]


# --------------------------------------------------------------------------------------------- errors
class LLMError(UserError):
    """An error meant to be shown to the user (bad input, unreachable server, exhausted retries).

    ``raw`` keeps whatever the backend returned (e.g. an HTTP error body) for the failure record."""

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class BadSpecError(LLMError, ValueError):
    """A model spec string that matches none of the valid forms."""


class BackendUnavailable(LLMError):
    """The backend's package is not installed, or its model/server cannot be reached."""


# ------------------------------------------------------------------------------------------ data types
class GenParams(BaseModel):
    """Decoding parameters. Frozen and strict so they can be hashed into cache keys and recorded as-is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, ge=1)
    # Greedy by default: the pipeline wants reproducible outputs (judge non-determinism is a known complaint).
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 42
    stop: tuple[str, ...] = ()
    # Number of top alternatives to return per generated token; None = no logprobs at all (cheaper).
    logprobs: int | None = Field(None, ge=0, le=20)
    # Structured output: a JSON schema (canonical JSON text, see schema_text) the answer must follow. llama.cpp
    # decodes under a GBNF grammar built from it; OpenAI-compatible servers get it as response_format and fall
    # back to plain decoding where refused. Completion.structured says how it was honoured.
    json_schema: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


MessagesLike = Sequence[Message | Mapping[str, str]]


def to_messages(messages: MessagesLike) -> list[Message]:
    """Accept ``Message`` objects or plain ``{"role", "content"}`` dicts (as read from JSON)."""
    try:
        out = [m if isinstance(m, Message) else Message.model_validate(dict(m)) for m in messages]
    except (ValidationError, TypeError, ValueError) as exc:
        raise LLMError(f"invalid conversation: {exc}") from exc
    if not out:
        raise LLMError("invalid conversation: no messages")
    return out


class TokenLogprob(TypedDict):
    token: str
    logprob: float
    top: dict[str, float]  # top-k alternatives (token text -> logprob); may include the chosen token


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or stop string), "length" (max_tokens or context full), or the server's
    token_logprobs: list[TokenLogprob] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    # how GenParams.json_schema was enforced: "grammar" (llama.cpp GBNF), "json_schema" / "json_object"
    # (the server's response_format), None when it was not (no schema asked, or the backend/server refused)
    structured: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class LLMFailure:
    """One item of a batch that failed after retries: the reason and whatever raw output there was."""

    reason: str
    raw: str | None = None


ProgressCallback = Callable[[int, "Completion | LLMFailure"], None]
"""Called once per finished batch item with (index in the input list, result). Lets callers draw a progress
bar *and* persist results as they arrive, so an interrupted batch resumes where it stopped."""

ScoreItem = tuple[str, Sequence[str]]  # (prompt, candidates) of one ``score`` call
ScoreProgress = Callable[[int, "list[float] | LLMFailure"], None]


# ---------------------------------------------------------------------------------------- the interface
class LLM(abc.ABC):
    """Base class of all backends. Subclasses implement complete/chat/score/signature."""

    #: canonical spec string, e.g. ``embedded``, ``gguf:/abs/model.gguf``, ``openai:qwen@http://host:8000``
    spec: str = ""
    #: False for a base (not instruction-tuned) model, which stages that can prompt few-shot through
    #: ``complete``; True for a chat model; None when the backend cannot tell (treated as a chat model)
    instruction_tuned: bool | None = None
    #: parallel requests a stage uses when the user asks for none: 1 in process (one context; threads gain
    #: nothing), more on HTTP backends, whose servers batch concurrent requests
    default_concurrency: int = 1

    @abc.abstractmethod
    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        """Continue raw text (no chat template)."""

    @abc.abstractmethod
    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        """Answer a conversation, using the model's chat template."""

    @abc.abstractmethod
    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        """Total natural-log probability of each candidate string as a continuation of ``prompt``.

        Defined as log P(prompt + candidate) - log P(prompt) under the canonical tokenisation of each string,
        which equals the sum of the candidate's token log-probabilities whenever the prompt's tokens are a
        prefix of the joint tokens (the usual case) and stays well defined when the last prompt token merges
        with the candidate's start (then it can even be > 0: "感" + "謝" is likelier as the token "感謝").
        End prompts with a delimiter (":", "：", a newline) so that candidates start on a token boundary.
        """

    @abc.abstractmethod
    def signature(self) -> dict[str, Any]:
        """Everything that determines outputs: backend, model id/path + sha256, adapter, versions, n_ctx."""

    def batch_chat(
        self,
        conversations: Sequence[MessagesLike],
        params: GenParams | None = None,
        *,
        concurrency: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Completion | LLMFailure]:
        """Chat over many conversations; results come back in input order.

        The default runs sequentially (in-process models hold one context and gain nothing from threads);
        HTTP backends override it with bounded concurrency. A failing item becomes an :class:`LLMFailure`.
        """
        return self._each(conversations, self._chat_or_failure, params, concurrency, progress)

    def batch_complete(
        self,
        prompts: Sequence[str],
        params: GenParams | None = None,
        *,
        concurrency: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Completion | LLMFailure]:
        """``batch_chat`` for raw-text prompts (few-shot prompting of base models)."""
        return self._each(prompts, self._complete_or_failure, params, concurrency, progress)

    @staticmethod
    def _each(items: Sequence[Any], call: Callable[[Any, GenParams | None], Completion | LLMFailure],
              params: GenParams | None, concurrency: int, progress: ProgressCallback | None
              ) -> list[Completion | LLMFailure]:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        results: list[Completion | LLMFailure] = []
        for i, item in enumerate(items):
            results.append(call(item, params))
            if progress is not None:
                progress(i, results[-1])
        return results

    def check_score(self) -> None:  # noqa: B027 - in-process backends can always score
        """Raise :class:`LLMError` now if this backend cannot ``score``, so a run stops with one clear error
        before its first item instead of failing every item (HTTP backends probe their server once)."""

    def batch_score(
        self,
        items: Sequence[ScoreItem],
        *,
        concurrency: int = 1,
        progress: ScoreProgress | None = None,
    ) -> list[list[float] | LLMFailure]:
        """``score`` over many (prompt, candidates) items, in input order; a failing item becomes an
        :class:`LLMFailure`. Sequential here; HTTP backends send items and candidates in parallel."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        results: list[list[float] | LLMFailure] = []
        for i, (prompt, candidates) in enumerate(items):
            try:
                results.append(self.score(prompt, candidates))
            except LLMError as exc:
                results.append(LLMFailure(reason=str(exc), raw=exc.raw))
            except Exception as exc:  # one bad item must not sink a long batch; the reason keeps the bug visible
                results.append(LLMFailure(reason=f"internal error: {type(exc).__name__}: {exc}"))
            if progress is not None:
                progress(i, results[-1])
        return results

    def _chat_or_failure(self, messages: MessagesLike, params: GenParams | None) -> Completion | LLMFailure:
        return as_failure(lambda: self.chat(messages, params))

    def _complete_or_failure(self, prompt: str, params: GenParams | None) -> Completion | LLMFailure:
        return as_failure(lambda: self.complete(prompt, params))

    def render_chat(self, messages: MessagesLike) -> str | None:
        """The exact text :meth:`chat` feeds the model for ``messages`` (its chat template applied, ready for the
        model's answer), where the backend renders the template itself; None where only a server knows it.

        ``score(render_chat(msgs) + prefix, candidates)`` then reads the model's answer distribution after a
        prefix of its own answer (the judge's score-only mode)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release model memory / HTTP connections. Safe to call twice."""

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


# ----------------------------------------------------------------------------------------------- helpers
def schema_text(schema: Mapping[str, Any]) -> str:
    """A JSON schema as GenParams.json_schema holds it: canonical JSON, so equal schemas give equal cache keys."""
    return json.dumps(schema, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def as_failure(call: Callable[[], Completion]) -> Completion | LLMFailure:
    """One item of a batch: its completion, or an :class:`LLMFailure` with the reason (and raw text, if any)."""
    try:
        return call()
    except LLMError as exc:
        return LLMFailure(reason=str(exc), raw=exc.raw)
    except Exception as exc:  # one bad item must not sink a long batch; the reason keeps the bug visible
        return LLMFailure(reason=f"internal error: {type(exc).__name__}: {exc}")
