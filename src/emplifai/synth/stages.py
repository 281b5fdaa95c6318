"""The three generation stages (SynthEmpathy: scenario brainstorming, explanation rewriting, response
generation), adapted to EmplifAI's chronic-care dialogues:

(a) ``brainstorm``: several chronic-care scenarios in which a patient feels the target emotion;
(b) ``rewrite``: one scenario into a first-person patient situation in natural Japanese;
(c) ``dialogue``: the two-turn patient → supporter dialogue, with the crowd workers' instruction
    (:func:`emplifai.prompts.generation.instruction`) and solved examples as earlier chat turns, read back with
    the same strict parser as every other generation (:func:`~emplifai.prompts.generation.parse_dialogue`).

Each stage is a Jinja2 template plus a parser. Few-shot examples come from stored, non-synthetic data (the model
never learns from its own output), chosen by a seeded RNG per candidate so reruns build the same prompts.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from emplifai import taxonomy
from emplifai.prompts import generation as gen
from emplifai.prompts import render
from emplifai.provenance import text_digest
from emplifai.records import Record

PROMPT_VERSION = f"synth-v1+{gen.PROMPT_VERSION}"

CONDITIONS_JA = {
    "diabetes": "糖尿病", "cancer": "がん", "hypertension": "高血圧", "kidney_dialysis": "腎臓病・透析",
    "asthma_copd": "ぜんそく・COPD", "rheumatoid_arthritis": "関節リウマチ", "heart_failure": "心不全",
    "ibd": "炎症性腸疾患", "stroke_rehab": "脳卒中後のリハビリ", "chronic_pain": "慢性の痛み",
    "depression": "うつ病を伴う慢性疾患", "caregiving": "家族の介護",
}
STAGES_JA = {
    "diagnosis": "診断を受けたころ", "treatment": "治療中", "relapse": "再発・悪化",
    "self_management": "日々の自己管理",
    "family_work": "家族や仕事との両立",
}


@dataclass(frozen=True)
class Prompt:
    """A chat prompt (``messages``) or, for base models, a raw-text document to continue (``text``); ``prefix``
    is the part of the expected answer that a completion prompt already wrote (put back before parsing)."""

    messages: list[dict[str, str]]
    fewshot: list[str]  # ids of the stored items shown as examples
    text: str | None = None
    prefix: str = ""

    @property
    def digest(self) -> str:
        payload = self.messages if self.text is None else self.text
        return text_digest(json.dumps(payload, ensure_ascii=False))[:16]


def completion(template: str, fewshot: list[str], *, prefix: str = "", **variables: object) -> Prompt:
    return Prompt([], fewshot, text=render(template, **variables), prefix=prefix)


def first_sentence(situation: str) -> str:
    """The event that opens a stored situation: the few-shot "scenario" of the base-model prompts."""
    head = re.split(r"(?<=[。！？])", situation.strip(), maxsplit=1)[0]
    return head.strip()


class FewShotPool:
    """Stored non-synthetic dialogues by emotion; falls back to the same sentiment group, then to anything."""

    def __init__(self, records: Sequence[Record]):
        self.by_emotion: dict[str, list[Record]] = defaultdict(list)
        for r in sorted(records, key=lambda r: r.dialogue_id):
            self.by_emotion[r.emotion].append(r)
        self.conditions = sorted({(r.condition, r.stage) for r in records if r.condition and r.stage})

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_emotion.values())

    def pick(self, emotion: str, k: int, rng: random.Random, *, distinct_situations: bool = True) -> list[Record]:
        if k <= 0:
            return []
        group = taxonomy.get(emotion).group
        tiers = [
            self.by_emotion.get(emotion, []),
            [r for e, rs in self.by_emotion.items() if e != emotion and taxonomy.get(e).group == group for r in rs],
            [r for e, rs in self.by_emotion.items() if taxonomy.get(e).group != group for r in rs],
        ]
        out: list[Record] = []
        seen: set[str] = set()
        for tier in tiers:
            pool = list(tier)
            rng.shuffle(pool)
            for r in pool:
                if len(out) == k:
                    return out
                if distinct_situations and r.situation_id in seen:
                    continue
                seen.add(r.situation_id)
                out.append(r)
        return out

    def condition_stage(self, rng: random.Random) -> tuple[str, str]:
        """A (condition, stage) pair to steer one brainstorm call; from the store, else the sample's list."""
        if self.conditions:
            return rng.choice(self.conditions)
        return rng.choice(sorted(CONDITIONS_JA)), rng.choice(sorted(STAGES_JA))


def rng_for(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))  # str seeds hash with sha512: stable


# ------------------------------------------------------------------------------------ (a) brainstorm
def brainstorm_prompt(emotion: str, n: int, condition: str, stage: str, examples: Sequence[Record]) -> Prompt:
    lab = taxonomy.get(emotion)
    text = render(
        "synth_brainstorm.j2", emotion_ja=lab.ja, definition_ja=lab.definition_ja, n=n,
        condition_ja=CONDITIONS_JA.get(condition, condition), stage_ja=STAGES_JA.get(stage, stage),
        examples=[r.situation for r in examples],
    )
    return Prompt([{"role": "user", "content": text}], [r.situation_id for r in examples])


def brainstorm_completion(emotion: str, condition: str, stage: str, examples: Sequence[Record]) -> Prompt:
    lab = taxonomy.get(emotion)
    return completion("synth_brainstorm_base.j2", [r.situation_id for r in examples], emotion_ja=lab.ja,
                      definition_ja=lab.definition_ja, condition_ja=CONDITIONS_JA.get(condition, condition),
                      stage_ja=STAGES_JA.get(stage, stage), examples=[first_sentence(r.situation) for r in examples])


_ITEM = re.compile(r"^\s*(?:[\(（]\d+[\)）]|\d+\s*[\.\)．、:：]|[-・*•●])\s*")


def parse_scenarios(text: str, n: int) -> list[str]:
    """Numbered or bulleted lines (the first may lack its number: the prompt ends with "1.")."""
    out: list[str] = []
    for line in unicodedata.normalize("NFKC", text or "").splitlines():
        item = _ITEM.sub("", line).strip().strip("「」\"'")
        if len(item) < 8 or item.startswith(("場面", "例", "条件")) or item in out:
            continue
        out.append(item)
        if len(out) == n:
            break
    return out


# -------------------------------------------------------------------------------------- (b) rewrite
def rewrite_prompt(emotion: str, scenario: str, examples: Sequence[Record]) -> Prompt:
    lab = taxonomy.get(emotion)
    text = render("synth_rewrite.j2", emotion_ja=lab.ja, definition_ja=lab.definition_ja, scenario=scenario,
                  examples=[r.situation for r in examples])
    return Prompt([{"role": "user", "content": text}], [r.situation_id for r in examples])


def rewrite_completion(emotion: str, scenario: str, examples: Sequence[Record]) -> Prompt:
    return completion("synth_rewrite_base.j2", [r.situation_id for r in examples], emotion_ja=taxonomy.get(emotion).ja,
                      scenario=scenario, examples=[(first_sentence(r.situation), r.situation) for r in examples])


_LABEL = re.compile(r"^\s*(?:【?(?:状況|書き直し|回答)】?\s*[：:]\s*)")


def parse_situation(text: str) -> tuple[str | None, str | None]:
    """(situation, error). The first paragraph, without a leading 状況： label or surrounding brackets."""
    s = (text or "").replace("\r\n", "\n").strip()
    if not s:
        return None, "empty output"
    para = re.split(r"\n\s*\n", s, maxsplit=1)[0]
    para = _LABEL.sub("", para).strip().strip("「」").strip()
    para = re.sub(r"\s*\n\s*", "", para)  # a paragraph wrapped over lines is one text in Japanese
    if not para:
        return None, "no situation text"
    if _ITEM.match(para):
        return None, "a list instead of one situation"
    return para, None


# ------------------------------------------------------------------------------------- (c) dialogue
def dialogue_prompt(emotion: str, situation: str, examples: Sequence[Record], *, style: str | None = None) -> Prompt:
    msgs: list[dict[str, str]] = []
    for r in examples:
        msgs.append({"role": "user", "content": gen.instruction(r.emotion, r.situation)})
        msgs.append({"role": "assistant", "content": gen.format_dialogue(r.patient, r.supporter)})
    ask = gen.instruction(emotion, situation)
    if style:
        ask += f"\n話し方：{style}"
    msgs.append({"role": "user", "content": ask})
    return Prompt(msgs, [r.dialogue_id for r in examples])


def dialogue_completion(emotion: str, situation: str, examples: Sequence[Record], *, style: str | None = None
                        ) -> Prompt:
    shots = [{"emotion_ja": taxonomy.get(r.emotion).ja, "situation": r.situation, "patient": r.patient,
              "supporter": r.supporter} for r in examples]
    return completion("synth_dialogue_base.j2", [r.dialogue_id for r in examples], prefix=f"{gen.PATIENT}：",
                      emotion_ja=taxonomy.get(emotion).ja, situation=situation, examples=shots, style=style)


#: pair target > 1: each dialogue of one situation gets a different speaker style, as different crowd workers did
STYLES = ("丁寧な話し言葉", "くだけた話し言葉", "落ち着いた短めの話し方", "気持ちをそのまま語る話し方")


def style_for(slot: int, per_situation: int) -> str | None:
    return STYLES[slot % len(STYLES)] if per_situation > 1 else None


def parse_dialogue(text: str) -> gen.Parsed:
    return gen.parse_dialogue(text)
