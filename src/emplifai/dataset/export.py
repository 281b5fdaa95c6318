"""Export the store to the interchange formats, streamed; the Hugging Face export follows the stored split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emplifai.dataset.formats import FORMATS, Format, write, write_hf
from emplifai.errors import UserError
from emplifai.records import Record
from emplifai.store.db import Store
from emplifai.store.repo import LIVE, SPLITS, iter_records, latest_manifest, require_manifest


def export_store(store: Store, out: Path, fmt: Format, *, statuses=LIVE, split: str | None = None,
                 rewrite: Callable[[Record], Record] | None = None, single_split: str | None = None
                 ) -> dict[str, int]:
    """Write the store's dialogues; returns the count per split (or under "all").

    ``rewrite`` changes each record on its way out (publishing pseudonymises authors with it). For ``hf``,
    ``single_split`` names the one split every record goes to when the store has no split manifest (without
    it, a missing manifest is an error)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    change = rewrite or (lambda r: r)
    with store.open_session() as s:
        if fmt == "hf":
            manifest = latest_manifest(s) if single_split else require_manifest(s)
            if manifest is None:
                return write_hf({single_split: [change(r) for r in iter_records(s, statuses)]}, out)  # type: ignore[dict-item]
            parts = {sp: [change(r) for r in iter_records(s, statuses, split=sp, manifest=manifest)] for sp in SPLITS}
            return write_hf(parts, out)
        n = write((change(r) for r in iter_records(s, statuses, split=split)), out, fmt)
        return {split or "all": n}
