"""Shared builders for the prediction tests: a small split dataset in a store."""

from __future__ import annotations

from pathlib import Path

from emplifai import taxonomy
from emplifai.dataset.ingest import import_file
from emplifai.dataset.splits import make_split
from emplifai.store.db import Store
from tests.helpers import record, write_jsonl

N_DIALOGUES = 280  # two per situation, five situations per emotion: 56 test dialogues


def seed_store(store: Store, tmp: Path) -> None:
    """Import 280 dialogues (every emotion present) and split them with seed 42 (56 test dialogues)."""
    rows = [record(i, sit=i // 2) for i in range(N_DIALOGUES)]
    import_file(store, write_jsonl(tmp / "data.jsonl", rows))
    make_split(store, seed=42)


def label_scores(en: str, *, second: str | None = None, third: str | None = None) -> list[float]:
    """28 log-likelihoods (Table-1 order) ranking ``en`` first, then ``second`` and ``third``."""
    out = [-10.0 - i * 0.01 for i in range(len(taxonomy.LABELS))]
    for name, value in ((en, -1.0), (second, -2.0), (third, -3.0)):
        if name:
            out[[lab.en for lab in taxonomy.LABELS].index(name)] = value
    return out
