"""Constrained judge answers: invalid-answer rate (before any retry) and judgements per second, with and
without the answer's JSON schema, on the embedded model in process (llama.cpp GBNF grammar) and on
llama_cpp.server on loopback (response_format json_object + schema, after its refusal of json_schema).

Retries are off, so every judgement is one LLM call and "invalid" is the share of first answers the parser
refuses. The corpus's own dialogues of a seeded sample are judged with the default prompt (2 worked examples).

    python benchmarks/bench_judge_constrained.py --items 4 --metrics general_empathy explorations \\
        --out results/bench_judge_constrained.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from emplifai.dataset.ingest import bundled_corpus_path, import_file
from emplifai.evaluate.generate import add_human
from emplifai.evaluate.judge import JudgeConfig, judge
from emplifai.evaluate.rubrics import JUDGE_METRICS
from emplifai.evaluate.sample import make_sample
from emplifai.llm import embedded_model, load
from emplifai.llm.local_server import llama_server
from emplifai.store.db import Store


def _run(store: Store, llm, label: str, args: argparse.Namespace, constrained: bool) -> dict:
    cfg = JudgeConfig(spec=label, sources=("human",), metrics=tuple(args.metrics), retries=0,
                      max_tokens=args.max_tokens, limit=args.items, constrained=constrained)
    start = time.perf_counter()
    r = judge(store, cfg, llm=llm)
    wall = time.perf_counter() - start
    n = r.scored + r.failed
    out = {"label": label, "constrained": constrained, "judgements": n, "invalid": r.invalid,
           "invalid_rate": round(r.invalid / n, 3) if n else None, "structured": r.structured,
           "wall_s": round(wall, 2), "judgements_per_s": round(n / wall, 3) if wall else None}
    print(json.dumps(out, ensure_ascii=False), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=4, help="dialogues judged per setting")
    ap.add_argument("--metrics", nargs="+", default=["general_empathy", "explorations"], choices=JUDGE_METRICS)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    results: dict = {"items": args.items, "metrics": args.metrics, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        import_file(store, bundled_corpus_path())
        make_sample(store, n=max(args.items, 10), seed=42)
        add_human(store)
        emb = load("embedded")
        for constrained in (False, True):
            results["runs"].append(_run(store, emb, f"embedded-{'grammar' if constrained else 'plain'}", args,
                                        constrained))
        emb.close()
        if not args.skip_server:
            path, _ = embedded_model()
            with llama_server(path, n_threads=args.threads, n_ctx=2048) as base:
                for constrained in (False, True):
                    llm = load(f"openai:gemma@{base}", timeout=600, extra_body={"repeat_penalty": 1.0})
                    results["runs"].append(_run(store, llm, f"server-{'schema' if constrained else 'plain'}",
                                                args, constrained))
                    llm.close()
    print("| setting | judgements | invalid first answers | judgements/s |", file=sys.stderr)
    print("|---|---|---|---|", file=sys.stderr)
    for r in results["runs"]:
        print(f"| {r['label']} | {r['judgements']} | {r['invalid']} ({r['invalid_rate']:.0%}) | "
              f"{r['judgements_per_s']} |", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
