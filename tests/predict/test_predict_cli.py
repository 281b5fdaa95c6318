"""`emplifai validate-taxonomy` end to end on the real embedded model, kill-and-resume, and bad specs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from emplifai.store.db import resolve_url

EXE = str(Path(sys.executable).parent / "emplifai")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _dataset(db: str) -> None:
    _run("dataset", "import", "--sample", "--db", db)
    _run("dataset", "split", "--seed", "42", "--db", db)


def _rows(db: str) -> dict[str, tuple]:
    eng = create_engine(resolve_url(db))
    try:
        with eng.connect() as c:
            q = text("SELECT dialogue_id, id, created_at, status, predicted FROM predictions WHERE model = 'embedded'")
            return {r[0]: tuple(r[1:]) for r in c.execute(q)}
    finally:
        eng.dispose()


@pytest.mark.slow
def test_cli_end_to_end_on_the_embedded_model(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    _dataset(db)
    out = tmp_path / "t2"
    proc = _run("validate-taxonomy", "--model", "embedded", "--limit", "3", "--out", str(out), "--baseline",
                "--db", db)
    assert "Table 2" in proc.stdout
    data = json.loads((out / "table2.json").read_text(encoding="utf-8"))
    assert data["split"] == "test" and [m["model"] for m in data["models"]] == ["embedded", "baseline:tfidf-lr"]
    for m in data["models"]:
        assert m["n"] == 3 and m["unparsed"] == 0 and m["failed"] == 0
        for k in ("bertscore_precision", "bertscore_recall", "bertscore_f1", "accuracy", "macro_f1", "top3_accuracy"):
            assert 0.0 <= m[k] <= 1.0, k
        assert -1.0 <= m["fasttext_cosine"] <= 1.0
        assert m["signature"]["metrics"]["bertscore"]["layer"] == 9
        assert m["signature"]["predictions"]["prompt_version"]
    emb = data["models"][0]
    assert emb["signature"]["predictions"]["llm"] and emb["signature"]["predictions"]["mode"] == "score"
    md = (out / "table2.md").read_text(encoding="utf-8")
    assert "| embedded |" in md and "BERTScore F1" in md
    csv_lines = (out / "per_emotion_embedded.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == 29  # header + 28 emotions
    png = (out / "confusion_embedded.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert len(_rows(db)) == 3


@pytest.mark.slow
def test_kill_mid_run_then_rerun_resumes(db_url: str, tmp_path: Path) -> None:
    _dataset(db_url)
    args = [EXE, "validate-taxonomy", "--model", "embedded", "--limit", "6", "--out", str(tmp_path / "o"),
            "--db", db_url]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    before: dict[str, tuple] = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            before = _rows(db_url)
            if len(before) >= 2:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = _rows(db_url)  # what the killed run committed
    assert 2 <= len(before) < 6
    rerun = _run(*args[1:])
    assert f"{len(before)} already done, {6 - len(before)} to predict" in rerun.stderr
    after = _rows(db_url)
    assert len(after) == 6
    for dialogue_id, row in before.items():
        assert after[dialogue_id] == row  # same row id, same created_at: not recomputed


def test_bad_model_spec_exits_2_and_lists_the_valid_forms(tmp_path: Path) -> None:
    proc = _run("validate-taxonomy", "--model", "gpt4", "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    msg = proc.stdout + proc.stderr
    for form in ("embedded", "gguf:PATH", "openai:MODEL@BASE_URL", "hf:DIR"):
        assert form in msg
    assert "Traceback" not in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_split_all_on_the_embedded_model_needs_no_split(tmp_path: Path) -> None:
    """`validate-taxonomy --split all` scores every pair of a store that was never split (issue 15 item 2)."""
    from tests.helpers import record, write_jsonl

    db = f"sqlite:///{tmp_path / 'all.db'}"
    data = write_jsonl(tmp_path / "d.jsonl", [record(i, sit=i) for i in range(10)])
    _run("dataset", "import", str(data), "--db", db)
    out = tmp_path / "t2"
    _run("validate-taxonomy", "--model", "embedded", "--split", "all", "--no-definitions", "--baseline",
         "--out", str(out), "--db", db)
    table = json.loads((out / "table2.json").read_text(encoding="utf-8"))
    assert table["split"] == "all"
    assert [(m["model"], m["n"], m["failed"]) for m in table["models"]] == [("embedded", 10, 0),
                                                                            ("baseline:tfidf-lr", 10, 0)]
    assert len(_rows(db)) == 10
    bad = _run("validate-taxonomy", "--split", "everything", "--db", db, check=False)
    assert bad.returncode == 2 and "unknown split 'everything'" in bad.stderr
