"""Throughput of ``batch_chat`` over HTTP at concurrency 1, 4 and 16, against a local llama_cpp.server.

The script starts the server itself (embedded Gemma 3 270M, loopback). llama-cpp-python's server queues
requests instead of batching them, so expect little gain from concurrency here; the same script pointed at
a batching server (``--url`` to a vLLM instance) is where concurrency pays.

    python benchmarks/bench_llm_openai.py --items 16 --out results/bench_llm_openai.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from emplifai.llm import Completion, GenParams, embedded_model, load
from emplifai.llm.local_server import llama_server

SITUATIONS = [
    "手術の前の晩、怖くて眠れません。",
    "検査の結果が良くて、ほっとしました。",
    "母の介護で疲れてしまいました。",
    "先生の説明がよく分からず、混乱しています。",
    "退院の日が決まって嬉しいです。",
    "薬の副作用がつらいです。",
    "家族がお見舞いに来てくれました。",
    "リハビリがなかなか進まず、焦っています。",
]


@contextlib.contextmanager
def server(url: str | None, threads: int) -> Iterator[str]:
    if url:
        yield url
        return
    path, _ = embedded_model()
    with llama_server(path, n_threads=threads, n_ctx=2048) as base:
        yield base


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--repeats", type=int, default=2, help="rounds over all levels, interleaved (noise)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="server threads")
    ap.add_argument("--url", default=None, help="use this server instead of starting llama_cpp.server")
    ap.add_argument("--model", default="gemma", help="model name sent to the server")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    convs = [
        [{"role": "user", "content": f"次の患者の言葉に、共感的に一文で返答してください。\n患者：{s}"}]
        for s in (SITUATIONS * (args.items // len(SITUATIONS) + 1))[: args.items]
    ]
    params = GenParams(max_tokens=args.max_tokens)
    runs = []
    load_before = os.getloadavg()
    with server(args.url, args.threads) as base:
        llm = load(f"openai:{args.model}@{base}", timeout=600)
        llm.batch_chat(convs[:1], params)  # warm-up (first request pays for graph setup)
        for rnd, conc in ((r, c) for r in range(args.repeats) for c in args.concurrency):
            start = time.perf_counter()
            done_at: list[float] = []
            out = llm.batch_chat(
                convs, params, concurrency=conc, progress=lambda i, r, d=done_at: d.append(time.perf_counter())
            )
            wall = time.perf_counter() - start
            ok = [r for r in out if isinstance(r, Completion)]
            run = {
                "round": rnd,
                "concurrency": conc,
                "items": len(convs),
                "ok": len(ok),
                "wall_s": round(wall, 2),
                "items_per_s": round(len(convs) / wall, 3),
                "completion_tokens_per_s": round(sum(r.completion_tokens or 0 for r in ok) / wall, 1),
                "first_done_s": round(min(done_at) - start, 2),
                "median_done_s": round(statistics.median(done_at) - start, 2),
            }
            runs.append(run)
            print(json.dumps(run), file=sys.stderr)
        llm.close()
    summary = []
    for conc in args.concurrency:
        mine = [r for r in runs if r["concurrency"] == conc]
        summary.append({
            "concurrency": conc,
            "median_items_per_s": round(statistics.median(r["items_per_s"] for r in mine), 3),
            "median_wall_s": round(statistics.median(r["wall_s"] for r in mine), 2),
            "median_completion_tokens_per_s": round(statistics.median(r["completion_tokens_per_s"] for r in mine), 1),
        })  # fmt: skip
    result = {
        "benchmark": "llm_openai_batch_chat",
        "server": args.url or "llama_cpp.server (embedded Gemma 3 270M Q4_K_M, loopback)",
        "server_threads": args.threads,
        "max_tokens": args.max_tokens,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "llama_cpp_python": metadata.version("llama-cpp-python"),
        "summary": summary,
        "runs": runs,
    }
    print(f"{'conc':>5} {'items/s':>8} {'tok/s':>7} {'wall s':>7}   medians of {args.repeats} rounds", file=sys.stderr)
    for r in summary:
        line = (
            f"{r['concurrency']:>5} {r['median_items_per_s']:>8.3f} {r['median_completion_tokens_per_s']:>7.1f} "
            f"{r['median_wall_s']:>7.1f}"
        )
        print(line, file=sys.stderr)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
