"""The judge's rubrics: keys, names, one-line definitions and score scales, in two sets.

* ``paper``: the seven rubrics of the paper's Table 3, scored 1 (worst) … 5 (best); human raters use these;
* ``epitome``: the three communication mechanisms by which SynthEmpathy scored empathy (EPITOME, Sharma et
  al. 2020: emotional reactions, interpretations, explorations), scored 0 (none), 1 (weak), 2 (strong).

The one home of metric names: the store's rows, the judge's prompts, the rating sheets, the web app's rating
page and every table take them from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from emplifai.errors import UserError

Lang = Literal["ja", "en"]
SCALE = (1, 5)  # every paper rubric is scored 1 (worst) … 5 (best)
EPITOME_SCALE = (0, 2)  # EPITOME: 0 no communication, 1 weak, 2 strong
RUBRIC_SETS = ("paper", "epitome", "all")


@dataclass(frozen=True, slots=True)
class Rubric:
    key: str
    ja: str
    en: str
    guide_ja: str  # the one-line definition shown to human raters
    scale: tuple[int, int] = SCALE
    rubric_set: str = "paper"
    # (score, feedback ja, feedback en) of the judge's two worked examples (prompts/judge.py: a careful reply,
    # then a dismissive one); None = the paper rubrics' shared 4 and 2
    examples: tuple[tuple[int, str, str], ...] | None = None


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
_COLD = (0, "事務的な応答で、行けなかった悲しみに触れていない。",
         "A matter-of-fact reply that does not touch the sadness of missing the event.")
EPITOME_RUBRICS: tuple[Rubric, ...] = (
    Rubric("emotional_reactions", "感情的な反応", "Emotional reactions",
           "支援者が、話を聞いて自分が感じた温かさや思いやり、心配を言葉にしているか", EPITOME_SCALE, "epitome",
           ((1, "「落ち着かないですよね」と気持ちに寄り添っているが、支援者自身の気持ちははっきり言葉にしていない。",
             "It sides with the patient's unease but does not name the supporter's own feeling."), _COLD)),
    Rubric("interpretations", "理解の伝達", "Interpretations",
           "支援者が、患者の気持ちや経験を読み取って理解したことを伝えているか", EPITOME_SCALE, "epitome",
           ((2, "初めての説明で何を言われるか分からない不安を、具体的に言い当てて伝えている。",
             "It names the specific unease of not knowing what the first briefing will bring."), _COLD)),
    Rubric("explorations", "問いかけによる探索", "Explorations",
           "支援者が、患者がまだ語っていない気持ちや経験を尋ねて理解を深めようとしているか", EPITOME_SCALE, "epitome",
           ((0, "手伝いを申し出ているが、患者の気持ちや経験については尋ねていない。",
             "It offers help but asks nothing about the patient's feelings or experiences."), _COLD)),
)
BY_KEY = {r.key: r for r in (*RUBRICS, *EPITOME_RUBRICS)}
METRICS: tuple[str, ...] = tuple(r.key for r in RUBRICS)  # Table-3 order; keys used in the DB, sheets, web app
EPITOME: tuple[str, ...] = tuple(r.key for r in EPITOME_RUBRICS)
JUDGE_METRICS: tuple[str, ...] = (*METRICS, *EPITOME)  # every key the judge can score, in report order


def label(metric: str, lang: Lang = "ja") -> str:
    r = BY_KEY[metric]
    return r.ja if lang == "ja" else r.en


def scale(metric: str) -> tuple[int, int]:
    return BY_KEY[metric].scale


def rubric_set(name: str) -> tuple[str, ...]:
    """The metric keys of ``--rubrics paper|epitome|all``."""
    sets = {"paper": METRICS, "epitome": EPITOME, "all": JUDGE_METRICS}
    if name not in sets:
        raise UserError(f"unknown rubric set {name!r}; use {', '.join(RUBRIC_SETS)}")
    return sets[name]


def ordered(metrics: Iterable[str]) -> tuple[str, ...]:
    """Known metric keys in report order (paper's Table 3, then EPITOME); unknown ones left out."""
    present = set(metrics)
    return tuple(m for m in JUDGE_METRICS if m in present)


def check_metrics(metrics: Sequence[str], what: str = "metric", allowed: Sequence[str] = JUDGE_METRICS
                  ) -> tuple[str, ...]:
    """Validate metric keys given by a user; keeps report order and drops duplicates."""
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise UserError(f"unknown {what} {', '.join(map(repr, unknown))}; use {', '.join(allowed)}")
    return ordered(metrics)
