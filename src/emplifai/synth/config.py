"""Settings of a synthesis run. Everything that changes what gets generated or kept is here and is recorded
with the run and in every stored item's provenance."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emplifai.provenance import json_digest
from emplifai.synth import stages as S
from emplifai.synth.targeting import EmotionPlan

if TYPE_CHECKING:
    from emplifai.llm.base import LLM


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    japanese_min: float = Field(0.7, ge=0.0, le=1.0, description="minimum Japanese-character share per text")
    situation_chars: tuple[int, int] = Field((30, 300), description="situation length bounds (characters)")
    turn_chars: tuple[int, int] = Field((15, 250), description="patient / supporter turn length bounds")
    near_threshold: float = Field(
        0.6, gt=0.0, le=1.0, description="Jaccard (character 3-grams, MinHash) at or above which two texts are "
        "near duplicates; compared against the store and within the batch")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    self_harm: Literal["care", "reject"] = Field(
        "care", description="care: keep self-harm content only when the supporter answers with care and points "
        "to help (flagged for reviewers); reject: never keep it")
    llm_safety: bool = Field(False, description="also ask the model to judge safety (one extra call per item)")
    emotion_agreement: bool = Field(
        False, description="the taxonomy-validation predictor must rank the target emotion in its top-k")
    agreement_top_k: int = Field(3, ge=1, le=28)
    agreement_shots: int = Field(0, ge=0, le=28)
    enabled: bool = Field(True, description="False: keep everything that parses (for benchmarks only)")


class TokenLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    brainstorm: int = Field(320, ge=8)
    rewrite: int = Field(200, ge=8)
    dialogue: int = Field(240, ge=8)
    safety: int = Field(48, ge=4)


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: int | None = Field(
        None, ge=1, description="live dialogues wanted per emotion; default: as many as the best-covered emotion")
    emotions: tuple[str, ...] | None = Field(None, description="English labels to fill; default: all 28")
    per_situation: int = Field(1, ge=1, le=10, description="dialogues per synthetic situation (pair target)")
    fill_pairs: bool = Field(
        False, description="also top up existing non-synthetic situations that have fewer than per_situation "
        "dialogues (synthetic situations are always topped up)")
    limit: int | None = Field(None, ge=1, description="at most this many new dialogues in this run")
    rounds: int = Field(2, ge=1, le=20, description="generate/filter rounds; a round retries what was rejected")
    scenarios_per_call: int = Field(4, ge=1, le=20, description="stage (a): scenarios asked for per call")
    shots: int = Field(2, ge=0, le=8, description="few-shot examples per prompt, drawn from stored data")
    seed: int = 42
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        "auto", description="chat: instructions through the chat template; completion: few-shot documents that a "
        "base model continues; auto: completion for models known to be base models (a GGUF or HF folder without "
        "a chat template, such as the embedded one), chat otherwise")
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: TokenLimits = Field(default_factory=lambda: TokenLimits())
    concurrency: int | None = Field(None, ge=1, le=256, description="parallel requests; None: the backend's "
                                    "default (8 on HTTP servers, 1 in process)")
    filters: FilterConfig = Field(default_factory=FilterConfig)


@dataclass
class RunReport:
    run_id: int
    key: str
    plans: list[EmotionPlan]  # the first round's plan
    rounds: int = 0
    calls: int = 0
    llm_seconds: float = 0.0
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)  # accepted_situations, accepted_dialogues, rejected, ...
    reasons: Counter[str] = field(default_factory=Counter)  # filter name (or stage) -> rejected candidates

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "key": self.key, "rounds": self.rounds, "calls": self.calls,
                "llm_seconds": round(self.llm_seconds, 3), "seconds": round(self.seconds, 3),
                "counts": dict(self.counts), "reasons": dict(self.reasons)}


def prompt_style(llm: LLM, cfg: SynthConfig) -> str:
    if cfg.prompt_style != "auto":
        return cfg.prompt_style
    return "completion" if llm.instruction_tuned is False else "chat"


def run_key(model: str, cfg: SynthConfig, style: str = "chat") -> str:
    payload = {"model": model, "seed": cfg.seed, "prompt_version": S.PROMPT_VERSION}
    if style != "chat":  # chat keys stay what they were before completion prompts existed
        payload["prompt_style"] = style
    return json_digest(payload, 12)
