"""LLM-as-a-judge prompts for the judge's rubrics (the paper's 7 of Table 3 and EPITOME's 3 mechanisms), the
JSON schema of an answer, and the strict parser of the judge's answer.

Each metric has its own rubric template (``judge_<metric>_<lang>.j2``) with a description of every level of
its scale (1–5 for the paper's rubrics, 0–2 for EPITOME's; evaluate.rubrics holds the scales).
The rubric (and the worked examples) come first and the item (emotion, situation, conversation) last, so all
judgements of one metric share a long prompt prefix that backends with a prompt cache reuse.

Parsing rules (each tested; anything else is a failure, stored with the raw text, never a default):

* the answer must contain exactly one JSON object with the keys ``feedback`` and ``score`` (case-insensitive);
  text or a Markdown code fence around the object is tolerated;
* ``score`` must be a whole number on the metric's scale (1–5 here): ``4``, ``4.0``, ``"4"``, full-width
  ``"４"`` and ``「５」`` are accepted (NFKC + corner brackets stripped); ``0``, ``6``, ``4.5``, ``"4.5"``,
  ``true``, ``"five"`` and a missing or empty score are failures;
* a raw newline or tab inside a JSON string is tolerated (servers' JSON grammars let models write one);
* ``feedback`` must be a non-empty string (a missing or empty feedback is a failure: the rubric asks for it);
* two or more JSON objects whose scores differ are a failure (ambiguous); no JSON object at all is a failure
  (no fishing for a stray digit in prose).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from emplifai import taxonomy
from emplifai.prompts import render
from emplifai.prompts.generation import PATIENT, SUPPORTER

PROMPT_VERSION = "judge-v1"
Scale = tuple[int, int]
PAPER_SCALE: Scale = (1, 5)
#: bump whenever parse_judgement accepts or refuses something new: stored with every score, and
#: ``emplifai judge --reparse`` re-reads stored raw outputs with the current rules
PARSER_VERSION = "judge-parse-v2"  # v2: raw control characters inside strings, per-metric scales
#: longest feedback the answer schema admits, in characters: with max_tokens 160 the closing brace and the
#: score always fit, so a constrained answer is never cut off
FEEDBACK_MAX_CHARS = 100
Lang = Literal["ja", "en"]
LAYOUTS = ("standard", "blocks", "reversed")  # standard is the Table-4 layout; the others probe layout bias


#: score-only mode: the judge's answer is read after this prefix of it, from the probabilities of the digits 1–5
SCORE_PREFIX = '{"score": '


def score_digits(scale: Scale = PAPER_SCALE) -> tuple[str, ...]:
    """The answers score-only mode compares: every score of the metric's scale, lowest first."""
    return tuple(str(v) for v in range(scale[0], scale[1] + 1))


SCORE_DIGITS = score_digits()  # the paper's 1–5


def rubric(metric: str, lang: Lang = "ja", *, score_only: bool = False) -> str:
    """The shared part of every prompt for this metric: role, definition, the five levels, output format
    (``{"feedback", "score"}``, or ``{"score"}`` alone in score-only mode)."""
    return render(f"judge_{metric}_{lang}.j2", score_only=score_only)


def layout_dialogue(patient: str, supporter: str, layout: str = "standard", lang: Lang = "ja") -> str:
    """The conversation as shown to the judge. Other layouts exist only to measure the judge's layout bias."""
    if layout == "standard":
        return f"{PATIENT}：{patient}\n{SUPPORTER}：{supporter}"
    p_label, s_label = ("患者の発話", "支援者の応答") if lang == "ja" else ("Patient's turn", "Supporter's reply")
    if layout == "blocks":
        return f"【{p_label}】\n{patient}\n\n【{s_label}】\n{supporter}"
    if layout == "reversed":  # the reply first, then what it answers
        return f"【{s_label}】\n{supporter}\n\n【{p_label}（この発話への応答が上）】\n{patient}"
    raise ValueError(f"unknown layout {layout!r}; use {', '.join(LAYOUTS)}")


def item(
    *, emotion: str, situation: str, patient: str, supporter: str, layout: str = "standard", lang: Lang = "ja"
) -> str:
    lab = taxonomy.get(emotion)
    return render(
        f"judge_item_{lang}.j2", emotion_ja=lab.ja, emotion_en=lab.en, emotion_definition_ja=lab.definition_ja,
        emotion_definition_en=lab.definition_en, situation=situation,
        dialogue=layout_dialogue(patient, supporter, layout, lang),
    )


# Worked examples shown before the item when shots > 0 (small base models only copy a format they have seen).
# Same two conversations for every metric: a careful reply (rated 4) and a dismissive one (rated 2). They are
# part of the shared prefix, so they cost nothing extra on a backend with a prompt cache.
_EXAMPLES = (
    dict(emotion="Nervousness", situation="来週、初めての透析の説明を受けることになっていて、落ち着かない。",
         patient="来週、透析の説明を聞きに行くんです。どんなことを言われるのか、考えるだけでそわそわしてしまって。",
         supporter="初めての説明だと、何を言われるのか分からなくて落ち着かないですよね。気になることを一緒に書き出しておきましょうか。",
         score=4, ja="患者の落ち着かない気持ちを受け止め、具体的な支えも示しているが、さらに深める余地がある。",
         en="The reply acknowledges the patient's unease and offers concrete support, with some room to go deeper."),
    dict(emotion="Sadness", situation="病気のせいで、楽しみにしていた孫の運動会に行けなかった。",
         patient="孫の運動会、楽しみにしてたのに、体調が悪くて行けなかったんです。",
         supporter="運動会は毎年ありますから、来年行けばいいですよ。",
         score=2, ja="応答は事務的で、行けなかった悲しみをほとんど受け止めていない。",
         en="The reply is matter-of-fact and barely acknowledges the sadness of missing the event."),
)


def messages(
    metric: str, *, emotion: str, situation: str, patient: str, supporter: str, layout: str = "standard",
    lang: Lang = "ja", shots: int = 0, examples: Sequence[tuple[int, str, str]] | None = None,
    score_only: bool = False,
) -> list[dict[str, str]]:
    """Rubric (shared), then ``shots`` worked examples (shared), then the item; no system message.

    ``examples`` gives (score, feedback ja, feedback en) of each worked example for a rubric whose scale is not
    the paper's (evaluate.rubrics holds them); by default the examples are rated 4 and 2 on 1–5. In score-only
    mode the rubric and the examples' answers are ``{"score": n}`` alone."""
    if not 0 <= shots <= len(_EXAMPLES):
        raise ValueError(f"shots must be between 0 and {len(_EXAMPLES)}")
    out: list[dict[str, str]] = []
    for k, ex in enumerate(_EXAMPLES[:shots]):
        shown = item(emotion=ex["emotion"], situation=ex["situation"], patient=ex["patient"],
                     supporter=ex["supporter"], layout=layout, lang=lang)
        score, ja, en = examples[k] if examples else (ex["score"], ex["ja"], ex["en"])
        shown_answer = {"score": score} if score_only else {"feedback": ja if lang == "ja" else en, "score": score}
        answer = json.dumps(shown_answer, ensure_ascii=False)
        out += [{"role": "user", "content": shown}, {"role": "assistant", "content": answer}]
    out.append({"role": "user", "content": item(emotion=emotion, situation=situation, patient=patient,
                                                supporter=supporter, layout=layout, lang=lang)})
    # The rubric opens the first user turn rather than a system message: some servers' chat templates drop
    # system messages silently (llama.cpp's gemma format), and Gemma folds them into the first turn anyway,
    # so the in-process prompt is the same text either way.
    out[0] = {"role": "user", "content": f"{rubric(metric, lang, score_only=score_only)}\n\n{out[0]['content']}"}
    return out


def answer_schema(scale: Scale = PAPER_SCALE) -> dict[str, Any]:
    """The JSON schema of a valid answer: feedback first (the reasoning before the score), then the score."""
    return {
        "type": "object",
        "properties": {
            "feedback": {"type": "string", "minLength": 1, "maxLength": FEEDBACK_MAX_CHARS},
            "score": {"type": "integer", "enum": list(range(scale[0], scale[1] + 1))},
        },
        "required": ["feedback", "score"],
        "additionalProperties": False,
    }


# ------------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True, slots=True)
class Judgement:
    score: int | None
    feedback: str | None
    error: str | None  # None when the answer is valid

    @property
    def ok(self) -> bool:
        return self.error is None


_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


def _json_objects(text: str) -> list[tuple[int, int, Any]]:
    """Every top-level JSON object in ``text`` as (start, end, value), scanning with the JSON decoder."""
    dec = json.JSONDecoder(strict=False)  # strict=False: a raw newline inside a string is not a failure
    out: list[tuple[int, int, Any]] = []
    i = 0
    while (i := text.find("{", i)) >= 0:
        try:
            value, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(value, dict):
            out.append((i, end, value))
        i = end
    return out


def _normalise_quotes(text: str) -> str:
    # Models writing Japanese often use full-width braces/quotes/colons; NFKC maps ｛＂：｝ to ASCII, and the
    # corner-bracketed score 「５」 becomes a JSON string so that the scale rule below decides about it.
    s = unicodedata.normalize("NFKC", text)
    s = s.replace("“", '"').replace("”", '"')
    return re.sub(r'("score"\s*:\s*)「\s*([^」"]*?)\s*」', r'\1"\2"', s, flags=re.IGNORECASE)


def _score_value(value: Any, scale: Scale = PAPER_SCALE) -> tuple[int | None, str | None]:
    lo, hi = scale
    if isinstance(value, bool):
        return None, f"score {json.dumps(value)} is not a number"
    if isinstance(value, str):
        s = unicodedata.normalize("NFKC", value).strip().strip("「」『』\"' ")
        if not re.fullmatch(r"[+-]?\d+(\.\d+)?", s):
            return None, f"score {value!r} is not a number"
        value = float(s) if "." in s else int(s)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None, f"score {value} is not a whole number on the {lo}–{hi} scale"
        value = int(value)
    if not isinstance(value, int):
        return None, f"score {json.dumps(value, ensure_ascii=False)} is not a number"
    if not lo <= value <= hi:
        return None, f"score {value} is outside the {lo}–{hi} scale"
    return value, None


def parse_judgement(text: str, scale: Scale = PAPER_SCALE) -> Judgement:
    """Validate one judge answer by the rules in this module's docstring, on the metric's ``scale``."""
    if not text or not text.strip():
        return Judgement(None, None, "empty output")
    s = _FENCE.sub("", _normalise_quotes(text))
    objects = [(a, b, {str(k).lower(): v for k, v in obj.items()}) for a, b, obj in _json_objects(s)]
    if not objects:
        return Judgement(None, None, "no JSON object in the output")
    with_score = [o for o in objects if "score" in o[2]]
    if not with_score:
        return Judgement(None, None, "missing field 'score'")
    if len({json.dumps(o[2]["score"]) for o in with_score}) > 1:
        return Judgement(None, None, f"{len(with_score)} JSON objects with different scores (ambiguous)")
    obj = with_score[0][2]
    score, err = _score_value(obj["score"], scale)
    feedback = obj.get("feedback")
    if err is None and feedback is None:
        err = "missing field 'feedback'"
    elif err is None and (not isinstance(feedback, str) or not feedback.strip()):
        err = "field 'feedback' must be a non-empty string"
    if err is not None:
        return Judgement(None, feedback if isinstance(feedback, str) else None, err)
    return Judgement(score, feedback.strip(), None)


_SCORE_KEY = re.compile(r'score["\uff02]?\s*[:\uff1a]\s*["\uff02「]?\s*$', re.IGNORECASE)


def weighted_score(token_logprobs: Sequence[dict[str, Any]] | None, scale: Scale = PAPER_SCALE) -> float | None:
    """G-Eval: the expected score under the judge's distribution at the score token, E[s] = Σ p(s)·s / Σ p(s).

    Finds the last generated token that is a digit right after ``"score":`` and uses the top alternatives the
    backend returned for it. None when there are no log-probabilities, no such token, or no alternative is on
    the scale.
    """
    if not token_logprobs:
        return None
    text, found = "", None
    for entry in token_logprobs:
        tok = entry.get("token", "")
        if _digit(tok) is not None and _SCORE_KEY.search(text):
            found = entry
        text += tok
    if found is None:
        return None
    alternatives = dict(found.get("top") or {})
    alternatives.setdefault(found.get("token", ""), found.get("logprob", -math.inf))
    probs: dict[int, float] = {}
    for alt, lp in alternatives.items():
        d = _digit(alt)
        if d is not None and scale[0] <= d <= scale[1] and lp is not None and math.isfinite(lp):
            probs[d] = probs.get(d, 0.0) + math.exp(lp)
    total = sum(probs.values())
    return sum(s * p for s, p in probs.items()) / total if total > 0 else None


def expected_score(logps: Sequence[float], scale: Scale = PAPER_SCALE) -> tuple[int, float, list[float]] | None:
    """Score-only mode: from the log-probabilities of the scale's answers (lowest first), the most probable score,
    the G-Eval expectation E[s] = Σ p(s)·s over the renormalised answers, and those probabilities. None when the
    values are unusable (not one per score, not finite)."""
    digits = score_digits(scale)
    if len(logps) != len(digits) or not all(math.isfinite(x) for x in logps):
        return None
    m = max(logps)
    weights = [math.exp(x - m) for x in logps]
    total = sum(weights)
    probs = [w / total for w in weights]
    best = max(range(len(probs)), key=lambda i: (probs[i], -i))  # ties: the lower score
    return scale[0] + best, sum((scale[0] + i) * p for i, p in enumerate(probs)), probs


def _digit(token: str) -> int | None:
    t = unicodedata.normalize("NFKC", token).strip()
    return int(t) if len(t) == 1 and t.isdigit() else None
