"""Filter precision and recall on a labelled set of candidates (tests/data/synth_filter_cases.jsonl).

Each case is screened the way the pipeline screens a candidate: the situation's rules and duplicates, then the
dialogue's format, rules and duplicates, against a reference store and the earlier cases of the same batch;
optionally the model checks. Positive = a bad item (label != "good"); a rejection is a positive prediction.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emplifai.llm.base import GenParams, LLMFailure
from emplifai.predict import prompt as predictor
from emplifai.prompts import render
from emplifai.prompts.generation import format_dialogue

from . import filters as F
from . import stages as S
from .config import FilterConfig

if TYPE_CHECKING:
    from emplifai.llm.base import LLM
    from emplifai.records import Record


@dataclass
class Screened:
    case: dict[str, Any]
    results: list[F.FilterResult]

    @property
    def rejected_by(self) -> str | None:
        bad = F.first_failure(self.results)
        return bad.name if bad else None


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def screen(cases: Sequence[dict[str, Any]], reference: Iterable[Record], cfg: FilterConfig,
           llm: LLM | None = None) -> list[Screened]:
    sit_index = F.DedupIndex(cfg.near_threshold, cfg.num_perm)
    dlg_index = F.DedupIndex(cfg.near_threshold, cfg.num_perm)
    reference = list(reference)
    sit_index.add_many(list({r.situation_id: r.situation for r in reference}.items()))
    dlg_index.add_many([(r.dialogue_id, F.dialogue_text(r.patient, r.supporter)) for r in reference])
    out: list[Screened] = []
    for case in cases:
        results = F.situation_rules(case["situation"], cfg)
        if F.first_failure(results) is None:
            results.append(sit_index.check(case["situation"], "duplicate"))
        parsed = S.parse_dialogue(case["raw"])
        results.append(F.FilterResult("format", parsed.ok, parsed.error))
        if parsed.ok and F.first_failure(results) is None:
            results += F.dialogue_rules(case["situation"], parsed.patient, parsed.supporter, cfg)
            if F.first_failure(results) is None:
                dup = dlg_index.check(F.dialogue_text(parsed.patient, parsed.supporter))
                results.append(dup)
        if F.first_failure(results) is None:  # kept: later cases are checked against it (within-batch)
            sit_index.add(case["id"], case["situation"])
            if parsed.ok:
                dlg_index.add(case["id"], F.dialogue_text(parsed.patient, parsed.supporter))
        out.append(Screened(case, results))
    if llm is not None and (cfg.llm_safety or cfg.emotion_agreement):
        _model_checks(out, cfg, llm)
    return out


def _model_checks(items: list[Screened], cfg: FilterConfig, llm: LLM) -> None:

    alive = [s for s in items if F.first_failure(s.results) is None]
    parsed = [S.parse_dialogue(s.case["raw"]) for s in alive]
    if cfg.llm_safety:
        convs = [[{"role": "user", "content": render("synth_safety.j2", situation=s.case["situation"],
                                                     dialogue=format_dialogue(p.patient, p.supporter))}]
                 for s, p in zip(alive, parsed, strict=True)]
        answers = llm.batch_chat(convs, GenParams(max_tokens=48, temperature=0.0))
        for s, a in zip(alive, answers, strict=True):
            s.results.append(F.FilterResult("llm_safety", False, a.reason) if isinstance(a, LLMFailure)
                             else F.read_safety_verdict(a.text))
    if cfg.emotion_agreement:
        for s, p in zip(alive, parsed, strict=True):
            res = predictor.score_item(llm, predictor.build_prompt(s.case["situation"], p.patient, p.supporter))
            dist = (res.distribution or {}).get("prob", {})
            order = sorted(dist, key=lambda k: -dist[k]) if dist else (res.top3 or [])
            s.results.append(F.agreement(s.case["emotion"], order, cfg.agreement_top_k, dist.get(s.case["emotion"])))


def metrics(screened: Sequence[Screened]) -> dict[str, Any]:
    tp = sum(1 for s in screened if s.case["label"] != "good" and s.rejected_by)
    fp = sum(1 for s in screened if s.case["label"] == "good" and s.rejected_by)
    fn = sum(1 for s in screened if s.case["label"] != "good" and not s.rejected_by)
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for s in screened:
        c = per[s.case["label"]]
        c["n"] += 1
        c["rejected"] += bool(s.rejected_by)
        c["by_expected_filter"] += s.rejected_by in s.case["expect"]
    return {
        "n": len(screened), "bad": tp + fn, "good": len(screened) - tp - fn,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "false_positives": [s.case["id"] + f" ({s.rejected_by})" for s in screened
                            if s.case["label"] == "good" and s.rejected_by],
        "missed": [s.case["id"] for s in screened if s.case["label"] != "good" and not s.rejected_by],
        "per_label": {k: dict(v) for k, v in sorted(per.items())},
    }
