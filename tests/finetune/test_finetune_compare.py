"""`emplifai compare`: the before/after table over generation, judge and taxonomy validation.

The backends are a small deterministic fake (the real models run in benchmarks/bench_finetune.py): the
"before" model ignores the format, the "after" model follows it, and the numbers in the table must say so."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from emplifai import taxonomy
from emplifai.dataset.ingest import import_file
from emplifai.dataset.splits import make_split
from emplifai.errors import UserError
from emplifai.finetune import compare
from emplifai.llm import registry
from emplifai.llm.base import LLM, Completion, GenParams, MessagesLike, to_messages
from emplifai.store.db import Store
from tests.helpers import record, write_jsonl


class _Scripted(LLM):
    """before: free text, no format; after: the two-turn format. Judge: 2 for before, 4 for after (the judge
    reads the dialogue it is shown). score(): prefers the gold label for 'after', the first label otherwise."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        return Completion("", "stop")

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        text = "\n".join(m.content for m in to_messages(messages))
        if '"feedback"' in text:  # the judge prompt asks for {"feedback": ..., "score": ...}
            good = "きっと大丈夫" in text
            return Completion(json.dumps({"feedback": "ok", "score": 4 if good else 2}, ensure_ascii=False), "stop")
        if self.spec.startswith("fake:after"):
            return Completion("患者：不安でした。\n支援者：きっと大丈夫ですよ。", "stop")
        return Completion("Here is a dialogue about the situation.", "stop")

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        return [-float(i) for i in range(len(candidates))]

    def signature(self) -> dict[str, Any]:
        return {"backend": "scripted", "spec": self.spec}


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "load_model", lambda spec: _Scripted(spec))


def test_compare_table_shows_format_adherence(store: Store, db_url: str, tmp_path: Path, scripted: None) -> None:
    rows = [record(i, sit=i // 3, emotion=taxonomy.LABELS[(i // 3) % 4].en) for i in range(120)]
    import_file(store, write_jsonl(tmp_path / "d.jsonl", rows))
    make_split(store, seed=42)
    res = compare.run(before="fake:before", after="fake:after", out=tmp_path / "cmp", n=3, seed=1,
                      judge="fake:judge", metrics=("general_empathy",), predict_limit=6, db=db_url)
    t = res.table
    b, a = t["columns"]["before"], t["columns"]["after"]
    assert t["sample"]["split"] == "test" and t["sample"]["n"] == 3
    assert b["generation"]["format_adherence"] == 0.0 and a["generation"]["format_adherence"] == 1.0
    assert b["judge"]["general_empathy"]["mean"] == 1.0  # malformed: lowest score by rule
    assert a["judge"]["general_empathy"]["mean"] == 4.0
    assert b["taxonomy"]["n"] == a["taxonomy"]["n"] == 6
    assert "| format adherence (患者：/支援者： exactly) | 0.0% | 100.0% | +100.0 pt |" in res.markdown
    assert json.loads(res.json_path.read_text())["columns"]["after"]["spec"] == "fake:after"
    again = compare.run(before="fake:before", after="fake:after", out=tmp_path / "cmp", n=3, seed=1,
                        judge="fake:judge", metrics=("general_empathy",), predict_limit=6, db=db_url)
    assert again.table["generation_runs"]["fake:after"] == {"added": 0, "skipped": 3, "backend_failures": []}
    assert again.markdown == res.markdown


def test_compare_refuses_bad_input(store: Store, db_url: str, tmp_path: Path, scripted: None) -> None:
    with pytest.raises(UserError, match="same spec"):
        compare.run(before="fake:x", after="fake:x", db=db_url)
    with pytest.raises(UserError, match="unknown judge metric"):
        compare.run(before="fake:x", after="fake:y", metrics=("nope",), db=db_url)
    with pytest.raises(UserError, match="emplifai dataset split"):
        compare.run(before="fake:x", after="fake:y", db=db_url)
