"""Builders shared by the evaluation-stage tests (imported explicitly, not a conftest)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from emplifai.generate import add_human, generate
from emplifai.ingest import import_file
from emplifai.llm import FakeLLM
from emplifai.sample import make_sample
from emplifai.store.db import Store
from emplifai.store.evaluation import Generation, JudgeScore, Rating
from tests.helpers import record, write_jsonl

GOOD = "患者：最近、治療がつらくて眠れない日が続いています。\n支援者：それは本当にしんどいですね。話してくれてありがとう。"


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
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


__all__ = ["GOOD", "Generation", "JudgeScore", "Rating", "answer", "corpus", "count", "fake_generations",
           "human_sample"]
