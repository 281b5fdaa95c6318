"""Instructions for people (issue 12 item 15) and server-side drafts (item 16), on the real store through
FastAPI's TestClient: per-emotion worked examples (bundled defaults, a campaign's own file), counters and
limits on the page, drafts saved, restored and guarded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from emplifai import taxonomy
from emplifai.collect import create_app
from emplifai.collect.campaigns import get_campaign
from emplifai.collect.examples import default_examples, read_examples, set_examples, template_toml
from emplifai.collect.rating import create_rating_tasks
from emplifai.dataset.ingest import bundled_corpus_path
from emplifai.errors import InputError
from emplifai.evaluate.rubrics import METRICS
from emplifai.records import MAX_SITUATION_CHARS, MAX_TURN_CHARS
from emplifai.store.collect import Draft
from tests.collect.fixtures import campaign, csrf, login, post, rating_sample, settings, situations, users

MODEL_PROMPT = "次の形式の2行だけを書く"
OLD_EXAMPLE = "先週の検査で数値が良くなっていて"


@pytest.fixture
def app(db_url: str) -> Iterator:
    a = create_app(settings(db_url))
    users(a.state.store, ("w1", "worker"), ("w2", "worker"))
    yield a
    a.state.store.dispose()


def client(app, name: str) -> TestClient:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    login(c, name)
    return c


def _claim(c: TestClient, cid: int, kind: str) -> str:
    r = post(c, "/work/claim", {"campaign_id": cid, "kind": kind}, page="/work")
    assert r.status_code == 303 and r.headers["location"].startswith("/claims/"), r.text
    return r.headers["location"]


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


# ------------------------------------------------------------------------------------------- examples
def test_defaults_cover_every_emotion_from_the_bundled_corpus() -> None:
    ex = default_examples()
    assert set(ex) == {lab.en for lab in taxonomy.LABELS}
    rows = {json.loads(x)["dialogue_id"]: json.loads(x) for x in bundled_corpus_path().read_text("utf-8").splitlines()}
    for emo, e in ex.items():
        src = rows[e.origin.removeprefix("bundled corpus: ")]
        assert (src["emotion"], src["situation"], src["patient"], src["supporter"]) == (
            emo, e.situation, e.patient, e.supporter)
    assert ex["Grief"].patient != ex["Joy"].patient  # not one upbeat example for every emotion


def test_round_pages_show_the_emotions_own_example_not_the_model_prompt(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Grief"], round1_target=1, round2_target=1)
    situations(store, ["Grief"], 1)
    with store.transaction() as s:
        from emplifai.collect.campaigns import seed_round2

        seed_round2(s, get_campaign(s, cid))
    w1 = client(app, "w1")
    grief = default_examples()["Grief"]
    round1 = w1.get(_claim(w1, cid, "situation")).text
    assert "例：「嘆き」の状況" in round1 and grief.situation in _text(round1)
    assert f"0 / {MAX_SITUATION_CHARS} 文字" in round1 and 'data-limit="2000"' in round1
    round2 = w1.get(_claim(w1, cid, "dialogue")).text
    body = _text(round2)
    assert MODEL_PROMPT not in body and OLD_EXAMPLE not in body
    assert "例：「嘆き」の会話" in body and f"患者：{grief.patient}" in body and f"支援者：{grief.supporter}" in body
    assert body.count(f"0 / {MAX_TURN_CHARS} 文字") == 2
    assert "maxlength" not in round2  # a paste over the limit is kept and counted, not silently cut


def test_campaign_examples_file_replaces_the_defaults(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Grief", "Joy"], round1_target=1)
    f = tmp_path / "ex.toml"
    f.write_text('[[examples]]\nemotion = "嘆き"\nsituation = "父を見送った春のこと。"\n'
                 'patient = "父がいない家は静かで。"\nsupporter = "静けさがこたえますね。"\n', encoding="utf-8")
    res = CliRunner().invoke(__import__("emplifai.cli", fromlist=["app"]).app,
                             ["collect", "examples", str(cid), str(f), "--template", str(tmp_path / "t.toml"),
                              "--db", store.url])
    assert res.exit_code == 0, res.output
    template = read_examples(tmp_path / "t.toml")  # the template is itself a valid examples file
    by = {e.emotion: e for e in template}
    assert set(by) == {"Grief", "Joy"} and by["Grief"].situation == "父を見送った春のこと。"
    assert by["Joy"].situation == default_examples()["Joy"].situation
    pages = {}
    for name in ("w1", "w2"):  # one task each: a released task comes back to the same worker
        c = client(app, name)
        page = c.get(_claim(c, cid, "situation")).text
        pages["Grief" if "嘆き" in page else "Joy"] = _text(page)
    assert "父を見送った春のこと。" in pages["Grief"] and default_examples()["Joy"].situation in pages["Joy"]


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("bad.toml", '[[examples]]\nemotion = "Grief"\nsituation = "s"\npatient = ""\nsupporter = "x"\n',
     "bad.toml:4: examples[0].patient: missing or empty"),
    ("bad.toml", '[[examples]]\nemotion = "Grief"\nsituation = "s"\npatient = "p"\nsupporter = "x"\ncolour = 1\n',
     "bad.toml:6: examples[0].colour: unknown field"),
    ("bad.json", '{"examples": [\n {"emotion": "Grief", "situation": "s", "patient": "p", "supporter": "x"},\n'
     ' {"emotion": "zzz", "situation": "s", "patient": "p", "supporter": "x"}\n]}',
     "bad.json:3: examples[1].emotion: unknown emotion"),
    ("bad.yaml", "examples:\n  - emotion: Grief\n    situation: s\n    patient: p\n    supporter: x\n"
     "  - emotion: 嘆き\n    situation: s\n    patient: p\n    supporter: x\n",
     "bad.yaml:6: examples[1].emotion: Grief already has an example"),
    ("bad.yaml", "examples:\n  - emotion: Grief\n    situation: " + "あ" * (MAX_SITUATION_CHARS + 1)
     + "\n    patient: p\n    supporter: x\n", "bad.yaml:3: examples[0].situation: 2001 characters"),
    ("bad.json", '{"examples": [{"emotion": "Grief", "situation": "a\\u0000b", "patient": "p", "supporter": "x"}]}',
     "bad.json:1: examples[0].situation: contains the control character U+0000"),
    ("bad.json", '{"examples": [\n{"emotion": "Grief",,}]}', "bad.json:2: -: not valid JSON"),
    ("bad.toml", "[[examples]]\nemotion = \n", "bad.toml:2: -: not valid TOML"),
])
def test_bad_examples_files_name_file_line_and_field(tmp_path: Path, name: str, text: str, expected: str) -> None:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_examples(f)
    assert expected in str(err.value).replace(str(tmp_path) + "/", "")


def test_a_bad_file_stores_nothing(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Grief"])
    with store.transaction() as s:
        set_examples(s, get_campaign(s, cid), read_examples(_write(tmp_path / "ok.toml", "Grief", "最初の例")))
    bad = tmp_path / "bad.toml"
    bad.write_text(_entry("Grief", "次の例") + _entry("Nope", "x"), encoding="utf-8")
    res = CliRunner().invoke(__import__("emplifai.cli", fromlist=["app"]).app,
                             ["collect", "examples", str(cid), str(bad), "--db", store.url])
    assert isinstance(res.exception, InputError)  # main() prints it and exits 2
    assert "bad.toml:8: examples[1].emotion: unknown emotion 'Nope'" in str(res.exception)
    from emplifai.collect.examples import examples_for

    with store.open_session() as s:
        assert examples_for(s, cid)["Grief"].situation == "最初の例"
    assert "最初の例" in template_toml({"Grief": read_examples(tmp_path / "ok.toml")[0]})


def _entry(emotion: str, situation: str) -> str:
    return (f'[[examples]]\nemotion = "{emotion}"\nsituation = "{situation}"\npatient = "p"\nsupporter = "s"\n'
            "\n")


def _write(path: Path, emotion: str, situation: str) -> Path:
    path.write_text(_entry(emotion, situation), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- drafts
def test_drafts_are_saved_restored_and_only_the_owners(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    cid = campaign(store, emotions=["Joy"], round1_target=2)
    w1, w2 = client(app, "w1"), client(app, "w2")
    loc = _claim(w1, cid, "situation")
    token = csrf(w1.get(loc).text)
    typed = "通院の帰りに<b>桜</b>が\x00咲いていた\r\n"
    r = w1.post(f"{loc}/draft", data={"situation": typed, "csrf_token": token, "junk": "x"},
                headers={"X-Emplifai-Draft": "1"})
    assert r.status_code == 200 and r.json() == {"ok": True, "fields": 1}
    page = w1.get(loc).text  # a reload restores it, escaped, control character gone
    assert "通院の帰りに&lt;b&gt;桜&lt;/b&gt;が咲いていた\n</textarea>" in page
    # without JavaScript: the 下書き保存 button posts the same form and comes back to the task
    r = w1.post(f"{loc}/draft", data={"situation": "二度目", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{loc}?msg=draft"
    assert "下書きを保存しました" in w1.get(r.headers["location"]).text
    # no token, another worker, a missing claim: refused, the draft untouched
    assert w1.post(f"{loc}/draft", data={"situation": "x"}).status_code == 403
    w2_token = csrf(w2.get("/work").text)
    assert w2.post(f"{loc}/draft", data={"situation": "x", "csrf_token": w2_token},
                   headers={"X-Emplifai-Draft": "1"}).status_code == 404
    assert "二度目" not in w2.get("/work").text
    assert w1.post("/claims/999999/draft", data={"csrf_token": token},
                   headers={"X-Emplifai-Draft": "1"}).status_code == 404
    r = w1.post(f"{loc}/draft", data={"situation": "あ" * 20_001, "csrf_token": token},
                headers={"X-Emplifai-Draft": "1"})
    assert r.status_code == 400 and "20000文字" in r.json()["error"]
    with store.open_session() as s:
        assert [d.fields for d in s.scalars(select(Draft))] == [{"situation": "二度目"}]
    # submitting clears it; a submitted claim takes no more drafts
    assert post(w1, f"{loc}/submit", {"situation": "二度目の本文"}, page=loc).status_code == 303
    with store.open_session() as s:
        assert s.scalars(select(Draft)).all() == []
    r = w1.post(f"{loc}/draft", data={"situation": "late", "csrf_token": token}, headers={"X-Emplifai-Draft": "1"})
    assert r.status_code == 409 and "下書きは保存できません" in r.json()["error"]


def test_rating_drafts_keep_scores_and_show_progress(app) -> None:  # type: ignore[no-untyped-def]
    store = app.state.store
    gids = rating_sample(store, 10)
    cid = campaign(store, "rate", emotions=["Joy"])
    with store.transaction() as s:
        create_rating_tasks(s, get_campaign(s, cid), "default", "human")
    w1 = client(app, "w1")
    loc = _claim(w1, cid, "rating")
    token = csrf(w1.get(loc).text)
    scores = {f"score_{gids[0]}_{m}": "4" for m in METRICS} | {f"score_{gids[1]}_fluency": "2"}
    assert w1.post(f"{loc}/draft", data={**scores, "csrf_token": token}, follow_redirects=False).status_code == 303
    page = w1.get(loc).text
    assert re.search(rf'name="score_{gids[1]}_fluency" value="2" checked', page)
    assert 'data-done>1 / 10<' in page and "data-answered>8 / 70<" in page
    assert re.search(r'id="item-1".*?data-progress>7 / 7<', page, re.S) and "rating-item complete" in page
    bad = w1.post(f"{loc}/draft", data={f"score_{gids[0]}_fluency": "9", "csrf_token": token},
                  headers={"X-Emplifai-Draft": "1"})
    assert bad.status_code == 400 and bad.json()["error"] == "評価は1〜5の数字で選んでください"
    # a partial submit is refused and shows what was chosen, with the progress
    r = post(w1, f"{loc}/submit", scores, page=loc)
    assert r.status_code == 400 and "data-answered>8 / 70<" in r.text
