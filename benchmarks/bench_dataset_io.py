"""Import/export throughput and peak memory of the dataset core (issue 2's benchmark).

Generates N-dialogue JSONL files from the sample corpus with new ids, then, each in a fresh process,
imports them into an empty SQLite file and (with --pg URL) an empty PostgreSQL database, and exports
them to JSONL. Prints a Markdown table and writes JSON with --out.

    python benchmarks/bench_dataset_io.py --sizes 25000 50000 100000 --pg postgresql://postgres@127.0.0.1:55432/postgres
    python benchmarks/bench_dataset_io.py --sizes 50000 --before ../old-checkout/src   # A/B, alternating
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from emplifai.store.db import Store
from emplifai.dataset.ingest import import_file
from emplifai.dataset.export import export_store
op, url, path = sys.argv[1:4]
store = Store(url)
t = time.perf_counter()
if op == "import":
    n = import_file(store, Path(path)).dialogues_added
else:
    n = export_store(store, Path(path), "jsonl")["all"]
dt = time.perf_counter() - t
print(json.dumps({"n": n, "seconds": dt, "per_s": n / dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_file(path: Path, n: int) -> None:
    from emplifai.dataset.ingest import bundled_corpus_path

    rows = [json.loads(x) for x in bundled_corpus_path().read_text(encoding="utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = dict(rows[i % len(rows)])
            copy = i // len(rows)
            r["dialogue_id"] = f"{r['dialogue_id']}-c{copy}"
            r["situation_id"] = f"{r['situation_id']}-c{copy}"
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def child(op: str, url: str, path: Path, src: str | None = None) -> dict:
    """One import or export in a fresh process; ``src`` runs another checkout's code (PYTHONPATH) instead."""
    env = {**os.environ, "PYTHONPATH": src} if src else None
    out = subprocess.run([sys.executable, "-c", CHILD, op, url, str(path)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(before: str, n: int, rounds: int) -> list[dict]:
    """Import the same N-dialogue file into empty SQLite files with ``before``'s code and this tree's, alternating
    in one run (the machine's load falls on both alike)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        make_file(src, n)
        for r in range(rounds):
            for label, code in (("before", before), ("after", None)):
                db = Path(tmp) / f"{label}_{r}.db"
                res = child("import", f"sqlite:///{db}", src, code)
                rows.append({"code": label, "round": r + 1, **res})
                print(f"{label:6} round {r + 1}: import {res['per_s']:>9,.0f}/s (peak RSS {res['peak_rss_mb']:.0f} MB)",
                      flush=True)
    return rows


def fresh_pg(admin_url: str) -> str:
    from sqlalchemy import create_engine, text

    from emplifai.store.db import resolve_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    eng = create_engine(resolve_url(admin_url), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return resolve_url(admin_url).rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--pg", help="admin URL of a PostgreSQL server to benchmark too")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--before", help="src folder of another checkout: A/B its SQLite import against this tree's")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.before:
        rows = compare(args.before, args.sizes[0], args.rounds)
        if args.out:
            args.out.write_text(json.dumps({"compare": rows}, indent=2))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            src = Path(tmp) / f"in_{n}.jsonl"
            make_file(src, n)
            backends = [("sqlite", f"sqlite:///{tmp}/b_{n}.db")]
            if args.pg:
                backends.append(("postgresql", fresh_pg(args.pg)))
            for name, url in backends:
                imp = child("import", url, src)
                exp = child("export", url, Path(tmp) / f"out_{name}_{n}.jsonl")
                results.append({"backend": name, "n": n, "import": imp, "export": exp})
                print(f"{name:10} n={n:>7}  import {imp['per_s']:>9,.0f}/s (peak RSS {imp['peak_rss_mb']:.0f} MB)"
                      f"  export {exp['per_s']:>9,.0f}/s (peak RSS {exp['peak_rss_mb']:.0f} MB)", flush=True)
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''} cores={os.cpu_count()}",
            "python": platform.python_version()}
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
