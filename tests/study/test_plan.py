"""`emplifai run CONFIG --plan` and `${VAR}` in configs: validated, sized and priced without loading a model or
contacting a server (issue 15 items 1 and 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emplifai.dataset.ingest import bundled_corpus_path, import_file
from emplifai.dataset.splits import make_split
from emplifai.errors import UserError
from emplifai.predict import prompt as pp
from emplifai.store.db import Store
from emplifai.store.repo import iter_records
from emplifai.study.config import load_config, read_config

ROOT = Path(__file__).parents[2]
EXE = str(Path(sys.executable).parent / "emplifai")
PAPER_VARS = ("EMPLIFAI_DATASET", "EMPLIFAI_DEEPSEEK_URL", "EMPLIFAI_LLMJP_URL", "EMPLIFAI_SFT_URL")
KEY_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY")  # the API models' keys, one variable per spec (+key:VAR)


def plan(config: Path, cwd: Path, **env: str) -> tuple[int, dict]:
    base = {k: v for k, v in os.environ.items()
            if (not k.startswith("EMPLIFAI_") or k == "EMPLIFAI_HOME") and k not in KEY_VARS}
    r = subprocess.run([EXE, "run", str(config), "--plan", "--json", "--out", str(cwd / "out")], cwd=cwd,
                       capture_output=True, text=True, timeout=600, env={**base, **env})
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_env_expansion_defaults_literals_and_errors_naming_file_key_variable(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[predict]\nmodels = ["openai:${M:-qwen}@${U}", "embedded"]\n'
                   '[sample]\nname = "$${literal}"\n', encoding="utf-8")
    got = load_config(cfg, env={"U": "http://gpu:8000/v1"})
    assert got.predict.models == ["openai:qwen@http://gpu:8000/v1", "embedded"]
    assert got.sample.name == "${literal}"
    with pytest.raises(UserError) as ei:
        load_config(cfg, env={})
    assert str(cfg) in str(ei.value) and "predict.models.0: environment variable U is not set" in str(ei.value)
    _, unset = read_config(cfg, env={"M": "x"})
    assert [(u.key, u.variable) for u in unset] == [("predict.models.0", "U")]


def test_paper_config_plans_without_any_server(tmp_path):
    """configs/paper.toml exists, is valid, and --plan names what is missing; with the variables set (URLs where
    nothing listens) it sizes every stage from the data and prices the API models."""
    paper = ROOT / "configs" / "paper.toml"
    assert "configs/paper.toml" in (ROOT / "configs" / "demo.toml").read_text(encoding="utf-8")
    rc, p = plan(paper, tmp_path)
    assert rc == 2 and not p["ready"]
    assert {u["variable"] for u in p["unset"]} == {*PAPER_VARS, *KEY_VARS}
    assert {"dataset.path", "predict.models.1", "generate.models.1"} <= {u["key"] for u in p["unset"]}
    assert {(u["key"], u["variable"]) for u in p["unset"] if u["variable"] in KEY_VARS} == {
        ("predict.models.0", "OPENAI_API_KEY"), ("generate.models.2", "OPENAI_API_KEY"),
        ("judge.judge", "GEMINI_API_KEY")}

    dead = "http://127.0.0.1:9/v1"  # the discard port: a plan that contacted it would fail
    rc, p = plan(paper, tmp_path, EMPLIFAI_DATASET=str(bundled_corpus_path()), EMPLIFAI_DEEPSEEK_URL=dead,
                 EMPLIFAI_LLMJP_URL=dead, EMPLIFAI_SFT_URL=dead, OPENAI_API_KEY="sk-o", GEMINI_API_KEY="g-k")
    assert rc == 0 and p["ready"] and p["problems"] == [], p["problems"]
    st = {s["stage"]: s for s in p["stages"]}
    assert st["predict"]["items"] == {"pairs": 840}  # split = "all": every pair
    assert [m["calls"] for m in st["predict"]["models"]] == [840, 840, 840]
    assert len(st["generate"]["models"]) == 4 and st["generate"]["items"]["sources"] == 5
    assert st["judge"]["items"] == {"pairs": 100, "sources": 5, "metrics": 7, "judges": 1, "judgements": 3500}
    gpt = st["predict"]["models"][0]
    assert gpt["spec"] == "openai:o3-pro@https://api.openai.com/v1+key:OPENAI_API_KEY"
    assert "API key from OPENAI_API_KEY" in gpt["resolved"] and "sk-o" not in json.dumps(p)
    assert "API key from GEMINI_API_KEY" in st["judge"]["models"][0]["resolved"]
    assert gpt["cost"]["amount"] == pytest.approx((gpt["prompt_tokens"] * 20 + gpt["completion_tokens"] * 80) / 1e6)
    assert st["predict"]["models"][1]["cost"] is None  # self-hosted: no price entry, no cost (not 0)
    judge = st["judge"]["models"][0]
    assert judge["max_calls"] == 3 * 3500 and judge["cost"]["currency"] == "USD"
    assert not (tmp_path / "out").exists()  # a plan writes nothing


def test_demo_plan_figures_match_the_stages(tmp_path):
    """The demo's plan, checked against what the stages themselves select from a real store."""
    rc, p = plan(ROOT / "configs" / "demo.toml", tmp_path)
    assert rc == 0 and p["ready"], p
    st = {s["stage"]: s for s in p["stages"]}
    store = Store(f"sqlite:///{tmp_path / 'check.db'}")
    import_file(store, bundled_corpus_path())
    res = make_split(store, seed=42, fractions=(0.8, 0.1, 0.1))
    for sp, v in res.sizes.items():
        assert st["split"]["items"][f"{sp} dialogues"] == v["dialogues"]
        assert st["split"]["items"][f"{sp} situations"] == v["situations"]
    with store.open_session() as s:
        test_items = list(iter_records(s, split="test"))
    [emb] = st["predict"]["models"]
    assert emb["calls"] == len(test_items) == 84
    chars = sum(len(pp.build_prompt(r.situation, r.patient, r.supporter, definitions=False)) for r in test_items)
    assert emb["prompt_tokens"] == chars + len(test_items) * sum(len(c) for c in pp.candidates())
    assert [m["calls"] for m in st["generate"]["models"]] == [10]
    assert st["generate"]["models"][0]["completion_tokens"] == 10 * 256
    assert st["judge"]["items"] == {"pairs": 10, "sources": 2, "metrics": 2, "judges": 1, "judgements": 40}
    assert p["totals"]["calls"] == 84 + 10 + 40 and p["totals"]["cost"] == {}
    assert "embedded Gemma 3 270M" in emb["resolved"]
    store.dispose()


def test_plan_reports_bad_specs_self_judging_and_missing_files(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[predict]\nmodels = ["gguf:/nope.gguf", "nonsense"]\n[generate]\nmodels = ["embedded"]\n'
                   '[judge]\njudge = "embedded"\n[agree]\nratings = ["missing.csv"]\n', encoding="utf-8")
    rc, p = plan(cfg, tmp_path)
    assert rc == 2
    text = "\n".join(p["problems"])
    assert "no GGUF file at /nope.gguf" in text and "invalid model spec 'nonsense'" in text
    assert "may not score its own generations" in text and "missing.csv: no such file" in text


def _judge_plan(tmp_path: Path, judge: str) -> dict:
    from emplifai.study.plan import make_plan

    cfg = tmp_path / f"judge{len(judge)}.toml"
    cfg.write_text(f'stages = ["validate", "split", "sample", "generate", "judge"]\n[sample]\nn = 10\n'
                   f'[generate]\nmodels = ["embedded"]\n[judge]\n{judge}\nrubrics = "all"\n', encoding="utf-8")
    got, unset = read_config(cfg, env={})
    p = make_plan(got, unset, cfg, tmp_path / "out")
    return {s.stage: s for s in p.stages}["judge"].__dict__ | {"totals": p.totals(), "ready": p.ready}


def test_plan_with_a_judge_panel_doubles_the_judgements_and_lists_both_judges(tmp_path):
    a, b = "openai:judge-a@http://127.0.0.1:9/v1", "openai:judge-b@http://127.0.0.1:9/v1"
    one = _judge_plan(tmp_path, f'judge = "{a}"')
    two = _judge_plan(tmp_path, f'judges = ["{a}", "{b}"]')
    assert one["ready"] and two["ready"]
    # 10 pairs × 2 sources (embedded + human) × 10 metrics (the paper's 7 + EPITOME's 3)
    assert one["items"] == {"pairs": 10, "sources": 2, "metrics": 10, "judges": 1, "judgements": 200}
    assert two["items"] == {**one["items"], "judges": 2, "judgements": 400}
    assert [m.spec for m in two["models"]] == [a, b]
    assert [m.calls for m in two["models"]] == [200, 200]
    assert two["models"][0].prompt_tokens == two["models"][1].prompt_tokens == one["models"][0].prompt_tokens
    assert "judge-b" in two["models"][1].resolved
