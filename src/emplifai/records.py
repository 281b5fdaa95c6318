"""The shared vocabulary of a dataset row: the interchange record, its fields, sources, statuses, limits.

Every stage, the store's tables and the file formats take these names from here, so a status or a source
exists in one place only (docs/format.md documents them for people).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Source(StrEnum):
    CROWD = "crowd"
    SYNTHETIC = "synthetic"
    SAMPLE = "sample"
    MODEL = "model"


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    FLAGGED = "flagged"
    REMOVED = "removed"


class Action(StrEnum):
    IMPORT = "import"
    FLAG = "flag"
    MODIFY = "modify"
    KEEP = "keep"
    REMOVE = "remove"
    APPROVE = "approve"
    REJECT = "reject"


class Kind(StrEnum):
    """What a piece of work produces: a situation (round 1), a dialogue (round 2) or, in the web app, a rating."""

    SITUATION = "situation"
    DIALOGUE = "dialogue"
    RATING = "rating"


REQUIRED = ("dialogue_id", "situation_id", "emotion", "situation", "patient", "supporter")
OPTIONAL = ("source", "condition", "stage", "status", "author")
SOURCES: tuple[str, ...] = tuple(Source)
STATUSES: tuple[str, ...] = tuple(Status)
# Documented limits (docs/format.md): crowd turns are a few sentences; longer text is almost always a paste error.
MAX_TURN_CHARS = 2000
MAX_SITUATION_CHARS = 2000
MAX_ID_CHARS = 128
CSV_COLUMNS = (*REQUIRED, *OPTIONAL, "meta")


@dataclass(slots=True)
class Record:
    """One dialogue with its situation, as it travels between files and the store."""

    dialogue_id: str
    situation_id: str
    emotion: str
    situation: str
    patient: str
    supporter: str
    source: str = "crowd"
    condition: str | None = None
    stage: str | None = None
    status: str = "approved"
    author: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """JSONL shape: canonical fields, optional ones when set, extra fields at top level."""
        out: dict[str, Any] = {k: getattr(self, k) for k in REQUIRED}
        out.update({k: v for k in OPTIONAL if (v := getattr(self, k)) is not None})
        out.update(self.meta)
        return out

    def tabular(self) -> dict[str, Any]:
        """CSV/Parquet shape: a fixed set of columns, extra fields as one JSON column."""
        out = {k: getattr(self, k) for k in (*REQUIRED, *OPTIONAL)}
        out["meta"] = json.dumps(self.meta, ensure_ascii=False, sort_keys=True) if self.meta else ""
        return out
