"""In-process LLM stages before ÷ after the decode schedule of issue 16 (prefix reuse, batched candidates,
score-only judge), measured interleaved in one run on the embedded Gemma 3 270M.

Two worker processes load the embedded model: ``before`` imports emplifai from another source tree (``--before``,
e.g. the main worktree before the change), ``after`` from this one. The driver sends both the same work item by
item, alternating which goes first, so both see the same machine load:

* predict, score mode, on the demo's 84 test items (bundled corpus, split seed 42, labels without definitions,
  no shots, as ``configs/demo.toml``): seconds per item of ``score(prompt, 28 labels)`` in run order (the
  marginal cost of one more item), and of one evaluation of the same prompt from an empty cache;
* judge, in process: seconds per judgement of the default judge (rubric + 2 worked examples, JSON answer, up to
  160 tokens, metric by metric), and in ``after`` of the score-only mode; with the agreement of the scores.

    python benchmarks/bench_llm_reuse.py --before /work/main/src --items 84 --judge-items 6 \\
        --out results/bench_llm_reuse.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
METRICS = ("general_empathy", "emotion_empathy")


# ------------------------------------------------------------------------------------------------- worker
def worker() -> None:
    """Answer one JSON command per stdin line with one JSON line (timings measured here, around the call)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from emplifai.llm import GenParams, load
    from emplifai.predict.prompt import candidates
    from emplifai.prompts import judge as jp

    llm = load("embedded", n_ctx=2048)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op, t0 = cmd["op"], time.perf_counter()
        if op == "score":
            out: Any = llm.score(cmd["prompt"], candidates())
        elif op == "prompt_alone":
            with llm._lock:  # one evaluation of the prompt from an empty cache
                llm._clear()
                llm._eval_last(llm.tokenize(cmd["prompt"]))
            out = None
        elif op == "judge":  # the default judge's attempts: greedy, then 2 retries at 0.7 (evaluate.judge._params)
            out = {"score": None, "attempts": 0}
            for attempt in range(3):
                params = GenParams(max_tokens=160, temperature=0.0 if attempt == 0 else 0.7, seed=42 + 1000 * attempt,
                                   stop=("}",))
                text = llm.chat(cmd["messages"], params).text
                fixed = text if text.rstrip().endswith("}") else text + "}"
                out = {"score": jp.parse_judgement(fixed).score, "attempts": attempt + 1}
                if out["score"] is not None:
                    break
        elif op == "score_only":
            read = jp.expected_score(llm.score(llm.render_chat(cmd["messages"]) + jp.SCORE_PREFIX, jp.SCORE_DIGITS))
            out = {"score": read[0], "weighted": read[1]} if read else None
        else:
            raise SystemExit(f"unknown op {op}")
        print(json.dumps({"s": time.perf_counter() - t0, "out": out}), flush=True)


class Worker:
    def __init__(self, name: str, src: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_WAIT_POLICY": "PASSIVE"}
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(HERE), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.name} died")
        return line

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------------------------- driver
def demo_prompts(n: int) -> list[str]:
    from emplifai.dataset.ingest import bundled_corpus_path, import_file
    from emplifai.dataset.splits import make_split
    from emplifai.predict.prompt import build_prompt
    from emplifai.predict.runs import select_items
    from emplifai.store.db import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        import_file(store, bundled_corpus_path())
        make_split(store, seed=42)
        items, *_ = select_items(store, "test", None)
        store.dispose()
    return [build_prompt(it.situation, it.patient, it.supporter, [], definitions=False) for it in items[:n]]


def judge_messages(n: int) -> list[list[dict[str, str]]]:
    from emplifai.dataset.ingest import bundled_corpus_path
    from emplifai.prompts import judge as jp

    rows = [json.loads(line) for line in bundled_corpus_path().open(encoding="utf-8")]
    rows = rows[:: max(1, len(rows) // n)][:n]
    return [jp.messages(m, emotion=r["emotion"], situation=r["situation"], patient=r["patient"],
                        supporter=r["supporter"], shots=2) for m in METRICS for r in rows]


def score_only_messages(n: int) -> list[list[dict[str, str]]]:
    from emplifai.dataset.ingest import bundled_corpus_path
    from emplifai.prompts import judge as jp

    rows = [json.loads(line) for line in bundled_corpus_path().open(encoding="utf-8")]
    rows = rows[:: max(1, len(rows) // n)][:n]
    return [jp.messages(m, emotion=r["emotion"], situation=r["situation"], patient=r["patient"],
                        supporter=r["supporter"], shots=2, score_only=True) for m in METRICS for r in rows]


def interleaved(workers: list[Worker], i: int, **cmd: Any) -> dict[str, dict[str, Any]]:
    order = workers if i % 2 == 0 else list(reversed(workers))
    return {w.name: w.ask(**cmd) for w in order}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--before", type=Path, required=False, help="src/ folder of the code before the change")
    ap.add_argument("--items", type=int, default=84)
    ap.add_argument("--judge-items", type=int, default=6, help="dialogues per metric (2 metrics)")
    ap.add_argument("--parts", nargs="+", default=["predict", "judge", "score-only-run"],
                    choices=["predict", "judge", "score-only-run"],
                    help="score-only-run: the score-only judge alone, consecutively (its real order), in after")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.worker:
        worker()
        return {}
    if args.before is None:
        ap.error("--before is required")
    prompts = demo_prompts(args.items) if "predict" in args.parts else []
    before, after = Worker("before", args.before), Worker("after", HERE.parents[1] / "src")
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    predict: dict[str, list[float]] = {"before_score": [], "after_score": [], "before_prompt": [], "after_prompt": [],
                                       "before_score_sub": []}
    diffs, same_top = [], 0
    for i, p in enumerate(prompts):
        s = interleaved([before, after], i, op="score", prompt=p)
        # the prompt alone: every item in ``after``; every 4th in ``before`` (its ratio is the 1.97×)
        a = interleaved([before, after] if i % 4 == 0 else [after], i, op="prompt_alone", prompt=p)
        for name in ("before", "after"):
            predict[f"{name}_score"].append(s[name]["s"])
        predict["after_prompt"].append(a["after"]["s"])
        if "before" in a:
            predict["before_prompt"].append(a["before"]["s"])
            predict["before_score_sub"].append(s["before"]["s"])
        b_sc, a_sc = s["before"]["out"], s["after"]["out"]
        diffs.append(max(abs(x - y) for x, y in zip(b_sc, a_sc, strict=True)))
        same_top += b_sc.index(max(b_sc)) == a_sc.index(max(a_sc))
        print(f"predict {i + 1}/{len(prompts)}: before {s['before']['s']:.2f}s after {s['after']['s']:.2f}s "
              f"prompt {a['after']['s']:.2f}s", file=sys.stderr, flush=True)
    judge: dict[str, list[Any]] = {"before_s": [], "after_s": [], "score_only_s": [], "before": [], "after": [],
                                   "score_only": [], "weighted": []}
    pairs = list(zip(judge_messages(args.judge_items), score_only_messages(args.judge_items), strict=True))
    for i, (msgs, so_msgs) in enumerate(pairs if "judge" in args.parts else []):
        r = interleaved([before, after], i, op="judge", messages=msgs)
        so = after.ask(op="score_only", messages=so_msgs)
        for name in ("before", "after"):
            judge[f"{name}_s"].append(r[name]["s"])
            judge[name].append(r[name]["out"]["score"])
        judge["score_only_s"].append(so["s"])
        judge["score_only"].append(so["out"]["score"] if so["out"] else None)
        judge["weighted"].append(so["out"]["weighted"] if so["out"] else None)
        print(f"judge {i + 1}: before {r['before']['s']:.2f}s after {r['after']['s']:.2f}s score-only "
              f"{so['s']:.2f}s", file=sys.stderr, flush=True)
    run: dict[str, list[Any]] = {"s": [], "scores": []}
    for _msgs, so_msgs in pairs if "score-only-run" in args.parts else []:
        # metric by metric with nothing in between, as `emplifai judge --score-only` runs: the rubric is reused
        so = after.ask(op="score_only", messages=so_msgs)
        run["s"].append(so["s"])
        run["scores"].append(so["out"])
    before.close()
    after.close()
    result = {
        "benchmark": "llm_reuse", "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(), "before_src": str(args.before),
        "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - t_start, 1), "items": len(prompts),
        "predict": _predict_summary(predict, diffs, same_top) if prompts else None,
        "judge": _judge_summary(judge) if judge["after"] else None,
        "score_only_run": {
            "s_per_judgement": round(statistics.fmean(run["s"]), 2) if run["s"] else None,
            # the same numbers as in the interleaved pass: the cache state never changes a value
            "same_as_interleaved": [o["score"] if o else None for o in run["scores"]] == judge["score_only"]
            and [o["weighted"] if o else None for o in run["scores"]] == judge["weighted"] if judge["after"] else None,
            "scores": run["scores"],
        },
    }
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


def _predict_summary(t: dict[str, list[float]], diffs: list[float], same_top: int) -> dict[str, Any]:
    tot = {k: sum(v) for k, v in t.items()}
    med = {k: statistics.median(v) for k, v in t.items()}
    return {
        "total_s": {k: round(v, 2) for k, v in tot.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        # per-item cost of score mode ÷ one evaluation of the same prompt from an empty cache (goal ≤ 1.0)
        "score_over_prompt_after": round(tot["after_score"] / tot["after_prompt"], 2),
        "score_over_prompt_before": round(tot["before_score_sub"] / tot["before_prompt"], 2),
        "predict_before_over_after": round(tot["before_score"] / tot["after_score"], 2),
        "max_abs_diff_before_after": round(max(diffs), 4), "median_abs_diff_before_after": round(
            statistics.median(diffs), 4), "same_top1_before_after": same_top,
    }


def _judge_summary(j: dict[str, list[Any]]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    n = len(j["after"])
    pairs = [(a, s, w) for a, s, w in zip(j["after"], j["score_only"], j["weighted"], strict=True)
             if a is not None and s is not None]
    out: dict[str, Any] = {
        "judgements": n,
        "s_per_judgement": {k: round(statistics.fmean(j[f"{k}_s"]), 2) for k in ("before", "after", "score_only")},
        "default_before_over_after": round(sum(j["before_s"]) / sum(j["after_s"]), 2),
        "default_before_over_score_only": round(sum(j["before_s"]) / sum(j["score_only_s"]), 2),
        "valid_default_answers_after_retries": {"before": sum(x is not None for x in j["before"]),
                                  "after": sum(x is not None for x in j["after"])},
        "same_default_score_before_after": sum(a == b for a, b in zip(j["before"], j["after"], strict=True)),
        "agreement_default_vs_score_only": {"pairs": len(pairs)},
        "scores": {k: j[k] for k in ("before", "after", "score_only", "weighted")},
    }
    if len(pairs) >= 3:
        a, s, w = zip(*pairs, strict=True)
        rho_s = spearmanr(a, s).statistic
        rho_w = spearmanr(a, w).statistic
        out["agreement_default_vs_score_only"] |= {
            "exact": round(sum(x == y for x, y in zip(a, s, strict=True)) / len(pairs), 3),
            "spearman_score": None if rho_s != rho_s else round(float(rho_s), 3),
            "spearman_weighted": None if rho_w != rho_w else round(float(rho_w), 3),
        }
    return out


if __name__ == "__main__":
    main()
