"""Builders shared by the evaluation tests: a store with the sample corpus, a sample and generations."""

from __future__ import annotations

import json

from emplifai import ingest
from emplifai.generate import add_human, generate
from emplifai.llm.fake import FakeLLM
from emplifai.prompts.generation import format_dialogue
from emplifai.sample import make_sample
from emplifai.store.db import Store


def judge_answer(score: object, feedback: str = "根拠です。") -> str:
    return json.dumps({"feedback": feedback, "score": score}, ensure_ascii=False)


def seeded_store(store: Store, n: int = 4, *, model: str | None = "fake:gen", malformed: int = 1) -> Store:
    """Sample corpus + a sample of n + the human source (+ a fake model source with `malformed` bad outputs)."""
    ingest.import_file(store, ingest.sample_path())
    make_sample(store, n=n, seed=42)
    add_human(store)
    if model is not None:
        gen = FakeLLM.named(model.split(":", 1)[1])
        gen.enqueue(["これは形式に従っていない出力です。"] * malformed
                    + [format_dialogue(f"患者の話{i}です。", f"支援者の返事{i}です。") for i in range(n - malformed)])
        generate(store, spec=model)
    return store
