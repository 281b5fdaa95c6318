"""Benchmark of the default fine-tuning run and the before/after comparison, exactly as a user runs them.

In a fresh work folder: ``emplifai dataset import --sample``, ``emplifai dataset split --seed 42``,
``emplifai finetune --out OUT`` (the default CPU config), then ``emplifai compare --before embedded --after
<the printed spec>``. Reports wall time, CPU time and peak RSS of each command (from the OS, for the child
process), training tokens/s (from OUT/metrics.json), and the measured before/after table.

    python benchmarks/bench_finetune.py --out /tmp/ft-default                   # the full thing (~20-40 min)
    python benchmarks/bench_finetune.py --out /tmp/ft-default --skip-train      # reuse a finished run
    python benchmarks/bench_finetune.py --out /tmp/ft-default --compare-n 28 --metric general_empathy

Both commands resume when rerun, so an interrupted benchmark can simply be started again (the wall time is
then that of the remainder; metrics.json keeps the training's own timing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cmd: list[str], cwd: Path, log: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "ab") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with {proc.returncode}; see {log}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        # ru_maxrss of children is the largest child so far (KiB on Linux)
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/ft-default"))
    ap.add_argument("--work", type=Path, default=None, help="work folder with emplifai.db (default: a temp dir)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--compare-n", type=int, default=100, help="test-split situations to generate from")
    ap.add_argument("--metric", action="append", default=None, help="judge metric(s); default all seven")
    ap.add_argument("--predict-limit", type=int, default=None)
    args = ap.parse_args()

    exe = shutil.which("emplifai") or sys.exit("the emplifai command is not on PATH (activate the venv)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ft-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    result: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "work": str(work),
        "out": str(args.out),
    }
    if not (work / "emplifai.db").exists():
        _run([exe, "dataset", "import", "--sample"], work, log)
        _run([exe, "dataset", "split", "--seed", "42"], work, log)
    if not args.skip_train:
        result["finetune_command"] = _run([exe, "finetune", "--out", str(args.out)], work, log)
    m = json.loads((args.out / "metrics.json").read_text(encoding="utf-8"))
    result["training"] = {
        k: m[k]
        for k in (
            "spec",
            "steps",
            "epochs",
            "train_seconds",
            "total_seconds",
            "train_tokens_per_second",
            "peak_rss_mib",
            "threads",
            "train_loss",
            "eval_losses",
            "resumed_from",
        )
    }
    result["training"]["split"] = m["split"]
    result["training"]["loss_mask"] = {k: v for k, v in m["loss_mask"].items() if k != "first_target_text"}
    if not args.no_compare:
        cmd = [
            exe,
            "compare",
            "--before",
            "embedded",
            "--after",
            m["spec"],
            "--out",
            str(args.out / "compare"),
            "--n",
            str(args.compare_n),
        ]
        for metric in args.metric or []:
            cmd += ["--metric", metric]
        if args.predict_limit:
            cmd += ["--predict-limit", str(args.predict_limit)]
        result["compare_command"] = _run(cmd, work, log)
        result["compare_table"] = (args.out / "compare" / "compare.md").read_text(encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
