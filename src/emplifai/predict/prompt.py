"""The prediction prompt (28 labels, optional definitions and solved examples) and how an answer is read.

* score mode: the log-likelihood of each label string as the continuation of the prompt, optionally calibrated
  by the content-free prior (Zhao et al., 2021);
* generate mode: free text read with :func:`emplifai.taxonomy.parse_label`; what cannot be mapped keeps its raw
  text and the reason.
"""


from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from emplifai import taxonomy
from emplifai.prompts import render
from emplifai.prompts.generation import format_dialogue
from emplifai.records import Record
from emplifai.store.predict import PredStatus

if TYPE_CHECKING:
    from emplifai.llm.base import LLM

PROMPT_VERSION = "predict-v1"
TEMPLATE = "predict_ja.j2"
#: appended to each label when scoring: the label must *end* there, so 愛 is not favoured as a prefix of 愛情
CANDIDATE_END = "\n"
#: content-free inputs for calibration; their label distributions are averaged (Zhao et al. use the same idea)
CONTENT_FREE: tuple[str, ...] = ("N/A", "")

Mode = Literal["score", "generate"]


@dataclass(frozen=True)
class Example:
    situation_id: str
    dialogue_id: str
    situation: str
    dialogue: str
    label: str  # Japanese label name


@dataclass
class ItemResult:
    """What one item produced; becomes one row of the predictions table."""

    status: PredStatus
    predicted: str | None  # English label
    reason: str | None
    raw_output: str | None = None
    top3: list[str] | None = None
    distribution: dict[str, Any] | None = None


def choose_examples(pool: Sequence[Record], seed: int) -> list[Example]:
    """A fixed, seeded ranking of one training dialogue per emotion (emotions in shuffled order).

    Fixed across items so the shared prompt prefix is evaluated once and reused from the cache; an item
    takes the first ``shots`` examples that are not itself (nor from its situation)."""
    rng = random.Random(seed)
    by_emotion: dict[str, list[Record]] = {}
    for r in sorted(pool, key=lambda r: r.dialogue_id):
        by_emotion.setdefault(r.emotion, []).append(r)
    emotions = sorted(by_emotion)
    rng.shuffle(emotions)
    ranked = []
    for emo in emotions:
        r = rng.choice(by_emotion[emo])
        ranked.append(
            Example(r.situation_id, r.dialogue_id, r.situation, format_dialogue(r.patient, r.supporter),
                    taxonomy.get(r.emotion).ja)
        )
    return ranked


def examples_for(item: Record, ranked: Sequence[Example], shots: int) -> list[Example]:
    return [e for e in ranked if e.situation_id != item.situation_id and e.dialogue_id != item.dialogue_id][:shots]


def build_prompt(situation: str, patient: str, supporter: str, examples: Sequence[Example] = (),
                 *, definitions: bool = True) -> str:
    """The prompt text; it ends with ``感情：`` so the label is the continuation."""
    dialogue = format_dialogue(patient, supporter) if (patient or supporter) else "患者：\n支援者："
    return render(TEMPLATE, labels=taxonomy.LABELS, definitions=definitions, examples=list(examples),
                  situation=situation.strip(), dialogue=dialogue)


def candidates() -> list[str]:
    return [lab.ja + CANDIDATE_END for lab in taxonomy.LABELS]


# --------------------------------------------------------------------------------------------- scoring
def _normalise(logps: Sequence[float]) -> list[float]:
    m = max(logps)
    z = m + math.log(sum(math.exp(x - m) for x in logps))
    return [x - z for x in logps]


def content_free_logprobs(llm: LLM, examples: Sequence[Example], definitions: bool) -> list[float]:
    """log of the label distribution for content-free inputs (averaged in probability space)."""
    probs = [0.0] * len(taxonomy.LABELS)
    for text in CONTENT_FREE:
        lp = _normalise(llm.score(build_prompt(text, text, text, examples, definitions=definitions), candidates()))
        probs = [p + math.exp(x) / len(CONTENT_FREE) for p, x in zip(probs, lp, strict=True)]
    return [math.log(max(p, 1e-300)) for p in probs]


def score_item(llm: LLM, prompt: str, prior: Sequence[float] | None = None) -> ItemResult:
    return rank_scores(llm.score(prompt, candidates()), prior)


def rank_scores(raw: Sequence[float], prior: Sequence[float] | None = None) -> ItemResult:
    """The item's result from the 28 label scores (``LLM.score`` of :func:`candidates`), optionally calibrated."""
    raw = list(raw)
    if len(raw) != len(taxonomy.LABELS) or not all(math.isfinite(x) for x in raw):
        return ItemResult(PredStatus.FAILED, None, f"backend returned unusable scores: {raw!r}"[:500])
    logp = _normalise(raw)
    final = _normalise([x - c for x, c in zip(logp, prior, strict=True)]) if prior is not None else logp
    order = sorted(range(len(final)), key=lambda i: -final[i])
    names = [lab.en for lab in taxonomy.LABELS]
    dist: dict[str, Any] = {
        "loglik": dict(zip(names, raw, strict=True)),  # total log-probability of each label string
        "prob": {n: math.exp(x) for n, x in zip(names, logp, strict=True)},
    }
    if prior is not None:
        dist["calibrated"] = {n: math.exp(x) for n, x in zip(names, final, strict=True)}
    if max(final) - min(final) == 0.0:  # nothing to rank: no prediction, and no tie-break pretending to be one
        return ItemResult(PredStatus.UNPARSED, None, "undecided: all 28 labels have the same score",
                          distribution=dist)
    top3 = [names[i] for i in order[:3]]  # stable sort: equal scores keep Table-1 order (metrics.labels.TIE_RULE)
    return ItemResult(PredStatus.OK, top3[0], "calibrated top-1" if prior else "top-1 log-likelihood",
                      top3=top3, distribution=dist)


def read_answer(text: str | None) -> ItemResult:
    """Generate mode: map the model's free text to a label, or keep it as unparsed with the reason."""
    match = taxonomy.parse_label(text)
    if match.label is None:
        return ItemResult(PredStatus.UNPARSED, None, match.reason, raw_output=text)
    return ItemResult(PredStatus.OK, match.label.en, match.reason, raw_output=text)


# ------------------------------------------------------------------------------------------------ runs
