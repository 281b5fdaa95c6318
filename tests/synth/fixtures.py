"""A rule-based fake LLM for the synth tests: answers each stage's prompt in the expected format, with varied
text (seeded by the prompt) so that candidates are not near duplicates of each other. ``override`` lets a test
replace the answer of a stage (e.g. English, unsafe advice) to exercise the filters."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from emplifai.dataset.ingest import bundled_corpus_path, import_file
from emplifai.llm.base import LLM, Completion, GenParams, LLMError, LLMFailure, MessagesLike, to_messages
from emplifai.store.db import Store

WORDS = ("朝", "夕方", "病院", "待合室", "主治医", "看護師さん", "検査結果", "血糖値", "血圧", "家族", "娘",
         "息子", "夫",
         "妻", "職場", "同僚", "散歩", "食事", "薬局", "通院", "リハビリ", "友人", "手紙", "電話", "季節", "桜", "雨",
         "階段", "台所", "お茶", "日記", "趣味", "庭", "孫", "母", "父", "週末", "旅行", "写真", "音楽", "本", "駅",
         "バス", "買い物", "料理", "眠り", "夢", "窓", "空", "笑顔", "涙", "声", "手", "足", "背中", "胸", "心", "毎日")


def stage_of(text: str) -> str:
    if "具体的な場面を" in text or "きっかけの出来事" in text:
        return "brainstorm"
    if "一人称で語る" in text:
        return "rewrite"
    if "安全確認" in text:
        return "safety"
    return "dialogue"


def phrase(rng: random.Random, n: int) -> str:
    return "、".join("と".join(rng.sample(WORDS, 2)) for _ in range(n))


class RuleLLM(LLM):
    spec = "fake:rules"

    def __init__(self, override: Callable[[str, str, int], str | None] | None = None, threads: int = 1,
                 instruction_tuned: bool | None = None):
        self.override, self.threads, self.instruction_tuned = override, threads, instruction_tuned
        self.completions = 0
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def signature(self) -> dict[str, Any]:
        return {"backend": "fake", "model": "rules"}

    def complete(self, prompt: str, params: GenParams | None = None) -> Completion:
        """A base model continuing a few-shot document: the list's next lines, the situation's line, or the
        dialogue after the "患者：" that the prompt already wrote."""
        with self._lock:
            self.completions += 1
        c = self.chat([{"role": "user", "content": prompt}], params)
        stage = stage_of(prompt)
        if stage == "brainstorm":
            return Completion(text="\n".join(line.split(". ", 1)[-1] for line in c.text.splitlines()) + "\n\n例",
                              finish_reason="stop")
        if stage == "dialogue":
            return Completion(text=c.text.removeprefix("患者："), finish_reason="stop")
        return c

    def score(self, prompt: str, candidates: Sequence[str]) -> list[float]:
        return [-float(i) for i in range(len(candidates))]

    def chat(self, messages: MessagesLike, params: GenParams | None = None) -> Completion:
        last = to_messages(messages)[-1].content
        stage = stage_of(last)
        with self._lock:
            n = self.calls[stage] = self.calls.get(stage, 0) + 1
        seed = int(hashlib.sha256(last.encode()).hexdigest()[:12], 16) + (params.seed if params else 0)
        rng = random.Random(seed)
        text = self.override(stage, last, n) if self.override else None
        if text is None:
            text = self._answer(stage, last, rng)
        if text.startswith("!fail"):
            raise LLMError(text.removeprefix("!fail").strip())
        return Completion(text=text, finish_reason="stop")

    def _answer(self, stage: str, prompt: str, rng: random.Random) -> str:
        if stage == "brainstorm":
            n = int(prompt.split("具体的な場面を")[1].split("個")[0]) if "具体的な場面を" in prompt else 4
            return "\n".join(f"{i + 1}. {phrase(rng, 3)}のことで気持ちが動いた場面。" for i in range(n))
        if stage == "rewrite":
            return f"先日、{phrase(rng, 3)}のことがありました。{phrase(rng, 2)}を思い出して、胸がいっぱいになりました。"
        if stage == "safety":
            return "判定：安全\n理由：問題のある内容はありません。"
        return (f"患者：この前、{phrase(rng, 3)}のことがあってね。{phrase(rng, 2)}を思うと胸がいっぱいで。\n"
                f"支援者：{phrase(rng, 2)}のこと、話してくれてありがとう。"
                f"{phrase(rng, 2)}まで思い出すと、胸にくるよね。")

    def batch_chat(self, conversations: Sequence[MessagesLike], params: GenParams | None = None, *,
                   concurrency: int = 1, progress: Any = None) -> list[Completion | LLMFailure]:
        if self.threads <= 1:
            return super().batch_chat(conversations, params, concurrency=concurrency, progress=progress)
        # like the HTTP backends: results in input order, progress called from worker threads

        def one(i: int) -> Completion | LLMFailure:
            r = self._chat_or_failure(conversations[i], params)
            if progress is not None:
                progress(i, r)
            return r

        with ThreadPoolExecutor(self.threads) as ex:
            return list(ex.map(one, range(len(conversations))))


EMOTIONS = ("Grief", "Relief", "Joy")


def load_subset(store: Store, tmp: Path, drop: dict[str, int] | None = None) -> None:
    """Sample dialogues of three emotions; ``drop`` removes the last n dialogues of an emotion (imbalance)."""
    rows = [json.loads(x) for x in bundled_corpus_path().read_text("utf-8").splitlines()]
    rows = [r for r in rows if r["emotion"] in EMOTIONS]
    for emo, n in (drop or {}).items():
        ids = [r["dialogue_id"] for r in rows if r["emotion"] == emo][-n:]
        rows = [r for r in rows if r["dialogue_id"] not in ids]
    path = tmp / "subset.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    import_file(store, path)
