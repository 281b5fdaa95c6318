"""The Gemma chat template, written out once: the llama.cpp and transformers backends send it, and fine-tuning
trains on exactly the text they send (``emplifai.finetune`` builds its prompts with :func:`render_gemma`)."""

from __future__ import annotations

from collections.abc import Sequence

from .base import LLMError, Message

#: closes every Gemma turn; the model's own turn ends with it too (an end-of-generation token in llama.cpp)
END_OF_TURN = "<end_of_turn>"


def render_gemma(messages: Sequence[Message]) -> str:
    """Gemma chat template, as in the official Gemma 3 template.

    The system prompt is folded into the first user turn (Gemma has no system role). llama-cpp-python's
    ``chat_format="gemma"`` instead *drops* system messages silently, which would lose our instructions.
    """
    system = "\n\n".join(m.content.strip() for m in messages if m.role == "system")
    turns = [m for m in messages if m.role != "system"]
    if not turns or turns[0].role != "user":
        raise LLMError("Gemma chat needs the first non-system message to be from the user")
    out = []
    for i, m in enumerate(turns):
        content = m.content.strip()
        if i == 0 and system:
            content = f"{system}\n\n{content}"
        role = "model" if m.role == "assistant" else "user"
        out.append(f"<start_of_turn>{role}\n{content}{END_OF_TURN}\n")
    out.append("<start_of_turn>model\n")
    return "".join(out)
