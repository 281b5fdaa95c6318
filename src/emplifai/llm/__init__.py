"""The LLM layer: one narrow interface (:class:`LLM`), interchangeable backends chosen by a spec string.

    from emplifai.llm import GenParams, load, CachedLLM
    llm = CachedLLM(load("embedded"))                      # or "gguf:PATH", "openai:MODEL@URL", "hf:DIR", ...
    llm.chat([{"role": "user", "content": "..."}], GenParams(max_tokens=64)).text
    llm.score("感情: ", ["喜び", "悲しみ"])                  # total log-probabilities

Importing this package loads no model and imports neither llama_cpp, transformers nor httpx.
"""

from .base import (
    LLM,
    BackendUnavailable,
    BadSpecError,
    Completion,
    GenParams,
    LLMError,
    LLMFailure,
    Message,
    ProgressCallback,
    TokenLogprob,
)
from .cache import CachedLLM
from .fake import FakeLLM
from .registry import SPEC_FORMS, Spec, embedded_model, load, parse_spec

__all__ = [
    "LLM",
    "SPEC_FORMS",
    "BackendUnavailable",
    "BadSpecError",
    "CachedLLM",
    "Completion",
    "FakeLLM",
    "GenParams",
    "LLMError",
    "LLMFailure",
    "Message",
    "ProgressCallback",
    "Spec",
    "TokenLogprob",
    "embedded_model",
    "load",
    "parse_spec",
]
