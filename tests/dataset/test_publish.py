"""`emplifai dataset publish`: a datasets folder that load_from_disk reads back row for row, with a card whose
figures equal `dataset stats`, worker ids pseudonymised, and no network (issue 15 item 8)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import record, write_jsonl

EXE = shutil.which("emplifai") or str(Path(sys.executable).parent / "emplifai")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **(env or {})})
    assert r.returncode == 0, r.stderr
    return r


def test_publish_round_trips_every_row_and_the_card_matches_stats(tmp_path):
    from datasets import DatasetDict, load_from_disk

    rows = [record(i, sit=i // 2, author=f"worker{i % 4}") for i in range(168)]  # 3 situations per emotion
    rows += [record(168 + i, sit=i, author="synth:openai:qwen@http://gpu/v1", source="synthetic", status="pending",
                    synth={"model": "openai:qwen@http://gpu/v1", "run": "r1", "prompt_version": "synth-v1"})
             for i in range(6)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    run("dataset", "import", str(data), "--db", db)
    env = {"EMPLIFAI_PUBLISH_SALT": "not-in-the-output"}

    # no split yet: one split holds every row
    one = tmp_path / "one"
    run("dataset", "publish", "--out", str(one), "--db", db, env=env)
    ds = load_from_disk(str(one))
    assert isinstance(ds, DatasetDict) and list(ds) == ["train"] and ds["train"].num_rows == 174

    run("dataset", "split", "--seed", "42", "--db", db)
    out = tmp_path / "pub"
    run("dataset", "publish", "--out", str(out), "--db", db, "--license", "cc-by-4.0", env=env)
    ds = load_from_disk(str(out))
    assert list(ds) == ["train", "validation", "test"]
    got = {r["dialogue_id"]: r for sp in ds for r in ds[sp]}
    assert len(got) == 174 and all(ds[sp].num_rows for sp in ds)
    by_id = {r["dialogue_id"]: r for r in rows}
    for did, r in got.items():  # every row back, every field as stored, only the worker renamed
        src = by_id[did]
        for k in ("situation_id", "emotion", "situation", "patient", "supporter", "source"):
            assert r[k] == src[k], (did, k)
        if src["author"].startswith("synth:"):
            assert r["author"] == src["author"]
        else:
            assert re.fullmatch(r"worker-[0-9a-f]{12}", r["author"]) and src["author"] not in r["author"]
    # stable: the same worker gets the same pseudonym; different workers different ones
    assert len({got[f"d{i:05d}"]["author"] for i in range(8)}) == 4
    assert got["d00000"]["author"] == got["d00004"]["author"]
    assert json.loads(got["d00168"]["meta"])["synth"]["run"] == "r1"

    card = (out / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "cc-by-4.0" and meta["language"] == ["ja"] and meta["size_categories"] == ["n<1K"]
    assert "text-generation" in meta["task_categories"]
    stats = json.loads(run("dataset", "stats", "--json", "--db", db).stdout)
    sheet = json.loads((out / "datasheet.json").read_text(encoding="utf-8"))
    assert sheet["statistics"] == stats  # the card's figures are `dataset stats`
    assert f"- situations: {stats['situations']}" in card and f"- dialogues: {stats['dialogues']}" in card
    p = stats["dialogues_per_pair"]
    assert f"mean {p['mean']}, median {p['median']}, min {p['min']}, max {p['max']}" in card
    for en, e in stats["emotions"].items():
        assert f"| {en} | {e['ja']} | {e['group']} |" in card and f" | {e['situations']} | {e['dialogues']} |" in card
    assert "6 dialogues (3.5%) are synthetic" in card and "openai:qwen@http://gpu/v1 (6)" in card
    assert "not-in-the-output" not in "".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    assert sum(sheet["splits"].values()) == 174

    # publishing onto a non-empty folder needs --overwrite; the earlier folder is untouched
    r = subprocess.run([EXE, "dataset", "publish", "--out", str(out), "--db", db], capture_output=True, text=True)
    assert r.returncode == 2 and "--overwrite" in r.stderr and load_from_disk(str(out))["test"].num_rows
