"""Worked examples for workers, one per emotion: a situation (round 1) and a two-turn dialogue (round 2, as the
paper's Figure 1). A campaign may bring its own in a file (TOML, JSON or YAML); emotions it leaves out use the
defaults drawn from the bundled corpus (written for this project, natural Japanese, one per emotion).

File format (TOML shown; JSON and YAML carry the same ``examples`` list)::

    [[examples]]
    emotion = "Grief"            # English or Japanese label
    situation = "…"
    patient = "…"
    supporter = "…"

Every problem names the file, the line and the field; nothing is stored unless the whole file is valid.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from emplifai import taxonomy
from emplifai.dataset.ingest import bundled_corpus_path
from emplifai.errors import InputError, Problem, UserError
from emplifai.records import MAX_SITUATION_CHARS, MAX_TURN_CHARS
from emplifai.store.collect import Campaign, Example

FIELDS = {"emotion": 64, "situation": MAX_SITUATION_CHARS, "patient": MAX_TURN_CHARS, "supporter": MAX_TURN_CHARS}
SUFFIXES = (".toml", ".json", ".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class WorkedExample:
    emotion: str  # English label
    situation: str
    patient: str
    supporter: str
    origin: str  # "bundled corpus: d-…" or "FILE:LINE"


# ------------------------------------------------------------------------------------------- defaults
@cache
def default_examples() -> dict[str, WorkedExample]:
    """Per emotion, the shortest dialogue of the bundled corpus with its situation (short reads well on a
    phone). Cached: the corpus ships with the package and never changes while the program runs."""
    best: dict[str, tuple[int, dict[str, Any]]] = {}
    with bundled_corpus_path().open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            size = len(row["patient"]) + len(row["supporter"])
            if row["emotion"] not in best or size < best[row["emotion"]][0]:
                best[row["emotion"]] = (size, row)
    return {emo: WorkedExample(emo, r["situation"], r["patient"], r["supporter"], f"bundled corpus: {r['dialogue_id']}")
            for emo, (_, r) in best.items()}


def examples_for(s: Session, campaign_id: int) -> dict[str, WorkedExample]:
    """The campaign's examples over the defaults."""
    out = dict(default_examples())
    for ex in s.scalars(select(Example).where(Example.campaign_id == campaign_id)):
        out[ex.emotion] = WorkedExample(ex.emotion, ex.situation, ex.patient, ex.supporter, ex.origin)
    return out


def example_for(s: Session, campaign_id: int, emotion: str) -> WorkedExample | None:
    ex = s.scalar(select(Example).where(Example.campaign_id == campaign_id, Example.emotion == emotion))
    if ex is not None:
        return WorkedExample(ex.emotion, ex.situation, ex.patient, ex.supporter, ex.origin)
    return default_examples().get(emotion)


def set_examples(s: Session, camp: Campaign, examples: list[WorkedExample]) -> int:
    """Replace the campaign's own examples (in the caller's transaction); returns how many it now has."""
    s.execute(delete(Example).where(Example.campaign_id == camp.id))
    for ex in examples:
        s.add(Example(campaign_id=camp.id, emotion=ex.emotion, situation=ex.situation, patient=ex.patient,
                      supporter=ex.supporter, origin=ex.origin[:256]))
    s.flush()
    return len(examples)


# ------------------------------------------------------------------------------------------- reading a file
def _toml_lines(text: str) -> dict[tuple[int, str | None], int]:
    """(entry index, field) → line, by scanning the ``[[examples]]`` headers and ``key =`` lines."""
    out: dict[tuple[int, str | None], int] = {}
    index = -1
    for no, line in enumerate(text.splitlines(), 1):
        if re.match(r"^\s*\[\[\s*examples\s*\]\]", line):
            index += 1
            out[(index, None)] = no
        elif index >= 0 and (m := re.match(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=", line)):
            out.setdefault((index, m.group(1)), no)
    return out


def _yaml_lines(text: str) -> dict[tuple[int, str | None], int]:
    """The same map from the YAML node tree (JSON is read through it too: only line numbers are taken)."""
    import yaml

    out: dict[tuple[int, str | None], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, value in root.value:
        if key.value == "examples" and isinstance(value, yaml.SequenceNode):
            for i, item in enumerate(value.value):
                out[(i, None)] = item.start_mark.line + 1
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        out[(i, str(k.value))] = v.start_mark.line + 1
    return out


def _parse(path: Path, text: str) -> Any:
    import yaml

    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError([Problem(str(path), exc.lineno, None, f"not valid JSON: {exc.msg}")]) from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InputError([Problem(str(path), int(m.group(1)) if m else None, None, f"not valid TOML: {exc}")]) from None
    except yaml.YAMLError as exc:  # the mark carries the line
        mark = getattr(exc, "problem_mark", None)
        raise InputError([Problem(str(path), mark.line + 1 if mark else None, None,
                                  f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None


def _bad_chars(value: str) -> str | None:
    for ch in value:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            return f"contains the control character U+{ord(ch):04X}"
    return None


def read_examples(path: str | Path) -> list[WorkedExample]:
    """The examples in a file, all valid, or :class:`InputError` listing every problem (file:line: field)."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise UserError(f"{p}: examples must be a .toml, .json or .yaml file")
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError([Problem(str(p), line, None, "not UTF-8 text (save the file as UTF-8)")]) from None
    data = _parse(p, text)
    lines = _toml_lines(text) if p.suffix.lower() == ".toml" else _yaml_lines(text)
    problems: list[Problem] = []
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise InputError([Problem(str(p), 1, "examples", "the file needs a list named 'examples'")])
    for key in data:
        if key != "examples":
            problems.append(Problem(str(p), None, key, "unknown top-level key (only 'examples')"))
    out: list[WorkedExample] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(data["examples"]):
        where = lines.get((i, None))
        if not isinstance(entry, dict):
            problems.append(Problem(str(p), where, f"examples[{i}]", "each example must be a table of fields"))
            continue
        bad = False
        for key in entry:
            if key not in FIELDS:
                problems.append(Problem(str(p), lines.get((i, str(key)), where), f"examples[{i}].{key}",
                                        f"unknown field (allowed: {', '.join(FIELDS)})"))
                bad = True
        clean: dict[str, str] = {}
        for fld, limit in FIELDS.items():
            at = lines.get((i, fld), where)
            raw = entry.get(fld)
            if not isinstance(raw, str) or not raw.strip():
                problems.append(Problem(str(p), at, f"examples[{i}].{fld}", "missing or empty (text required)"))
                bad = True
                continue
            value = raw.replace("\r\n", "\n").strip()
            if len(value) > limit:
                problems.append(Problem(str(p), at, f"examples[{i}].{fld}",
                                        f"{len(value)} characters; the limit is {limit}"))
                bad = True
            elif why := _bad_chars(value):
                problems.append(Problem(str(p), at, f"examples[{i}].{fld}", why))
                bad = True
            clean[fld] = value
        if "emotion" in clean:
            lab = taxonomy.normalise(clean["emotion"])
            if lab is None:
                problems.append(Problem(str(p), lines.get((i, "emotion"), where), f"examples[{i}].emotion",
                                        f"unknown emotion {clean['emotion']!r} (one of the 28 labels, English or "
                                        "Japanese)"))
                bad = True
            elif lab.en in seen:
                problems.append(Problem(str(p), lines.get((i, "emotion"), where), f"examples[{i}].emotion",
                                        f"{lab.en} already has an example (entry {seen[lab.en]})"))
                bad = True
            else:
                seen[lab.en] = i
                clean["emotion"] = lab.en
        if not bad:
            out.append(WorkedExample(clean["emotion"], clean["situation"], clean["patient"], clean["supporter"],
                                     f"{p.name}:{where}" if where else p.name))
    if problems:
        raise InputError(problems)
    return out


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def template_toml(examples: dict[str, WorkedExample], emotions: list[str] | None = None) -> str:
    """The examples (of ``emotions``, default all, Table-1 order) as an examples file to edit."""
    parts = ["# Worked examples shown to workers, one per emotion (emplifai collect examples CAMPAIGN FILE).\n"]
    for lab in taxonomy.LABELS:
        ex = examples.get(lab.en)
        if ex is None or (emotions is not None and lab.en not in emotions):
            continue
        parts.append(f"\n[[examples]]\n# {lab.ja} — {ex.origin}\nemotion = {_toml_string(lab.en)}\n"
                     f"situation = {_toml_string(ex.situation)}\npatient = {_toml_string(ex.patient)}\n"
                     f"supporter = {_toml_string(ex.supporter)}\n")
    return "".join(parts)
