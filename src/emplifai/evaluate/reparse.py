"""`emplifai judge --reparse`: read the stored raw answers of a judge again with the current parser.

No model is called. Every judgement keeps every raw attempt (``JudgeScore.raw``), so a parser fix (a new
``prompts.judge.PARSER_VERSION``) can turn stored failures into scores, or scores into failures, without
paying for the judge again. Per row the first attempt the current parser accepts wins, as in the judge run;
rule scores (malformed generations) and score-only rows (read from log-probabilities) are not parsed answers
and stay as they are. Each row records the
parser version it was read with and what it was before (signature ``reparsed``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from emplifai.evaluate.judge import parse_answer
from emplifai.prompts import judge as jp
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore

_HEADER = re.compile(r"^----- attempt (\d+) -----\n", re.MULTILINE)


@dataclass
class ReparseReport:
    rows: int = 0
    unchanged: int = 0
    now_scored: int = 0  # failures the current parser reads as scores
    now_failed: int = 0  # scores the current parser refuses
    rescored: int = 0  # scores whose value changed
    examples: list[str] = field(default_factory=list)


def split_attempts(raw: str | None, attempts: int) -> list[str]:
    """The raw outputs of each attempt, undoing ``judge._join`` (one attempt is stored as is)."""
    if raw is None:
        return []
    if attempts <= 1:
        return [raw]
    parts = _HEADER.split(raw)
    # "" before the first header, then (number, text) pairs; each text got one "\n" appended when joined
    numbers, texts = parts[1::2], parts[2::2]
    if parts[0] or numbers != [str(k) for k in range(1, len(numbers) + 1)]:
        return [raw]  # not written by _join: read it as one answer rather than guess
    return [t[:-1] if t.endswith("\n") else t for t in texts]


def reparse(store: Store, judge_spec: str, sample: str | None = None, *, dry_run: bool = False) -> ReparseReport:
    report = ReparseReport()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with store.transaction() as s:
        q = select(JudgeScore).where(JudgeScore.judge == judge_spec, JudgeScore.rule.is_(None))
        if sample is not None:
            q = q.join(Generation, Generation.id == JudgeScore.generation_id).where(Generation.sample_name == sample)
        for row in s.scalars(q.order_by(JudgeScore.id)):
            if (row.signature or {}).get("score_only"):
                continue  # read from log-probabilities, not parsed from text: nothing to re-read
            report.rows += 1
            before = (row.score, row.failure)
            texts = split_attempts(row.raw, row.attempts)
            reasons: list[str] = []
            chosen: tuple[int, jp.Judgement] | None = None
            for k, text in enumerate(texts):
                parsed = parse_answer(text, row.metric)
                if parsed.ok:
                    chosen = (k, parsed)
                    break
                reasons.append(f"attempt {k + 1}: {parsed.error}")
            if chosen is not None:
                k, parsed = chosen
                score, feedback, failure = parsed.score, parsed.feedback, None
                # the G-Eval score belongs to the attempt that was used; another attempt has no log-probs stored
                weighted = row.weighted if before[1] is None and k == len(texts) - 1 else None
            else:
                score, feedback, failure, weighted = None, None, "; ".join(reasons) or "no raw output stored", None
            if score == before[0] and (failure is None) == (before[1] is None):
                report.unchanged += 1
            elif before[1] is not None and failure is None:
                report.now_scored += 1
            elif before[1] is None and failure is not None:
                report.now_failed += 1
            else:
                report.rescored += 1
            if (score, failure) != before and len(report.examples) < 10:
                report.examples.append(f"score {row.id} ({row.metric}): {before[0]} → {score}"
                                       + (f" ({failure[:120]})" if failure else ""))
            if dry_run:
                continue
            old_parser = (row.signature or {}).get("parser", "judge-parse-v1")
            row.score, row.feedback, row.failure, row.weighted = score, feedback, failure, weighted
            row.signature = {**(row.signature or {}), "parser": jp.PARSER_VERSION,
                             "reparsed": {"at": now, "from_parser": old_parser, "score_before": before[0],
                                          "failure_before": before[1]}}
    return report
