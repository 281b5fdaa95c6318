"""llama.cpp backend (any GGUF file, optional GGUF LoRA adapter) through llama-cpp-python.

We use llama-cpp-python to load the model, tokenise and call ``llama_decode``, but drive the KV cache
ourselves (:mod:`emplifai.llm.kv_schedule`): every decode asks for logits only at the positions we need. That makes

* prompts decoded in fixed, position-aligned chunks, so that a cached prefix made of whole chunks (the 28-label
  header of the predict prompt, the judge's rubric, the instructions and few-shot documents of generate and
  synth) is reused across calls and still gives bit-identical numbers to a decode from scratch;
* ``score()`` evaluate a shared prompt once and all candidates in one batch, one sequence per candidate sharing
  the prompt's KV cells;
* per-token log-probabilities cheap (llama-cpp-python's own path needs ``logits_all=True``, which computes
  and copies a 262,144-wide row for every prompt token of Gemma 3).

Reproducibility: llama.cpp's CPU kernels round differently for different batch shapes, so the same inputs must
always meet the same decode schedule; kv_schedule explains how the schedule is made a function of the tokens
alone, whatever ran before.

The context is created with ``swa_full=True``: Gemma 3 uses sliding-window attention and the default
(small) SWA cache may already have overwritten positions that a rollback needs again; and with a unified KV
cache of ``n_seq_max`` sequences, so that score candidates share the prompt's cells.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emplifai.provenance import dist_version, file_sha256

from . import decoding, kv_schedule
from .base import (
    LLM,
    BackendUnavailable,
    Completion,
    GenParams,
    LLMError,
    MessagesLike,
    to_messages,
)
from .chat_template import render_gemma
from .grammar import JsonConstraint


class LlamaCppLLM(LLM):
    """A GGUF model in this process. Not thread-parallel: calls are serialised with a lock."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        lora_path: str | os.PathLike[str] | None = None,
        lora_scale: float = 1.0,
        n_ctx: int = 4096,
        n_batch: int = 512,
        decode_chunk: int = kv_schedule.DEFAULT_CHUNK,
        n_seq_max: int = 32,
        n_threads: int | None = None,
        chat_format: str | None = None,
        model_sha256: str | None = None,
        spec: str | None = None,
        verbose: bool = False,
    ) -> None:
        # llama.cpp's CPU threads meet at OpenMP barriers; libgomp's default spin-waiting collapses when another
        # process competes for the cores (measured on 2 cores: 16 tokens in 32 s instead of 0.7 s). Passive
        # waiting avoids that. libgomp reads this once, when llama_cpp loads it; a user's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendUnavailable("llama-cpp-python is not installed: pip install 'emplifai[llm]'") from exc
        self._lc = llama_cpp
        self.model_path = Path(model_path).resolve()
        self.lora_path = Path(lora_path).resolve() if lora_path else None
        for label, path in (("model", self.model_path), ("LoRA adapter", self.lora_path)):
            if path is not None and not path.is_file():
                raise BackendUnavailable(f"{label} file not found: {path}")
        self.lora_scale = lora_scale
        self.n_ctx = n_ctx
        threads = n_threads or int(os.environ.get("EMPLIFAI_THREADS") or 0) or os.cpu_count() or 1
        _set_log_level(llama_cpp, verbose)
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                lora_path=str(self.lora_path) if self.lora_path else None,
                lora_scale=lora_scale,
                logits_all=False,
                swa_full=True,
                verbose=verbose,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendUnavailable(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        ctx = _multi_sequence_context(llama_cpp, self._llama, n_seq_max, verbose)
        # Free the native model before interpreter teardown: llama-cpp-python's own __del__ at exit raises
        # "TypeError: 'NoneType' object is not callable" once its ctypes module is already gone.
        self._finalizer = weakref.finalize(self, _close, ctx, self._llama)
        self._model_sha256 = model_sha256
        self._n_batch = self._llama.n_batch
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self._dec = kv_schedule.Decoder(
            llama_cpp, self._llama.ctx, self._llama._batch.batch, n_vocab=self._llama.n_vocab(), chunk=decode_chunk,
            n_batch=self._n_batch, n_seq_max=n_seq_max, n_ctx=n_ctx)
        self._lock = threading.RLock()
        meta = self._llama.metadata
        self.architecture = meta.get("general.architecture", "")
        self._template = meta.get("tokenizer.chat_template")
        # instruction-tuned GGUFs carry their chat template; base models (the embedded one) do not
        self.instruction_tuned = bool(self._template)
        if chat_format is None:
            chat_format = "gemma" if self.architecture.startswith("gemma") else ("jinja" if self._template else "none")
        if chat_format not in ("gemma", "jinja", "none"):
            raise LLMError(f"chat_format must be 'gemma', 'jinja' (the GGUF's template) or 'none', got {chat_format!r}")
        self.chat_format = chat_format
        self.spec = spec or f"gguf:{self.model_path}" + (f"+lora:{self.lora_path}" if self.lora_path else "")

    # ------------------------------------------------------------------------------------- public API
    def signature(self) -> dict[str, Any]:
        if self._model_sha256 is None:
            self._model_sha256 = file_sha256(self.model_path)
        return {
            "backend": "llama.cpp",
            "model": self.model_path.name,
            "model_sha256": self._model_sha256,
            "adapter": self.lora_path.name if self.lora_path else None,
            "adapter_sha256": file_sha256(self.lora_path) if self.lora_path else None,
            "lora_scale": self.lora_scale if self.lora_path else None,
            "n_ctx": self.n_ctx,
            # logits depend (slightly) on how tokens are batched, so the schedule is part of the identity;
            # the thread count is not (checked: 1 and 2 threads give identical scores and text)
            "n_batch": self._n_batch,
            "decode_chunk": self._dec.chunk,
            "score_batch": self._dec.n_seq_max - 1,
            "chat_format": self.chat_format,
            "versions": {"llama_cpp_python": dist_version("llama-cpp-python"), "decode_loop": decoding.LOOP_VERSION,
                         "decode_schedule": kv_schedule.SCHEDULE_VERSION},
        }

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        with self._lock:
            return self._generate(self.tokenize(prompt), params or GenParams())

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        msgs = to_messages(messages)
        if self.chat_format == "gemma":
            tokens = self.tokenize(render_gemma(msgs))
        elif self.chat_format == "jinja":
            tokens = self._render_jinja(msgs)
        else:
            raise LLMError(f"{self.model_path.name} has no chat template; pass chat_format='gemma' or use complete()")
        with self._lock:
            return self._generate(tokens, params or GenParams())

    def render_chat(self, messages: MessagesLike) -> str | None:
        # score() tokenises with a BOS of its own, so the text leaves out the BOS that chat() would send
        msgs = to_messages(messages)
        if self.chat_format == "gemma":
            return render_gemma(msgs)
        if self.chat_format == "jinja":
            bos = self._piece_special(self._llama.token_bos())
            text = self._jinja_text(msgs)
            return text[len(bos):] if text.startswith(bos) else text
        return None

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        with self._lock:
            return self._score(prompt, candidates)

    def score_reference(self, prompt: str, candidates: Sequence[str], *, single_pass: bool = False) -> list[float]:
        """Slow reference for :meth:`score`, for tests and benchmarks: each candidate from a cleared cache.

        ``single_pass=False`` keeps score()'s decode schedule (prompt, then candidate) but decodes each candidate
        in a batch of its own, recomputing the prompt every time: it checks the prompt's reuse and the cell
        sharing of the candidates' batch, to the rounding that batch composition causes (up to ~0.35 nat seen).
        ``single_pass=True`` decodes prompt + candidate in one sequence, the naive way; llama.cpp's CPU kernels give
        slightly different logits for different batch shapes (ggml-org/llama.cpp#4479), so expect ~0.1 nat.
        """
        with self._lock:
            out = []
            for cand in candidates:
                self._clear()
                if not single_pass:
                    out.extend(self._score(prompt, [cand]))
                    continue
                p, full = self.tokenize(prompt), self.tokenize(prompt + cand)
                k = decoding.common_prefix_len(p, full)
                total = float(self._eval_targets(full, k - 1).sum())
                if k < len(p):
                    self._clear()
                    total -= float(self._eval_targets(p, k - 1).sum())
                out.append(total)
            return out

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        # special=True so control tokens written in a prompt (<start_of_turn>) are parsed the way the
        # llama.cpp server parses them; keeps embedded and server outputs comparable.
        if not self._finalizer.alive:
            raise LLMError(f"{self.spec}: the model was closed")
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def close(self) -> None:
        with self._lock:
            self._finalizer()  # idempotent

    # ------------------------------------------------------------------------------------- internals
    def _score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        if not candidates:
            return []
        p = self.tokenize(prompt)
        n = len(p)
        first = decoding.log_softmax(self._eval_last(p))  # the prompt; its cached chunks are reused
        fulls = [self.tokenize(prompt + cand) for cand in candidates]
        conts: dict[int, tuple[int, ...]] = {}
        merged: list[int] = []
        for i, full in enumerate(fulls):
            if decoding.common_prefix_len(p, full) < n:
                merged.append(i)
            else:
                conts[i] = tuple(full[n:])
        # every candidate's tokens in one batch (all but its last token: nothing needs the distribution after it);
        # single-token candidates are read off the prompt's last row and cost nothing
        rest = self._dec.continuations(list(conts.values()))
        scores = [0.0] * len(candidates)
        for i, cont in conts.items():
            scores[i] = float(first[cont[0]]) + rest[cont] if cont else 0.0
        for i in merged:
            # The last prompt token merged with the candidate's start ("感" + "謝" -> "感謝"), so the candidate
            # cannot be read off the prompt's distribution. Use the definition directly:
            # log P(full[k:] | full[:k]) - log P(p[k:] | p[:k]), both from the shared k-token prefix.
            k = decoding.common_prefix_len(p, fulls[i])
            if k == 0:
                raise LLMError("cannot score: the model adds no BOS token and the first token differs")
            scores[i] = float(self._eval_targets(fulls[i], k - 1).sum() - self._eval_targets(p, k - 1).sum())
        return scores

    def _generate(self, tokens: list[int], params: GenParams) -> Completion:
        max_new = min(params.max_tokens, self.n_ctx - len(tokens))
        if max_new <= 0:
            raise LLMError(f"prompt of {len(tokens)} tokens leaves no room in n_ctx={self.n_ctx}")
        first = self._eval_last(tokens)  # same prompt -> same schedule -> same output, whatever ran before
        # a JSON schema is enforced by llama.cpp's grammar sampler inside our own loop (llm/grammar.py)
        constraint = JsonConstraint(self._lc, self._vocab, self._dec.n_vocab, params.json_schema) \
            if params.json_schema else None
        try:
            out = decoding.generate(
                first,
                self._dec.step,
                detokenize=lambda toks: self._llama.detokenize(toks),
                piece=self._piece,
                is_eog=lambda t: bool(self._lc.llama_vocab_is_eog(self._vocab, t)),
                params=params,
                max_new=max_new,
                prompt_tokens=len(tokens),
                constraint=constraint,
            )
        finally:
            if constraint is not None:
                constraint.close()
        out.structured = "grammar" if constraint is not None else None
        return out

    def _piece(self, token: int) -> str:
        return self._llama.detokenize([token]).decode("utf-8", errors="replace")

    def _jinja_text(self, msgs: Sequence[Any]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        bos = self._piece_special(self._llama.token_bos())
        eos = self._piece_special(self._llama.token_eos())
        fmt = Jinja2ChatFormatter(template=self._template or "", eos_token=eos, bos_token=bos)
        return fmt(messages=[m.model_dump() for m in msgs]).prompt

    def _render_jinja(self, msgs: Sequence[Any]) -> list[int]:
        bos = self._piece_special(self._llama.token_bos())
        prompt = self._jinja_text(msgs)
        # templates usually write the BOS text themselves; do not add a second one
        return self.tokenize(prompt, add_bos=not prompt.startswith(bos))

    def _piece_special(self, token: int) -> str:
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    # Evaluation through the decode schedule (kv_schedule): reuses cached whole chunks, decodes the rest.
    def _eval_last(self, tokens: list[int]) -> np.ndarray:
        out: list[np.ndarray] = []
        last = len(tokens) - 1
        self._dec.decode(tokens, range(last, last + 1), lambda _i, row: out.append(row.copy()))
        return out[0]

    def _eval_targets(self, tokens: list[int], first: int) -> np.ndarray:
        """Return log P(tokens[i+1] | tokens[:i+1]) for i = first..len-2, i.e. the log-probs of tokens[first+1:]."""
        want = range(first, len(tokens) - 1)
        vals = np.zeros(len(want))

        def take(i: int, row: np.ndarray) -> None:
            vals[i - first] = decoding.log_softmax(row)[tokens[i + 1]]

        if len(want):
            # the last token is never decoded: nothing needs the distribution after it
            self._dec.decode(tokens[:-1], want, take)
        return vals

    def _clear(self) -> None:
        self._dec.clear()

    @property
    def decode_stats(self) -> dict[str, int]:
        """Tokens decoded and tokens taken from the cache since load, and llama_decode calls (for benchmarks)."""
        return dict(self._dec.stats)


def _multi_sequence_context(llama_cpp: Any, llama: Any, n_seq_max: int, verbose: bool) -> Any:
    """Replace the Llama object's context by one with a unified KV cache of ``n_seq_max`` sequences.

    llama-cpp-python opens a single-sequence context (several only in embedding mode), but batched scoring needs
    one sequence per candidate sharing the prompt's cells. The context parameters are otherwise the same; a LoRA
    adapter is applied to the new context as llama-cpp-python applied it to its own."""
    from llama_cpp import _internals

    if not 2 <= n_seq_max <= llama_cpp.llama_max_parallel_sequences():  # sequence 0 + at least one candidate
        raise LLMError(f"n_seq_max must be between 2 and {llama_cpp.llama_max_parallel_sequences()}, got {n_seq_max}")
    params = llama.context_params
    params.n_seq_max = n_seq_max
    params.kv_unified = True
    old = llama._ctx
    old.close()  # free its KV cache first; llama-cpp-python closes it again at exit, which is a no-op
    ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=verbose)
    llama._ctx = ctx
    adapter = getattr(llama, "_lora_adapter", None)
    if adapter is not None:
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(llama.lora_scale)
        if llama_cpp.llama_set_adapters_lora(ctx.ctx, adapters, 1, scales):
            raise BackendUnavailable(f"llama.cpp could not apply the LoRA adapter {llama.lora_path}")
    return ctx


def _close(ctx: Any, llama: Any) -> None:
    ctx.close()  # before the model it belongs to
    llama.close()


# llama-cpp-python 0.3.36 maps ggml's log levels with a stale enum (it prints WARN as if it were ERROR and
# hides ERROR as DEBUG), so verbose=False still floods stderr with warnings. We install our own callback:
# quiet mode prints only errors (ggml: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5).
_LOG_STATE = {"verbose": False, "last": 0}
_LOG_CALLBACK: Any = None


def _set_log_level(llama_cpp: Any, verbose: bool) -> None:
    global _LOG_CALLBACK
    _LOG_STATE["verbose"] = verbose
    if _LOG_CALLBACK is None:

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            level = _LOG_STATE["last"] if level == 5 else level
            _LOG_STATE["last"] = level
            if _LOG_STATE["verbose"] or level == 4:
                sys.stderr.write(text.decode("utf-8", errors="replace"))

        _LOG_CALLBACK = callback  # keep a reference: ctypes callbacks must outlive their registration
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
