"""`emplifai sample | generate | judge | ratings export|import|summary | agree | report-eval` (paper §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emplifai.cli.common import DbOpt, console, err_console, progress_bar
from emplifai.errors import UserError
from emplifai.evaluate.rubrics import JUDGE_METRICS
from emplifai.formatting import num, to_json
from emplifai.store.db import open_store
from emplifai.store.evaluation import HUMAN_SOURCE

SampleOpt = Annotated[str, typer.Option("--sample", help="Name of the sample manifest.")]
ratings_app = typer.Typer(help="Human rating sheets: export, import, summary.", no_args_is_help=True)


def _store(db: str | None):
    import emplifai.store.evaluation  # noqa: F401  (registers the tables on Base)

    return open_store(db)


def sample(
    n: Annotated[int, typer.Option("--n", help="Number of emotion–situation pairs.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed (paper: 42).")] = 42,
    name: Annotated[str, typer.Option("--name", help="Manifest name.")] = "default",
    stratify: Annotated[bool, typer.Option(help="Keep the emotion proportions of the population.")] = False,
    replace: Annotated[bool, typer.Option(help="Replace a same-named manifest that has no generations.")] = False,
    db: DbOpt = None,
) -> None:
    """Draw the emotion–situation pairs every model and rater sees (scikit-learn, as in the paper)."""
    from emplifai.evaluate.sample import make_sample

    r = make_sample(_store(db), n=n, seed=seed, name=name, stratify=stratify, replace=replace)
    state = "created" if r.created else "already present (unchanged)"
    console.print(f"sample {r.name!r}: {r.n} pairs over {r.emotions} emotions, seed {seed} — {state}")


def generate(
    model: Annotated[str | None, typer.Option("--model", help="Model spec, e.g. embedded.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="'human': the corpus's own dialogues.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Store under this source name (default: spec).")] = None,
    sample_name: SampleOpt = "default",
    max_tokens: Annotated[int, typer.Option(help="Token limit per dialogue.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy (reproducible).")] = 0.0,
    seed: Annotated[int, typer.Option()] = 42,
    lang: Annotated[str, typer.Option(help="Instruction language: ja (paper) or en.")] = "ja",
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Parallel requests (default: the backend's, 8 on HTTP servers, 1 in process).")] = None,
    db: DbOpt = None,
) -> None:
    """Generate a two-turn dialogue per sampled pair; malformed output is kept and flagged, reruns resume."""
    from emplifai.evaluate import generate as g

    store = _store(db)
    if (model is None) == (source is None):
        raise UserError("give either --model SPEC or --source human")
    if source is not None:
        if source != HUMAN_SOURCE:
            raise UserError("--source only accepts 'human' (the corpus's own dialogues)")
        r = g.add_human(store, sample_name)
    else:
        if lang not in ("ja", "en"):
            raise UserError("--lang must be ja or en")
        from emplifai.evaluate.sample import require_sample

        with store.transaction() as s:
            total = require_sample(s, sample_name).n
        with progress_bar(f"generating with {label or model}", total) as advance:
            r = g.generate(store, spec=model, sample_name=sample_name, label=label, lang=lang, max_tokens=max_tokens,
                           temperature=temperature, seed=seed, concurrency=concurrency, progress=advance)
    console.print(f"{r.source}: {r.added} added, {r.skipped} already present; {r.malformed} malformed, "
                  f"{r.non_japanese} not Japanese")
    for f in r.backend_failures:
        err_console.print(f"[yellow]backend failure (not stored, rerun to retry):[/] {f}")


def judge(
    judge_spec: Annotated[list[str], typer.Option("--judge", help="Judge model spec (repeat for a panel).")],
    sample_name: SampleOpt = "default",
    source: Annotated[list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help=f"Subset of: {', '.join(JUDGE_METRICS)}.")
                      ] = None,
    rubric_set: Annotated[str, typer.Option("--rubrics", help="paper (7 rubrics), epitome (3 mechanisms, 0–2) "
                                                              "or all; --metric overrides.")] = "paper",
    repeats: Annotated[int, typer.Option(help="Independent judgements per item (spread is reported).")] = 1,
    layout: Annotated[str, typer.Option(help="standard (Table 4), blocks or reversed (bias probe).")] = "standard",
    lang: Annotated[str, typer.Option(help="Rubric language: ja or en.")] = "ja",
    shots: Annotated[int, typer.Option(help="Worked examples before the item (0–2).")] = 2,
    weighted: Annotated[bool, typer.Option(help="G-Eval probability-weighted score (needs logprobs).")] = False,
    score_only: Annotated[bool, typer.Option(
        "--score-only", help="No feedback text: read the score from the probabilities of 1–5 (one decode step; "
        "in-process backends).")] = False,
    retries: Annotated[int, typer.Option(help="Extra attempts for an invalid answer.")] = 2,
    max_tokens: Annotated[int, typer.Option()] = 160,
    temperature: Annotated[float, typer.Option()] = 0.0,
    seed: Annotated[int, typer.Option()] = 42,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Parallel requests (default: the backend's, 8 on HTTP servers, 1 in process).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N generations per source.")] = None,
    allow_self_judge: Annotated[bool, typer.Option("--allow-self-judge", help="Let a model judge itself.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Judge stored failures again.")] = False,
    replace: Annotated[bool, typer.Option(help="Re-score items scored with an older prompt version.")] = False,
    constrained: Annotated[bool, typer.Option(help="Send the answer's JSON schema (llama.cpp grammar, server "
                                                   "response_format); --no-constrained parses and retries.")] = True,
    reparse: Annotated[bool, typer.Option(help="Re-read the stored raw answers with the current parser; no model "
                                               "is called.")] = False,
    dry_run: Annotated[bool, typer.Option(help="With --reparse: report what would change, store nothing.")] = False,
    db: DbOpt = None,
) -> None:
    """Score generations on the rubrics (Table 3, EPITOME); failures are stored with raw output, reruns resume."""
    from emplifai.evaluate import rubrics
    from emplifai.evaluate.judge import JudgeConfig
    from emplifai.evaluate.judge import judge as run

    if len(set(judge_spec)) != len(judge_spec):
        raise UserError("--judge: each judge of a panel must be given once")
    if reparse:
        _reparse(judge_spec, sample_name, dry_run, db)
        return
    if lang not in ("ja", "en"):
        raise UserError("--lang must be ja or en")
    if repeats > 1 and temperature == 0.0:
        err_console.print("[yellow]note:[/] --repeats with --temperature 0 gives identical answers; the spread "
                          "will be 0 on deterministic backends")
    metrics = tuple(metric) if metric else rubrics.rubric_set(rubric_set)
    for spec in judge_spec:  # the blind rule is checked for each judge of the panel
        cfg = JudgeConfig(spec=spec, sample=sample_name, sources=tuple(source) if source else None,
                          metrics=metrics, repeats=repeats, layout=layout, lang=lang, shots=shots, weighted=weighted,
                          score_only=score_only,
                          retries=retries, max_tokens=max_tokens, temperature=temperature, seed=seed,
                          concurrency=concurrency, allow_self=allow_self_judge, retry_failed=retry_failed,
                          replace=replace, limit=limit, constrained=constrained)
        with progress_bar(f"judging with {spec}", None) as advance:
            r = run(_store(db), cfg, progress=advance)
        how = ", ".join(f"{k}: {v}" for k, v in sorted(r.structured.items()))
        console.print(f"{spec}: {r.scored} scored, {r.by_rule} by rule (malformed), {r.failed} failed after "
                      f"{retries + 1} attempt(s), {r.skipped} already stored; {r.attempts} LLM calls, "
                      f"{r.invalid} invalid answers" + (f" (how the schema was enforced: {how})" if how else ""))
        for f in r.failures[:10]:
            err_console.print(f"[yellow]failure (stored with raw output):[/] {f[:300]}")


def _reparse(judges: list[str], sample_name: str, dry_run: bool, db: str | None) -> None:
    from emplifai.evaluate.reparse import reparse
    from emplifai.prompts.judge import PARSER_VERSION

    for spec in judges:
        r = reparse(_store(db), spec, sample_name, dry_run=dry_run)
        console.print(f"{spec}: {r.rows} stored answers re-read with {PARSER_VERSION}"
                      + (" (dry run: nothing stored)" if dry_run else "") + f": {r.unchanged} unchanged, "
                      f"{r.now_scored} failures now scored, {r.now_failed} scores now failures, {r.rescored} rescored")
        for line in r.examples:
            console.print(f"  {line}")


@ratings_app.command("export")
def ratings_export(
    source: Annotated[str, typer.Option("--source", help="Which generations to rate (a model spec/label or human).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the sheets.")] = Path("rating_sheets"),
    sample_name: SampleOpt = "default",
    raters: Annotated[int, typer.Option(help="Raters per group.")] = 3,
    group_size: Annotated[int, typer.Option(help="Dialogues per group.")] = 10,
    db: DbOpt = None,
) -> None:
    """Write one CSV and one XLSX sheet per (group, rater)."""
    from emplifai.evaluate.ratings import export_sheets

    files = export_sheets(_store(db), out, sample=sample_name, source=source, raters=raters, group_size=group_size)
    console.print(f"wrote {len(files)} files ({len(files) // 2} sheets as CSV + XLSX) to {out}")


@ratings_app.command("import")
def ratings_import(
    files: Annotated[list[Path], typer.Argument(help="Filled sheets (.csv or .xlsx).")],
    replace: Annotated[bool, typer.Option(help="Overwrite a rater's earlier different score.")] = False,
    db: DbOpt = None,
) -> None:
    """Validate all sheets and store every score, or nothing; then print inter-rater agreement."""
    from sqlalchemy import select

    from emplifai.evaluate.ratings import import_sheets, summary
    from emplifai.store.evaluation import Generation, Rating

    store = _store(db)
    r = import_sheets(store, files, replace=replace)
    console.print(f"{r.files} file(s): {r.added} scores added, {r.unchanged} unchanged, {r.replaced} replaced; "
                  f"{len(r.raters)} rater(s)")
    with store.transaction() as s:
        pairs = set(s.execute(select(Generation.sample_name, Generation.source).join(
            Rating, Rating.generation_id == Generation.id)))
    for smp, src in sorted(pairs):
        _print_summary(summary(store, smp, src))


def _print_summary(sm: dict) -> None:
    from rich.table import Table

    from emplifai.evaluate.rubrics import label

    t = Table(title=f"human ratings: sample {sm['sample']}, source {sm['source']} ({sm['raters']} raters)")
    for col in ("metric", "items", "mean", "α ordinal", "ICC(1,1)", "ICC(1,k)"):
        t.add_column(col)
    for m, v in sm["metrics"].items():
        t.add_row(label(m), str(v["items"]), f"{v['mean']:.2f}", *(num(v[k], 3)
                                                                    for k in ("alpha_ordinal", "icc1", "icc1k")))
    console.print(t)
    from emplifai.evaluate.ratings import left_out_note

    if note := left_out_note(sm.get("left_out")):
        console.print(note)


@ratings_app.command("summary")
def ratings_summary(
    source: Annotated[str, typer.Option("--source")],
    sample_name: SampleOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON incl. per-dialogue means.")] = False,
    db: DbOpt = None,
) -> None:
    """Per-dialogue means and inter-rater agreement (Krippendorff's alpha, ordinal; ICC)."""
    from emplifai.evaluate.ratings import summary

    sm = summary(_store(db), sample_name, source)
    if as_json:
        print(to_json(sm))
    else:
        _print_summary(sm)


def agree(
    judge_spec: Annotated[str, typer.Option("--judge")],
    source: Annotated[str, typer.Option("--source", help="The rated source.")],
    sample_name: SampleOpt = "default",
    weighted: Annotated[bool, typer.Option(help="Use G-Eval weighted judge scores.")] = False,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs.")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option("--out")] = Path("reports"),
    db: DbOpt = None,
) -> None:
    """Judge vs human per metric: Pearson r (p), Spearman rho, MAD, bootstrap CIs → table5.md/.json."""
    from emplifai.evaluate import tables as rep

    t = rep.table5(_store(db), judge_spec, source, sample_name, weighted=weighted, n_boot=bootstrap, seed=seed)
    md = rep.md5(t)
    paths = rep.write(out, "table5", t, md)
    console.print(md)
    console.print(f"wrote {', '.join(map(str, paths))}")


def report_eval(
    judge_spec: Annotated[list[str], typer.Option("--judge", help="Judge spec (repeat for a panel).")],
    human_source: Annotated[str | None, typer.Option("--rated-source", help="Source with human ratings.")] = None,
    sample_name: SampleOpt = "default",
    bias_layout: Annotated[str, typer.Option(help="Alternative layout for the bias report.")] = "blocks",
    weighted: Annotated[bool, typer.Option(help="Table 4 from G-Eval weighted scores.")] = False,
    out: Annotated[Path, typer.Option("--out")] = Path("reports"),
    db: DbOpt = None,
) -> None:
    """Write table4, table5 (if rated), bias report and per-metric PNG plots."""
    from emplifai.evaluate import panel
    from emplifai.evaluate import tables as rep

    store = _store(db)
    files: list[Path] = []
    first = judge_spec[0]
    for name, metrics in _rubric_tables(store, first, sample_name):
        if len(judge_spec) > 1:
            t = panel.panel_table4(store, judge_spec, sample_name, weighted=weighted, metrics=metrics)
            files += rep.write(out, name, t, panel.md_panel(t))
            console.print(panel.md_panel(t))
        else:
            t4 = rep.table4(store, first, sample_name, weighted=weighted, metrics=metrics)
            files += rep.write(out, name, t4, rep.md4(t4))
            console.print(rep.md4(t4))
    for spec in judge_spec:
        sub = out if len(judge_spec) == 1 else out / _slug(spec)
        if human_source:
            t5 = rep.table5(store, spec, human_source, sample_name, weighted=weighted)
            files += rep.write(sub, "table5", t5, rep.md5(t5))
            console.print(rep.md5(t5))
        b = rep.bias(store, spec, sample_name, bias_layout)
        files += rep.write(sub, "bias", b, rep.md_bias(b))
        files += rep.plots(store, spec, sub, sample_name, human_source)
    console.print(f"wrote {len(files)} files to {out}")


def _rubric_tables(store, judge_spec: str, sample_name: str) -> list[tuple[str, tuple[str, ...]]]:
    """table4 for the paper's rubrics and table4_epitome for the mechanisms, whichever the judge scored."""
    from sqlalchemy import select

    from emplifai.evaluate import rubrics
    from emplifai.store.evaluation import JudgeScore

    with store.transaction() as s:
        scored = set(s.scalars(select(JudgeScore.metric).where(JudgeScore.judge == judge_spec).distinct()))
    out = [("table4", rubrics.METRICS)] if scored & set(rubrics.METRICS) or not scored else []
    return out + ([("table4_epitome", rubrics.EPITOME)] if scored & set(rubrics.EPITOME) else [])


def _slug(spec: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_")[:80] or "judge"


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
    app.command("generate")(generate)
    app.command("judge")(judge)
    app.add_typer(ratings_app, name="ratings")
    app.command("agree")(agree)
    app.command("report-eval")(report_eval)
