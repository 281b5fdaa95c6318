"""Dataset statistics as in the paper's section 3.5, plus balance and duplicate figures."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from emplifai import taxonomy
from emplifai.dataset import dedup
from emplifai.provenance import dist_version
from emplifai.records import Record


def _summary(values: list[int]) -> dict[str, float | None]:
    if not values:  # nothing to describe: no number, rather than a mean of 0 that reads like a measurement
        return {"mean": None, "median": None, "min": None, "max": None}
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values),
            "min": min(values), "max": max(values)}


def normalised_entropy(counts: Iterable[int], k: int = len(taxonomy.LABELS)) -> float | None:
    """Shannon entropy of the distribution divided by log(k): 1.0 is perfectly balanced over k labels; None
    when there is nothing to count."""
    counts = [c for c in counts if c > 0]
    total = sum(counts)
    if total == 0:
        return None
    if k < 2:
        return 0.0
    h = -sum(c / total * math.log(c / total) for c in counts)
    return round(max(h, 0.0) / math.log(k), 4)


def compute(records: Iterable[Record], near: bool = True) -> dict[str, Any]:
    sits: dict[str, set[str]] = defaultdict(set)
    dlg = Counter[str]()
    per_pair = Counter[str]()
    lengths: dict[str, list[int]] = {"situation": [], "patient": [], "supporter": []}
    seen_sit: set[str] = set()
    exact: Counter[str] = Counter()
    texts: list[str] = []
    status = Counter[str]()
    source = Counter[str]()
    content = hashlib.sha256()
    for r in records:
        content.update("\x1f".join((r.dialogue_id, r.situation_id, r.emotion, r.situation, r.patient, r.supporter,
                                     r.status, r.source)).encode() + b"\x1e")
        sits[r.emotion].add(r.situation_id)
        dlg[r.emotion] += 1
        per_pair[r.situation_id] += 1
        status[r.status] += 1
        source[r.source] += 1
        if r.situation_id not in seen_sit:
            seen_sit.add(r.situation_id)
            lengths["situation"].append(len(r.situation))
        lengths["patient"].append(len(r.patient))
        lengths["supporter"].append(len(r.supporter))
        t = dedup.normalise(r.patient + "\n" + r.supporter)
        exact[dedup.exact_key(t)] += 1
        if near:
            texts.append(t)
    emotions = {
        lab.en: {"ja": lab.ja, "group": str(lab.group), "situations": len(sits[lab.en]), "dialogues": dlg[lab.en]}
        for lab in taxonomy.LABELS
    }
    groups = {str(g): {"situations": sum(len(sits[x.en]) for x in taxonomy.by_group(g)),
                       "dialogues": sum(dlg[x.en] for x in taxonomy.by_group(g))} for g in taxonomy.Group}
    pairs = list(per_pair.values())
    return {
        "situations": len(seen_sit),
        "dialogues": sum(dlg.values()),
        "emotions": emotions,
        "groups": groups,
        "dialogues_per_pair": _summary(pairs),
        "lengths_chars": {k: _summary(v) for k, v in lengths.items()},
        "balance": {
            "dialogues_normalised_entropy": normalised_entropy(dlg.values()),
            "situations_normalised_entropy": normalised_entropy(len(v) for v in sits.values()),
            "emotions_present": sum(1 for v in dlg.values() if v),
        },
        "duplicates": {
            "exact": sum(c - 1 for c in exact.values() if c > 1),
            "near": dedup.near_duplicates(texts) if near else None,
            "near_threshold": dedup.NEAR_THRESHOLD if near else None,
        },
        "status": dict(sorted(status.items())),
        "provenance": {"emplifai": dist_version("emplifai"), "datasketch": dist_version("datasketch"),
                       "content_sha256": content.hexdigest(),
                       "near_duplicates": f"MinHash over character {dedup.SHINGLE}-grams, {dedup.NUM_PERM} "
                                          f"permutations, Jaccard ≥ {dedup.NEAR_THRESHOLD}"},
        "source": dict(sorted(source.items())),
    }
