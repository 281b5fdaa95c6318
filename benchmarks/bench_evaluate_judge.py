"""Judge throughput: (dialogue × metric) judgements per second through the real judge pipeline (prompt build,
parse, retry, store), sequential vs concurrent against a local llama_cpp.server, and wall time per judgement on
the embedded model in process, extrapolated to the paper's 100 dialogues × 7 metrics.

The corpus's own dialogues of a seeded sample are judged (2 worked examples, the default prompt). Each level
uses its own judge label so nothing is skipped as already done. llama-cpp-python's server queues requests
rather than batching them, so little gain from concurrency is expected on it.

    python benchmarks/bench_evaluate_judge.py --items 4 --metrics fluency security \\
        --out results/bench_evaluate_judge.json
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
from emplifai.evaluate.rubrics import METRICS
from emplifai.evaluate.sample import make_sample
from emplifai.llm import embedded_model, load
from emplifai.llm.local_server import llama_server
from emplifai.store.db import Store


def _run(store: Store, llm, label: str, args: argparse.Namespace, concurrency: int) -> dict:
    cfg = JudgeConfig(spec=label, sources=("human",), metrics=tuple(args.metrics), concurrency=concurrency,
                      retries=args.retries, max_tokens=args.max_tokens, limit=args.items)
    start = time.perf_counter()
    r = judge(store, cfg, llm=llm)
    wall = time.perf_counter() - start
    n = r.scored + r.failed
    out = {"label": label, "concurrency": concurrency, "judgements": n, "valid": r.scored, "failed": r.failed,
           "llm_calls": r.attempts, "wall_s": round(wall, 2), "judgements_per_s": round(n / wall, 3),
           "s_per_judgement": round(wall / n, 2)}
    print(json.dumps(out), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=4, help="dialogues judged per level")
    ap.add_argument("--metrics", nargs="+", default=["fluency", "security"], choices=METRICS)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--retries", type=int, default=0, help="0 measures raw throughput; the CLI default is 2")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-in-process", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        import_file(store, bundled_corpus_path())
        make_sample(store, n=max(args.items, 10), seed=42)
        add_human(store)
        server_runs = []
        path, sha = embedded_model()
        with llama_server(path, n_threads=args.threads, n_ctx=2048) as base:
            llm = load(f"openai:gemma@{base}", timeout=600)
            from emplifai.llm import GenParams

            llm.chat([{"role": "user", "content": "こんにちは"}], GenParams(max_tokens=4))  # warm-up
            for conc in args.concurrency:
                server_runs.append(_run(store, llm, f"server-c{conc}", args, conc))
            llm.close()
        in_process = None
        if not args.skip_in_process:
            t0 = time.perf_counter()
            emb = load("embedded")
            load_s = time.perf_counter() - t0
            in_process = _run(store, emb, "embedded-inproc", args, 1)
            in_process["model_load_s"] = round(load_s, 2)
            per = in_process["wall_s"] / max(in_process["judgements"], 1)
            in_process["extrapolated_100x7_s"] = round(per * 700, 0)
            in_process["extrapolated_100x7_h"] = round(per * 700 / 3600, 2)
            in_process["extrapolated_note"] = (f"EXTRAPOLATED from {in_process['judgements']} judgements "
                                               f"({per:.2f} s each, retries={args.retries}); not measured on 700")
            emb.close()
        store.dispose()
    result = {"bench": "evaluate_judge", "machine_cpus": os.cpu_count(), "threads": args.threads,
              "items": args.items, "metrics": args.metrics, "max_tokens": args.max_tokens, "model_sha256": sha,
              "server": server_runs, "in_process": in_process}
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
