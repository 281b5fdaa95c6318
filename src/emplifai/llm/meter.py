"""What a run spent: calls, re-asks, tokens and wall time per stage and model, counted at the interface.

:class:`MeteredLLM` wraps any backend and counts what passes through the :class:`~emplifai.llm.base.LLM`
methods, so no backend needs to know it is counted. :func:`metering` makes :func:`emplifai.llm.registry.load_model`
wrap every model it loads while a stage runs; the study reads the :class:`Ledger` when the stage ends.

* ``calls``: requests answered by the model (a batch of n conversations is n calls; ``score`` is one call);
* ``retries``: calls whose input the same ledger entry had already sent (the judge asking again after an
  invalid answer); retries inside a backend (HTTP back-off) are not visible here;
* ``failures``: items that came back as :class:`~emplifai.llm.base.LLMFailure`;
* ``cached``: answers served from the disk cache (no tokens spent);
* tokens: the ``prompt_tokens`` / ``completion_tokens`` the backend reported; ``usage_missing`` counts calls
  that reported none (``score`` never does), so a total is never silently low;
* ``seconds``: wall time spent inside the model's methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

from .base import LLM, Completion, GenParams, LLMFailure, MessagesLike, ProgressCallback, to_messages


@dataclass
class Usage:
    calls: int = 0
    retries: int = 0
    failures: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_missing: int = 0
    seconds: float = 0.0
    seen: set[str] = field(default_factory=set, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seen")
        d["seconds"] = round(self.seconds, 3)
        return d


class Ledger:
    """Usage per (stage, model spec); thread-safe, since HTTP backends answer from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: dict[tuple[str, str], Usage] = {}

    def usage(self, stage: str, spec: str) -> Usage:
        with self._lock:
            return self.entries.setdefault((stage, spec), Usage())

    def stage(self, stage: str) -> dict[str, dict[str, Any]]:
        """{spec: usage} of one stage, as plain JSON."""
        return {spec: u.to_dict() for (st, spec), u in sorted(self.entries.items()) if st == stage}

    def record(self, u: Usage, inputs: Sequence[Any], results: Sequence[Completion | LLMFailure | None],
               seconds: float) -> None:
        with self._lock:
            u.seconds += seconds
            for item, res in zip(inputs, results, strict=True):
                key = _key(item)
                u.retries += key in u.seen
                u.seen.add(key)
                if isinstance(res, LLMFailure):
                    u.failures += 1
                    continue
                u.calls += 1
                if res is None:  # score(): log-probabilities, no usage
                    u.usage_missing += 1
                elif res.cached:
                    u.cached += 1
                elif res.prompt_tokens is None and res.completion_tokens is None:
                    u.usage_missing += 1
                else:
                    u.prompt_tokens += res.prompt_tokens or 0
                    u.completion_tokens += res.completion_tokens or 0


def _key(item: Any) -> str:
    if not isinstance(item, str):
        item = "\x1e".join(f"{m.role}\x1f{m.content}" for m in to_messages(item))
    return hashlib.blake2b(item.encode(), digest_size=12).hexdigest()


_ACTIVE: ContextVar[tuple[Ledger, str] | None] = ContextVar("emplifai_meter", default=None)


@contextlib.contextmanager
def metering(ledger: Ledger, stage: str) -> Iterator[Ledger]:
    """While the block runs, every model :func:`~emplifai.llm.registry.load_model` loads is counted under
    ``stage``."""
    token = _ACTIVE.set((ledger, stage))
    try:
        yield ledger
    finally:
        _ACTIVE.reset(token)


def metered(llm: LLM, spec: str | None = None) -> LLM:
    """``llm`` counted in the active ledger under ``spec`` (the spec as the config wrote it, so the price
    table matches; default: the backend's canonical spec), or unchanged when nothing is metering."""
    active = _ACTIVE.get()
    if active is None or isinstance(llm, MeteredLLM):
        return llm
    ledger, stage = active
    return MeteredLLM(llm, ledger, stage, spec)


class MeteredLLM(LLM):
    """An LLM that counts what passes through it; everything else is the wrapped backend's."""

    def __init__(self, inner: LLM, ledger: Ledger, stage: str, spec: str | None = None):
        self.inner, self.ledger = inner, ledger
        self.spec, self.instruction_tuned = inner.spec, inner.instruction_tuned
        self.usage = ledger.usage(stage, spec or inner.spec)

    def __getattr__(self, name: str) -> Any:  # backend extras (n_ctx, tokenizer, ...) stay reachable
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _timed(self, inputs: Sequence[Any], call: Any, batch: bool = False) -> Any:
        t = time.perf_counter()
        try:
            out = call()
        except Exception:
            self.ledger.record(self.usage, inputs, [LLMFailure("raised")] * len(inputs), time.perf_counter() - t)
            raise
        results = out if batch else [out if isinstance(out, Completion) else None]
        self.ledger.record(self.usage, inputs, results, time.perf_counter() - t)
        return out

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        return self._timed([prompt], lambda: self.inner.complete(prompt, params))

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        return self._timed([messages], lambda: self.inner.chat(messages, params))

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        return self._timed([prompt], lambda: self.inner.score(prompt, candidates))

    def batch_chat(self, conversations: Sequence[MessagesLike], params: GenParams | None = None, *,
                   concurrency: int = 1, progress: ProgressCallback | None = None) -> list[Completion | LLMFailure]:
        return self._timed(list(conversations), lambda: self.inner.batch_chat(
            conversations, params, concurrency=concurrency, progress=progress), batch=True)

    def batch_complete(self, prompts: Sequence[str], params: GenParams | None = None, *, concurrency: int = 1,
                       progress: ProgressCallback | None = None) -> list[Completion | LLMFailure]:
        return self._timed(list(prompts), lambda: self.inner.batch_complete(
            prompts, params, concurrency=concurrency, progress=progress), batch=True)

    def signature(self) -> dict[str, Any]:
        return self.inner.signature()

    def close(self) -> None:
        self.inner.close()
