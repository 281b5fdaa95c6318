"""The study report with each rubric set: a run that judged EPITOME's three mechanisms only shows their table
and does not claim the judge stage never ran (regression: it showed no Table 4 and that warning)."""

from __future__ import annotations

from pathlib import Path

from emplifai.evaluate.rubrics import EPITOME
from emplifai.llm import FakeLLM
from emplifai.study.config import RunConfig
from emplifai.study.runner import Study
from tests.evaluate.fixtures import answer
from tests.helpers import record, write_jsonl

NOT_RUN = "審査段階は実行されていません"


def _study(tmp_path: Path, rubrics: str, answers: list[str]) -> Study:
    data = write_jsonl(tmp_path / "corpus.jsonl", [record(i, sit=i) for i in range(3)])
    FakeLLM.named("judge").enqueue(answers)
    cfg = RunConfig.model_validate({
        "stages": ["validate", "split", "sample", "generate", "judge", "report"],
        "dataset": {"bundled": False, "path": str(data)},
        "sample": {"n": 3}, "generate": {"models": [], "human": True},
        "judge": {"judge": "fake:judge", "rubrics": rubrics, "shots": 0}})
    study = Study(cfg, tmp_path / "out", notify=lambda _: None)
    study.run()
    return study


def test_epitome_only_run_reports_the_mechanisms_table(tmp_path: Path) -> None:
    # 3 human dialogues × 3 mechanisms, in the judge's order (source, then sample position, then metric)
    study = _study(tmp_path, "epitome", [answer(s) for s in (2, 1, 0) * 3])
    html = (study.out / "report.html").read_text(encoding="utf-8")
    md = (study.out / "report.md").read_text(encoding="utf-8")
    assert NOT_RUN not in html
    assert "共感の3つの伝え方（EPITOME）" in html
    for m in EPITOME:
        assert m in (study.out / "eval" / "table4_epitome.json").read_text(encoding="utf-8")
    assert not (study.out / "eval" / "table4.json").exists()
    assert "EPITOME" in md and "judged EPITOME's 3 only" in md
    assert "no human ratings were given" not in md


def test_report_without_judge_scores_says_why(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "corpus.jsonl", [record(i, sit=i) for i in range(3)])
    cfg = RunConfig.model_validate({"stages": ["validate", "split", "report"],
                                    "dataset": {"bundled": False, "path": str(data)}})
    study = Study(cfg, tmp_path / "out", notify=lambda _: None)
    study.run()
    html = (study.out / "report.html").read_text(encoding="utf-8")
    assert "no scores of judge 'embedded'" in html and "run `emplifai judge` first" in html
    assert "Table 5 なし：None" not in html
