"""How the evaluation stage obtains an LLM from a spec string: one entry point over ``emplifai.llm.load``.

Kept as a module-level function so tests (and ``compare``) can swap the loader in one place.
"""

from __future__ import annotations

from emplifai.errors import UserError
from emplifai.llm.base import LLM


def load_llm(spec: str) -> LLM:
    """``emplifai.llm.load(spec)``; a bad spec or an unavailable backend becomes a clean user error."""
    from emplifai.llm import LLMError, load

    try:
        return load(spec)
    except LLMError as exc:
        raise UserError(f"cannot load model {spec!r}: {exc}") from exc
