"""End to end on the real embedded model through the CLI: sample → generate → judge → ratings → agree → reports.

Kept to 3 items and one metric (the 270M model runs at a few tokens per second on 2 busy cores).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from emplifai.cli import app
from emplifai.evaluate.rubrics import METRICS
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore


def _ok(*args: str) -> str:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())  # Rich wraps at the terminal width


@pytest.mark.slow
def test_pipeline_on_the_embedded_model(sqlite_url: str, tmp_path: Path) -> None:
    db = ["--db", sqlite_url]
    _ok("dataset", "import", "--sample", *db)
    _ok("sample", "--n", "3", "--seed", "42", *db)
    _ok("generate", "--source", "human", *db)
    out = _ok("generate", "--model", "embedded", "--max-tokens", "48", *db)
    assert "embedded: 3 added" in out
    # blind by default: the embedded judge refuses its own generations
    r = CliRunner().invoke(app, ["judge", "--judge", "embedded", *db])
    assert r.exit_code != 0 and "may not score its own generations" in str(r.exception)
    out = _ok("judge", "--judge", "embedded", "--metric", "fluency", "--max-tokens", "48", "--retries", "1",
              "--allow-self-judge", "--weighted", *db)
    store = Store(sqlite_url)
    with store.transaction() as s:
        gens = s.scalars(select(Generation)).all()
        scores = s.scalars(select(JudgeScore)).all()
    assert len(gens) == 6 and len(scores) == 6  # every generation accounted for: score, rule or failure
    for sc in scores:
        assert (sc.score is None) == (sc.failure is not None)
        assert sc.score is None or 1 <= sc.score <= 5
        assert sc.signature["llm"]["model_sha256"] and sc.prompt_version == "judge-v1/ja/2shot"
        if sc.rule is None:
            assert sc.raw is not None
    malformed = {g.id for g in gens if g.malformed is not None}
    assert {sc.generation_id for sc in scores if sc.rule == "malformed"} == malformed
    assert all(g.signature["llm"]["model_sha256"] for g in gens if g.source == "embedded")
    assert "fluency" in out or "scored" in out
    # rerun resumes: nothing judged twice
    assert "6 already stored" in _ok("judge", "--judge", "embedded", "--metric", "fluency", "--allow-self-judge",
                                     "--weighted", "--max-tokens", "48", "--retries", "1", *db)

    sheets = tmp_path / "sheets"
    _ok("ratings", "export", "--source", "human", "--out", str(sheets), *db)
    csvs = sorted(sheets.glob("*.csv"))
    assert len(csvs) == 3
    for k, p in enumerate(csvs):
        rows = list(csv.reader(p.open(encoding="utf-8-sig")))
        for i, row in enumerate(rows[1:]):
            for j, m in enumerate(METRICS):
                row[rows[0].index(m)] = str(1 + (i + j + k) % 5)
        with p.open("w", newline="", encoding="utf-8-sig") as fh:
            csv.writer(fh).writerows(rows)
    assert "63 scores added" in _ok("ratings", "import", *map(str, csvs), *db)
    reports = tmp_path / "reports"
    _ok("agree", "--judge", "embedded", "--source", "human", "--out", str(reports), "--bootstrap", "200", *db)
    t5 = json.loads((reports / "table5.json").read_text(encoding="utf-8"))
    human_pairs = [sc for sc in scores if sc.score is not None and sc.generation_id in
                   {g.id for g in gens if g.source == "human"}]
    if human_pairs:
        assert t5["metrics"]["fluency"]["n"] == len(human_pairs)
        assert t5["provenance"]["judge_signature"]["llm"]["backend"] == "llama.cpp"
    _ok("report-eval", "--judge", "embedded", "--out", str(reports), *db)
    t4 = json.loads((reports / "table4.json").read_text(encoding="utf-8"))
    assert t4["rows"]["embedded"]["malformed"] == len(malformed & {g.id for g in gens if g.source == "embedded"})
    assert (reports / "plot_fluency.png").stat().st_size > 10_000
    store.dispose()
