"""Judge answers valid by construction, on the REAL embedded model (llama.cpp grammar) and a REAL server
(llama_cpp.server on loopback: it refuses response_format json_schema, takes json_object + schema), and a
whole `emplifai run` with two judges and both rubric sets through that server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.sample import make_sample
from emplifai.llm import load
from emplifai.llm.base import GenParams, schema_text
from emplifai.prompts import judge as jp
from emplifai.store.db import Store
from emplifai.store.evaluation import JudgeScore

pytestmark = pytest.mark.slow


def _store(tmp: Path) -> Store:
    from emplifai.dataset.ingest import bundled_corpus_path, import_file
    from emplifai.evaluate.generate import add_human

    store = Store(f"sqlite:///{tmp / 'c.db'}")
    import_file(store, bundled_corpus_path())
    make_sample(store, n=3, seed=42)
    add_human(store)
    return store


def _rows(store: Store) -> list[JudgeScore]:
    with store.transaction() as s:
        return list(s.scalars(select(JudgeScore).order_by(JudgeScore.id)))


def test_grammar_makes_every_embedded_answer_valid(tmp_path: Path) -> None:
    store = _store(tmp_path)
    llm = load("embedded")
    try:
        # without retries, every first answer must parse: the grammar is the only thing making it valid
        cfg = JudgeConfig(spec="embedded", metrics=("fluency", "explorations"), retries=0, shots=0, max_tokens=160)
        r = judge(store, cfg, llm=llm)
        assert (r.scored, r.failed, r.invalid) == (6, 0, 0)
        assert r.structured == {"grammar": 6}
        rows = _rows(store)
        assert all(x.failure is None and x.signature["structured"] == "grammar" for x in rows)
        assert {x.score for x in rows if x.metric == "explorations"} <= {0, 1, 2}
        for x in rows:
            json.loads(x.raw or "")  # the raw answer itself is strict JSON, not just parseable by our rules
        # the same call without the schema is free text (the base model does not follow the format)
        plain = llm.chat(jp.messages("fluency", emotion="Sadness", situation="入院した。", patient="つらいです。",
                                     supporter="そうですか。"), GenParams(max_tokens=40))
        assert plain.structured is None
    finally:
        llm.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from emplifai.llm.embedded import embedded_model
    from emplifai.llm.local_server import llama_server

    path, _ = embedded_model()
    with llama_server(path, n_ctx=2048) as base:
        yield base


def test_server_refuses_json_schema_falls_back_to_json_object_and_every_answer_is_valid(
        server: str, tmp_path: Path) -> None:
    store = _store(tmp_path)
    spec = f"openai:judge@{server}"
    llm = load(spec, extra_body={"repeat_penalty": 1.0})
    cfg = JudgeConfig(spec=spec, metrics=("general_empathy",), retries=0, shots=0)
    r = judge(store, cfg, llm=llm)
    assert (r.scored, r.failed, r.invalid) == (3, 0, 0)
    assert r.structured == {"json_object": 3}
    rows = _rows(store)
    assert all(x.signature["structured"] == "json_object" and x.signature["schema_refused"] == ["json_schema"]
               for x in rows)
    # the refusal is remembered: no further request tries the refused form
    inner = getattr(llm, "inner", llm)
    assert [f for f, _ in inner.schema_refusals] == ["json_schema"]
    c = llm.chat([{"role": "user", "content": "評価して"}],
                 GenParams(max_tokens=60, json_schema=schema_text(jp.answer_schema((0, 2)))))
    assert c.structured == "json_object" and json.loads(c.text)["score"] in (0, 1, 2)


def test_run_with_two_judges_and_both_rubric_sets_through_a_server(server: str, tmp_path: Path) -> None:
    from emplifai.study.runner import Study, load_config

    cfg_path = tmp_path / "panel.toml"
    cfg_path.write_text(f"""
stages = ["validate", "split", "sample", "generate", "judge", "report"]
[sample]
n = 2
[generate]
models = ["openai:gen@{server}"]
max_tokens = 48
[judge]
judges = ["openai:judge-a@{server}", "openai:judge-b@{server}"]
rubrics = "all"
metrics = ["fluency", "emotional_reactions"]
shots = 0
""", encoding="utf-8")
    cfg = load_config(cfg_path)
    out = tmp_path / "run"
    Study(cfg, out, notify=lambda _m: None).run()
    state = json.loads((out / "state.json").read_text())
    for spec in cfg.judge.panel:
        s = state["judge"]["summary"][spec]
        assert s["failed"] == 0 and s["invalid_answers"] == 0
    panel_paper = json.loads((out / "eval" / "table4_panel.json").read_text())
    panel_epitome = json.loads((out / "eval" / "table4_epitome_panel.json").read_text())
    assert panel_paper["judges"] == cfg.judge.panel and panel_paper["metrics"] == ["fluency"]
    assert panel_epitome["metrics"] == ["emotional_reactions"]
    for t in (panel_paper, panel_epitome):
        for m, a in t["agreement"].items():  # a number or a reason, never NaN
            assert (a["alpha_ordinal"] is None) != (a["note"] is None), (m, a)
        assert "human" in t["rows"] and len(t["rows"]) == 2
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "judge panel, 2 judges" in md and "EPITOME" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "審査モデルの合議" in html and "共感の3つの伝え方" in html
