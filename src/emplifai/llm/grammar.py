"""Grammar-constrained decoding for the in-process llama.cpp backend: a JSON schema becomes a GBNF grammar
(llama-cpp-python's json-schema-to-grammar converter) and llama.cpp's grammar sampler masks every token that
would leave it, so the answer is valid JSON of that schema by construction.

The decode loop asks :meth:`JsonConstraint.allows` about the token it would pick anyway and masks the whole
vocabulary only when that token is refused. Greedy decoding then picks exactly the argmax of the masked
distribution, and sampling draws exactly from it (p(t) + (1 − Z)·p(t)/Z = p(t)/Z for an allowed t), while
most steps cost one token check instead of a pass over Gemma's 262,144 tokens.
"""

from __future__ import annotations

import ctypes
import functools
import json
from typing import Any

import numpy as np

from .base import LLMError

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
# The converter's string character class admits raw control characters (a newline inside a JSON string),
# which strict JSON refuses; the patched class keeps the answer parseable by any JSON reader.
_LOOSE_CHAR = 'char ::= [^"\\\\]'
_STRICT_CHAR = 'char ::= [^"\\\\\\x00-\\x1F\\x7F]'


@functools.lru_cache(maxsize=64)
def gbnf_for_schema(schema: str) -> str:
    """The GBNF grammar of a JSON schema (canonical JSON text), with strict-JSON string characters."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = json_schema_to_gbnf(schema)
    except Exception as exc:  # the converter raises bare Exceptions for schemas it cannot express
        raise LLMError(f"cannot build a grammar from the JSON schema: {exc}") from exc
    return grammar.replace(_LOOSE_CHAR, _STRICT_CHAR)


class JsonConstraint:
    """One generation's grammar state over a llama.cpp vocabulary. Not thread-safe (one per call)."""

    def __init__(self, lc: Any, vocab: Any, n_vocab: int, schema: str) -> None:
        self._lc = lc
        self._n_vocab = n_vocab
        self._smpl = lc.llama_sampler_init_grammar(vocab, gbnf_for_schema(schema).encode(), b"root")
        if not self._smpl:
            raise LLMError("llama.cpp refused the grammar built from the JSON schema")
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._all = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._all["id"] = np.arange(n_vocab, dtype=np.int32)

    def allows(self, token: int) -> bool:
        self._one["id"], self._one["logit"] = token, 0.0
        self._apply(self._one)
        return bool(np.isfinite(self._one["logit"][0]))

    def mask(self, logprobs: np.ndarray) -> np.ndarray:
        """``logprobs`` with every token the grammar refuses at this point set to −inf."""
        self._all["logit"] = 0.0
        self._apply(self._all)
        out = np.array(logprobs, dtype=np.float64, copy=True)
        out[~np.isfinite(self._all["logit"])] = -np.inf
        if not np.isfinite(out).any():
            raise LLMError("the grammar allows no token here (the schema cannot be completed)")
        return out

    def accept(self, token: int) -> None:
        self._lc.llama_sampler_accept(self._smpl, token)

    @staticmethod
    def complete(text: str) -> bool:
        """True once the text is one whole JSON value: the schema's object is closed, nothing may follow."""
        try:
            json.loads(text)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        if self._smpl:
            self._lc.llama_sampler_free(self._smpl)
            self._smpl = None

    def _apply(self, data: np.ndarray) -> None:
        arr = self._lc.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(self._lc.llama_token_data)), size=len(data), selected=-1,
            sorted=False)
        self._lc.llama_sampler_apply(self._smpl, ctypes.byref(arr))
