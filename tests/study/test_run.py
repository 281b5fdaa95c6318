"""`emplifai run`: config validation, a real small study on the embedded model, rerun from cache, and the
HTML report opened in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emplifai.errors import UserError
from emplifai.study.runner import RunConfig, load_config
from tests.helpers import CHROMIUM

EXE = shutil.which("emplifai") or str(Path(sys.executable).parent / "emplifai")

TINY = """
[predict]
models = ["embedded"]
limit = 2
baseline = true
[sample]
n = 2
[generate]
models = ["embedded"]
max_tokens = 64
[judge]
judge = "embedded"
allow_self_judge = true
metrics = ["fluency"]
shots = 2
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p



def test_demo_config_is_valid():
    cfg = load_config(Path(__file__).parents[2] / "configs" / "demo.toml")
    assert cfg.dataset.sample and cfg.sample.seed == 42 and cfg.predict.models == ["embedded"]


def test_judge_score_only_is_a_config_key_off_by_default(tmp_path):
    assert load_config(write(tmp_path, TINY)).judge.score_only is False
    on = load_config(write(tmp_path, TINY + "score_only = true\n"))
    assert on.judge.score_only is True


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[predict]\nmodles = ['embedded']\n", "predict.modles"),
        ("[sample]\nn = 0\n", "sample.n"),
        ("[predict]\nmode = 'guess'\n", "predict.mode"),
        ("[dataset]\nsample = true\npath = 'x.jsonl'\n", "dataset"),
        ("stages = ['validate', 'teleport']\n", "stages.1"),
        ("[judg]\njudge = 'embedded'\n", "judg"),
        ("[judge]\nscore_only = 'sometimes'\n", "judge.score_only"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(UserError) as ei:
        load_config(write(tmp_path, text))
    assert f"  {key}:" in str(ei.value)


def test_config_syntax_error_and_yaml(tmp_path):
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(write(tmp_path, "[predict\n"))
    cfg = load_config(write(tmp_path, "sample:\n  n: 5\n", "s.yaml"))
    assert isinstance(cfg, RunConfig) and cfg.sample.n == 5


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=1800,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/test.sh installs it)")
def test_small_study_end_to_end_rerun_and_report_in_browser(tmp_path, browser):
    cfg = write(tmp_path, TINY)
    out = tmp_path / "out"
    r = run_cli("run", str(cfg), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert set(state) == {"validate", "split", "predict", "finetune", "sample", "generate", "judge", "agree",
                          "report"}
    table2 = json.loads((out / "table2" / "table2.json").read_text())
    models = [m["model"] for m in table2["models"]]
    assert "embedded" in models and len(models) == 2  # the model and the TF-IDF baseline
    emb = table2["models"][models.index("embedded")]
    assert emb["n"] == 2 and 0.0 <= emb["bertscore_f1"] <= 1.0 and emb["signature"]
    table4 = json.loads((out / "eval" / "table4.json").read_text())
    assert set(table4["rows"]) == {"embedded", "human"}
    assert all(r["n"] == 2 for r in table4["rows"].values())
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["config"]["sample"]["seed"] == 42 and provenance["versions"]["emplifai"]
    # what it spent, counted at the LLM interface: score calls report no tokens, and say so
    spent = state["predict"]["spend"]["embedded"]
    assert (spent["calls"], spent["usage_missing"], spent["failures"]) == (2, 2, 0)
    gen = state["generate"]["spend"]["embedded"]
    assert gen["calls"] == 2 and gen["prompt_tokens"] > 0 and 0 < gen["completion_tokens"] <= 2 * 64
    judged = state["judge"]["spend"]["embedded"]  # 2 pairs x 2 sources x 1 metric, less those scored by rule
    assert judged["calls"] + judged["failures"] - judged["retries"] == 4 - state["judge"]["summary"]["by_rule"]
    assert state["validate"]["spend"] == {} and gen["cost"] is None  # no price entry: no cost, not 0
    assert "What the run spent" in (out / "report.md").read_text(encoding="utf-8")

    # Rerun: every stage is skipped, nothing recomputed.
    again = run_cli("run", str(cfg), "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("validate", "split", "predict", "sample", "generate", "judge", "report"):
        assert f"[{stage}] already done (cached)" in again.stderr
    assert json.loads((out / "state.json").read_text())["judge"] == state["judge"]

    # The report in a real headless Chromium (pytest-playwright's shared browser).
    page = browser.new_page()
    page.goto((out / "report.html").as_uri())
    assert page.locator("h2", has_text="データセット統計").is_visible()
    assert page.locator("td", has_text="感謝").first.is_visible()
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
    assert images and all(done and width > 0 for done, width in images)
    page.screenshot(path=str(out / "report.png"), full_page=True)
    page.close()
    assert (out / "report.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.postgres
def test_same_study_on_openai_server_and_postgres(tmp_path, pg_url):
    """Scale-out path: the models behind a real OpenAI-compatible server, the store on PostgreSQL."""
    from emplifai.llm.local_server import llama_server
    from emplifai.llm.registry import embedded_model

    with llama_server(embedded_model()[0], n_threads=2) as url:
        spec = f"openai:gemma@{url}"
        cfg = write(tmp_path, f"""
db = "{pg_url}"
[predict]
models = ["{spec}"]
mode = "generate"
limit = 1
baseline = false
[sample]
n = 1
[generate]
models = ["{spec}"]
max_tokens = 48
[judge]
judge = "{spec}"
allow_self_judge = true
metrics = ["fluency"]
[[prices]]
model = "{spec}"
prompt_per_million = 1.5
completion_per_million = 6.0
""")
        out = tmp_path / "out"
        r = run_cli("run", str(cfg), "--out", str(out), cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    table2 = json.loads((out / "table2" / "table2.json").read_text())
    assert [m["model"] for m in table2["models"]] == [spec] and table2["models"][0]["n"] == 1
    table4 = json.loads((out / "eval" / "table4.json").read_text())
    assert set(table4["rows"]) == {spec, "human"}
    assert not (out / "emplifai.db").exists()  # everything went to PostgreSQL
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["database"].startswith("postgresql")
    # spend from the server's own usage figures, priced from the config's table
    state = json.loads((out / "state.json").read_text())
    for stage in ("predict", "generate", "judge"):
        u = state[stage]["spend"][spec]
        assert u["calls"] >= 1 and u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 and u["usage_missing"] == 0
        assert u["cost"] == {"amount": round((u["prompt_tokens"] * 1.5 + u["completion_tokens"] * 6.0) / 1e6, 6),
                             "currency": "USD"}
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "What the run spent" in report and "Total cost:" in report and "USD" in report
