"""The LLM layer: one narrow interface (:class:`LLM`), interchangeable backends chosen by a spec string.

    from emplifai.llm import GenParams, load, CachedLLM
    llm = CachedLLM(load("embedded"))                      # or "gguf:PATH", "openai:MODEL@URL", "hf:DIR", ...
    llm.chat([{"role": "user", "content": "..."}], GenParams(max_tokens=64)).text
    llm.score("感情: ", ["喜び", "悲しみ"])                  # total log-probabilities

What lives here: the interface and its data types (``base``), the spec parser (``registry``), the backends
(``llamacpp``, ``transformers_local``, ``openai_compat``, ``fake``) with the decode loop the in-process ones
share (``decoding``), the disk cache (``cache``), the Gemma chat template (``chat_template``) and the one way
to get the embedded Gemma 3 270M, as a GGUF or as a Hugging Face folder (``embedded``). It owns no store
table: stages record what an LLM produced, with its ``signature()``, in their own tables.

The cut: everything that knows how a model is run stays below this line, so stages never see llama.cpp, torch
or HTTP, and a new backend changes no stage. Importing this package loads no model and imports neither
llama_cpp, transformers, torch nor httpx.
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
from .chat_template import END_OF_TURN, render_gemma
from .embedded import embedded_hf_dir, embedded_model
from .fake import FakeLLM
from .registry import SPEC_FORMS, Spec, load, load_model, parse_spec

__all__ = [
    "END_OF_TURN",
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
    "embedded_hf_dir",
    "embedded_model",
    "load",
    "load_model",
    "parse_spec",
    "render_gemma",
]
