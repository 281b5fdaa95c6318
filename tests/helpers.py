"""Small builders shared by tests."""

from __future__ import annotations

import json
from pathlib import Path

from emplifai import taxonomy

#: Debian's chromium (playwright cannot download browsers here); scripts/test.sh installs it
CHROMIUM = "/usr/bin/chromium"


def record(i: int, *, sit: int | None = None, emotion: str | None = None, **over) -> dict:
    """A valid dialogue row; situations group dialogues three by three unless sit is given."""
    s = i // 3 if sit is None else sit
    lab = taxonomy.LABELS[s % 28]
    row = {
        "dialogue_id": f"d{i:05d}",
        "situation_id": f"s{s:04d}",
        "emotion": emotion or lab.en,
        "situation": f"状況{s}：通院中に{lab.ja}を感じた出来事がありました。",
        "patient": f"患者の発話{i}です。今日の診察のことを聞いてほしくて。",
        "supporter": f"支援者の返答{i}です。話してくれてありがとう、よく頑張っていますね。",
        "source": "sample",
    }
    row.update(over)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
