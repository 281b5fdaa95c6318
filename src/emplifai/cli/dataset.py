"""`emplifai dataset import|validate|export|stats|split|review|decide`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emplifai import taxonomy
from emplifai.cli.common import DbOpt, console, err_console, progress_bar
from emplifai.dataset import ingest, stats
from emplifai.dataset import review as review_rules  # the commands are named review and decide
from emplifai.dataset.export import export_store
from emplifai.dataset.formats import FORMATS
from emplifai.dataset.splits import make_split
from emplifai.errors import InputError, UserError
from emplifai.formatting import to_json
from emplifai.records import STATUSES, Action, Status
from emplifai.store.db import open_store
from emplifai.store.repo import LIVE, iter_records

app = typer.Typer(help="Load, check, describe, split and export a dialogue dataset.", no_args_is_help=True)


def _source_path(path: Path | None, bundled: bool) -> Path:
    if bundled == (path is not None):
        raise UserError("give either a PATH or --bundled")
    src = ingest.bundled_corpus_path() if bundled else path
    if not src.exists():  # type: ignore[union-attr]
        raise UserError(f"{src}: no such file or folder")
    return src  # type: ignore[return-value]


@app.command("import")
def import_(
    path: Annotated[Path | None, typer.Argument(help="JSONL, CSV, Parquet file or a saved datasets folder.")] = None,
    bundled: Annotated[bool, typer.Option("--bundled", "--sample", help="Import the bundled corpus.")] = False,
    db: DbOpt = None,
) -> None:
    """Import a dataset: all rows or none, in one transaction; re-importing the same file changes nothing."""
    src = _source_path(path, bundled)
    store = open_store(db)
    with progress_bar(f"importing {src.name}", ingest.count_lines(src)) as advance:
        report = ingest.import_file(store, src, progress=advance)
    console.print(
        f"imported {src}: {report.dialogues_added} dialogues and {report.situations_added} situations added, "
        f"{report.unchanged} already present"
    )


@app.command()
def validate(
    path: Annotated[Path | None, typer.Argument(help="File to check.")] = None,
    bundled: Annotated[bool, typer.Option("--bundled", "--sample", help="Check the bundled corpus.")] = False,
    against_db: Annotated[bool, typer.Option("--against-db", help="Also check conflicts with the store.")] = False,
    db: DbOpt = None,
) -> None:
    """Report every problem of a file without touching the database."""
    src = _source_path(path, bundled)
    store = open_store(db) if against_db else None
    with progress_bar(f"checking {src.name}", ingest.count_lines(src)) as advance:
        report = ingest.validate_file(src, store, progress=advance)
    if report.problems:
        raise InputError(report.problems, "the database was not touched")
    console.print(f"{src}: {report.rows} rows, no problems")


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Output file (or folder for --format hf).")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "jsonl",
    split: Annotated[str | None, typer.Option(help="Only this split (train, validation, test).")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Statuses to include (default: all but removed).")] = None,
    db: DbOpt = None,
) -> None:
    """Export dialogues to JSONL, CSV, Parquet or a Hugging Face DatasetDict (train/validation/test)."""
    statuses = status or [str(s) for s in LIVE]
    for st in statuses:
        if st not in STATUSES:
            raise UserError(f"unknown status {st!r}; use {', '.join(STATUSES)}")
    counts = export_store(open_store(db), out, fmt, statuses=statuses, split=split)  # type: ignore[arg-type]
    console.print(f"wrote {out} ({fmt}): " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@app.command()
def publish(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (a datasets folder with its README.md card).")],
    license_: Annotated[str, typer.Option("--license", help="Licence id for the card's metadata.")]
    = "cc-by-nc-sa-4.0",
    name: Annotated[str, typer.Option(help="The dataset's name in the card.")] = "EmplifAI",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
    db: DbOpt = None,
) -> None:
    """A Hugging Face datasets folder (save_to_disk) with its dataset card and datasheet, from the store.

    Worker ids are pseudonymised; nothing goes over the network (push to the Hub yourself)."""
    from emplifai.study.publish import publish as write

    sheet = write(open_store(db), out, license=license_, name=name, overwrite=overwrite)
    console.print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in sheet["splits"].items())
                  + f"; card {out / 'README.md'}; load it with datasets.load_from_disk({str(out)!r})")


@app.command("stats")
def stats_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    near: Annotated[bool, typer.Option(help="Count near-duplicates (MinHash).")] = True,
    db: DbOpt = None,
) -> None:
    """Situations and dialogues per emotion, per pair, lengths, balance and duplicates."""
    store = open_store(db)
    with store.open_session() as s:
        result = stats.compute(iter_records(s), near=near)
    if as_json:
        print(to_json(result))
        return
    _print_stats(result)


def _print_stats(r: dict) -> None:
    t = Table(title=f"{r['situations']} situations, {r['dialogues']} dialogues")
    for col in ("emotion", "感情", "group", "situations", "dialogues"):
        t.add_column(col, justify="right" if col in ("situations", "dialogues") else "left")
    for en, e in r["emotions"].items():
        t.add_row(en, e["ja"], e["group"], str(e["situations"]), str(e["dialogues"]))
    console.print(t)
    p, b, d = r["dialogues_per_pair"], r["balance"], r["duplicates"]
    console.print(f"dialogues per emotion–situation pair: mean {p['mean']}, min {p['min']}, max {p['max']}")
    console.print("sentiment groups: " + ", ".join(
        f"{g} {v['situations']}/{v['dialogues']}" for g, v in r["groups"].items()) + " (situations/dialogues)")
    for k, v in r["lengths_chars"].items():
        console.print(f"{k} length (chars): mean {v['mean']}, median {v['median']}, min {v['min']}, max {v['max']}")
    console.print(f"balance (normalised entropy over 28 emotions): dialogues {b['dialogues_normalised_entropy']}, "
                  f"situations {b['situations_normalised_entropy']}")
    console.print(f"duplicates: exact {d['exact']}, near {d['near']} (Jaccard ≥ {d['near_threshold']})")


@app.command()
def split(
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    train: Annotated[float, typer.Option(help="Fraction of each emotion's situations for training.")] = 0.8,
    validation: Annotated[float, typer.Option()] = 0.1,
    test: Annotated[float, typer.Option()] = 0.1,
    name: Annotated[str, typer.Option(help="Split name; later stages use the newest of a name.")] = "default",
    db: DbOpt = None,
) -> None:
    """Train/validation/test grouped by situation and stratified by emotion; the manifest is stored."""
    res = make_split(open_store(db), seed=seed, fractions=(train, validation, test), name=name)
    for sp, v in res.sizes.items():
        console.print(f"{sp}: {v['situations']} situations, {v['dialogues']} dialogues")
    err_console.print(f"manifest {res.manifest_id} (seed {res.seed}, content {res.content_hash[:12]})")
    if res.merged:
        err_console.print(f"{res.merged} situation id(s) share their text with another id and were kept in its split")


@app.command()
def review(
    status: Annotated[str, typer.Option(help="pending, flagged, approved or removed.")] = "pending",
    source: Annotated[str | None, typer.Option(help="Only this source (e.g. synthetic).")] = None,
    emotions: Annotated[list[str] | None, typer.Option("--emotions", "-e", help="Only these emotions.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    db: DbOpt = None,
) -> None:
    """The review queue outside campaigns (synthetic items): dialogues in a status, with filter flags."""
    if status not in {s.value for s in Status}:
        raise UserError(f"--status must be one of {', '.join(s.value for s in Status)}, not {status!r}")
    names = [e.strip() for x in emotions or [] for e in x.split(",") if e.strip()]
    emos = taxonomy.resolve(names) if names else None
    items = review_rules.queue(open_store(db), status=Status(status), source=source, emotions=emos, limit=limit)
    if as_json:
        for it in items:
            print(json.dumps(it.to_dict(), ensure_ascii=False))
        return
    t = Table(title=f"{len(items)} {status} dialogues" + (f" ({source})" if source else ""), show_lines=True)
    for col in ("id", "emotion", "situation", "dialogue", "flags"):
        t.add_column(col, overflow="fold")
    for it in items:
        t.add_row(it.dialogue_id, it.emotion, it.situation, f"患者：{it.patient}\n支援者：{it.supporter}",
                  ", ".join(it.flags))
    console.print(t)
    err_console.print("decide with: emplifai dataset decide approve|reject|flag|keep|remove ID... --reviewer NAME")


@app.command()
def decide(
    action: Annotated[str, typer.Argument(help="approve, reject, flag (reviewers); keep, remove (the lead).")],
    ids: Annotated[list[str], typer.Argument(help="Dialogue ids.")],
    reviewer: Annotated[str, typer.Option(help="Who decides (kept in the review history).")],
    reason: Annotated[str | None, typer.Option(help="Why (needed to reject, flag or remove).")] = None,
    db: DbOpt = None,
) -> None:
    """Record a review decision on dialogues, all or none; their situations follow."""
    try:
        act = Action(action)
    except ValueError:
        raise UserError(f"unknown decision {action!r}; one of: {', '.join(review_rules.DECISIONS)}") from None
    done = review_rules.decide(open_store(db), ids, act, actor=reviewer, reason=reason)
    for did, st in done.items():
        console.print(f"{did}: {st}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dataset")
