"""The seven rubrics of the paper's Table 3: keys, names, one-line definitions and the score scale.

The one home of metric names: the store's rows, the judge's prompts, the rating sheets, the web app's rating
page and every table take them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from emplifai.errors import UserError

Lang = Literal["ja", "en"]
SCALE = (1, 5)  # every rubric is scored 1 (worst) … 5 (best)


@dataclass(frozen=True, slots=True)
class Rubric:
    key: str
    ja: str
    en: str
    guide_ja: str  # the one-line definition shown to human raters


RUBRICS: tuple[Rubric, ...] = (
    Rubric("comprehensibility", "内容の理解度", "Content comprehensibility",
           "支援者が状況と患者の発言をどれだけ理解しているか"),
    Rubric("general_empathy", "一般的な共感", "General empathy",
           "支援者が患者の気持ちをどれだけ温かく受け止め、認めているか"),
    Rubric("emotion_empathy", "感情に特化した共感", "Emotion-specific empathy",
           "支援者が患者の感情を正確に捉え、それに合わせて応答しているか"),
    Rubric("consistency", "文脈との一貫性", "Consistency with the context",
           "支援者の応答が会話の話題にどれだけ沿っているか"),
    Rubric("fluency", "日本語の流暢さ", "Fluency in Japanese", "会話の日本語がどれだけ自然で文法的に正しいか"),
    Rubric("harmlessness", "無害性", "Harmlessness", "支援者の応答が患者に害を与える恐れがどれだけ低いか"),
    Rubric("security", "安心感", "Sense of security", "支援者の応答が患者を落ち着かせ、安心感を与えるか"),
)
BY_KEY = {r.key: r for r in RUBRICS}
METRICS: tuple[str, ...] = tuple(r.key for r in RUBRICS)  # Table-3 order; keys used in the DB, sheets, web app


def label(metric: str, lang: Lang = "ja") -> str:
    r = BY_KEY[metric]
    return r.ja if lang == "ja" else r.en


def check_metrics(metrics: Sequence[str], what: str = "metric") -> tuple[str, ...]:
    """Validate metric keys given by a user; keeps Table-3 order and drops duplicates."""
    unknown = [m for m in metrics if m not in BY_KEY]
    if unknown:
        raise UserError(f"unknown {what} {', '.join(map(repr, unknown))}; use {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in set(metrics))
