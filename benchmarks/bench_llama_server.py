"""Concurrency gain on a server that batches: llama.cpp's ``llama-server --parallel 8`` (continuous batching).

For generate, judge and predict (score mode) the same items run at concurrency 1 and at concurrency 8,
interleaved round by round in one process (the machine is shared: interleaving spreads load changes over
both), against one server started here on loopback with the embedded Gemma 3 270M. Reported: items/s at each
level, their ratio (goal >= 2x), and how far the outputs of the two levels agree (llama-server batches
requests of different slots together, and llama.cpp's CPU kernels round differently per batch shape, so
greedy text can diverge and scores agree in ranking, not to the digit).

Where the time goes, per run: the CPU seconds the server and this client used (from /proc), and the server's
own counters (``--metrics``): tokens generated, llama_decode calls and the slots busy per call. With
``server_cores`` well under the core count and ~8 busy slots per decode at concurrency 8, the gain left is
what batching saves per CPU second (``server_cpu_s_per_item``).

    python benchmarks/bench_llama_server.py --items 16 --out results/bench_llama_server.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from emplifai import taxonomy
from emplifai.evaluate.rubrics import METRICS
from emplifai.llm import Completion, GenParams, LLMFailure, embedded_model, load
from emplifai.llm.local_server import batching_server, find_llama_server
from emplifai.llm.openai_compat import OpenAICompatLLM
from emplifai.predict.prompt import build_prompt, candidates
from emplifai.prompts import generation as gen
from emplifai.prompts import judge as jp

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
PATIENT = "最近、治療がつらくて眠れない日が続いています。"
SUPPORTER = "それは本当にしんどいですね。話してくれてありがとう。"


def workloads(n: int, max_tokens: int, tag: str) -> dict[str, Callable[[OpenAICompatLLM, int], list[Any]]]:
    # items distinct within a round and new in every round (``tag``), as in a real run where each item is seen
    # once: a repeated item would find its whole prompt in the slot that had it last
    sits = [f"{SITUATIONS[i % len(SITUATIONS)]}（相談{tag}-{i + 1}）" for i in range(n)]
    emos = [taxonomy.LABELS[i % 28].en for i in range(n)]
    gen_convs = [[{"role": "user", "content": gen.instruction(e, s, "ja")}] for e, s in zip(emos, sits, strict=True)]
    gen_params = GenParams(max_tokens=max_tokens, stop=gen.STOP)
    judge_convs = [jp.messages(METRICS[0], emotion=e, situation=s, patient=PATIENT, supporter=SUPPORTER, shots=2)
                   for e, s in zip(emos, sits, strict=True)]
    judge_params = GenParams(max_tokens=max_tokens, stop=("}",), logprobs=5)
    items = [(build_prompt(s, PATIENT, SUPPORTER), candidates()) for s in sits]
    return {
        "generate": lambda llm, c: llm.batch_chat(gen_convs, gen_params, concurrency=c),
        "judge": lambda llm, c: llm.batch_chat(judge_convs, judge_params, concurrency=c),
        "predict": lambda llm, c: llm.batch_score(items, concurrency=c),
    }


def agreement(stage: str, a: list[Any], b: list[Any]) -> dict[str, Any]:
    pairs = [(x, y) for x, y in zip(a, b, strict=True)
             if not isinstance(x, LLMFailure) and not isinstance(y, LLMFailure)]
    if stage == "predict":
        top = sum(_argmax(x) == _argmax(y) for x, y in pairs)
        diff = max((abs(u - v) for x, y in pairs for u, v in zip(x, y, strict=True)), default=None)
        return {"same_top1": f"{top}/{len(a)}", "max_abs_loglik_diff": diff}
    same = sum(x.text == y.text for x, y in pairs)
    out: dict[str, Any] = {"identical_text": f"{same}/{len(a)}"}
    if stage == "judge":
        sx = [jp.parse_judgement(x.text + "}").score for x, _ in pairs]
        sy = [jp.parse_judgement(y.text + "}").score for _, y in pairs]
        out["same_score"] = f"{sum(u == v for u, v in zip(sx, sy, strict=True))}/{len(a)}"
    return out


def _argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=lambda i: xs[i])


def server_pid(url: str) -> int | None:
    """The llama-server process listening on ``url``'s port (batching_server keeps its handle to itself)."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--port" in args and port.encode() in args and any(a.endswith(b"llama-server") for a in args[:1]):
                return int(proc.name)
    return None


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def counters(url: str) -> dict[str, float]:
    """llama-server's Prometheus counters; busy slots are kept as an average, turned back into a total here."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    vals = {}
    for line in text.splitlines():
        if line.startswith("llamacpp:"):
            name, value = line.removeprefix("llamacpp:").split()
            vals[name] = float(value)
    vals["n_busy_slots_total"] = vals.get("n_busy_slots_per_decode", 0.0) * vals.get("n_decode_total", 0.0)
    return vals


def profile(before: dict[str, float], after: dict[str, float], items: int, wall: float, server_cpu: float,
            client_cpu: float) -> dict[str, Any]:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    decodes = d.get("n_decode_total", 0.0)
    return {
        "server_cores": round(server_cpu / wall, 2), "client_cores": round(client_cpu / wall, 2),
        "server_cpu_s_per_item": round(server_cpu / items, 3),
        "generated_tokens_per_item": round(d.get("tokens_predicted_total", 0.0) / items, 1),
        "decodes_per_item": round(decodes / items, 1),
        "busy_slots_per_decode": round(d.get("n_busy_slots_total", 0.0) / decodes, 2) if decodes else None,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--parallel", type=int, default=8, help="server slots and the high concurrency level")
    ap.add_argument("--rounds", type=int, default=2, help="c=1 / c=N pairs per stage, interleaved")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--stages", nargs="+", default=["generate", "judge", "predict"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--server-args", default="", help="more llama-server flags (later ones win), e.g. "
                    "'--cache-ram 8192' to measure with its host-memory prompt cache")
    args = ap.parse_args(argv)
    binary = find_llama_server()
    if binary is None:
        sys.exit("llama-server not found: bash scripts/llama-server.sh build, then export EMPLIFAI_LLAMA_SERVER")
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    agree: dict[str, Any] = {}
    with batching_server(embedded_model()[0], binary=binary, parallel=args.parallel, n_threads=args.threads,
                         extra_args=["--metrics", *args.server_args.split()]) as url:
        llm = load(f"openai:gemma@{url}", timeout=900)
        assert isinstance(llm, OpenAICompatLLM)
        pid = server_pid(url)
        llm.check_score()  # before the clock starts
        for stage in args.stages:
            # warm-up on items of its own: fills the slots' prompt caches with the stage's shared prefix
            workloads(args.items, args.max_tokens, "0")[stage](llm, args.parallel)
            outputs: dict[int, list[Any]] = {}
            for rnd in range(args.rounds):
                work = workloads(args.items, args.max_tokens, str(rnd + 1))  # both levels: the same new items
                for conc in ((1, args.parallel) if rnd % 2 == 0 else (args.parallel, 1)):
                    before, cpu0, own0 = counters(url), cpu_seconds(pid), sum(os.times()[:2])
                    start = time.perf_counter()
                    out = work[stage](llm, conc)
                    wall = time.perf_counter() - start
                    server_cpu, client_cpu = cpu_seconds(pid) - cpu0, sum(os.times()[:2]) - own0
                    failed = sum(isinstance(r, LLMFailure) for r in out)
                    tokens = sum(r.completion_tokens or 0 for r in out if isinstance(r, Completion))
                    run = {"stage": stage, "round": rnd, "concurrency": conc, "items": len(out), "failed": failed,
                           "wall_s": round(wall, 2), "items_per_s": round(len(out) / wall, 3),
                           "completion_tokens": tokens,
                           "profile": profile(before, counters(url), len(out), wall, server_cpu, client_cpu)}
                    runs.append(run)
                    print(json.dumps(run), file=sys.stderr)
                    outputs.setdefault(conc, out)
            agree[stage] = agreement(stage, outputs[1], outputs[args.parallel])
        llm.close()
    summary = {}
    for stage in args.stages:
        med = {c: statistics.median(r["items_per_s"] for r in runs if r["stage"] == stage and r["concurrency"] == c)
               for c in (1, args.parallel)}
        summary[stage] = {
            "items_per_s_c1": round(med[1], 3), f"items_per_s_c{args.parallel}": round(med[args.parallel], 3),
            "ratio": round(med[args.parallel] / med[1], 2), "agreement": agree[stage]}
    result = {
        "benchmark": "llama_server_concurrency",
        "server": f"llama-server --parallel {args.parallel} -t {args.threads} (embedded Gemma 3 270M Q4_K_M)",
        "items": args.items, "max_tokens": args.max_tokens, "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "summary": summary, "runs": runs,
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
