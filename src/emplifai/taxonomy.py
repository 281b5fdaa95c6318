"""The 28 GoEmotions labels with the EmplifAI paper's Japanese names and sentiment groups (Table 1).

`normalise` maps what a model or a person writes to a label. It applies documented rules only
(docs/taxonomy.md); text it cannot map gives ``None`` and `parse_label` says why, so nothing is guessed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from emplifai.errors import UserError


class Group(StrEnum):
    POSITIVE = "Positive"
    NEGATIVE = "Negative"
    AMBIGUOUS = "Ambiguous"
    NEUTRAL = "Neutral"


@dataclass(frozen=True, slots=True)
class Label:
    en: str
    ja: str
    group: Group
    definition_en: str
    definition_ja: str

    def __str__(self) -> str:
        return self.en


_P, _N, _A, _Z = Group.POSITIVE, Group.NEGATIVE, Group.AMBIGUOUS, Group.NEUTRAL

# Order and names exactly as the paper's Table 1.
LABELS: tuple[Label, ...] = (
    Label("Admiration", "称賛", _P, "Finding something or someone impressive or worthy of respect.",
          "人や物事を立派だ、すばらしいと感じて敬う気持ち。"),
    Label("Amusement", "娯楽", _P, "Finding something funny or being entertained.",
          "何かをおもしろい、愉快だと感じて楽しむ気持ち。"),
    Label("Approval", "承認", _P, "Having or expressing a favourable opinion; agreeing.",
          "考えや行動に賛成し、良いと認める気持ち。"),
    Label("Caring", "思いやり", _P, "Displaying kindness and concern for others.",
          "相手を気づかい、支えたい・守りたいと思う気持ち。"),
    Label("Desire", "願望", _P, "A strong feeling of wanting something or wishing for something to happen.",
          "何かを強く望み、そうなってほしいと願う気持ち。"),
    Label("Excitement", "興奮", _P, "Feeling of great enthusiasm and eagerness.",
          "期待や楽しみで胸が高鳴り、わくわくする気持ち。"),
    Label("Gratitude", "感謝", _P, "A feeling of thankfulness and appreciation.",
          "してもらったことをありがたいと思う気持ち。"),
    Label("Joy", "喜び", _P, "A feeling of pleasure and happiness.",
          "うれしく、幸せだと感じる気持ち。"),
    Label("Love", "愛", _P, "A strong positive emotion of regard and affection.",
          "人を深く大切に思い、慕う気持ち。"),
    Label("Optimism", "楽観", _P, "Hopefulness and confidence about the future or the success of something.",
          "先行きはきっと良くなると前向きに考える気持ち。"),
    Label("Pride", "誇り", _P, "Pleasure or satisfaction due to one's own achievements or those of close others.",
          "自分や身近な人の努力や成果を誇らしく思う気持ち。"),
    Label("Relief", "安心", _P, "Reassurance and relaxation following release from anxiety or distress.",
          "心配や不安が解けて、ほっとする気持ち。"),
    Label("Anger", "怒り", _N, "A strong feeling of displeasure or antagonism.",
          "理不尽なことに対して激しく腹を立てる気持ち。"),
    Label("Annoyance", "迷惑", _N, "Mild anger, irritation.",
          "わずらわしさや軽い苛立ちを感じる気持ち。"),
    Label("Disappointment", "失望", _N, "Sadness or displeasure caused by the non-fulfilment of one's hopes.",
          "期待していたことがかなわず、がっかりする気持ち。"),
    Label("Disapproval", "不承認", _N, "Having or expressing an unfavourable opinion.",
          "考えや行動を良くないと思い、賛成できない気持ち。"),
    Label("Disgust", "嫌悪", _N, "Revulsion or strong disapproval aroused by something unpleasant.",
          "不快なものに強い嫌気や拒否感を覚える気持ち。"),
    Label("Embarrassment", "恥ずかしさ", _N, "Self-consciousness, shame, or awkwardness.",
          "人目が気になり、きまり悪く恥ずかしいと感じる気持ち。"),
    Label("Fear", "恐れ", _N, "Being afraid or worried.",
          "危険や悪い出来事が起こるのではと怖く感じる気持ち。"),
    Label("Grief", "嘆き", _N, "Intense sorrow, especially caused by someone's death or a lasting loss.",
          "取り返しのつかない喪失を深く悲しみ嘆く気持ち。"),
    Label("Nervousness", "緊張", _N, "Apprehension, worry, anxiety.",
          "これから起こることを前に、不安で落ち着かない気持ち。"),
    Label("Remorse", "後悔", _N, "Regret or guilty feeling about something one has done.",
          "自分のしたこと・しなかったことを悔やむ気持ち。"),
    Label("Sadness", "悲しみ", _N, "Emotional pain, sorrow.",
          "つらく、悲しく、心が沈む気持ち。"),
    Label("Confusion", "混乱", _A, "Lack of understanding, uncertainty.",
          "状況や情報が理解できず、戸惑う気持ち。"),
    Label("Curiosity", "好奇心", _A, "A strong desire to know or learn something.",
          "もっと知りたい、学びたいと興味を持つ気持ち。"),
    Label("Realization", "気づき", _A, "Becoming aware of something.",
          "それまで見えていなかったことに、はっと気づく気持ち。"),
    Label("Surprise", "驚き", _A, "Feeling astonished, startled by something unexpected.",
          "予想外の出来事にびっくりする気持ち。"),
    Label("Neutral", "平静", _Z, "No particular emotion; calm and matter-of-fact.",
          "特に強い感情はなく、落ち着いて淡々としている状態。"),
)

BY_EN: dict[str, Label] = {lab.en: lab for lab in LABELS}
BY_JA: dict[str, Label] = {lab.ja: lab for lab in LABELS}
EN_NAMES: tuple[str, ...] = tuple(lab.en for lab in LABELS)

# Documented synonym list (docs/taxonomy.md): common readings, inflections and near-synonyms that
# unambiguously name one label. Words that could name two labels (e.g. 心配: Caring or Nervousness) are
# deliberately absent.
SYNONYMS: dict[str, str] = {
    # readings in kana
    "しょうさん": "Admiration", "かんしゃ": "Gratitude", "よろこび": "Joy", "あい": "Love",
    "らっかん": "Optimism", "ほこり": "Pride", "あんしん": "Relief", "いかり": "Anger",
    "しつぼう": "Disappointment", "けんお": "Disgust", "はずかしさ": "Embarrassment", "おそれ": "Fear",
    "なげき": "Grief", "きんちょう": "Nervousness", "こうかい": "Remorse", "かなしみ": "Sadness",
    "こんらん": "Confusion", "こうきしん": "Curiosity", "きづき": "Realization", "おどろき": "Surprise",
    "へいせい": "Neutral",
    # Japanese near-synonyms and inflections
    "尊敬": "Admiration", "感心": "Admiration", "面白さ": "Amusement", "おもしろさ": "Amusement",
    "愉快": "Amusement", "楽しさ": "Amusement", "賛成": "Approval", "同意": "Approval",
    "気遣い": "Caring", "気づかい": "Caring", "思い遣り": "Caring", "望み": "Desire", "欲求": "Desire",
    "わくわく": "Excitement", "ワクワク": "Excitement", "ありがたさ": "Gratitude", "嬉しさ": "Joy",
    "うれしさ": "Joy", "嬉しい": "Joy", "うれしい": "Joy", "幸せ": "Joy", "幸福": "Joy", "愛情": "Love",
    "希望": "Optimism", "前向き": "Optimism", "楽観的": "Optimism", "誇らしさ": "Pride",
    "安堵": "Relief", "ほっとした": "Relief", "怒": "Anger", "憤り": "Anger", "苛立ち": "Annoyance",
    "いらだち": "Annoyance", "イライラ": "Annoyance", "煩わしさ": "Annoyance", "わずらわしさ": "Annoyance",
    "がっかり": "Disappointment", "落胆": "Disappointment", "反対": "Disapproval", "非難": "Disapproval",
    "嫌悪感": "Disgust", "気持ち悪さ": "Disgust", "羞恥": "Embarrassment", "恥": "Embarrassment",
    "恥ずかしい": "Embarrassment", "恐怖": "Fear", "怖さ": "Fear", "こわさ": "Fear", "悲嘆": "Grief",
    "悲痛": "Grief", "不安": "Nervousness", "緊張感": "Nervousness", "自責": "Remorse",
    "悔やみ": "Remorse", "悲しい": "Sadness", "かなしい": "Sadness", "寂しさ": "Sadness",
    "困惑": "Confusion", "戸惑い": "Confusion", "とまどい": "Confusion", "興味": "Curiosity",
    "気付き": "Realization", "悟り": "Realization", "驚愕": "Surprise", "びっくり": "Surprise",
    "中立": "Neutral", "ニュートラル": "Neutral", "無感情": "Neutral", "冷静": "Neutral",
    # English inflections
    "admire": "Admiration", "amused": "Amusement", "funny": "Amusement", "approve": "Approval",
    "care": "Caring", "want": "Desire", "excited": "Excitement", "grateful": "Gratitude",
    "thankful": "Gratitude", "thanks": "Gratitude", "happy": "Joy", "happiness": "Joy",
    "optimistic": "Optimism", "hope": "Optimism", "proud": "Pride", "relieved": "Relief",
    "angry": "Anger", "annoyed": "Annoyance", "irritation": "Annoyance", "disappointed": "Disappointment",
    "disgusted": "Disgust", "embarrassed": "Embarrassment", "afraid": "Fear", "scared": "Fear",
    "nervous": "Nervousness", "anxiety": "Nervousness", "anxious": "Nervousness", "regret": "Remorse",
    "remorseful": "Remorse", "sad": "Sadness", "confused": "Confusion", "curious": "Curiosity",
    "surprised": "Surprise",
}

_PREFIX = re.compile(
    r"^(?:(?:感情|予測|推定|答え|回答|解答|正解|ラベル|感情ラベル|最も近い感情|emotion|label|answer|prediction)"
    r"\s*(?:は|:|：|=|-)\s*|the emotion is\s+|(?:\d{1,2}|[a-z])\s*[.)）:：]\s+|[-*・●]\s*)",
    re.IGNORECASE,
)
_WRAP = "\"'`「」『』【】()（）[]［］<>〈〉《》“”‘’"
_TRAIL = " 。．.,，、!！?？:：;；\t"
_PAREN = re.compile(r"^(.+?)\s*[(（\[［](.+?)[)）\]］]$")
# Longest names first so that 不承認 is consumed before 承認.
_VOCAB: tuple[tuple[str, str], ...] = tuple(
    sorted(
        [(lab.en.casefold(), lab.en) for lab in LABELS]
        + [(lab.ja, lab.en) for lab in LABELS]
        + [(k.casefold(), v) for k, v in SYNONYMS.items()],
        key=lambda kv: -len(kv[0]),
    )
)
_EXACT: dict[str, str] = dict(_VOCAB)


@dataclass(frozen=True, slots=True)
class LabelMatch:
    """The outcome of mapping free text to a label: the label, or None and the reason."""

    label: Label | None
    reason: str


def _clean(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).strip()
    lines = [ln for ln in s.splitlines() if ln.strip()]
    s = lines[0].strip() if lines else ""
    for _ in range(4):  # prefixes and wrappers can nest: 「感情：『悲しみ』」
        before = s
        s = _PREFIX.sub("", s).strip().strip(_TRAIL)
        if len(s) >= 2 and s[0] in _WRAP and s[-1] in _WRAP:
            s = s[1:-1].strip()
        s = s.strip(_TRAIL)
        if s == before:
            break
    return s


def _lookup(s: str) -> str | None:
    return _EXACT.get(s.casefold())


def _contained(s: str) -> set[str]:
    """Labels named inside s, longest names first, each span consumed once."""
    rest = s.casefold()
    found: set[str] = set()
    for name, en in _VOCAB:
        if len(name) < 2:
            continue  # single characters (愛, 恥, 怒) are too likely to be part of another word
        pattern = rf"\b{re.escape(name)}\b" if name.isascii() else re.escape(name)
        if re.search(pattern, rest):
            found.add(en)
            rest = re.sub(pattern, " ", rest)
    return found


def parse_label(text: str | None) -> LabelMatch:
    """Map free text to a label, with the rule that matched or the reason it could not."""
    if text is None or not text.strip():
        return LabelMatch(None, "empty text")
    s = _clean(text)
    if not s:
        return LabelMatch(None, "nothing left after removing prefixes, quotes and punctuation")
    if en := _lookup(s):
        return LabelMatch(BY_EN[en], "exact")
    if m := _PAREN.match(s):
        outer, inner = _lookup(_clean(m.group(1))), _lookup(_clean(m.group(2)))
        if outer and inner and outer != inner:
            return LabelMatch(None, f"name and gloss disagree: {outer} vs {inner}")
        if outer or inner:
            return LabelMatch(BY_EN[outer or inner], "name with gloss")
    found = _contained(s)
    if len(found) == 1:
        return LabelMatch(BY_EN[found.pop()], "one label named within the text")
    if found:
        return LabelMatch(None, f"several labels named: {', '.join(sorted(found))}")
    return LabelMatch(None, f"no label or documented synonym in {s[:40]!r}")


def normalise(text: str | None) -> Label | None:
    """The label that text names, or None (see `parse_label` for the reason)."""
    return parse_label(text).label


_BY_NAME: dict[str, Label] = {**{lab.en.casefold(): lab for lab in LABELS}, **{lab.ja: lab for lab in LABELS}}


def by_name(name: str) -> Label | None:
    """The label a dataset row names: an English name in any case (GoEmotions' own files write ``admiration``)
    or a Japanese name of Table 1, after NFKC and trimming. Synonyms and free text are not names: None."""
    return _BY_NAME.get(unicodedata.normalize("NFKC", name).strip().casefold())


def get(name: str) -> Label:
    """A label by its English (any case) or Japanese name; KeyError lists the valid names."""
    lab = by_name(name)
    if lab is None:
        raise KeyError(f"unknown emotion {name!r}; valid: {', '.join(EN_NAMES)}")
    return lab


def by_group(group: Group) -> tuple[Label, ...]:
    return tuple(lab for lab in LABELS if lab.group is group)


def resolve(names: Sequence[str] | None) -> list[str]:
    """User-given emotion names (English or Japanese) as canonical English labels, deduplicated in the
    order given; none given means all 28 in Table-1 order. An unknown name is a :class:`UserError`."""
    if not names:
        return [lab.en for lab in LABELS]
    out: list[str] = []
    for name in names:
        lab = by_name(name) or normalise(name)
        if lab is None:
            raise UserError(f"unknown emotion {name!r}; use one of the 28 labels (English or Japanese)")
        if lab.en not in out:
            out.append(lab.en)
    return out
