"""One API key per model spec (`openai:MODEL@URL+key:VAR`): each server gets the key of the variable its spec
names, never another's; an unset variable is an error naming it (not a key), and `--plan` lists it as unset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from emplifai.errors import UserError
from emplifai.llm import BadSpecError, load, load_model, parse_spec
from emplifai.study.config import load_config, read_config
from emplifai.study.plan import make_plan, render_text
from tests.llm import test_llm_openai as base

CHAT, OK_BODY = base.CHAT, base.OK_BODY
scripted = base.scripted  # the scripted HTTP server fixture

GEMINI, OPENAI = "sk-gemini-secret-1", "sk-openai-secret-2"


def test_spec_names_its_key_variable() -> None:
    s = parse_spec("openai:gemini-2.5-flash@https://g.example/v1beta/openai+key:GEMINI_API_KEY")
    assert (s.target, s.url, s.key_var) == ("gemini-2.5-flash", "https://g.example/v1beta/openai", "GEMINI_API_KEY")
    assert parse_spec("openai:m@http://h:8000/v1").key_var is None
    for bad in ("openai:m@http://h/v1+key:", "openai:m@http://h/v1+key:1X", "openai:m@http://h/v1+key:A-B"):
        with pytest.raises(BadSpecError, match="name of an environment variable"):
            parse_spec(bad)


def test_each_server_gets_the_key_its_spec_names(scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    monkeypatch.delenv("EMPLIFAI_API_KEY", raising=False)
    gem, gpt, local = (scripted(lambda n, _b: (200, OK_BODY, {})) for _ in range(3))
    specs = [f"openai:gemini@{gem.url}/v1+key:GEMINI_API_KEY", f"openai:gpt@{gpt.url}/v1+key:OPENAI_API_KEY",
             f"openai:local@{local.url}/v1"]
    for spec in specs:
        llm = load_model(spec)
        assert llm.chat(CHAT).text == "はい"
        assert GEMINI not in json.dumps(llm.signature()) and OPENAI not in json.dumps(llm.signature())
        assert "+key" not in llm.signature()["base_url"]
    assert gem.requests[0]["_auth"] == f"Bearer {GEMINI}"
    assert gpt.requests[0]["_auth"] == f"Bearer {OPENAI}"
    assert local.requests[0]["_auth"] == f"Bearer {OPENAI}"  # no +key: the process-wide fallback, as before
    assert gem.requests[0]["_path"] == "/v1/chat/completions"


def test_unset_key_variable_is_an_error_naming_it(scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    srv = scripted(lambda n, _b: (200, OK_BODY, {}))
    with pytest.raises(UserError, match=r"GEMINI_API_KEY .*is not set") as ei:
        load_model(f"openai:gemini@{srv.url}/v1+key:GEMINI_API_KEY")
    assert OPENAI not in str(ei.value)
    assert srv.requests == []  # the fallback key was not sent instead
    assert load(f"openai:gemini@{srv.url}/v1+key:GEMINI_API_KEY", api_key="explicit") is not None


def test_config_and_plan_report_an_unset_key_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "keys.toml"
    cfg.write_text('stages = ["sample", "generate", "judge"]\n[generate]\nmodels = ["embedded"]\n'
                   '[judge]\njudges = ["openai:gemini@https://g.example/v1+key:GEMINI_API_KEY", '
                   '"openai:gpt@https://api.openai.com/v1+key:OPENAI_API_KEY"]\n', encoding="utf-8")
    got, unset = read_config(cfg, env={"OPENAI_API_KEY": OPENAI})
    assert [(u.key, u.variable) for u in unset] == [("judge.judges.0", "GEMINI_API_KEY")]
    with pytest.raises(UserError, match=r"judge\.judges\.0: environment variable GEMINI_API_KEY is not set"):
        load_config(cfg, env={"OPENAI_API_KEY": OPENAI})
    assert load_config(cfg, env={"OPENAI_API_KEY": OPENAI, "GEMINI_API_KEY": GEMINI}).judge.panel[1].endswith(
        "+key:OPENAI_API_KEY")
    plan = make_plan(got, unset, cfg, tmp_path / "out")
    text = render_text(plan)
    assert not plan.ready and "GEMINI_API_KEY (used by judge.judges.0)" in text
    assert GEMINI not in text and OPENAI not in text
