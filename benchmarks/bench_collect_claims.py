"""Claim throughput of the crowdsourcing web app (issue 6's benchmark): a real `emplifai serve` on loopback.

For each database (a fresh SQLite file; with --pg ADMIN_URL also a throwaway PostgreSQL database) it creates a
campaign and N worker accounts with the project's own functions, starts the server in a subprocess, signs every
worker in through the login form (own cookie jar and CSRF token, as a browser), then N async clients loop
"claim → submit" (or "claim → release" with --cycle release) for --seconds or until the pool runs dry.
Claims/s counts successful claims (303 → /claims/ID) over the measured wall time; latencies are those of the
claim POST alone. Afterwards the database is checked: no bucket above its target, ``filled`` equal to the live
claims, no worker holding the same task twice. Prints a Markdown table; --out writes JSON.

    python benchmarks/bench_collect_claims.py --pg postgresql://postgres@127.0.0.1:55432/postgres

The default pool (28 emotions × --target 40 = 1,120 slots, each of 50 workers able to take each emotion once)
is smaller than what 50 workers could take, so the run ends by exhausting it: overshoot would show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

PASSWORD = "bench-password-123"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Result:
    db: str
    cycle: str
    clients: int
    claims: int
    nowork: int
    errors: int
    seconds: float
    claims_per_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    overshoot: int
    filled_mismatch: int
    double_assigned: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(url: str, workers: int, target: int) -> int:
    """Campaign + worker accounts via the project's functions (real argon2 hashes); returns the campaign id."""
    from emplifai.collect.accounts import create_user
    from emplifai.collect.campaigns import create_campaign
    from emplifai.store.db import Store

    store = Store(url)
    with store.transaction() as s:
        camp = create_campaign(s, "bench", round1_target=target, lease_seconds=3600)
        for i in range(workers):
            create_user(s, f"bench{i:03d}", PASSWORD, "worker")
        cid = camp.id
    store.engine.dispose()
    return cid


def start_server(url: str, port: int, log: Path) -> subprocess.Popen:
    exe = shutil.which("emplifai") or str(Path(sys.executable).parent / "emplifai")
    env = {**os.environ, "EMPLIFAI_SECRET_KEY": secrets.token_urlsafe(48), "EMPLIFAI_ENV": "production"}
    proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--db", url], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 60 s")


async def sign_in(client, name: str) -> str:  # type: ignore[no-untyped-def]
    page = await client.get("/login")
    token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
    r = await client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
    if r.status_code != 303:
        raise RuntimeError(f"sign-in of {name} failed: {r.status_code}")
    work = await client.get("/work")  # the new session's token, as the browser would read it from the page
    return CSRF_RE.search(work.text).group(1)  # type: ignore[union-attr]


async def drive(base: str, workers: int, campaign_id: int, seconds: float, cycle: str) -> dict[str, object]:
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base, limits=limits, timeout=60) for _ in range(workers)]
    tokens = [await sign_in(c, f"bench{i:03d}") for i, c in enumerate(clients)]
    lat: list[float] = []
    counts = {"claims": 0, "nowork": 0, "errors": 0, "requests": 0, "reconnects": 0}
    start = time.perf_counter()
    stop_at = start + seconds
    last_claim = [start]

    async def post(c: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
        try:
            return await c.post(path, data=data)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # uvicorn closes keep-alive connections idle > 5 s (e.g. while the others sign in): reconnect once;
            # a repeated claim is harmless (the worker's open lease is handed back)
            counts["reconnects"] += 1
            return await c.post(path, data=data)

    async def loop(c: httpx.AsyncClient, token: str) -> None:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            r = await post(c, "/work/claim", {"campaign_id": str(campaign_id), "kind": "situation",
                                                  "csrf_token": token})
            lat.append(time.perf_counter() - t)
            counts["requests"] += 1
            loc = r.headers.get("location", "")
            if r.status_code == 303 and loc.startswith("/claims/"):
                counts["claims"] += 1
                last_claim[0] = time.perf_counter()
                cid = loc.rsplit("/", 1)[1]
                if cycle == "submit":
                    data = {"situation": f"ベンチマーク用の状況 {uuid.uuid4().hex[:8]}", "csrf_token": token}
                else:
                    data = {"csrf_token": token}
                r2 = await post(c, f"/claims/{cid}/{cycle}", data)
                counts["requests"] += 1
                if r2.status_code != 303:
                    counts["errors"] += 1
            elif r.status_code == 303 and "nowork" in loc:
                counts["nowork"] += 1
                return  # the pool is dry for this worker
            else:
                counts["errors"] += 1

    await asyncio.gather(*(loop(c, tok) for c, tok in zip(clients, tokens, strict=True)))
    end = time.perf_counter()
    for c in clients:
        await c.aclose()
    # claims/s over the time during which claims were being handed out (a dry pool ends the run early)
    elapsed = max(last_claim[0], min(end, stop_at)) - start if counts["nowork"] < workers else last_claim[0] - start
    lat.sort()

    def q(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {**counts, "seconds": elapsed, "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"), "end": end - start}


def verify(url: str, campaign_id: int) -> tuple[int, int, int]:
    """(buckets above target, buckets whose `filled` differs from their live claims, duplicated worker-task pairs)."""
    from sqlalchemy import func, select

    from emplifai.store.collect import Claim, Task
    from emplifai.store.db import Store

    store = Store(url)
    with store.open_session() as s:
        live = dict(s.execute(select(Claim.task_id, func.count()).where(Claim.campaign_id == campaign_id,
                                                                         Claim.live == 1)
                              .group_by(Claim.task_id)).all())
        tasks = s.execute(select(Task.id, Task.target, Task.filled).where(Task.campaign_id == campaign_id)).all()
        over = sum(1 for t in tasks if live.get(t.id, 0) > t.target or t.filled > t.target)
        mismatch = sum(1 for t in tasks if live.get(t.id, 0) != t.filled)
        dup = s.execute(select(func.count()).select_from(
            select(Claim.task_id, Claim.worker_id).where(Claim.campaign_id == campaign_id, Claim.live == 1)
            .group_by(Claim.task_id, Claim.worker_id).having(func.count() > 1).subquery())).scalar_one()
    store.engine.dispose()
    return over, mismatch, int(dup)


def bench(label: str, url: str, args: argparse.Namespace, tmp: Path) -> Result:
    cid = setup(url, args.workers, args.target)
    port = _free_port()
    proc = start_server(url, port, tmp / f"server-{label}.log")
    try:
        raw = asyncio.run(drive(f"http://127.0.0.1:{port}", args.workers, cid, args.seconds, args.cycle))
    except Exception:
        print(f"server log ({label}, exit {proc.poll()}):\n{(tmp / f'server-{label}.log').read_text()[-4000:]}",
              file=sys.stderr)
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    over, mismatch, dup = verify(url, cid)
    secs = float(raw["seconds"])  # type: ignore[arg-type]
    return Result(label, args.cycle, args.workers, int(raw["claims"]), int(raw["nowork"]), int(raw["errors"]),  # type: ignore[call-overload]
                  round(secs, 2), round(int(raw["claims"]) / secs, 1),  # type: ignore[call-overload]
                  round(int(raw["requests"]) / float(raw["end"]), 1),  # type: ignore[call-overload,arg-type]
                  round(float(raw["p50_ms"]), 1), round(float(raw["p95_ms"]), 1),  # type: ignore[arg-type]
                  round(float(raw["p99_ms"]), 1), over, mismatch, dup)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=50, help="concurrent clients, one worker account each")
    ap.add_argument("--target", type=int, default=40, help="situations per emotion (28 emotions)")
    ap.add_argument("--seconds", type=float, default=20.0, help="upper bound on the measured phase")
    ap.add_argument("--cycle", choices=("submit", "release"), default="submit",
                    help="what a client does with each claim before claiming again")
    ap.add_argument("--pg", help="PostgreSQL admin URL; a throwaway database is created and dropped")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.no_sqlite:
            results.append(bench("sqlite", f"sqlite:///{tmp / 'bench.db'}", args, tmp))
        if args.pg:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            name = f"emplifai_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
                results.append(bench("postgresql", url, args, tmp))
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()

    cols = list(asdict(results[0]).keys()) if results else []
    print(f"# emplifai collect claims — {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(v) for v in asdict(r).values()) + " |")
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
    bad = [r.db for r in results if r.overshoot or r.filled_mismatch or r.double_assigned]
    if bad:
        sys.exit(f"INVARIANT VIOLATED on {', '.join(bad)}")


if __name__ == "__main__":
    main()
