"""The real `emplifai` command in a subprocess: exit codes, messages, no tracebacks for user errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import record, write_jsonl

EXE = shutil.which("emplifai") or str(Path(sys.executable).parent / "emplifai")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300)


def test_import_sample_stats_split_export_default_sqlite(tmp_path):
    r = run("dataset", "import", "--sample")
    assert r.returncode == 0, r.stderr
    assert "840 dialogues and 280 situations added" in " ".join(r.stdout.split())
    assert (tmp_path / "emplifai.db").exists()  # the default database lives in the working directory
    r = run("dataset", "stats", "--json")
    data = json.loads(r.stdout)
    assert (data["situations"], data["dialogues"]) == (280, 840)
    assert data["emotions"]["Gratitude"]["situations"] == 10 and data["emotions"]["Gratitude"]["dialogues"] == 30
    table = run("dataset", "stats")
    assert "感謝" in table.stdout and "Gratitude" in table.stdout
    r = run("dataset", "split", "--seed", "42")
    assert r.returncode == 0 and "test: 28 situations, 84 dialogues" in r.stdout
    for fmt, name in (("jsonl", "d.jsonl"), ("csv", "d.csv"), ("parquet", "d.parquet"), ("hf", "hf")):
        r = run("dataset", "export", "--format", fmt, "--out", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
    assert len((tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()) == 840
    r = run("dataset", "export", "--format", "jsonl", "--split", "test", "--out", str(tmp_path / "t.jsonl"))
    assert len((tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()) == 84


def test_user_errors_exit_nonzero_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dialogue_id": "x"}\n', encoding="utf-8")
    for args in (("dataset", "import", str(bad)), ("dataset", "validate", str(bad))):
        r = run(*args)
        assert r.returncode == 2
        assert f"{bad}:1: emotion: missing" in r.stderr or f"{bad}:1: situation_id: missing" in r.stderr
        assert "Traceback" not in r.stderr
    r = run("dataset", "import", str(tmp_path / "nope.jsonl"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("dataset", "export", "--format", "xml", "--out", "x.xml")
    assert r.returncode == 2 and "unknown format" in r.stderr
    r = run("dataset", "export", "--format", "hf", "--out", "hf")
    assert r.returncode == 2 and "emplifai dataset split" in r.stderr
    r = run("dataset", "import", "--db", "postgresql://nobody@127.0.0.1:1/none", "--sample")
    assert r.returncode == 2 and "cannot connect" in r.stderr and "Traceback" not in r.stderr


def test_db_option_and_env(tmp_path):
    f = write_jsonl(tmp_path / "f.jsonl", [record(i) for i in range(6)])
    assert run("dataset", "import", str(f), "--db", str(tmp_path / "a.db")).returncode == 0
    assert run("dataset", "import", str(f), env={"EMPLIFAI_DB": f"sqlite:///{tmp_path / 'b.db'}"}).returncode == 0
    assert json.loads(run("dataset", "stats", "--json", "--db", str(tmp_path / "a.db")).stdout)["dialogues"] == 6
    assert json.loads(run("dataset", "stats", "--json", "--db", f"sqlite:///{tmp_path / 'b.db'}").stdout)[
        "dialogues"] == 6
    assert not (tmp_path / "emplifai.db").exists()


@pytest.mark.postgres
def test_cli_on_postgres(pg_url, tmp_path):
    assert run("dataset", "import", "--sample", "--db", pg_url).returncode == 0
    again = run("dataset", "import", "--sample", "--db", pg_url)
    assert "840 already present" in " ".join(again.stdout.split())
    assert json.loads(run("dataset", "stats", "--json", "--db", pg_url).stdout)["situations"] == 280


def test_lowercase_upper_and_japanese_labels_import(tmp_path):
    """GoEmotions' own files write `admiration`; any case of an English name and the Japanese names import as the
    canonical label, while a synonym is still refused with the suggestion (issue 15 item 3)."""
    rows = [record(0, emotion="admiration"), record(3, emotion="JOY"), record(6, emotion="ｄｉｓｇｕｓｔ"),
            record(9, emotion="悲しみ"), record(12, emotion=" neutral ")]
    good = write_jsonl(tmp_path / "goemotions.jsonl", rows)
    r = run("dataset", "import", str(good))
    assert r.returncode == 0, r.stderr
    r = run("dataset", "stats", "--json")
    em = json.loads(r.stdout)["emotions"]
    assert [em[e]["dialogues"] for e in ("Admiration", "Joy", "Disgust", "Sadness", "Neutral")] == [1] * 5
    assert sum(e["dialogues"] for e in em.values()) == 5
    bad = write_jsonl(tmp_path / "bad.jsonl", [record(30, emotion="happiness")])
    r = run("dataset", "import", str(bad))
    assert r.returncode == 2
    assert f"{bad}:1: emotion: unknown emotion 'happiness' (did you mean Joy?)" in " ".join(r.stderr.split())
