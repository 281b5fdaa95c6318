"""`emplifai synth`: fill under-represented emotions with filtered, reviewable synthetic dialogues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emplifai.cli.common import DbOpt, ProgressBoard, console, err_console
from emplifai.errors import UserError
from emplifai.formatting import to_json


def synth(
    model: Annotated[str, typer.Option("--model", help="Model spec: embedded, gguf:PATH, openai:MODEL@URL, hf:DIR.")],
    target: Annotated[int | None, typer.Option(
        help="Live dialogues wanted per emotion (default: as many as the best-covered emotion).")] = None,
    emotions: Annotated[list[str] | None, typer.Option(
        "--emotions", "-e", help="Emotions to fill (English or Japanese label; repeat or comma-separate).")] = None,
    per_situation: Annotated[int, typer.Option(help="Dialogues per synthetic situation (pair target).")] = 1,
    fill_pairs: Annotated[bool, typer.Option(
        help="Also top up existing crowd situations below the pair target.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many new dialogues in this run.")] = None,
    rounds: Annotated[int, typer.Option(help="Generate/filter rounds (later rounds replace rejected items).")] = 2,
    shots: Annotated[int, typer.Option(help="Few-shot examples per prompt, from stored data.")] = 2,
    prompt_style: Annotated[str, typer.Option(
        help="auto, chat or completion (few-shot documents for base models; auto picks it for a model without "
             "a chat template, such as the embedded one).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed (sampling and few-shot choice; part of the resume key).")] = 42,
    temperature: Annotated[float, typer.Option()] = 0.8,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Parallel requests (default: the backend's, 8 on HTTP servers, 1 in process).")] = None,
    near_threshold: Annotated[float, typer.Option(help="Near-duplicate Jaccard threshold (MinHash).")] = 0.6,
    japanese_min: Annotated[float, typer.Option(help="Minimum Japanese-character share.")] = 0.7,
    self_harm: Annotated[str, typer.Option(help="care (keep if answered with care, flagged) or reject.")] = "care",
    llm_safety: Annotated[bool, typer.Option(help="Extra LLM safety check per item.")] = False,
    emotion_agreement: Annotated[bool, typer.Option(
        help="The emotion predictor must rank the target emotion in its top-k.")] = False,
    agreement_top_k: Annotated[int, typer.Option()] = 3,
    check_model: Annotated[str | None, typer.Option(
        help="Model for the LLM safety / emotion checks (default: --model).")] = None,
    no_filters: Annotated[bool, typer.Option(
        "--no-filters", help="Keep everything that parses (benchmarks only; items still need review).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show the deficit and the plan; generate nothing.")] = False,
    export_rejected: Annotated[Path | None, typer.Option(
        help="Write the rejected and failed candidates of this model+seed (JSONL) with their reasons.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
    db: DbOpt = None,
) -> None:
    """Generate situations and two-turn dialogues for emotions below the target, filter them, and store the
    survivors as synthetic items pending review (rejected ones are kept with their reasons)."""
    from pydantic import ValidationError

    from emplifai.llm.registry import load_model
    from emplifai.store.db import open_store
    from emplifai.synth import FilterConfig, SynthConfig, Synthesizer

    names = [n.strip() for e in emotions or [] for n in e.split(",") if n.strip()] or None
    try:
        cfg = SynthConfig(
            target=target, emotions=tuple(names) if names else None, per_situation=per_situation,
            fill_pairs=fill_pairs, limit=limit, rounds=rounds, shots=shots, prompt_style=prompt_style, seed=seed,
            temperature=temperature,
            concurrency=concurrency,
            filters=FilterConfig(near_threshold=near_threshold, japanese_min=japanese_min, self_harm=self_harm,
                                 llm_safety=llm_safety, emotion_agreement=emotion_agreement,
                                 agreement_top_k=agreement_top_k, enabled=not no_filters),
        )
    except ValidationError as exc:
        raise UserError("bad option: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from exc
    store = open_store(db)
    if dry_run:
        syn = Synthesizer(store, _NoModel(model), cfg, model=model)  # planning needs no model
        _print_plan(syn.plan(), as_json)
        return
    llm = load_model(model)
    checker = load_model(check_model) if check_model and check_model != model else None
    board = ProgressBoard()
    syn = Synthesizer(store, llm, cfg, model=model, check_llm=checker, check_model=check_model,
                      progress=board.update)
    plans = syn.plan()
    if not as_json:
        _print_plan(plans, False)
    try:
        with board:
            report = syn.run()
    finally:
        llm.close()
        if checker is not None:
            checker.close()
    if export_rejected is not None:
        n = _export_rejected(store, report.run_id, syn.key, export_rejected)
        err_console.print(f"wrote {n} rejected/failed candidates to {export_rejected}")
    if as_json:
        print(to_json(report.as_dict()))
        return
    c = report.counts
    console.print(
        f"run {report.run_id} (key {report.key}): {c.get('accepted_dialogues', 0)} dialogues and "
        f"{c.get('accepted_situations', 0)} situations stored as synthetic, status pending; "
        f"rejected {c.get('rejected_dialogues', 0)} dialogues / {c.get('rejected_situations', 0)} situations, "
        f"failed {c.get('failed_dialogues', 0) + c.get('failed_situations', 0)}; "
        f"{report.calls} model calls, {report.seconds:.1f}s ({report.llm_seconds:.1f}s in the model)")
    if report.reasons:
        console.print("rejection reasons: " + ", ".join(f"{k} {v}" for k, v in report.reasons.most_common()))


class _NoModel:
    """Stands in for the model when only planning: the plan needs the resume key, which needs the prompt style."""

    def __init__(self, spec: str) -> None:
        from emplifai.llm.registry import parse_spec

        # the embedded model is a base model; other specs are only known once loaded (chat until then)
        self.instruction_tuned = False if parse_spec(spec).kind == "embedded" else None

    def signature(self) -> dict:
        return {}


def _print_plan(plans: list, as_json: bool) -> None:
    rows = [p.as_row() for p in plans]
    if as_json:
        print(to_json(rows))
        return
    t = Table(title="deficit per emotion (live dialogues; target = dialogues per emotion)")
    for col in ("emotion", "ja", "situations", "dialogues", "target", "deficit", "open", "pair_top_ups",
                "new_situations", "planned"):
        t.add_column(col, justify="left" if col in ("emotion", "ja") else "right")
    for r in rows:
        if r["deficit"] or r["open"]:
            t.add_row(*(str(r[c]) for c in r))
    console.print(t if t.row_count else "no deficit: every selected emotion has reached the target")
    if t.row_count:
        console.print(f"planned: {sum(r['planned'] for r in rows)} dialogues "
                      f"({sum(r['new_situations'] for r in rows)} new situations)")


def _export_rejected(store, run_id: int, key: str, path: Path) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from emplifai.store.synth import State, SynthCandidate

    with store.open_session() as s:
        rows = s.scalars(select(SynthCandidate).where(
            SynthCandidate.key == key, SynthCandidate.state.in_([State.REJECTED, State.FAILED])
        ).order_by(SynthCandidate.id)).all()
        out = [{"id": c.id, "run": c.run_id, "kind": c.kind, "emotion": c.emotion, "state": c.state,
                "reason": c.reason, "text": c.text, "stages": c.stages, "filters": c.filters} for c in rows]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    tmp.replace(path)  # nothing half-written
    return len(out)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
