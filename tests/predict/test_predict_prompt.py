"""The prediction prompt: the 28 Japanese labels, and few-shot examples from the training split only."""

from __future__ import annotations

from pathlib import Path

from emplifai import taxonomy
from emplifai.llm.fake import FakeLLM
from emplifai.predict import prompt as predict_prompt
from emplifai.predict import runs
from emplifai.records import Record
from emplifai.store.db import Store
from tests.predict.fixtures import seed_store


def _rec(i: int, emotion: str, sit: str | None = None) -> Record:
    return Record(dialogue_id=f"d{i}", situation_id=sit or f"s{i}", emotion=emotion, situation=f"状況{i}",
                  patient=f"患者{i}", supporter=f"支援者{i}", source="sample")


def test_prompt_lists_all_28_japanese_labels_and_ends_with_the_answer_slot() -> None:
    prompt = predict_prompt.build_prompt("通院の帰り道", "疲れました", "お疲れさまでした")
    listed = [ln[2:].split("：")[0] for ln in prompt.splitlines() if ln.startswith("- ")]
    assert listed == [lab.ja for lab in taxonomy.LABELS]
    assert taxonomy.LABELS[0].definition_ja in prompt
    assert "状況：通院の帰り道\n患者：疲れました\n支援者：お疲れさまでした\n感情：" in prompt
    assert prompt.endswith("感情：")
    bare = predict_prompt.build_prompt("x", "y", "z", definitions=False)
    assert taxonomy.LABELS[0].definition_ja not in bare
    assert [ln[2:] for ln in bare.splitlines() if ln.startswith("- ")] == [lab.ja for lab in taxonomy.LABELS]


def test_candidates_are_the_labels_followed_by_an_end_marker() -> None:
    assert predict_prompt.candidates() == [lab.ja + "\n" for lab in taxonomy.LABELS]


def test_examples_never_include_the_item_or_its_situation() -> None:
    pool = [_rec(i, lab.en) for i, lab in enumerate(taxonomy.LABELS)]
    ranked = predict_prompt.choose_examples(pool, seed=1)
    assert len(ranked) == 28 and len({e.label for e in ranked}) == 28
    assert ranked == predict_prompt.choose_examples(pool, seed=1)  # fixed for a seed: the prompt prefix is shared
    item = pool[5]
    same_situation = _rec(99, "Joy", sit=ranked[0].situation_id)
    for it in (item, same_situation):
        exs = predict_prompt.examples_for(it, ranked, 4)
        assert len(exs) == 4
        assert all(e.dialogue_id != it.dialogue_id and e.situation_id != it.situation_id for e in exs)
    shots = predict_prompt.examples_for(item, ranked, 2)
    prompt = predict_prompt.build_prompt(item.situation, item.patient, item.supporter, shots)
    assert prompt.count("感情：") == 3 and prompt.index(ranked[0].situation) < prompt.index("状況：状況5")


def test_few_shot_examples_come_from_the_training_split_only(store: Store, tmp_path: Path) -> None:
    seed_store(store, tmp_path)
    items, pool, *_ = runs.select_items(store, "test", None)
    train_sits = {r.situation for r in pool}
    other_sits = {r.situation for r in items} | {r.situation for r in runs.select_items(store, "validation", None)[0]}
    assert items and pool and not train_sits & {r.situation for r in items}
    llm = FakeLLM("echo")  # scores by candidate length; records every prompt
    runs.predict_split(store, llm, "fake:echo", runs.PredictConfig(mode="score", shots=3), split="test")
    prompts = [c.input[0] for c in llm.calls]
    assert len(prompts) == len(items)
    for item, prompt in zip(items, prompts, strict=True):
        shown = [ln[3:] for ln in prompt.split("\n感情：候補")[0].splitlines() if ln.startswith("状況：")]
        assert len(shown) == 4 and shown[-1] == item.situation.strip()
        assert all(s in train_sits and s not in other_sits for s in shown[:-1])
