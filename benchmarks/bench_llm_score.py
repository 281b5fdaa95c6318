"""Label scoring cost on the embedded model: prefix-cached ``score()`` vs the alternatives.

For each item (a ~300-token Japanese prompt that lists the 28 emotion labels), time
  prompt   evaluating the prompt alone (the floor for any scoring method),
  score    ``LLM.score(prompt, 28 labels)``: the prompt once (its cached whole chunks reused from the previous
           item), then all labels in one batch, one sequence per label sharing the prompt's KV cells,
  naive    28 independent evaluations of prompt + label (what scoring costs without the KV cache),
and report how far the two methods' scores are apart (llama.cpp rounds differently for different batch
shapes, so they are close, not identical). benchmarks/bench_llm_reuse.py measures the same against the code
before issue 16, interleaved, on the demo's prompts.

    python benchmarks/bench_llm_score.py --items 3 --out results/bench_llm_score.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np

from emplifai.llm import load
from emplifai.llm.llamacpp import LlamaCppLLM

T = TypeVar("T")

LABELS = [
    "称賛", "娯楽", "承認", "思いやり", "願望", "興奮", "感謝", "喜び", "愛", "楽観",
    "誇り", "安心", "怒り", "迷惑", "失望", "不承認", "嫌悪", "恥ずかしさ", "恐れ", "嘆き",
    "緊張", "後悔", "悲しみ", "混乱", "好奇心", "気づき", "驚き", "平静",
]  # fmt: skip

DIALOGUES = [
    (
        "先週、母の手術が無事に終わりました。先生や看護師さんが毎日声をかけてくださって、家族みんなで本当に"
        "心強かったです。退院の日には母も笑顔で、思わず涙が出てしまいました。",
        "お母様の手術が無事に終わって、本当によかったですね。ご家族の支えも大きかったと思います。",
    ),
    (
        "来週、初めて内視鏡検査を受けることになりました。ネットで調べるほど怖くなってしまって、夜もなかなか"
        "眠れません。もし悪い結果が出たらと思うと、仕事にも集中できないんです。",
        "初めての検査だと不安になりますよね。眠れないほど心配なお気持ち、よく伝わってきます。",
    ),
    (
        "父の介護を続けて三年になります。最近は物忘れがひどくなって、同じことを何度も聞かれるたびに、つい"
        "きつい言い方をしてしまいます。あとで自分が嫌になって、落ち込むことばかりです。",
        "長い間の介護、本当にお疲れさまです。ご自分を責めてしまうほど、真剣に向き合ってこられたのですね。",
    ),
]


def build_prompt(patient: str, supporter: str) -> str:
    labels = "、".join(LABELS)
    return (
        "以下は医療・介護の場面での患者と支援者の対話です。患者の発話に最もよく表れている感情を、"
        f"次の28種類の感情ラベルから一つ選んでください。\n感情ラベル：{labels}\n"
        "ラベルの意味：喜びや感謝のような肯定的な感情、恐れや悲しみのような否定的な感情、"
        "驚きや混乱のようなどちらともいえない感情が含まれます。答えはラベル名だけを書いてください。\n\n"
        f"患者：{patient}\n支援者：{supporter}\n\n感情："
    )


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=3, help="number of prompts (cycles through 3 dialogues)")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all cores)")
    ap.add_argument("--skip-naive", action="store_true", help="skip the slow 28-evaluations baseline")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    llm = load("embedded", n_ctx=2048, n_threads=args.threads)
    assert isinstance(llm, LlamaCppLLM)
    load_before = os.getloadavg()
    rows = []
    for i in range(args.items):
        prompt = build_prompt(*DIALOGUES[i % len(DIALOGUES)])
        n_tokens = len(llm.tokenize(prompt))
        cand_tokens = [len(llm.tokenize(prompt + lab)) - n_tokens for lab in LABELS]

        def prompt_only(p: str = prompt) -> None:
            with llm._lock:  # benchmark-only peek at internals: evaluate the prompt from a cleared cache
                llm._clear()
                llm._eval_last(llm.tokenize(p))

        t_prompt, _ = timed(prompt_only)
        t_score, cached = timed(lambda p=prompt: llm.score(p, LABELS))
        row = {
            "item": i,
            "prompt_tokens": n_tokens,
            "label_tokens_total": sum(cand_tokens),
            "prompt_s": round(t_prompt, 3),
            "score_s": round(t_score, 3),
            "best_label": LABELS[int(np.argmax(cached))],
        }
        if not args.skip_naive:
            t_naive, naive = timed(lambda p=prompt: llm.score_reference(p, LABELS, single_pass=True))
            diff = np.abs(np.array(cached) - np.array(naive))
            row |= {
                "naive_s": round(t_naive, 3),
                "speedup_vs_naive": round(t_naive / t_score, 1),
                "max_abs_diff": round(float(diff.max()), 4),
                "mean_abs_diff": round(float(diff.mean()), 4),
                "same_best_label": bool(np.argmax(cached) == np.argmax(naive)),
            }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr)
    llm.close()

    result = {
        "benchmark": "llm_score",
        "model": "embedded (Gemma 3 270M Q4_K_M)",
        "labels": len(LABELS),
        "threads": args.threads or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "llama_cpp_python": metadata.version("llama-cpp-python"),
        "python": platform.python_version(),
        "items": rows,
        "median": {
            k: statistics.median(r[k] for r in rows) for k in ("prompt_s", "score_s", "naive_s") if k in rows[0]
        },
    }
    _print_table(rows)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


def _print_table(rows: list[dict]) -> None:
    head = f"{'item':>4} {'tokens':>6} {'prompt s':>9} {'score s':>8} {'naive s':>8} {'speedup':>8} {'max|d|':>7}"
    print(head, file=sys.stderr)
    for r in rows:
        print(
            f"{r['item']:>4} {r['prompt_tokens']:>6} {r['prompt_s']:>9.2f} {r['score_s']:>8.2f} "
            f"{r.get('naive_s', float('nan')):>8.2f} {r.get('speedup_vs_naive', float('nan')):>8.1f} "
            f"{r.get('max_abs_diff', float('nan')):>7.3f}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
