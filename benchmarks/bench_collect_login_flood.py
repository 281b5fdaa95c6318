"""Median `GET /work` latency of a signed-in worker, idle and under a 16-client login flood (issue 12 item 6).

Real server (`emplifai serve` in a child process, one uvicorn process as deployed), real HTTP on loopback.
The flood runs in a separate process (16 threads, each its own connection and session, posting wrong passwords
as fast as the server answers) so the measuring client is not starved by the flood's Python threads.

Two configurations, each on a fresh database and server:
- ``throttled``: the default limits (8 failures per user name, 30 per client, per 10 minutes) — the flood is
  refused with 429 before any password is checked once the client's window is full;
- ``hashing``: limits raised out of reach, so every flood request really checks a password; what protects
  the workers' pages is then only the bounded password-check pool (cores/4, at least one).

    python benchmarks/bench_collect_login_flood.py --requests 200 --flood 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emplifai.store.db import Store
from tests.collect.fixtures import CSRF_RE, campaign, minted_client, start_server, users


def _flood(url: str, clients: int, stop, counts, done) -> None:  # type: ignore[no-untyped-def]
    def one(i: int) -> None:
        seen: Counter[int] = Counter()
        with httpx.Client(base_url=url, timeout=120) as c:
            token = CSRF_RE.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
            while not stop.is_set():
                r = c.post("/login", data={"username": f"victim{i % 4}", "password": f"guess-{secrets.token_hex(4)}",
                                           "csrf_token": token}, follow_redirects=False)
                seen[r.status_code] += 1
                with done.get_lock():
                    done.value += 1
        counts.put(dict(seen))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _median_work(client: httpx.Client, n: int) -> float:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get("/work")
        lat.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.status_code
    return statistics.median(lat) * 1000


def run(config: str, requests: int, flood: int, tmp: Path) -> dict:
    db = f"sqlite:///{tmp / f'{config}.db'}"
    store = Store(db)
    ids = users(store, ("worker1", "worker"), *[(f"victim{i}", "worker") for i in range(4)])
    campaign(store, emotions=["Joy", "Fear"], round1_target=5)
    store.dispose()
    secret = secrets.token_urlsafe(48)
    if config == "hashing":
        os.environ["EMPLIFAI_LOGIN_MAX_PER_USER"] = os.environ["EMPLIFAI_LOGIN_MAX_PER_CLIENT"] = "100000000"
    else:
        os.environ.pop("EMPLIFAI_LOGIN_MAX_PER_USER", None)
        os.environ.pop("EMPLIFAI_LOGIN_MAX_PER_CLIENT", None)
    srv = start_server(db, secret, tmp)
    try:
        client, _ = minted_client(srv.url, secret, ids["worker1"])
        _median_work(client, 20)  # warm-up
        idle = _median_work(client, requests)
        ctx = mp.get_context("spawn")
        stop, counts, done = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
        proc = ctx.Process(target=_flood, args=(srv.url, flood, stop, counts, done))
        proc.start()
        while done.value < 2 * flood:  # the flood is running at full strength before anything is measured
            time.sleep(0.1)
        before, t0 = done.value, time.perf_counter()
        loaded = _median_work(client, requests)
        during, seconds = done.value - before, time.perf_counter() - t0
        stop.set()
        statuses: Counter[int] = Counter()
        for _ in range(flood):
            statuses.update(counts.get(timeout=120))
        proc.join(60)
        client.close()
    finally:
        srv.stop()
    return {"config": config, "idle_median_ms": round(idle, 2), "flood_median_ms": round(loaded, 2),
            "ratio": round(loaded / idle, 2), "flood_logins_per_s_while_measuring": round(during / seconds, 1),
            "flood_responses": dict(sorted(statuses.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="GET /work requests per phase")
    ap.add_argument("--flood", type=int, default=16, help="concurrent login clients")
    ap.add_argument("--configs", default="throttled,hashing")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = [run(c, a.requests, a.flood, Path(d)) for c in a.configs.split(",")]
    print(json.dumps({"machine": f"{os.cpu_count()} cores", "requests": a.requests, "flood_clients": a.flood,
                      "results": out}, indent=2))


if __name__ == "__main__":
    main()
