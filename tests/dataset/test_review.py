"""`emplifai dataset review|decide`: the review of synthetic items, in the same history as the web app's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from emplifai.cli import app
from emplifai.dataset import review as rv
from emplifai.errors import UserError
from emplifai.records import Action, Status
from emplifai.store import repo
from emplifai.store.db import Store
from emplifai.store.models import Dialogue, Situation
from emplifai.synth import SynthConfig, Synthesizer
from tests.synth.fixtures import RuleLLM, load_subset


@pytest.fixture
def synthetic(store: Store, tmp_path: Path) -> list[str]:
    load_subset(store, tmp_path, drop={"Grief": 3})
    Synthesizer(store, RuleLLM(), SynthConfig(emotions=("Grief",), per_situation=2), model="fake:rules").run()
    with store.open_session() as s:
        return list(s.scalars(select(Dialogue.id).where(Dialogue.source == "synthetic").order_by(Dialogue.id)))


def test_queue_lists_pending_synthetic_items(store: Store, synthetic: list[str]) -> None:
    items = rv.queue(store, source="synthetic")
    assert [i.dialogue_id for i in items] == synthetic and len(items) == 3
    assert {i.emotion for i in items} == {"Grief"} and all(i.patient and i.supporter for i in items)
    assert rv.queue(store, source="synthetic", emotions=["Joy"]) == []
    assert rv.queue(store, status=Status.APPROVED, source="synthetic") == []


def test_decisions_follow_the_paper_and_are_all_or_none(store: Store, synthetic: list[str]) -> None:
    a, b, c = synthetic
    assert rv.decide(store, [a], Action.APPROVE, actor="ra1") == {a: "approved"}
    with pytest.raises(UserError, match="needs a reason"):
        rv.decide(store, [b], Action.REJECT, actor="ra1")
    with pytest.raises(UserError, match="cannot approve a approved"):
        rv.decide(store, [b, a], Action.APPROVE, actor="ra1")  # a is done: neither changes
    with pytest.raises(UserError, match="no dialogue 'nope'"):
        rv.decide(store, [b, "nope"], Action.FLAG, actor="ra1", reason="x")
    with store.open_session() as s:
        assert s.get(Dialogue, b).status == "pending"
        sit_a = s.get(Situation, s.get(Dialogue, a).situation_id)
        assert sit_a.status == "approved"  # follows its first approved dialogue
        assert [(e.action, e.after) for e in repo.history(s, "dialogue", a)][-1] == ("approve", "approved")
    rv.decide(store, [b], Action.FLAG, actor="ra1", reason="言い回しが不自然")
    rv.decide(store, [b], Action.REMOVE, actor="lead", reason="不自然な日本語")
    rv.decide(store, [c], Action.REJECT, actor="ra1", reason="状況と合わない")
    with store.open_session() as s:
        hist = repo.history(s, "dialogue", b)
        assert [(e.actor, e.action, e.after) for e in hist][-2:] == [("ra1", "flag", "flagged"),
                                                                     ("lead", "remove", "removed")]
        sits = {s.get(Dialogue, d).situation_id for d in (b, c)} - {s.get(Dialogue, a).situation_id}
        for sid in sits:  # a situation with no dialogue left is removed, with the reason
            assert s.get(Situation, sid).status == "removed"
            assert repo.history(s, "situation", sid)[-1].reason == "all of its dialogues were removed"


def test_cli_review_and_decide(store: Store, synthetic: list[str]) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["dataset", "review", "--source", "synthetic", "--json", "--db", store.url])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert [x["dialogue_id"] for x in rows] == synthetic
    r = runner.invoke(app, ["dataset", "decide", "approve", *synthetic[:2], "--reviewer", "ra1", "--db", store.url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["dataset", "review", "--source", "synthetic", "-e", "悲嘆", "--json", "--db", store.url])
    assert [json.loads(x)["dialogue_id"] for x in r.output.splitlines()] == synthetic[2:]
    r = runner.invoke(app, ["dataset", "decide", "reject", synthetic[2], "--reviewer", "ra1", "--db", store.url])
    assert isinstance(r.exception, UserError) and "needs a reason" in str(r.exception)
    r = runner.invoke(app, ["dataset", "review", "--status", "approved", "--db", store.url])
    assert r.exit_code == 0 and "89 approved dialogues" in r.output  # 87 crowd + the 2 approved
