"""The two-turn generation task: the instruction crowd workers were given, the target format, a strict parser.

Shared by generation (section 5.1), fine-tuning (the SFT target is exactly this format) and synthesis.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from emplifai import taxonomy
from emplifai.prompts import render

PROMPT_VERSION = "generation-v1"
PATIENT, SUPPORTER = "患者", "支援者"
# Stop before the model starts a third turn; the format is exactly two lines.
STOP = (f"\n{PATIENT}：", f"\n{PATIENT}:", "\n\n\n")
_TURN = re.compile(rf"^\s*(?:[「【\[]?)({PATIENT}|{SUPPORTER})(?:[」】\]]?)\s*[：:]\s*", re.MULTILINE)
JA_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f々〆ー]")
JAPANESE_THRESHOLD = 0.5  # share of Japanese characters among non-space, non-punctuation characters


def instruction(emotion: str, situation: str, lang: Literal["ja", "en"] = "ja") -> str:
    lab = taxonomy.get(emotion)
    return render(
        f"generation_{lang}.j2", emotion_en=lab.en, emotion_ja=lab.ja, emotion_definition_en=lab.definition_en,
        emotion_definition_ja=lab.definition_ja, situation=situation,
    )


def format_dialogue(patient: str, supporter: str) -> str:
    """The target text: what a well-behaved model writes, and what fine-tuning teaches."""
    return f"{PATIENT}：{patient.strip()}\n{SUPPORTER}：{supporter.strip()}"


@dataclass(frozen=True, slots=True)
class Parsed:
    patient: str | None
    supporter: str | None
    error: str | None  # None when the text follows the format

    @property
    def ok(self) -> bool:
        return self.error is None


def japanese_share(text: str) -> float:
    chars = [c for c in text if not c.isspace() and not unicodedata.category(c).startswith(("P", "S"))]
    if not chars:
        return 0.0
    return sum(1 for c in chars if JA_CHAR.match(c)) / len(chars)


def parse_dialogue(text: str) -> Parsed:
    """Strict: exactly one patient turn followed by one supporter turn, both non-empty, nothing else.

    Tolerated by rule: full- or half-width colon, a label in brackets (【患者】：), surrounding blank lines,
    a turn that wraps over several lines.
    """
    s = unicodedata.normalize("NFKC", text or "").replace("\r\n", "\n").strip()
    s = s.replace(":", "：")  # NFKC turns ： into :, the label regex accepts both
    if not s:
        return Parsed(None, None, "empty output")
    marks = list(_TURN.finditer(s))
    if not marks:
        return Parsed(None, None, "no 患者：/支援者： turns found")
    if marks[0].start() != 0:
        return Parsed(None, None, "text before the first turn")
    roles = [m.group(1) for m in marks]
    if roles[:2] != [PATIENT, SUPPORTER]:
        return Parsed(None, None, f"turns must be 患者 then 支援者, got {'→'.join(roles)}")
    if len(roles) > 2:
        return Parsed(None, None, f"{len(roles)} turns; the format has exactly two")
    patient = s[marks[0].end() : marks[1].start()].strip()
    supporter = s[marks[1].end() :].strip()
    if not patient:
        return Parsed(None, supporter or None, "empty patient turn")
    if not supporter:
        return Parsed(patient, None, "empty supporter turn")
    return Parsed(patient, supporter, None)
