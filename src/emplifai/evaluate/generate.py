"""Two-turn dialogue generation for the sampled pairs (paper §5.1), plus the corpus's own dialogues as a source.

Each model gets the crowd workers' Japanese instruction (``prompts.generation.instruction``) for the item's
emotion and situation; the answer goes through the strict ``parse_dialogue``. Output that breaks the format
is stored as malformed with its raw text and reason (the judge then gives it the lowest score by rule);
output whose share of Japanese characters is below the threshold is flagged ``non_japanese``. A backend
failure (server down, context full) is *not* a malformed generation: it is not stored, counted, and a rerun
retries it. Reruns skip items already generated for that source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from emplifai import __version__
from emplifai.errors import UserError
from emplifai.evaluate.sample import require_sample
from emplifai.llm import registry
from emplifai.llm.base import LLM, Completion, GenParams, LLMFailure
from emplifai.prompts import generation as gen
from emplifai.store.db import Store
from emplifai.store.evaluation import HUMAN_SOURCE, EvalSampleItem, Generation
from emplifai.store.models import Dialogue, Situation
from emplifai.store.repo import LIVE


@dataclass
class GenerateReport:
    source: str
    added: int = 0
    skipped: int = 0
    malformed: int = 0
    non_japanese: int = 0
    backend_failures: list[str] = field(default_factory=list)


def _pending(store: Store, sample_name: str, source: str) -> tuple[list[tuple[EvalSampleItem, Situation]], int]:
    with store.transaction() as s:
        sample = require_sample(s, sample_name)
        done = set(s.scalars(select(Generation.situation_id).where(
            Generation.sample_name == sample_name, Generation.source == source)))
        todo = [(i, s.get(Situation, i.situation_id)) for i in sample.items if i.situation_id not in done]
        return todo, len(done)  # type: ignore[return-value]


def _row(sample_name: str, situation_id: str, source: str, raw: str, signature: dict[str, Any],
         prompt_version: str, seed: int | None) -> Generation:
    parsed = gen.parse_dialogue(raw)
    body = f"{parsed.patient or ''}{parsed.supporter or ''}" if parsed.ok else raw
    share = gen.japanese_share(body)
    return Generation(
        sample_name=sample_name, situation_id=situation_id, source=source, raw=raw, patient=parsed.patient,
        supporter=parsed.supporter, malformed=parsed.error, japanese_share=round(share, 4),
        non_japanese=share < gen.JAPANESE_THRESHOLD, signature=signature, prompt_version=prompt_version, seed=seed,
    )


def generate(
    store: Store, *, spec: str, sample_name: str = "default", label: str | None = None, lang: str = "ja",
    max_tokens: int = 256, temperature: float = 0.0, seed: int = 42, concurrency: int | None = None,
    progress: Callable[[int], None] | None = None, llm: LLM | None = None,
) -> GenerateReport:
    """Generate one dialogue per sampled item with the model ``spec`` (stored under ``label`` or the spec)."""

    source = label or spec
    if source == HUMAN_SOURCE:
        raise UserError("'human' is reserved for the corpus's own dialogues (use --source human)")
    todo, done = _pending(store, sample_name, source)
    report = GenerateReport(source=source, skipped=done)
    if not todo:
        return report
    model = llm or registry.load_model(spec)
    params = GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed, stop=gen.STOP)
    signature = {"spec": spec, "llm": model.signature(), "params": params.model_dump(mode="json"), "lang": lang,
                 "prompt_version": gen.PROMPT_VERSION, "emplifai": __version__}
    concurrency = concurrency or model.default_concurrency

    def arrived(i: int, res: Completion | LLMFailure) -> None:
        # each dialogue is committed as it arrives (no batch boundary holds the others back): a kill loses only
        # the requests in flight, and a rerun generates exactly the missing ones
        it, _sit = todo[i]
        if isinstance(res, LLMFailure):
            report.backend_failures.append(f"{it.situation_id}: {res.reason}")
        else:
            row = _row(sample_name, it.situation_id, source, res.text, signature, gen.PROMPT_VERSION, seed)
            with store.transaction() as s:
                s.add(row)
            report.added += 1
            report.malformed += row.malformed is not None
            report.non_japanese += row.non_japanese
        if progress is not None:
            progress(1)

    try:
        convs = [[{"role": "user", "content": gen.instruction(it.emotion, sit.text, lang)}] for it, sit in todo]
        model.batch_chat(convs, params, concurrency=concurrency, progress=arrived)
    finally:
        if llm is None:
            model.close()
    return report


def add_human(store: Store, sample_name: str = "default") -> GenerateReport:
    """The corpus's own dialogue for each sampled situation (the lowest live dialogue id) as source "human"."""
    report = GenerateReport(source=HUMAN_SOURCE)
    todo, report.skipped = _pending(store, sample_name, HUMAN_SOURCE)
    with store.transaction() as s:
        for it, _sit in todo:
            d = s.scalars(select(Dialogue).where(
                Dialogue.situation_id == it.situation_id, Dialogue.status.in_([str(x) for x in LIVE])
            ).order_by(Dialogue.id).limit(1)).first()
            if d is None:
                raise UserError(f"situation {it.situation_id} has no live dialogue any more")
            signature = {"spec": HUMAN_SOURCE, "dialogue_id": d.id, "dialogue_source": d.source, "author": d.author,
                         "emplifai": __version__}
            row = _row(sample_name, it.situation_id, HUMAN_SOURCE, gen.format_dialogue(d.patient, d.supporter),
                       signature, "corpus", None)
            s.add(row)
            report.added += 1
            report.malformed += row.malformed is not None
            report.non_japanese += row.non_japanese
    return report
