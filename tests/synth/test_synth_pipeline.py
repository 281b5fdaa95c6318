"""`emplifai synth` end to end with the rule-based fake model, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from emplifai.cli import app
from emplifai.dataset.ingest import bundled_corpus_path
from emplifai.store.db import Store
from emplifai.store.models import Dialogue, Situation
from emplifai.store.synth import State, SynthCandidate, SynthRun
from emplifai.synth import FilterConfig, SynthConfig, Synthesizer
from tests.synth.fixtures import RuleLLM, load_subset


def counts(store: Store) -> dict[str, int]:
    with store.open_session() as s:
        q = (select(Situation.emotion, func.count(Dialogue.id)).join(Dialogue, Dialogue.situation_id == Situation.id)
             .group_by(Situation.emotion))
        return {e: n for e, n in s.execute(q).all()}


def test_migration_creates_synth_tables(db_url: str) -> None:
    s = Store(db_url)
    assert {"synth_runs", "synth_candidates"} <= set(inspect(s.engine).get_table_names())
    s.dispose()


def test_plan_counts_deficit_per_emotion_and_pair(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Grief": 4})  # Grief: 26 dialogues, one situation with 2 of 3
    syn = Synthesizer(store, RuleLLM(), SynthConfig(per_situation=3), model="fake:rules")
    plans = {p.emotion: p for p in syn.plan()}
    assert set(plans) == {lab for lab in plans}  # all 28 by default
    g = plans["Grief"]
    assert (g.dialogues, g.target, g.deficit) == (26, 30, 4)
    assert g.top_ups == [] and g.new_situations == [3, 1]  # crowd pairs are not topped up by default
    assert plans["Joy"].deficit == 0 and plans["Anger"].deficit == 30 and plans["Anger"].new_situations == [3] * 10
    filled = Synthesizer(store, RuleLLM(), SynthConfig(per_situation=3, fill_pairs=True, emotions=("Grief",)),
                         model="fake:rules").plan()[0]
    assert [(t.have, t.missing) for t in filled.top_ups] == [(2, 1)] and filled.new_situations == [3]
    capped = Synthesizer(store, RuleLLM(), SynthConfig(emotions=("悲嘆", "Anger"), limit=5), model="x").plan()
    assert [p.planned for p in capped] == [4, 1]


def test_run_fills_the_deficit_with_pending_traceable_items(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Grief": 3})
    cfg = SynthConfig(emotions=("Grief",), per_situation=2)
    report = Synthesizer(store, RuleLLM(), cfg, model="fake:rules").run()
    assert counts(store)["Grief"] == 30
    assert report.counts["accepted_dialogues"] == 3 and report.counts["accepted_situations"] == 2
    with store.open_session() as s:
        dl = s.scalars(select(Dialogue).where(Dialogue.source == "synthetic")).all()
        assert len(dl) == 3 and {d.status for d in dl} == {"pending"}
        sit = s.get(Situation, dl[0].situation_id)
        assert sit.source == "synthetic" and sit.status == "pending" and sit.emotion == "Grief"
        prov = dl[0].meta["synth"]
        assert prov["model"] == "fake:rules" and prov["signature"] == {"backend": "fake", "model": "rules"}
        assert prov["prompt_version"].startswith("synth-v1") and prov["seed"] == 42
        assert prov["stages"]["dialogue"]["raw"].startswith("患者：")
        assert len(prov["stages"]["dialogue"]["fewshot"]) == 2
        assert [f["name"] for f in prov["filters"]] == ["format", "japanese", "length", "medical_advice",
                                                         "personal_data", "self_harm", "duplicate"]
        assert set(sit.meta["synth"]["stages"]) == {"brainstorm", "rewrite"} and sit.condition
        assert s.get(SynthRun, report.run_id).finished_at is not None
    # balanced now: a rerun generates nothing
    again = Synthesizer(store, RuleLLM(), cfg, model="fake:rules").run()
    assert again.calls == 0 and counts(store)["Grief"] == 30


def test_rejected_candidates_are_kept_with_reasons_and_retried(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Relief": 2})

    def english_first(stage: str, prompt: str, n: int) -> str | None:
        if stage == "dialogue" and n == 1:
            return "患者：I feel so relieved today.\n支援者：That is wonderful news, I am happy for you."
        return None

    report = Synthesizer(store, RuleLLM(english_first), SynthConfig(emotions=("Relief",)), model="fake:rules").run()
    assert counts(store)["Relief"] == 30  # round 2 replaced the rejected one
    assert report.rounds == 2 and report.reasons == {"japanese": 1, "dialogues": 1}  # the dialogue, its situation
    with store.open_session() as s:
        rej = s.scalars(select(SynthCandidate).where(SynthCandidate.state == State.REJECTED)
                        .order_by(SynthCandidate.kind)).all()
        assert [c.kind for c in rej] == ["dialogue", "situation"]
        assert rej[0].reason.startswith("japanese: patient: Japanese-character share 0.00")
        assert rej[0].text.startswith("患者：I feel") and rej[0].stages["dialogue"]["raw"]
        assert rej[1].reason.startswith("dialogues: none of its 1 dialogues passed")
        assert s.get(Situation, rej[1].id) is None and s.get(Dialogue, rej[0].id) is None


def test_situation_filters_and_brainstorm_without_scenarios(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Joy": 1})
    joy = [json.loads(x) for x in bundled_corpus_path().read_text("utf-8").splitlines() if '"Joy"' in x]
    sample_sit = joy[0]["situation"]

    def bad(stage: str, prompt: str, n: int) -> str | None:
        if stage == "brainstorm" and n == 1:
            return "（なし）"
        if stage == "rewrite" and n == 1:
            return sample_sit  # a copy of stored data
        return None

    cfg = SynthConfig(emotions=("Joy",), rounds=3)
    report = Synthesizer(store, RuleLLM(bad), cfg, model="fake:rules").run()
    assert counts(store)["Joy"] == 30 and report.rounds == 3
    with store.open_session() as s:
        reasons = sorted(c.reason for c in s.scalars(select(SynthCandidate).where(SynthCandidate.state == "rejected")))
    assert reasons[0].startswith(f"duplicate: exact duplicate of {joy[0]['situation_id']}")
    assert reasons[1] == "format: brainstorm output has no scenario lines"


def test_unsafe_dialogue_rejected_and_model_failure_recorded(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Grief": 2})

    def answers(stage: str, prompt: str, n: int) -> str | None:
        if stage == "dialogue" and n == 1:
            return ("患者：透析がつらくて、もう行きたくないんです。\n"
                    "支援者：つらいよね。たまには透析を休んでもいいと思うよ。")
        if stage == "dialogue" and n == 2:
            return "!fail server timed out"
        return None

    report = Synthesizer(store, RuleLLM(answers), SynthConfig(emotions=("Grief",), rounds=1), model="f").run()
    assert report.counts["rejected_dialogues"] == 1 and report.counts["failed_dialogues"] == 1
    with store.open_session() as s:
        by_state = {c.state: c for c in s.scalars(select(SynthCandidate).where(SynthCandidate.kind == "dialogue"))}
    assert "medical_advice" in by_state["rejected"].reason and "透析を休んでもいい" in by_state["rejected"].reason
    assert by_state["failed"].reason == "dialogue call failed: server timed out"


def test_interrupted_run_resumes_without_redoing_finished_calls(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Grief": 3})

    class Boom(Exception):
        pass

    def crash(stage: str, prompt: str, n: int) -> str | None:
        if stage == "dialogue" and n == 2:
            raise Boom  # not an LLMError: simulates a kill in the middle of stage (c)
        return None

    cfg = SynthConfig(emotions=("Grief",), rounds=1)
    first = RuleLLM(crash)
    report = Synthesizer(store, first, cfg, model="fake:rules").run()
    # the crash became a failed candidate (one bad item never sinks the batch); now simulate a true kill:
    assert report.counts["failed_dialogues"] == 1
    with store.transaction() as s:  # reopen one finished-but-unfiltered candidate as if the run died before filtering
        c = s.scalars(select(SynthCandidate).where(SynthCandidate.state == "failed")).one()
        c.state, c.reason, c.stages = State.OPEN, None, {}
    second = RuleLLM()
    Synthesizer(store, second, cfg, model="fake:rules").run()
    assert second.calls == {"dialogue": 1}  # only the open candidate; brainstorm/rewrite not redone
    assert counts(store)["Grief"] == 30


def test_concurrent_batches_persist_from_worker_threads(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Joy": 6, "Relief": 5})
    cfg = SynthConfig(emotions=("Joy", "Relief"), concurrency=4, per_situation=2)
    Synthesizer(store, RuleLLM(threads=4), cfg, model="fake:rules").run()
    assert counts(store)["Joy"] == 30 and counts(store)["Relief"] == 30


def test_model_filters_llm_safety_and_emotion_agreement(store: Store, tmp_path: Path) -> None:
    load_subset(store, tmp_path, drop={"Joy": 2})

    def unsafe_verdict(stage: str, prompt: str, n: int) -> str | None:
        return "判定：危険\n理由：診断を決めつけている。" if stage == "safety" and n == 1 else None

    cfg = SynthConfig(emotions=("Joy",), rounds=1,
                      filters=FilterConfig(llm_safety=True, emotion_agreement=True, agreement_top_k=1))
    # RuleLLM.score prefers the first label (Admiration): Joy is never top-1, so agreement rejects everything
    report = Synthesizer(store, RuleLLM(unsafe_verdict), cfg, model="fake:rules").run()
    assert report.counts["rejected_dialogues"] == 2 and report.counts.get("accepted_dialogues", 0) == 0
    with store.open_session() as s:
        rows = s.scalars(select(SynthCandidate).where(SynthCandidate.kind == "dialogue")).all()
        reasons = sorted(c.reason for c in rows)
    assert reasons[0].startswith("emotion_agreement: predictor does not recover Joy in its top 1 (top: Admiration)")
    assert reasons[1].startswith("llm_safety: the model judged it unsafe")
    ok = SynthConfig(emotions=("Joy",), rounds=1, filters=FilterConfig(emotion_agreement=True, agreement_top_k=28))
    assert Synthesizer(store, RuleLLM(), ok, model="fake:rules").run().counts["accepted_dialogues"] == 2


def test_cli_dry_run_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store(db)
    load_subset(store, tmp_path, drop={"Grief": 2})
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--model", "fake:rules", "-e", "Grief,Joy", "--dry-run", "--json", "--db", db])
    assert r.exit_code == 0, r.output
    rows = {x["emotion"]: x for x in json.loads(r.stdout)}
    assert rows["Grief"]["deficit"] == 2 and rows["Joy"]["deficit"] == 0
    monkeypatch.setattr("emplifai.llm.registry.load_model", lambda spec: RuleLLM())
    out = tmp_path / "rej.jsonl"
    r = runner.invoke(app, ["synth", "--model", "fake:rules", "-e", "悲嘆", "--json", "--db", db,
                            "--export-rejected", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"]["accepted_dialogues"] == 2 and out.read_text() == ""
    r = runner.invoke(app, ["synth", "--model", "fake:rules", "-e", "nope", "--dry-run", "--db", db])
    assert r.exit_code != 0 and "unknown emotion" in str(r.exception)


def test_base_models_get_few_shot_documents_through_complete(store: Store, tmp_path: Path) -> None:
    """prompt_style auto: a model known to be a base model (no chat template) is prompted with documents to
    continue; the dialogue's "患者：" written by the prompt is put back before the strict parser reads it."""
    load_subset(store, tmp_path, drop={"Grief": 2})
    base = RuleLLM(instruction_tuned=False)
    syn = Synthesizer(store, base, SynthConfig(emotions=("Grief",), shots=3), model="fake:base")
    assert syn.style == "completion"
    report = syn.run()
    assert report.counts["accepted_dialogues"] == 2 and counts(store)["Grief"] == 30
    assert base.completions == report.calls and report.calls >= 5  # brainstorm + 2 rewrites + 2 dialogues
    with store.open_session() as s:
        d = s.scalars(select(Dialogue).where(Dialogue.source == "synthetic")).first()
        prov = d.meta["synth"]
        assert prov["prompt_style"] == "completion"
        stage = prov["stages"]["dialogue"]
        assert stage["prefix"] == "患者：" and not stage["raw"].startswith("患者：")
        assert d.patient and d.supporter and len(stage["fewshot"]) == 3
    chat = Synthesizer(store, RuleLLM(), SynthConfig(emotions=("Grief",)), model="fake:base")
    assert chat.style == "chat" and chat.key != syn.key  # the two prompt styles never share candidates
    forced = Synthesizer(store, RuleLLM(), SynthConfig(emotions=("Grief",), prompt_style="completion"), model="x")
    assert forced.completion
