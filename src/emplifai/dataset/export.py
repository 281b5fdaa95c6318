"""Export the store to the interchange formats, streamed; the Hugging Face export follows the stored split."""

from __future__ import annotations

from pathlib import Path

from emplifai.dataset.formats import FORMATS, Format, write, write_hf
from emplifai.errors import UserError
from emplifai.store.db import Store
from emplifai.store.repo import LIVE, SPLITS, iter_records, require_manifest


def export_store(store: Store, out: Path, fmt: Format, *, statuses=LIVE, split: str | None = None) -> dict[str, int]:
    """Write the store's dialogues; returns the count per split (or under "all")."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    with store.open_session() as s:
        if fmt == "hf":
            manifest = require_manifest(s)
            parts = {sp: list(iter_records(s, statuses, split=sp, manifest=manifest)) for sp in SPLITS}
            return write_hf(parts, out)
        n = write(iter_records(s, statuses, split=split), out, fmt)
        return {split or "all": n}
