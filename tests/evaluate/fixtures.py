"""Builders shared by the evaluation-stage tests (imported explicitly, not a conftest)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from emplifai.dataset import ingest
from emplifai.dataset.ingest import import_file
from emplifai.evaluate.generate import add_human, generate
from emplifai.evaluate.sample import make_sample
from emplifai.llm import FakeLLM
from emplifai.prompts.generation import format_dialogue
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore, Rating
from tests.helpers import record, write_jsonl

GOOD = ("患者：最近、治療がつらくて眠れない日が続いています。\n"
        "支援者：それは本当にしんどいですね。話してくれてありがとう。")


def corpus(store: Store, tmp: Path, n_situations: int) -> None:
    """One live dialogue per situation, ``n_situations`` situations."""
    path = write_jsonl(tmp / "corpus.jsonl", [record(i, sit=i) for i in range(n_situations)])
    import_file(store, path)


def human_sample(store: Store, tmp: Path, n: int, seed: int = 42) -> None:
    corpus(store, tmp, n)
    make_sample(store, n=n, seed=seed)
    add_human(store)


def fake_generations(store: Store, name: str, texts: list[str]) -> None:
    """Generations of source ``fake:NAME`` with the given raw outputs, in sample order."""
    llm = FakeLLM(name).enqueue(texts)
    generate(store, spec=f"fake:{name}", llm=llm)


def answer(score: object, feedback: str = "共感が丁寧に示されている。") -> str:
    import json

    return json.dumps({"feedback": feedback, "score": score}, ensure_ascii=False)


def count(store: Store, model: type) -> int:
    with store.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def judge_answer(score: object, feedback: str = "根拠です。") -> str:
    return answer(score, feedback)


def seeded_store(store: Store, n: int = 4, *, model: str | None = "fake:gen", malformed: int = 1) -> Store:
    """Bundled sample corpus + a sample of n + the human source (+ a fake model source, `malformed` bad outputs)."""
    ingest.import_file(store, ingest.bundled_corpus_path())
    make_sample(store, n=n, seed=42)
    add_human(store)
    if model is not None:
        gen = FakeLLM.named(model.split(":", 1)[1])
        gen.enqueue(["これは形式に従っていない出力です。"] * malformed
                    + [format_dialogue(f"患者の話{i}です。", f"支援者の返事{i}です。") for i in range(n - malformed)])
        generate(store, spec=model)
    return store


__all__ = ["GOOD", "Generation", "JudgeScore", "Rating", "answer", "corpus", "count", "fake_generations",
           "human_sample", "judge_answer", "seeded_store"]
