"""Sampling (seed 42, stored manifest) and generation parsing/flagging with the fake backend; both DBs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai.errors import UserError
from emplifai.evaluate.generate import add_human, generate
from emplifai.evaluate.sample import draw, make_sample, population
from emplifai.llm import FakeLLM
from emplifai.prompts.generation import instruction
from emplifai.store.evaluation import EvalSample, Generation
from emplifai.store.models import Situation
from tests.evaluate.fixtures import GOOD, corpus, count


def _manifest(store, name: str = "default") -> tuple[int, int, list[tuple[str, str]], dict]:
    with store.transaction() as s:
        smp = s.get(EvalSample, name)
        return smp.seed, smp.n, [(i.situation_id, i.emotion) for i in smp.items], dict(smp.meta)


def test_sample_seed_42_is_reproducible_and_stored(store, tmp_path: Path) -> None:
    from sklearn.utils import resample

    corpus(store, tmp_path, 30)
    r = make_sample(store, n=10, seed=42)
    assert (r.name, r.n, r.created) == ("default", 10, True)
    seed, n, items, meta = _manifest(store)
    with store.transaction() as s:
        pop = population(s)
    assert len(pop) == 30
    # exactly what scikit-learn draws for the paper's seed, in drawn order
    assert items == [tuple(x) for x in resample(pop, replace=False, n_samples=10, random_state=42)]
    assert (seed, n, meta["population"], meta["stratify"]) == (42, 10, 30, False)
    assert len(meta["population_sha256"]) == 64 and meta["sklearn"]
    # rerun: same items, nothing changes; another seed under the same name is refused
    assert make_sample(store, n=10, seed=42).created is False
    with pytest.raises(UserError, match="exists with other items"):
        make_sample(store, n=10, seed=7)
    assert make_sample(store, n=10, seed=7, name="other").created
    assert _manifest(store, "other")[2] != items
    assert draw(pop, 10, 42) == items


def test_sample_rejects_bad_n(store, tmp_path: Path) -> None:
    corpus(store, tmp_path, 5)
    with pytest.raises(UserError, match="only 5 situations"):
        make_sample(store, n=6)
    with pytest.raises(UserError, match="at least 1"):
        make_sample(store, n=0)


def _gens(store, source: str) -> list[Generation]:
    with store.transaction() as s:
        rows = list(s.scalars(select(Generation).where(Generation.source == source).order_by(Generation.id)))
        s.expunge_all()
        return rows


def test_generation_parse_and_flags(store, tmp_path: Path) -> None:
    corpus(store, tmp_path, 4)
    make_sample(store, n=4)
    english = ("患者：I have been so tired from the treatment lately.\n"
               "支援者：That sounds really hard, I am here for you.")
    llm = FakeLLM("gen").enqueue([
        GOOD,
        "もちろんです。以下が対話です。",  # no turn markers → malformed
        english,  # well-formed but not Japanese → flagged
        "患者：つらいです。\n支援者：",  # empty supporter turn → malformed
    ])
    r = generate(store, spec="fake:gen", llm=llm)
    assert (r.added, r.malformed, r.non_japanese, r.backend_failures) == (4, 2, 1, [])
    rows = _gens(store, "fake:gen")
    assert len(rows) == 4
    good = next(g for g in rows if g.raw == GOOD)
    assert (good.patient, good.malformed, good.non_japanese) == (GOOD.split("\n")[0][3:], None, False)
    assert good.supporter.startswith("それは本当に")
    bad = [g for g in rows if g.malformed is not None]
    assert sorted(g.raw for g in bad) == sorted(["もちろんです。以下が対話です。", "患者：つらいです。\n支援者："])
    assert all(isinstance(g.malformed, str) and g.malformed for g in bad)
    en = next(g for g in rows if g.raw == english)
    assert en.malformed is None and en.non_japanese and en.japanese_share < 0.5
    assert good.signature["spec"] == "fake:gen" and good.signature["llm"] == {"backend": "fake", "model": "gen"}
    # the crowd workers' Japanese instruction was the prompt
    with store.transaction() as s:
        sit = s.get(Situation, rows[0].situation_id)
        expected = instruction(sit.emotion, sit.text, "ja")
    assert llm.calls[0].input[-1].content == expected and "患者：" in expected
    # rerun resumes: nothing left to do, no LLM call
    r2 = generate(store, spec="fake:gen", llm=llm)
    assert (r2.added, r2.skipped, len(llm.calls)) == (0, 4, 4)


def test_backend_failure_not_stored_and_retried_on_rerun(store, tmp_path: Path) -> None:
    from emplifai.llm import LLMError

    corpus(store, tmp_path, 2)
    make_sample(store, n=2)
    llm = FakeLLM("gen").enqueue([LLMError("server down"), GOOD])
    r = generate(store, spec="fake:gen", llm=llm)
    assert r.added == 1 and len(r.backend_failures) == 1 and "server down" in r.backend_failures[0]
    llm.enqueue([GOOD])
    assert generate(store, spec="fake:gen", llm=llm).added == 1
    assert count(store, Generation) == 2


def test_human_source_and_reserved_name(store, tmp_path: Path) -> None:
    corpus(store, tmp_path, 3)
    make_sample(store, n=3)
    r = add_human(store)
    assert (r.added, r.malformed, r.non_japanese) == (3, 0, 0)
    assert add_human(store).skipped == 3
    rows = _gens(store, "human")
    assert all(g.patient.startswith("患者の発話") and g.supporter.startswith("支援者の返答") for g in rows)
    with pytest.raises(UserError, match="reserved"):
        generate(store, spec="fake:x", label="human", llm=FakeLLM("x"))


def test_a_negative_seed_is_a_clear_error(store) -> None:  # type: ignore[no-untyped-def]
    from emplifai.evaluate.sample import make_sample

    with pytest.raises(UserError, match="--seed must be a whole number from 0"):
        make_sample(store, n=2, seed=-1)
