"""Content-addressed disk cache around any :class:`LLM`: reruns are free, interrupted runs resume.

Key = sha256 of (inner.signature(), method, decoding params, input). Because the signature holds the model's
sha256, adapter, library versions and n_ctx, a changed model never serves stale answers, while moving a
model file does not invalidate anything. One small JSON file per entry, written to a temp file and renamed
(``os.replace``), so a kill never leaves half a file; an unreadable or mismatching file counts as a miss and
is rewritten. Failures (``LLMFailure``) are never cached, so a rerun retries them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emplifai.provenance import emplifai_home, text_digest

from .base import (
    LLM,
    Completion,
    GenParams,
    LLMError,
    LLMFailure,
    MessagesLike,
    ProgressCallback,
    ScoreItem,
    ScoreProgress,
    to_messages,
)

#: bump to invalidate every entry when the stored format or key recipe changes
CACHE_FORMAT = 1
#: bump when the way backends enforce GenParams.json_schema changes (grammar build, response_format forms)
STRUCTURED_VERSION = 1


class CachedLLM(LLM):
    def __init__(self, inner: LLM, cache_dir: str | os.PathLike[str] | None = None) -> None:
        if cache_dir is None:
            cache_dir = emplifai_home() / "llm-cache"
        self.inner = inner
        self.spec = inner.spec
        self.instruction_tuned = inner.instruction_tuned
        self.default_concurrency = inner.default_concurrency
        self.cache_dir = Path(cache_dir)
        self._signature: dict[str, Any] | None = None
        self.hits = 0
        self.misses = 0

    def signature(self) -> dict[str, Any]:
        if self._signature is None:  # may hash a model file: compute once
            self._signature = self.inner.signature()
        return self._signature

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        params = params or GenParams()
        key = self.key("complete", params, prompt)
        return self._cached_completion(key) or self._store_completion(key, self.inner.complete(prompt, params))

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        params = params or GenParams()
        msgs = to_messages(messages)
        key = self.key("chat", params, [m.model_dump() for m in msgs])
        return self._cached_completion(key) or self._store_completion(key, self.inner.chat(msgs, params))

    def render_chat(self, messages: MessagesLike) -> str | None:
        return self.inner.render_chat(messages)

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        key = self._score_key(prompt, candidates)
        hit = self._cached_scores(key, len(candidates))
        if hit is not None:
            return hit
        self.misses += 1
        result = self.inner.score(prompt, candidates)
        self._write(key, result)
        return result

    def check_score(self) -> None:
        self.inner.check_score()

    def batch_score(
        self,
        items: Sequence[ScoreItem],
        *,
        concurrency: int = 1,
        progress: ScoreProgress | None = None,
    ) -> list[list[float] | LLMFailure]:
        """Hits from the cache, misses to the inner backend's batch; each fresh result stored as it arrives."""
        keys = [self._score_key(p, c) for p, c in items]
        results: list[list[float] | LLMFailure | None] = [None] * len(items)
        todo = []
        for i, key in enumerate(keys):
            results[i] = self._cached_scores(key, len(items[i][1]))
            if results[i] is None:
                todo.append(i)
            elif progress is not None:
                progress(i, results[i])  # type: ignore[arg-type]

        def on_result(j: int, result: list[float] | LLMFailure) -> None:
            i = todo[j]
            if not isinstance(result, LLMFailure):
                self._write(keys[i], result)
            if progress is not None:
                progress(i, result)

        if todo:
            self.misses += len(todo)
            fresh = self.inner.batch_score([items[i] for i in todo], concurrency=concurrency, progress=on_result)
            for i, result in zip(todo, fresh, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def _score_key(self, prompt: str, candidates: Sequence[str]) -> str:
        return self.key("score", None, {"prompt": prompt, "candidates": list(candidates)})

    def _cached_scores(self, key: str, n: int) -> list[float] | None:
        hit = self._read(key)
        if isinstance(hit, list) and len(hit) == n and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in hit
        ):
            self.hits += 1
            return [float(x) for x in hit]
        return None

    def batch_chat(
        self,
        conversations: Sequence[MessagesLike],
        params: GenParams | None = None,
        *,
        concurrency: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Completion | LLMFailure]:
        return self._batch("chat", conversations, params or GenParams(), concurrency, progress)

    def batch_complete(
        self,
        prompts: Sequence[str],
        params: GenParams | None = None,
        *,
        concurrency: int = 1,
        progress: ProgressCallback | None = None,
    ) -> list[Completion | LLMFailure]:
        return self._batch("complete", prompts, params or GenParams(), concurrency, progress)

    def _batch(self, method: str, items: Sequence[Any], params: GenParams, concurrency: int,
               progress: ProgressCallback | None) -> list[Completion | LLMFailure]:
        """Answer hits from the cache, send the misses to the inner backend's batch (its own concurrency)."""
        results: list[Completion | LLMFailure | None] = [None] * len(items)
        inputs: list[Any] = []
        keys: list[str] = []
        todo: list[int] = []
        for i, item in enumerate(items):
            result: Completion | LLMFailure | None
            try:
                inp = to_messages(item) if method == "chat" else item
            except LLMError as exc:  # a malformed item fails alone, like any other item failure
                inputs.append(None)
                keys.append("")
                result = LLMFailure(reason=str(exc))
            else:
                inputs.append(inp)
                keys.append(self.key(method, params, [m.model_dump() for m in inp] if method == "chat" else inp))
                result = self._cached_completion(keys[i])
                if result is None:
                    todo.append(i)
                    continue
            results[i] = result
            if progress is not None:
                progress(i, result)

        def on_result(j: int, result: Completion | LLMFailure) -> None:
            # persist each item as it finishes, so an interrupted batch resumes from here
            i = todo[j]
            if isinstance(result, Completion):
                self._write(keys[i], result.to_dict())
            if progress is not None:
                progress(i, result)

        if todo:
            self.misses += len(todo)
            batch = self.inner.batch_chat if method == "chat" else self.inner.batch_complete
            fresh = batch([inputs[i] for i in todo], params, concurrency=concurrency, progress=on_result)
            for i, result in zip(todo, fresh, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.inner.close()

    # ------------------------------------------------------------------------------------- internals
    def key(self, method: str, params: GenParams | None, payload: Any) -> str:
        blob = {
            "format": CACHE_FORMAT,
            "signature": self.signature(),
            "method": method,
            "params": _params_key(params),
            "input": payload,
        }
        text = json.dumps(blob, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return text_digest(text)

    def path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached_completion(self, key: str) -> Completion | None:
        data = self._read(key)
        if isinstance(data, dict) and isinstance(data.get("text"), str) and isinstance(data.get("finish_reason"), str):
            try:
                hit = dataclasses.replace(Completion.from_dict(data), cached=True)
            except TypeError:
                return None
            self.hits += 1
            return hit
        return None

    def _store_completion(self, key: str, completion: Completion) -> Completion:
        self.misses += 1
        self._write(key, completion.to_dict())
        return completion

    def _read(self, key: str) -> Any:
        try:
            with open(self.path(key), encoding="utf-8") as fh:
                entry = json.load(fh)
        except (OSError, ValueError):  # missing, truncated or corrupted: a miss, rewritten after the call
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        return entry.get("result")

    def _write(self, key: str, result: Any) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"key": key, "result": result}, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _params_key(params: GenParams | None) -> dict[str, Any] | None:
    """The decoding parameters as keyed. ``json_schema`` is left out when unset, so the keys of entries written
    before structured output existed stay valid; when set, the structured-output recipe version joins it."""
    if params is None:
        return None
    if params.json_schema is None:
        return params.model_dump(mode="json", exclude={"json_schema"})
    return {**params.model_dump(mode="json"), "structured_version": STRUCTURED_VERSION}
