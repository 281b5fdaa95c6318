"""Synthetic augmentation in the SynthEmpathy style, aimed at under-represented emotions (``emplifai synth``).

targeting (what is missing) → stages (brainstorm → rewrite → dialogue) → filters → store (pending review).
"""

from __future__ import annotations

from .config import FilterConfig, RunReport, SynthConfig, TokenLimits, run_key
from .pipeline import Synthesizer
from .stages import PROMPT_VERSION
from .targeting import EmotionPlan, plan

__all__ = [
    "PROMPT_VERSION",
    "EmotionPlan",
    "FilterConfig",
    "RunReport",
    "SynthConfig",
    "Synthesizer",
    "TokenLimits",
    "plan",
    "run_key",
]
