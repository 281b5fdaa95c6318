"""The model-based filters of a synthesis run: an LLM safety verdict, and whether the taxonomy-validation
predictor (score mode) ranks the target emotion of a candidate in its top k. Rule-based filters are in
:mod:`emplifai.synth.filters`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from emplifai.llm.base import LLM, Completion, LLMFailure
from emplifai.predict import prompt as predictor
from emplifai.prompts import render
from emplifai.prompts.generation import format_dialogue
from emplifai.synth import filters as F
from emplifai.synth import stages as S
from emplifai.synth.config import FilterConfig


def emotion_agreement(llm: LLM, items: Sequence[tuple[str, str, str, Any]], ranked: Sequence[predictor.Example],
                      fc: FilterConfig, progress: Callable[[str, int, int], None] | None = None
                      ) -> list[F.FilterResult]:
    """One verdict per (candidate id, situation, emotion, parsed dialogue), in order; a failing item gets a
    failed verdict with the reason and never sinks the run."""
    results = []
    for done, (_cid, sit, emotion, p) in enumerate(items, 1):
        prompt = predictor.build_prompt(sit, p.patient, p.supporter, ranked[: fc.agreement_shots])
        try:
            res = predictor.score_item(llm, prompt)
        except Exception as exc:  # one failing item must not sink the run; the reason is kept
            results.append(F.FilterResult("emotion_agreement", False, f"predictor failed: {exc}"))
            continue
        if res.predicted is None or not res.top3:
            results.append(F.FilterResult("emotion_agreement", False, f"predictor gave no label: {res.reason}"))
            continue
        dist = (res.distribution or {}).get("prob", {})
        order = sorted(dist, key=lambda k: -dist[k]) if dist else res.top3
        results.append(F.agreement(emotion, order, fc.agreement_top_k, dist.get(emotion)))
        if progress is not None:
            progress("agreement", done, len(items))
    return results


def safety_prompts(items: Sequence[tuple[str, str, str, Any]]) -> list[S.Prompt]:
    return [S.Prompt([{"role": "user", "content": render(
        "synth_safety.j2", situation=sit, dialogue=format_dialogue(p.patient, p.supporter))}], [])
        for _, sit, _, p in items]


def safety_verdict(res: Completion | LLMFailure) -> F.FilterResult:
    if isinstance(res, LLMFailure):
        return F.FilterResult("llm_safety", False, f"safety call failed: {res.reason}")
    return F.read_safety_verdict(res.text)
