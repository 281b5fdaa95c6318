"""A scripted fake LLM for unit tests (in the spirit of simonw/llm's ``MockModel``).

    llm = load("fake:judge")             # the same instance for the same name, so code under test that
    llm.enqueue(["5", "3", [-1.0, -2.0]])  # calls load("fake:judge") itself sees what the test queued
    llm.chat([...]).text                 # -> "5"
    llm.score("prompt", ["a", "b"])      # after two chats: -> [-1.0, -2.0]

Queue items: ``str`` (completion text), :class:`Completion`, a list of floats (a ``score`` result) or an
exception instance (raised by that call). An empty queue raises ``LLMError`` — except for ``fake:echo``,
which echoes the prompt / last message and scores candidates by ``-len(candidate)``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import LLM, Completion, GenParams, LLMError, MessagesLike, to_messages

QueueItem = str | Completion | Sequence[float] | BaseException


@dataclass
class FakeCall:
    method: str  # complete | chat | score
    input: Any  # prompt, list of Message, or (prompt, candidates)
    params: GenParams | None


class FakeLLM(LLM):
    _instances: ClassVar[dict[str, FakeLLM]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.spec = f"fake:{name}"
        self._queue: deque[QueueItem] = deque()
        self.calls: list[FakeCall] = []
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> FakeLLM:
        """The process-wide instance for ``name`` (created on first use)."""
        with cls._registry_lock:
            return cls._instances.setdefault(name, cls(name))

    @classmethod
    def reset_all(cls) -> None:
        """Forget all named instances (call from a test fixture for isolation)."""
        with cls._registry_lock:
            cls._instances.clear()

    def enqueue(self, items: Iterable[QueueItem]) -> FakeLLM:
        with self._lock:
            self._queue.extend(items)
        return self

    @property
    def pending(self) -> int:
        return len(self._queue)

    def signature(self) -> dict[str, Any]:
        return {"backend": "fake", "model": self.name}

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        return self._text(FakeCall("complete", prompt, params), prompt)

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        msgs = to_messages(messages)
        return self._text(FakeCall("chat", msgs, params), msgs[-1].content)

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        item = self._pop(FakeCall("score", (prompt, list(candidates)), None))
        if item is None:
            return [-float(len(c)) for c in candidates]
        if isinstance(item, str | Completion) or len(item) != len(candidates):
            raise LLMError(f"FakeLLM {self.name}: queued {item!r} is not a score list for {len(candidates)} candidates")
        return [float(x) for x in item]

    def _text(self, call: FakeCall, echo: str) -> Completion:
        item = self._pop(call)
        if item is None:
            item = echo
        if isinstance(item, Completion):
            return item
        if not isinstance(item, str):
            raise LLMError(f"FakeLLM {self.name}: queued {item!r} is a score list, but {call.method}() was called")
        params = call.params or GenParams()
        text, finish = item, "stop"
        for stop in params.stop:
            if stop and stop in text:
                text = text.split(stop, 1)[0]
        if len(text) > params.max_tokens:  # one character stands for one token
            text, finish = text[: params.max_tokens], "length"
        return Completion(
            text=text, finish_reason=finish, prompt_tokens=len(str(call.input)), completion_tokens=len(text)
        )

    def _pop(self, call: FakeCall) -> QueueItem | None:
        with self._lock:
            self.calls.append(call)
            if self._queue:
                item = self._queue.popleft()
            elif self.name == "echo":
                return None
            else:
                raise LLMError(f"FakeLLM {self.name}: no queued response left for {call.method}()")
        if isinstance(item, BaseException):
            raise item
        return item
