"""Human rating sheets (paper §5.4): export 10 groups × 10 dialogues, 3 raters per group, 7 metrics on 1–5;
import filled sheets all-or-nothing; per-dialogue means and inter-rater agreement.

A sheet is one file per (group, rater slot), as CSV and as XLSX (the XLSX has a whole-number 1–5 validation on
the score cells and a second sheet with the rubric). Columns: ``group_no, position, generation_id, emotion,
situation, dialogue, rater`` then one column per metric key. The ``rater`` cell is pre-filled with the slot
(``g01-r1``); a coordinator may overwrite it with the rater's id. The source model is not shown (blind).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from emplifai import taxonomy
from emplifai.dataset.formats import spreadsheet_safe
from emplifai.errors import InputError, Problem, UserError
from emplifai.evaluate import rubrics
from emplifai.evaluate.agree import icc_oneway, kripp_alpha
from emplifai.evaluate.groups import GROUP_SIZE, RATERS_PER_GROUP, rating_groups
from emplifai.evaluate.rubrics import METRICS
from emplifai.prompts import judge as jp
from emplifai.prompts.generation import format_dialogue
from emplifai.provenance import dist_version, json_digest
from emplifai.records import Kind
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, Rating
from emplifai.store.models import Situation

FIXED = ("group_no", "position", "generation_id", "emotion", "situation", "dialogue", "rater")
COLUMNS = (*FIXED, *METRICS)


def _slug(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", source).strip("_")[:40] or "source"


def shown_dialogue(g: Generation) -> str:
    """What a rater reads: the parsed turns, or the raw text of a malformed generation."""
    if g.malformed is None and g.patient is not None and g.supporter is not None:
        return format_dialogue(g.patient, g.supporter)
    return g.raw


def export_sheets(store: Store, out: Path, *, sample: str = "default", source: str, raters: int = RATERS_PER_GROUP,
                  group_size: int = GROUP_SIZE) -> list[Path]:
    from openpyxl import Workbook
    from openpyxl.worksheet.datavalidation import DataValidation

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with store.transaction() as s:
        groups = rating_groups(s, sample, source, group_size)
        if not groups:
            raise UserError(f"no generations of source {source!r} in sample {sample!r}")
        rows_by_group = []
        for gno, group in enumerate(groups, 1):
            rows = []
            for pos, g in enumerate(group, 1):
                sit = s.get(Situation, g.situation_id)
                rows.append([gno, pos, g.id, taxonomy.get(sit.emotion).ja, sit.text, shown_dialogue(g)])
            rows_by_group.append(rows)
    guide = [[f"{rubrics.label(m)}（{m}）", jp.rubric(m)] for m in METRICS]
    for gno, rows in enumerate(rows_by_group, 1):
        for r in range(1, raters + 1):
            rater = f"g{gno:02d}-r{r}"
            stem = out / f"ratings_{_slug(source)}_g{gno:02d}_r{r}"
            table = [[*row, rater, *([""] * len(METRICS))] for row in rows]
            with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8-sig") as fh:
                w = csv.writer(fh)
                w.writerow(COLUMNS)
                w.writerows([spreadsheet_safe(c) for c in row] for row in table)
            wb = Workbook()
            ws = wb.active
            ws.title = "評価"
            ws.append(list(COLUMNS))
            for row in table:
                ws.append(row)
                for cell in ws[ws.max_row]:  # text, never a formula (openpyxl stores "=…" as one)
                    if isinstance(cell.value, str) and cell.value.startswith("="):
                        cell.data_type = "s"
            dv = DataValidation(type="whole", operator="between", formula1="1", formula2="5", allow_blank=True,
                                error="1〜5の整数を入力してください", showErrorMessage=True)
            ws.add_data_validation(dv)
            first, last = len(FIXED) + 1, len(COLUMNS)
            from openpyxl.utils import get_column_letter

            dv.add(f"{get_column_letter(first)}2:{get_column_letter(last)}{len(table) + 1}")
            info = wb.create_sheet("説明")
            info.append(["各対話を7つの項目について1〜5の整数で評価してください（5が最良）。rater列はあなたのIDです。"])
            for row in guide:
                info.append(row)
            wb.save(stem.with_suffix(".xlsx"))
            written += [stem.with_suffix(".csv"), stem.with_suffix(".xlsx")]
    return written


# ----------------------------------------------------------------------------------------------- import
@dataclass
class ImportReport:
    files: int = 0
    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    raters: set[str] = field(default_factory=set)


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(spreadsheet row number, {column: value}) per data row; header is row 1."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    elif path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        ws = wb["評価"] if "評価" in wb.sheetnames else wb.worksheets[0]
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        wb.close()
    else:
        raise UserError(f"{path}: not a rating sheet (use .csv or .xlsx)")
    if not rows:
        return []
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    out = []
    for n, row in enumerate(rows[1:], 2):
        if all(v is None or str(v).strip() == "" for v in row):
            continue  # trailing blank lines
        out.append((n, {h: (row[i] if i < len(row) else None) for i, h in enumerate(header) if h}))
    return [(0, {"__header__": header}), *out]


def parse_score(value: Any) -> tuple[int | None, str | None]:
    """A rating cell: whole number 1–5 (4, 4.0, "4", "４" accepted); anything else is an error message."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None, "empty cell (every metric needs a score 1–5)"
    if isinstance(value, bool):
        return None, f"{value!r} is not a score"
    if isinstance(value, float):
        if value != int(value):
            return None, f"{value:g} is not a whole number 1–5"
        value = int(value)
    if isinstance(value, str):
        s = unicodedata.normalize("NFKC", value).strip()
        if re.fullmatch(r"\d+(\.0+)?", s):
            value = int(float(s))
        else:
            return None, f"{value!r} is not a whole number 1–5"
    if not isinstance(value, int) or not 1 <= value <= 5:
        return None, f"{value!r} is outside 1–5"
    return value, None


def import_sheets(store: Store, paths: list[Path], *, replace: bool = False) -> ImportReport:
    """Validate every file, then store everything in one transaction, or nothing (InputError lists all problems)."""
    problems: list[Problem] = []
    parsed: list[tuple[str, int, int, str, int, dict[str, int]]] = []  # file, line, gen, rater, group, scores
    for path in paths:
        if not path.is_file():
            problems.append(Problem(str(path), None, None, "file not found"))
            continue
        rows = _read(path)
        if not rows:
            problems.append(Problem(str(path), 1, None, "empty file"))
            continue
        header = rows[0][1]["__header__"]
        missing = [c for c in ("group_no", "generation_id", "rater", *METRICS) if c not in header]
        if missing:
            problems.append(Problem(str(path), 1, ", ".join(missing), "missing column(s)"))
            continue
        for line, row in rows[1:]:
            gid, gerr = parse_score_int(row.get("generation_id"))
            grp, grerr = parse_score_int(row.get("group_no"))
            rater = str(row.get("rater") or "").strip()
            for col, err in (("generation_id", gerr), ("group_no", grerr)):
                if err:
                    problems.append(Problem(str(path), line, col, err))
            if not rater:
                problems.append(Problem(str(path), line, "rater", "empty rater id"))
            elif len(rater) > 128:
                problems.append(Problem(str(path), line, "rater", "rater id longer than 128 characters"))
            scores: dict[str, int] = {}
            for m in METRICS:
                score, err = parse_score(row.get(m))
                if err:
                    problems.append(Problem(str(path), line, m, err))
                else:
                    scores[m] = score  # type: ignore[assignment]
            if gid is not None and grp is not None and rater:
                parsed.append((str(path), line, gid, rater, grp, scores))
    report = ImportReport(files=len(paths))
    with store.open_session() as s, s.begin():
        gens = {g.id: g for g in s.scalars(select(Generation).where(Generation.id.in_({p[2] for p in parsed})))}
        group_cache: dict[tuple[str, str], dict[int, int]] = {}
        seen: dict[tuple[int, str, str], tuple[str, int]] = {}
        existing = {(r.generation_id, r.rater, r.metric): r for r in s.scalars(
            select(Rating).where(Rating.generation_id.in_(list(gens))))}
        to_add: list[Rating] = []
        for file, line, gid, rater, grp, scores in parsed:
            g = gens.get(gid)
            if g is None:
                problems.append(Problem(file, line, "generation_id", f"no generation {gid} in the database"))
                continue
            key = (g.sample_name, g.source)
            if key not in group_cache:
                group_cache[key] = {x.id: n for n, grp_ in enumerate(rating_groups(s, *key), 1) for x in grp_}
            if group_cache[key].get(gid) != grp:
                problems.append(Problem(file, line, "group_no",
                                        f"generation {gid} belongs to group {group_cache[key].get(gid)}, not {grp}"))
                continue
            report.raters.add(rater)
            for metric, score in scores.items():
                _merge(file, line, gid, rater, grp, metric, score, seen, existing, to_add, problems, report, replace)
        if problems:
            raise InputError(problems)  # rolls back: nothing half-imported
        s.add_all(to_add)
        report.added = len(to_add)
    return report


def _merge(file: str, line: int, gid: int, rater: str, grp: int, metric: str, score: int,
           seen: dict[tuple[int, str, str], tuple[str, int]], existing: dict[tuple[int, str, str], Rating],
           to_add: list[Rating], problems: list[Problem], report: ImportReport, replace: bool) -> None:
    k = (gid, rater, metric)
    if k in seen:
        problems.append(Problem(file, line, metric, f"rater {rater} already rated generation {gid} on {metric} "
                                                    f"in {seen[k][0]}:{seen[k][1]}"))
        return
    seen[k] = (file, line)
    old = existing.get(k)
    if old is not None and old.score == score:
        report.unchanged += 1
    elif old is not None and not replace:
        problems.append(Problem(file, line, metric, f"rater {rater} already gave {old.score} here "
                                f"(from {old.origin} {old.file or ''}); pass --replace to overwrite"))
    elif old is not None:
        old.score, old.origin, old.file, old.line, old.group_no = score, "sheet", file, line, grp
        report.replaced += 1
    else:
        to_add.append(Rating(generation_id=gid, rater=rater, metric=metric, score=score, group_no=grp,
                             origin="sheet", file=file, line=line))


def parse_score_int(value: Any) -> tuple[int | None, str | None]:
    if value is None or str(value).strip() == "":
        return None, "empty cell"
    s = unicodedata.normalize("NFKC", str(value)).strip()
    if re.fullmatch(r"\d+(\.0+)?", s):
        return int(float(s)), None
    return None, f"{value!r} is not a whole number"


# -------------------------------------------------------------------------------------------- summaries
def human_scores(store: Store, sample: str, source: str) -> dict[tuple[int, str], dict[str, int]]:
    """(generation id, metric) -> {rater: score}."""
    with store.transaction() as s:
        q = select(Rating).join(Generation, Generation.id == Rating.generation_id).where(
            Generation.sample_name == sample, Generation.source == source)
        out: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
        for r in s.scalars(q):
            out[(r.generation_id, r.metric)][r.rater] = r.score
        return dict(out)


def left_out(store: Store, sample: str, source: str) -> dict[str, Any]:
    """Ratings made in the web app that the analysis does not count yet, and why: only approved rating claims
    reach the ``ratings`` table; pending ones wait for review, rejected and removed ones never count."""
    from emplifai.store.collect import Claim, ClaimStatus, Task

    with store.open_session() as s:
        rows = s.execute(select(Claim.status, Claim.answer, Task.payload).join(Task, Task.id == Claim.task_id).where(
            Claim.kind == Kind.RATING, Claim.status.in_([ClaimStatus.PENDING, ClaimStatus.REJECTED,
                                                      ClaimStatus.REMOVED]))).all()
    out = {str(st): {"claims": 0, "scores": 0} for st in (ClaimStatus.PENDING, ClaimStatus.REJECTED,
                                                          ClaimStatus.REMOVED)}
    for status, answer, payload in rows:
        if (payload or {}).get("sample") != sample or (payload or {}).get("source") != source:
            continue
        out[status]["claims"] += 1
        out[status]["scores"] += sum(len(per) for per in (answer or {}).get("scores", {}).values())
    return {"rule": "only ratings approved in review count; pending ones are counted once approved", **out}


def left_out_note(lo: dict[str, Any] | None) -> str | None:
    """One line for reports: how many web ratings were not counted, and why (None when none were)."""
    if not lo:
        return None
    why = {"pending": "pending review", "rejected": "rejected", "removed": "removed"}
    parts = [f"{lo[k]['claims']} {w} ({lo[k]['scores']} scores)" for k, w in why.items() if lo.get(k, {}).get("claims")]
    return "web ratings not counted (only approved ones count): " + ", ".join(parts) if parts else None


def summary(store: Store, sample: str, source: str) -> dict[str, Any]:
    """Per metric: items, raters, per-dialogue means, Krippendorff's alpha (ordinal), ICC(1,1) and ICC(1,k);
    ``left_out`` says how many web ratings were not counted (pending review, rejected, removed)."""
    scores = human_scores(store, sample, source)
    raters = sorted({r for d in scores.values() for r in d})
    rows = sorted((gid, m, r, v) for (gid, m), d in scores.items() for r, v in d.items())
    out: dict[str, Any] = {"sample": sample, "source": source, "raters": len(raters), "metrics": {},
                           "provenance": {"emplifai": dist_version("emplifai"),
                                          "krippendorff": dist_version("krippendorff"), "numpy": dist_version("numpy"),
                                          "ratings_sha256": json_digest(rows, 64), "ratings": len(rows),
                                          "alpha": "Krippendorff's alpha, ordinal, values 1–5",
                                          "icc": "one-way random effects ICC(1,1) and ICC(1,k), complete items only"},
                           "left_out": left_out(store, sample, source)}
    for m in METRICS:
        items = {gid: d for (gid, metric), d in scores.items() if metric == m}
        if not items:
            continue
        ids = sorted(items)
        reliability = [[items[g].get(r) for g in ids] for r in raters]
        means = {g: sum(items[g].values()) / len(items[g]) for g in ids}
        icc = icc_oneway([list(items[g].values()) for g in ids])
        icc = {("icc_" + key if key in ("items", "k", "items_excluded", "note") else key): v for key, v in icc.items()}
        out["metrics"][m] = {"items": len(ids), "ratings": sum(len(v) for v in items.values()),
                             "mean": round(sum(means.values()) / len(means), 4),
                             "alpha_ordinal": kripp_alpha(reliability), **icc,
                             "per_dialogue_mean": {g: round(v, 4) for g, v in means.items()}}
    return out
