"""Interchange formats (JSONL canonical; CSV, Parquet, Hugging Face datasets) and record validation.

Readers stream rows with their line (or row) number so every problem names file, line and field;
see docs/format.md for the format.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emplifai import taxonomy
from emplifai.errors import Problem, UserError
from emplifai.records import (
    CSV_COLUMNS,
    MAX_ID_CHARS,
    MAX_SITUATION_CHARS,
    MAX_TURN_CHARS,
    OPTIONAL,
    REQUIRED,
    SOURCES,
    STATUSES,
    Record,
)

Format = Literal["jsonl", "csv", "parquet", "hf"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "hf")


@dataclass(frozen=True, slots=True)
class Row:
    file: str
    line: int
    data: dict[str, Any] | None
    problem: Problem | None = None


def detect_format(path: Path) -> Format:
    if path.is_dir():
        return "hf"
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if suffix.endswith(".csv"):
        return "csv"
    if suffix.endswith(".parquet"):
        return "parquet"
    raise UserError(f"{path}: cannot tell the format from the name; use .jsonl, .csv, .parquet or a datasets folder")


def _guess_encoding(sample: bytes) -> str:
    """Name the likely encoding: Japanese legacy encodings first (the usual culprits), then a detector."""
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    for enc, label in (("iso2022_jp", "ISO-2022-JP"), ("euc_jp", "EUC-JP"), ("cp932", "Shift_JIS (cp932)")):
        try:
            text = sample.decode(enc)
        except UnicodeDecodeError:
            continue
        if any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text):
            return label
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    return best.encoding if best else "an unknown encoding"


def check_utf8(path: Path) -> Problem | None:
    """The first line that is not valid UTF-8, with a guess at the file's real encoding."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                fh.seek(0)
                enc = _guess_encoding(fh.read(1 << 16))
                return Problem(str(path), line, None, f"not UTF-8 (it looks like {enc}); save the file as UTF-8")
            line += chunk.count(b"\n")
    return None


def iter_rows(path: Path) -> Iterator[Row]:
    """Stream the rows of any supported file; parse errors come back as rows with a problem."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    fmt = detect_format(path)
    if fmt in ("jsonl", "csv") and (bad := check_utf8(path)):
        yield Row(bad.file, bad.line or 0, None, bad)
        return
    yield from {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows, "hf": _hf_rows}[fmt](path)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    name = str(path)
    with path.open(encoding="utf-8-sig") as fh:
        for n, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Row(name, n, None, Problem(name, n, None, f"invalid JSON: {exc.msg} at column {exc.colno}"))
                continue
            if not isinstance(data, dict):
                yield Row(name, n, None, Problem(name, n, None, "each line must be a JSON object"))
                continue
            yield Row(name, n, data)


# Spreadsheets run a cell that starts with one of these as a formula (OWASP "CSV injection"). Every CSV that
# emplifai writes prefixes such a cell with an apostrophe, and the CSV reader takes exactly that prefix off
# again, so a turn like "-- 痛みが…" survives a round trip and never runs in Excel.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _escaped(value: str) -> bool:
    """An apostrophe the reader takes off: one before a formula start or before another apostrophe."""
    return value.startswith("'") and value[1:].startswith((*FORMULA_START, "'"))


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (numbers stay numbers). A text
    that already looks escaped gets one more apostrophe, so the reader gives back exactly what was written."""
    if not isinstance(value, str):
        return value
    if (value.startswith(FORMULA_START) and not _NUMBER.match(value)) or _escaped(value):
        return "'" + value
    return value


def spreadsheet_unescape(value: str) -> str:
    return value[1:] if _escaped(value) else value


def _csv_rows(path: Path) -> Iterator[Row]:
    name = str(path)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            yield Row(name, 1, None, Problem(name, 1, missing[0], f"header lacks column(s) {', '.join(missing)}"))
            return
        for data in reader:
            line = reader.line_num
            clean = {k: spreadsheet_unescape(v) for k, v in data.items() if k is not None and v != ""}
            if None in data:
                yield Row(name, line, None, Problem(name, line, None, "more values than header columns"))
                continue
            meta = clean.pop("meta", None)
            if meta:
                try:
                    extra = json.loads(meta)
                    if not isinstance(extra, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    yield Row(name, line, None, Problem(name, line, "meta", f"must be a JSON object: {exc}"))
                    continue
                clean.update(extra)
            yield Row(name, line, clean)


def _tabular_row(name: str, n: int, data: dict[str, Any]) -> Row:
    clean = {k: v for k, v in data.items() if v is not None and v != ""}
    meta = clean.pop("meta", None)
    if meta:
        try:
            clean.update(json.loads(meta))
        except ValueError as exc:
            return Row(name, n, None, Problem(name, n, "meta", f"must be a JSON object: {exc}"))
    return Row(name, n, clean)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    name, n = str(path), 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for data in batch.to_pylist():
            n += 1
            yield _tabular_row(name, n, data)


def _hf_rows(path: Path) -> Iterator[Row]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as exc:
        raise UserError(f"{path}: not a saved Hugging Face dataset: {exc}") from exc
    parts = ds.items() if isinstance(ds, DatasetDict) else [("data", ds)]
    for split, part in parts:
        name = f"{path}[{split}]"
        for n, data in enumerate(part, 1):
            data = {k: v for k, v in data.items() if k not in ("split", "emotion_ja", "sentiment")}
            yield _tabular_row(name, n, data)


_KNOWN = frozenset((*REQUIRED, *OPTIONAL))
_LIMITS = (("dialogue_id", MAX_ID_CHARS), ("situation_id", MAX_ID_CHARS), ("situation", MAX_SITUATION_CHARS),
           ("patient", MAX_TURN_CHARS), ("supporter", MAX_TURN_CHARS))
_CHOICES = (("source", SOURCES), ("status", STATUSES))  # tuples: a list or dict value must not raise
_STRINGS = ("condition", "stage", "author")


def check_record(row: Row) -> tuple[Record | None, list[Problem]]:
    """Validate one parsed row; every problem names the field."""
    assert row.data is not None
    d = row.data
    try:  # the common, valid case in one pass; _problems names whatever is wrong
        text = {fld: d[fld].strip() for fld in REQUIRED}
    except (KeyError, AttributeError):
        return None, _problems(row)
    emotion = taxonomy.by_name(text["emotion"])
    if (emotion is None or not all(text.values()) or any(len(d[f]) > n for f, n in _LIMITS)
            or any(f in d and d[f] not in ok for f, ok in _CHOICES)
            or any(f in d and not isinstance(d[f], str) for f in _STRINGS)):
        return None, _problems(row)
    return Record(
        dialogue_id=text["dialogue_id"],
        situation_id=text["situation_id"],
        emotion=emotion.en,
        situation=text["situation"],
        patient=text["patient"],
        supporter=text["supporter"],
        source=d.get("source", "crowd"),
        condition=d.get("condition"),
        stage=d.get("stage"),
        status=d.get("status", "approved"),
        author=d.get("author"),
        meta={k: v for k, v in d.items() if k not in _KNOWN} if len(d) > len(REQUIRED) else {},
    ), []


def _problems(row: Row) -> list[Problem]:
    """Every problem of a row that check_record refused, each naming its field (never empty)."""
    assert row.data is not None
    d, problems = row.data, []

    def bad(fld: str, msg: str) -> None:
        problems.append(Problem(row.file, row.line, fld, msg))

    for fld in REQUIRED:
        v = d.get(fld)
        if v is None:
            bad(fld, "missing")
        elif not isinstance(v, str):
            bad(fld, f"must be a string, got {type(v).__name__}")
        elif not v.strip():
            bad(fld, "empty or whitespace only")
    if problems:
        return problems
    if taxonomy.by_name(d["emotion"]) is None:
        hint = taxonomy.normalise(d["emotion"])
        tip = f" (did you mean {hint.en}?)" if hint else ""
        bad("emotion", f"unknown emotion {d['emotion']!r}{tip}; use one of the 28 labels (English in any case, "
                       "or the Japanese name of Table 1)")
    for fld, limit in _LIMITS:
        if len(d[fld]) > limit:
            what = f"longer than {limit} characters" if fld.endswith("_id") else \
                f"{len(d[fld])} characters; the limit is {limit}"
            bad(fld, what)
    for fld, allowed in _CHOICES:
        if fld in d and d[fld] not in allowed:
            bad(fld, f"{d[fld]!r} is not one of {', '.join(allowed)}")
    for fld in _STRINGS:
        if fld in d and not isinstance(d[fld], str):
            bad(fld, f"must be a string, got {type(d[fld]).__name__}")
    assert problems, "check_record refused a row that has no problem"
    return problems


def write(records: Iterable[Record], path: Path, fmt: Format) -> int:
    """Stream records to a file; returns how many were written. (hf: see write_hf.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    n = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}[fmt](records, tmp)
    tmp.replace(path)  # a reader never sees a half-written export
    return n


def _write_jsonl(records: Iterable[Record], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for n, rec in enumerate(records, 1):  # noqa: B007
            fh.write(json.dumps(rec.flat(), ensure_ascii=False) + "\n")
    return n


def _write_csv(records: Iterable[Record], path: Path) -> int:
    n = 0
    # utf-8-sig: with the BOM, Japanese Excel opens the file as UTF-8 instead of Shift_JIS
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for n, rec in enumerate(records, 1):  # noqa: B007
            writer.writerow({k: spreadsheet_safe(v) for k, v in rec.tabular().items()})
    return n


def _arrow_schema():  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema([(c, pa.string()) for c in CSV_COLUMNS])


def _batches(records: Iterable[Record], size: int = 8192) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch.append(rec.tabular())
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(records: Iterable[Record], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, n = _arrow_schema(), 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in _batches(records):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n


def write_hf(splits: dict[str, list[Record]], path: Path) -> dict[str, int]:
    """A datasets.DatasetDict (train/validation/test) saved with save_to_disk."""
    import pyarrow as pa
    from datasets import Dataset, DatasetDict

    schema = _arrow_schema()
    dd = DatasetDict(
        {
            name: Dataset(pa.Table.from_pylist([r.tabular() for r in recs], schema=schema))
            for name, recs in splits.items()
        }
    )
    # an empty split saved with the default sharding gets 0 shards, which load_from_disk cannot read
    # (IndexError in datasets): one empty shard keeps it loadable
    dd.save_to_disk(str(path), num_shards={name: 1 for name, recs in splits.items() if not recs})
    return {name: len(recs) for name, recs in splits.items()}
