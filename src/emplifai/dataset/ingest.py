"""Import that never corrupts: one transaction per file, every problem reported, the store unchanged on error.

Rows are streamed and checked against the store batch by batch, so memory stays flat however large the
file is. Re-importing the same file changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from emplifai.dataset.formats import Row, check_record, iter_rows
from emplifai.errors import InputError, Problem
from emplifai.records import Record
from emplifai.store.db import Store
from emplifai.store.models import Dialogue, Situation, utcnow

MAX_PROBLEMS = 1000
PROGRESS_EVERY = 500
Progress = Callable[[int], None]


def bundled_corpus_path() -> Path:
    """The bundled corpus shipped inside the package (written for this project, not clinical data; see its README)."""
    return Path(str(files("emplifai") / "data" / "sample" / "dialogues.jsonl"))


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    situations_added: int = 0
    dialogues_added: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)


class _Batcher:
    """Checks a batch of valid records against the store and each other, then inserts the new ones.

    Inserting on a writer thread while the next batch is parsed was tried and measured: no gain, because
    sqlite3 takes the GIL back for every row it binds, so the two threads only hand the lock to each other."""

    def __init__(self, session: Session | None, report: ImportReport, batch_id: str, write: bool):
        self.s, self.report, self.batch_id, self.write = session, report, batch_id, write
        # Without writes, repeated ids across batches can only be caught in memory (validate only).
        self.seen_dialogues: set[str] | None = None if write else set()
        self.pending: list[tuple[Row, Record]] = []
        # Situations seen in this file: few (one per ~15 dialogues) and needed for cross-batch conflicts.
        self.situations: dict[str, tuple[str, str, int]] = {}

    def add(self, row: Row, rec: Record) -> None:
        self.pending.append((row, rec))
        if len(self.pending) >= 2000:
            self.flush()

    def problem(self, row: Row, fld: str, msg: str) -> None:
        self.report.problems.append(Problem(row.file, row.line, fld, msg))

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        stored_sits = self._stored_situations({r.situation_id for _, r in batch})
        stored_dlgs = self._stored_dialogues({r.dialogue_id for _, r in batch})
        seen_ids: set[str] = set()
        new_sits: list[dict] = []
        new_dlgs: list[dict] = []
        now = utcnow()
        for row, rec in batch:
            if not self._situation_ok(row, rec, stored_sits, new_sits, now):
                continue
            if rec.dialogue_id in seen_ids or (
                self.seen_dialogues is not None and rec.dialogue_id in self.seen_dialogues
            ):
                self.problem(row, "dialogue_id", f"duplicate dialogue_id {rec.dialogue_id!r} in this file")
                continue
            seen_ids.add(rec.dialogue_id)
            if self.seen_dialogues is not None:
                self.seen_dialogues.add(rec.dialogue_id)
            old = stored_dlgs.get(rec.dialogue_id)
            if old is not None:
                if old.batch == self.batch_id:
                    self.problem(row, "dialogue_id", f"duplicate dialogue_id {rec.dialogue_id!r} in this file")
                elif (old.situation_id, old.patient, old.supporter) == (rec.situation_id, rec.patient, rec.supporter):
                    self.report.unchanged += 1
                else:
                    self.problem(row, "dialogue_id", f"{rec.dialogue_id!r} is already stored with different content")
                continue
            new_dlgs.append(
                dict(id=rec.dialogue_id, situation_id=rec.situation_id, patient=rec.patient,
                     supporter=rec.supporter, source=rec.source, status=rec.status, author=rec.author,
                     meta=rec.meta, batch=self.batch_id, created_at=now, updated_at=now)
            )
        # Valid rows are inserted even after a problem elsewhere, so later duplicates are still caught;
        # the caller rolls the whole transaction back.
        if self.s is not None and self.write:
            self._insert(new_sits, new_dlgs)
        self.report.situations_added += len(new_sits)
        self.report.dialogues_added += len(new_dlgs)

    def _situation_ok(self, row: Row, rec: Record, stored: dict, new_sits: list[dict], now) -> bool:  # type: ignore[no-untyped-def]
        known = self.situations.get(rec.situation_id)
        if known is None and (st := stored.get(rec.situation_id)) is not None:
            known = (st.emotion, st.text, 0)
        if known is not None:
            where = f"line {known[2]} of this file" if known[2] else "the store"
            if known[0] != rec.emotion:
                msg = f"situation {rec.situation_id!r} is {known[0]} in {where}, here {rec.emotion}"
                self.problem(row, "emotion", msg)
                return False
            if known[1] != rec.situation:
                self.problem(row, "situation", f"situation {rec.situation_id!r} has a different text in {where}")
                return False
            return True
        self.situations[rec.situation_id] = (rec.emotion, rec.situation, row.line)
        new_sits.append(
            dict(id=rec.situation_id, emotion=rec.emotion, text=rec.situation, condition=rec.condition,
                 stage=rec.stage, source=rec.source, status="approved" if rec.status != "pending" else "pending",
                 author=rec.author, meta={}, batch=self.batch_id, created_at=now)
        )
        return True

    def _insert(self, situations: list[dict[str, Any]], dialogues: list[dict[str, Any]]) -> None:
        assert self.s is not None
        if situations:  # first: the dialogues' foreign keys point at them
            insert_rows(self.s, Situation.__table__, situations)
        if dialogues:
            insert_rows(self.s, Dialogue.__table__, dialogues)

    def _stored_situations(self, ids: set[str]) -> dict:
        if self.s is None:
            return {}
        rows = self.s.execute(select(Situation.id, Situation.emotion, Situation.text).where(Situation.id.in_(ids)))
        return {r.id: r for r in rows}

    def _stored_dialogues(self, ids: set[str]) -> dict:
        if self.s is None:
            return {}
        cols = (Dialogue.id, Dialogue.situation_id, Dialogue.patient, Dialogue.supporter, Dialogue.batch)
        return {r.id: r for r in self.s.execute(select(*cols).where(Dialogue.id.in_(ids)))}


def insert_rows(s: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows of one shape. On SQLite the rows go to the driver's executemany on one prepared
    statement, each value passed through its column's own bind processor (so the stored form is exactly what
    SQLAlchemy writes): SQLAlchemy's per-row parameter handling otherwise costs more than SQLite's insert
    itself. Other databases keep Core's batched multi-VALUES insert, which is already their fast path."""
    conn = s.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    columns = []
    for key in compiled.positiontup or keys:
        values = [row[key] for row in rows]
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        columns.append(values if process is None else _bound(values, process))
    params = list(zip(*columns, strict=True))
    conn.exec_driver_sql(compiled.string, params)


def _bound(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    first = values[0]
    if all(v is first for v in values):  # one timestamp per batch: convert it once
        return [process(first)] * len(values)
    return [process(v) for v in values]


def _scan(path: Path, session: Session | None, progress: Progress | None, write: bool) -> ImportReport:
    report = ImportReport(file=str(path))
    batcher = _Batcher(session, report, uuid.uuid4().hex, write)
    unreported = 0
    for row in iter_rows(path):
        report.rows += 1
        unreported += 1
        if progress and unreported == PROGRESS_EVERY:  # a bar redrawn per row costs more than the row
            progress(unreported)
            unreported = 0
        if row.problem is not None:
            report.problems.append(row.problem)
            continue
        rec, problems = check_record(row)
        if problems:
            report.problems.extend(problems)
        else:
            batcher.add(row, rec)  # type: ignore[arg-type]
        if len(report.problems) >= MAX_PROBLEMS:
            break
    batcher.flush()
    if progress and unreported:
        progress(unreported)
    return report


def validate_file(path: Path, store: Store | None = None, progress: Progress | None = None) -> ImportReport:
    """Every problem of a file, without writing anything (checked against the store when given)."""
    if store is None:
        return _scan(path, None, progress, write=False)
    with store.open_session() as s:
        return _scan(path, s, progress, write=False)


def import_file(store: Store, path: Path, progress: Progress | None = None) -> ImportReport:
    """Import all rows or none: raises InputError (store unchanged) if any row has a problem."""
    with store.open_session() as s, s.begin():
        report = _scan(path, s, progress, write=True)
        if report.problems:
            raise InputError(report.problems)  # leaving the block rolls everything back
    return report


def count_lines(path: Path) -> int | None:
    """Cheap total for a progress bar (None where the format has no lines)."""
    if path.is_dir() or path.suffix.lower() not in (".jsonl", ".json", ".ndjson", ".csv"):
        return None
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return n
