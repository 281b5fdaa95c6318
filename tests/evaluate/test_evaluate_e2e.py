"""End to end on the REAL embedded model (Gemma 3 270M, llama.cpp in process), through the CLI:
import → split → sample → generate → human source → judge → export sheets → fill → import → agree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emplifai.cli import app
from emplifai.errors import UserError
from emplifai.evaluate.rubrics import METRICS
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore
from tests.evaluate.fixtures import count


@pytest.mark.slow
def test_sample_generate_judge_rate_agree_on_embedded_model(tmp_path: Path) -> None:
    from emplifai.dataset.ingest import bundled_corpus_path

    db = f"sqlite:///{tmp_path / 'e2e.db'}"
    runner = CliRunner()

    def ok(*args: str) -> str:
        r = runner.invoke(app, [*args, "--db", db])
        assert r.exit_code == 0, (args, r.output)
        return r.output

    ok("dataset", "import", str(bundled_corpus_path()))
    ok("dataset", "split")
    assert "3 pairs" in ok("sample", "--n", "3", "--seed", "42")
    out = ok("generate", "--model", "embedded", "--max-tokens", "80")
    assert out.startswith("embedded: 3 added")
    assert "human: 3 added" in ok("generate", "--source", "human")
    # judging its own generations is refused without the explicit flag
    r = runner.invoke(app, ["judge", "--judge", "embedded", "--db", db, "--metric", "fluency"])
    assert isinstance(r.exception, UserError) and "own generations" in str(r.exception)  # main() maps it to exit 2
    # the 2 worked examples (default --shots 2) are what makes a 270M model answer in JSON at all
    ok("judge", "--judge", "embedded", "--allow-self-judge", "--source", "human", "--metric", "fluency",
       "--limit", "2", "--retries", "1", "--max-tokens", "96")
    store = Store(db)
    with store.transaction() as s:
        rows = list(s.query(JudgeScore).all())
        gens = {g.id: g for g in s.query(Generation).all()}
        # every judgement is accounted for: a valid 1–5 score, a rule score, or a stored failure with raw output
        assert len(rows) == 2
        for j in rows:
            assert (j.score in {1, 2, 3, 4, 5} and j.failure is None) or (j.score is None and j.failure and
                                                                         j.raw is not None)
            if j.rule == "malformed":
                assert gens[j.generation_id].malformed is not None and j.score == 1
        assert all(j.signature["llm"]["backend"] for j in rows)
    assert count(store, JudgeScore) == 2
    ok("ratings", "export", "--source", "human", "--out", str(tmp_path / "sheets"))
    sheets = sorted((tmp_path / "sheets").glob("*.csv"))
    assert len(sheets) == 3  # one group of 3 dialogues × 3 raters
    for k, p in enumerate(sheets):
        with p.open(encoding="utf-8-sig", newline="") as fh:
            table = list(csv.reader(fh))
        for i, row in enumerate(table[1:]):
            row[7:] = [str(1 + (i + k + m) % 5) for m in range(len(METRICS))]
        with p.open("w", encoding="utf-8-sig", newline="") as fh:
            csv.writer(fh).writerows(table)
    assert "63 scores added" in ok("ratings", "import", *map(str, sheets))
    scored_human = [j for j in rows if j.score is not None and gens[j.generation_id].source == "human"]
    r = runner.invoke(app, ["agree", "--judge", "embedded", "--source", "human", "--out", str(tmp_path / "rep"),
                            "--bootstrap", "100", "--db", db])
    if not scored_human:  # the tiny model produced no valid score for a human item: said clearly, exit 2
        assert isinstance(r.exception, UserError) and "no dialogue has both" in str(r.exception)
        pytest.skip("the embedded judge gave no valid score on the human items in this run")
    assert r.exit_code == 0, r.output
    t5 = json.loads((tmp_path / "rep" / "table5.json").read_text(encoding="utf-8"))
    assert {"table", "source", "weighted", "raters", "metrics", "provenance"} <= set(t5)
    assert t5["source"] == "human" and t5["raters"] == 3
    for m, v in t5["metrics"].items():
        assert m == "fluency"
        assert {"n", "judge_mean", "human_mean", "mad", "pearson_r", "spearman_rho", "alpha_ordinal", "note"} <= set(v)
        assert 1 <= v["judge_mean"] <= 5 and v["mad"] >= 0
    assert (tmp_path / "rep" / "table5.md").is_file()
