"""Claims per second and latency of `POST /work/claim` with N concurrent clients on loopback, load from wrk.

Complements bench_collect_claims.py (Python clients looping claim → submit through the login form, which on a
2-core machine measures the Python client as much as the server): here wrk (C) or an async httpx client sends
claim requests only, each from a different worker, so the number is the server's claim throughput.

Sets up a fresh database (SQLite file or a new PostgreSQL database), a round-2 campaign of 28 emotions × 10
situations × 15 dialogues = 4,200 slots and many worker accounts, starts `emplifai serve` in a child process
(one uvicorn process, or N with --workers), then lets N async httpx clients claim as fast as they can: each claim
comes from a worker that holds no lease yet, so every request is a real claim, until the pool is exhausted.
Afterwards the database is checked: no pair above its target, no slot handed out twice.

    python benchmarks/bench_collect_wrk.py --db sqlite --clients 50 --client wrk --situations 40
    python benchmarks/bench_collect_wrk.py --client wrk --situations 40 \
        --db postgresql://postgres@127.0.0.1:55432/postgres
    python benchmarks/bench_collect_wrk.py --client wrk --situations 40 --workers 1 4 \
        --db postgresql://postgres@127.0.0.1:55432/postgres      # 1 vs 4 server processes, one run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emplifai import taxonomy
from emplifai.collect.campaigns import get_campaign, seed_round2
from emplifai.collect.security import COOKIE, SessionCodec, new_session
from emplifai.store.collect import Claim, ClaimStatus, Task
from emplifai.store.db import Store, resolve_url
from tests.collect.fixtures import bulk_workers, campaign, situations, start_server


def _database(db: str, tmp: Path) -> tuple[str, object]:
    if db == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}", None
    admin = create_engine(resolve_url(db), isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return resolve_url(db).rsplit("/", 1)[0] + f"/{name}", drop


async def _run(url: str, secret: str, cid: int, workers: list[int], clients: int) -> tuple[list[float], int, int]:
    codec = SessionCodec(secret, 3600)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for w in workers:
        queue.put_nowait(w)
    lat: list[float] = []
    empty = errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        stop = asyncio.Event()

        async def client() -> None:
            nonlocal empty, errors
            while not stop.is_set() and not queue.empty():
                w = queue.get_nowait()
                sess = new_session(w, 1)
                headers = {"cookie": f"{COOKIE}={codec.dumps(sess)}"}
                data = {"campaign_id": str(cid), "kind": "dialogue", "csrf_token": sess.csrf}
                for _ in range(3):
                    t0 = time.perf_counter()
                    try:
                        r = await http.post("/work/claim", data=data, headers=headers)
                        break
                    except httpx.TransportError:  # counted and reported; a retry by the same worker is safe
                        errors += 1
                dt = time.perf_counter() - t0
                assert r.status_code == 303, r.text
                if r.headers["location"] == "/work?msg=nowork":
                    empty += 1
                    stop.set()  # the pool is exhausted
                else:
                    lat.append(dt)

        await asyncio.gather(*(client() for _ in range(clients)))
    return lat, empty, errors


WRK_LUA = r"""
local lines, nthreads, i = {}, 1, 0
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  nthreads = tonumber(args[2])
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
end
function request()
  local idx = (id + i * nthreads) % #lines + 1
  i = i + 1
  local cookie, csrf = lines[idx]:match("([^\t]+)\t([^\t]+)")
  return wrk.format("POST", "/work/claim", {["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = "emplifai_session=" .. cookie}, "campaign_id=" .. CAMPAIGN .. "&kind=dialogue&csrf_token=" .. csrf)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency.max))
end
"""


def _run_wrk(url: str, secret: str, cid: int, workers: list[int], clients: int, seconds: int,
             tmp: Path) -> dict[str, float]:
    """wrk (C, event loop) as the load generator: each request is a different worker's first claim."""
    import subprocess

    codec = SessionCodec(secret, 3600)
    tokens = tmp / "tokens.tsv"
    with tokens.open("w") as f:
        for w in workers:
            sess = new_session(w, 1)
            f.write(f"{codec.dumps(sess)}\t{sess.csrf}\n")
    script = tmp / "claim.lua"
    script.write_text(WRK_LUA.replace("CAMPAIGN", f'"{cid}"'))
    threads = 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds}s", "--timeout", "30s",
                          "-s", str(script), url, "--", str(tokens), str(threads)],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    n, dur_us, p50, p95, mx = (int(v) for v in line.split()[1:])
    return {"requests": n, "wall_s": dur_us / 1e6, "p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "max_ms": mx / 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite", help="'sqlite' (a temp file) or a PostgreSQL URL (a temp database)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--situations", type=int, default=10, help="situations per emotion")
    ap.add_argument("--per-pair", type=int, default=15)
    ap.add_argument("--client", choices=("httpx", "wrk"), default="httpx",
                    help="load generator: an async httpx client in Python, or wrk (must be installed)")
    ap.add_argument("--seconds", type=int, default=10, help="wrk only: duration (keep the pool from running dry)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1],
                    help="server processes (`serve --workers`); several values run one after another on fresh "
                         "databases and print the throughput ratio to the first")
    args = ap.parse_args()
    results = [_run_once(args, n) for n in args.workers]
    for r in results:
        r["claims_per_s_vs_first"] = round(r["claims_per_s"] / results[0]["claims_per_s"], 2)
    print(json.dumps(results if len(results) > 1 else results[0], indent=1))


def _run_once(args: argparse.Namespace, processes: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    url, drop = _database(args.db, tmp)
    try:
        store = Store(url)
        emotions = [lab.en for lab in taxonomy.LABELS]
        situations(store, emotions, args.situations)
        cid = campaign(store, "bench", emotions=emotions, round2_target=args.per_pair)
        with store.transaction() as s:
            seed_round2(s, get_campaign(s, cid))
        slots = len(emotions) * args.situations * args.per_pair
        workers = bulk_workers(store, slots + 4 * args.clients)
        secret = secrets.token_urlsafe(48)
        server = start_server(url, secret, tmp, workers=processes)
        wrk: dict[str, float] = {}
        try:
            if args.client == "wrk":
                wrk = _run_wrk(server.url, secret, cid, workers, args.clients, args.seconds, tmp)
                lat, errors, wall = [], 0, wrk["wall_s"]
            else:
                t0 = time.perf_counter()
                lat, _, errors = asyncio.run(_run(server.url, secret, cid, workers, args.clients))
                wall = time.perf_counter() - t0
        finally:
            server.stop()
        with store.open_session() as s:
            over = s.scalar(select(func.count()).select_from(Task).where(Task.filled > Task.target))
            live = dict(s.execute(select(Claim.task_id, func.count()).where(Claim.status == ClaimStatus.LEASED)
                                  .group_by(Claim.task_id)).all())
            targets = dict(s.execute(select(Task.id, Task.target)).all())
            overshoot = over + sum(1 for t, n in live.items() if n > targets[t])
            doubles = s.scalar(select(func.count()).select_from(
                select(Claim.task_id, Claim.worker_id).group_by(Claim.task_id, Claim.worker_id)
                .having(func.count() > 1).subquery()))
            total = s.scalar(select(func.count()).select_from(Claim))
        store.dispose()
        if wrk:
            return {
                "db": "sqlite" if args.db == "sqlite" else "postgresql", "client": "wrk", "clients": args.clients,
                "processes": processes,
                "slots": slots, "requests": wrk["requests"], "claim_rows": total, "wall_s": round(wall, 2),
                # completed requests / duration: each request is a new worker's claim while slots remain
                "claims_per_s": round(min(wrk["requests"], total) / wall, 1), "p50_ms": wrk["p50_ms"],
                "p95_ms": wrk["p95_ms"],
                "max_ms": wrk["max_ms"], "overshoot": overshoot, "double_assignments": doubles}
        lat.sort()
        return {"client": "httpx", "processes": processes,
            "db": "sqlite" if args.db == "sqlite" else "postgresql", "clients": args.clients, "slots": slots,
            "claims": len(lat), "claim_rows": total, "wall_s": round(wall, 2),
            "claims_per_s": round(len(lat) / wall, 1),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1),
            "max_ms": round(1000 * lat[-1], 1), "transport_errors_retried": errors,
            "overshoot": overshoot, "double_assignments": doubles,
        }
    finally:
        if drop:
            drop()  # type: ignore[operator]


if __name__ == "__main__":
    main()
