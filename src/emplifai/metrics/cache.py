"""Pair scores kept on disk by signature, so later runs and other models reuse them without loading an encoder."""

from __future__ import annotations

import json
import os
from typing import Any

from emplifai.provenance import emplifai_home, json_digest

#: bump when the pair computation changes (part of every signature and cache key)
SCORER_VERSION = 1


def signature_hash(sig: dict[str, Any]) -> str:
    return json_digest(sig, 16)


class PairCache:
    """Pair scores on disk, one JSON file per scorer signature. Written atomically; a corrupt file is ignored."""

    def __init__(self, sig: dict[str, Any], enabled: bool = True):
        self.path = emplifai_home() / "cache" / "similarity" / f"{signature_hash(sig)}.json"
        self.enabled = enabled
        self.data: dict[str, Any] = {}
        if enabled and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.data = {}

    @staticmethod
    def key(a: str, b: str) -> str:
        return json.dumps([a, b], ensure_ascii=False)

    def save(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)
