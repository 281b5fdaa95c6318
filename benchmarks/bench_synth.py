"""Benchmark of `emplifai synth`: end-to-end items/s vs the raw generation throughput of the same backend
(the same conversations replayed straight through ``batch_chat``), with and without filters; and filter
precision/recall on the labelled sets tests/data/synth_filter_cases.jsonl and synth_filter_holdout.jsonl.

    python benchmarks/bench_synth.py --model fake-latency:0.2 --items 12
    python benchmarks/bench_synth.py --model embedded --items 2 --small
    python benchmarks/bench_synth.py --cases-only [--cases-model embedded]   # precision/recall only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_llm(spec: str) -> Any:
    if spec.startswith("fake-latency:"):
        from tests.synth.fixtures import RuleLLM

        delay = float(spec.split(":", 1)[1])

        class Slow(RuleLLM):
            def chat(self, messages, params=None):  # type: ignore[no-untyped-def]
                time.sleep(delay)  # stands in for model time
                return super().chat(messages, params)

        return Slow()
    from emplifai.llm import load as load_model

    return load_model(spec)


class Recording:
    """Wraps an LLM; keeps every batch it was asked for, to replay them raw."""

    def __init__(self, llm: Any):
        self.llm, self.batches = llm, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def batch_chat(self, convs, params=None, *, concurrency=1, progress=None):  # type: ignore[no-untyped-def]
        self.batches.append(("batch_chat", list(convs), params, concurrency))
        return self.llm.batch_chat(convs, params, concurrency=concurrency, progress=progress)

    def batch_complete(self, prompts, params=None, *, concurrency=1, progress=None):  # type: ignore[no-untyped-def]
        self.batches.append(("batch_complete", list(prompts), params, concurrency))
        return self.llm.batch_complete(prompts, params, concurrency=concurrency, progress=progress)


def throughput(spec: str, items: int, filters: bool, small: bool) -> dict[str, Any]:
    from emplifai.dataset.ingest import bundled_corpus_path, import_file
    from emplifai.store.db import Store
    from emplifai.synth import FilterConfig, SynthConfig, Synthesizer, TokenLimits

    tmp = Path(tempfile.mkdtemp())
    store = Store(f"sqlite:///{tmp / 'b.db'}")
    import_file(store, bundled_corpus_path())  # the full sample (840 dialogues): realistic duplicate indexes
    limits = TokenLimits(brainstorm=120, rewrite=100, dialogue=140) if small else TokenLimits()
    cfg = SynthConfig(
        emotions=("Grief",),
        target=30 + items,
        rounds=1,
        limit=items,
        max_tokens=limits,
        shots=1 if small else 2,
        filters=FilterConfig(enabled=filters),
    )
    llm = Recording(make_llm(spec))
    from emplifai.llm.base import GenParams

    llm.llm.chat([{"role": "user", "content": "こんにちは"}], GenParams(max_tokens=4))  # warm-up, not timed
    import datasketch  # noqa: F401

    from emplifai.synth import filters as _f  # noqa: F401  (imports datasketch; a one-off cost, not timed)

    t = time.perf_counter()
    report = Synthesizer(store, llm, cfg, model=spec).run()  # type: ignore[arg-type]
    total = time.perf_counter() - t
    t = time.perf_counter()
    for method, inputs, params, conc in llm.batches:
        getattr(llm.llm, method)(inputs, params, concurrency=conc)
    raw = time.perf_counter() - t
    llm.llm.close()
    c = report.counts
    done = c.get("accepted_dialogues", 0) + c.get("rejected_dialogues", 0) + c.get("failed_dialogues", 0)
    return {
        "model": spec,
        "prompt_style": Synthesizer(store, llm, cfg, model=spec).style,  # type: ignore[arg-type]
        "filters": filters,
        "dialogue_items": done,
        "accepted": c.get("accepted_dialogues", 0),
        "calls": report.calls,
        "pipeline_s": round(total, 3),
        "raw_generation_s": round(raw, 3),
        "items_per_s": round(done / total, 4) if total else None,
        "raw_items_per_s": round(done / raw, 4) if raw else None,
        "overhead": round((total - raw) / raw, 4) if raw else None,
        "reasons": dict(report.reasons),
    }


def cases(model: str | None) -> dict[str, Any]:
    from emplifai.dataset.ingest import bundled_corpus_path
    from emplifai.records import Record
    from emplifai.synth.config import FilterConfig
    from emplifai.synth.evaluate import load_cases, metrics, screen

    keys = ("dialogue_id", "situation_id", "emotion", "situation", "patient", "supporter")
    rows = map(json.loads, bundled_corpus_path().read_text("utf-8").splitlines())
    ref = [Record(**{k: r[k] for k in keys}) for r in rows]
    data = load_cases(ROOT / "tests" / "data" / "synth_filter_cases.jsonl")
    # written blind to the rules by someone who had not read filters.py (70 items, no wrong-emotion cases)
    holdout = load_cases(ROOT / "tests" / "data" / "synth_filter_holdout.jsonl")
    out = {"rules": metrics(screen(data, ref, FilterConfig())),
           "rules_holdout": metrics(screen(holdout, ref, FilterConfig()))}
    if model:
        llm = make_llm(model)
        cfg = FilterConfig(llm_safety=True, emotion_agreement=True, agreement_top_k=3)
        t = time.perf_counter()
        m = metrics(screen(data, ref, cfg, llm))
        out[f"rules+model({model})"] = m | {"seconds": round(time.perf_counter() - t)}
        llm.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fake-latency:0.2")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--small", action="store_true", help="short max_tokens and 1 shot (CPU-only embedded model)")
    ap.add_argument("--cases-only", action="store_true")
    ap.add_argument("--cases-model", default=None, help="also run the model filters on the labelled set")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    result: dict[str, Any] = {"cases": cases(a.cases_model)}
    if not a.cases_only:
        result["throughput"] = [throughput(a.model, a.items, f, a.small) for f in (True, False)]
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
