"""Throughput of the delegation's persons list with and without a read replica: gunicorn
processes on a primary and its streaming replica (tests/replica.py's clusters), loaded by one
generator of `threads` clients. Run on demand:

    .venv/bin/python -m bench.replica --copy-from postgresql://postgres@127.0.0.1:5432/h7_full

It starts (or reuses) a primary cluster and its replica under --dir, copies the benchmark
database into the primary if it is not there (pg_dump | pg_restore; the replica gets it by
streaming), runs the migrations, then measures each line of CONFIGURATIONS for --seconds and
prints req/s, median and p95 latency and errors, and the statements one page runs on each.
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.conftest import Client, free_port  # noqa: E402
from tests.replica import BIN, ReplicaPair  # noqa: E402

NOW = "2022-09-15T10:00:00+08:00"
URL = "/delegation/persons/list/"
# (label, [(gunicorn workers, serve with the replica?)]): the same machine in each line.
CONFIGURATIONS = [
    ("gunicorn -w 2 on the primary", [(2, False)]),
    ("gunicorn -w 3 on the primary", [(3, False)]),
    ("gunicorn -w 2 on the primary + -w 1 reading the replica", [(2, False), (1, True)]),
    ("gunicorn -w 2 reading the replica", [(2, True)]),
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _serve(primary: str, replica: str | None, workers: int) -> tuple[subprocess.Popen, str]:
    import requests

    port = free_port()
    env = dict(os.environ, CIIE_CONFIG="development", DATABASE_URL=primary,
               SECRET_KEY="benchmark-secret-key-of-32-bytes!!", CIIE_NOW=NOW,
               RATELIMIT_STORAGE_URI="memory://", MAIL_BACKEND="log", PYTHONPATH=ROOT,
               DATABASE_REPLICA_URL=replica or "")
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "run:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            if requests.get(base + "/login/", timeout=5).status_code == 200:
                return server, base
        except requests.RequestException:
            pass
        if time.time() > deadline:
            server.terminate()
            raise RuntimeError("gunicorn did not start")
        time.sleep(0.3)


def _logged_in(base: str) -> Any:
    import requests

    from app.demo import DEMO_PASSWORD

    session = requests.Session()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"',
                      session.get(base + "/login/").text).group(1)
    response = session.post(base + "/login/", allow_redirects=False, data={
        "username": "sh-delegation", "password": DEMO_PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    return session


def _load(targets: list[tuple[str, Any]], seconds: float,
          threads: int) -> tuple[list[float], int, float]:
    """`threads` clients request the targets in turn (round robin) for `seconds`: each
    request's latency, the errors, and the wall time."""
    import requests

    slots = itertools.cycle(targets)
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    stop_at = time.time() + seconds

    def load() -> None:
        own = requests.Session()
        while time.time() < stop_at:
            with lock:
                url, jar = next(slots)
            begin = time.perf_counter()
            ok = own.get(url, cookies=jar, timeout=60).status_code == 200
            with lock:
                latencies.append(time.perf_counter() - begin)
                errors[0] += not ok

    clients = [threading.Thread(target=load) for _ in range(threads)]
    begin = time.perf_counter()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    return latencies, errors[0], time.perf_counter() - begin


def measure_replica_throughput(primary: str, replica: str, seconds: float = 20.0,
                               threads: int = 8) -> list[dict]:
    """One row per configuration: the persons list of `sh-delegation` requested by `threads`
    clients for `seconds`, the requests spread over the servers in proportion to their
    workers (a load balancer's round robin)."""
    import requests

    rows = []
    for label, servers in CONFIGURATIONS:
        started = [_serve(primary, replica if on_replica else None, workers)
                   for workers, on_replica in servers]
        try:
            cookies = [_logged_in(base).cookies for _server, base in started]
            # Warm every worker (and let the replica replay the login) before the clock runs.
            time.sleep(1.5)
            for (_server, base), jar in zip(started, cookies, strict=True):
                for _ in range(6):
                    requests.get(base + URL, cookies=jar, timeout=60)
            targets = [(started[index][1] + URL, cookies[index])
                       for index, (workers, _r) in enumerate(servers) for _ in range(workers)]
            latencies, errors, wall = _load(targets, seconds, threads)
        finally:
            for server, _base in started:
                server.terminate()
                server.wait(timeout=30)
        rows.append({"what": label, "req_s": len(latencies) / wall,
                     "median_ms": statistics.median(latencies) * 1000,
                     "p95_ms": _percentile(latencies, 0.95) * 1000, "errors": errors})
    return rows


def page_statements(primary: str, replica: str, pages: int = 10) -> dict[str, str]:
    """Per persons-list page of the app with the replica: statements and SQL milliseconds on
    each engine (the mean of `pages` pages)."""
    from datetime import datetime

    from sqlalchemy import event

    from app import clock, create_app
    from app.extensions import db
    from app.replica import EXTENSION

    clock.set_now(datetime.fromisoformat(NOW))
    app = create_app("development", SQLALCHEMY_DATABASE_URI=primary,
                     DATABASE_REPLICA_URL=replica, RATELIMIT_STORAGE_URI="memory://",
                     REDIS_URL=None)
    client = Client(app, "sh-delegation")
    time.sleep(1.5)  # the replica replays the login; the next health check sees it
    client.get(URL)
    with app.app_context():
        engines = {"primary": db.engine, "replica": app.extensions[EXTENSION].engine}
    counts = dict.fromkeys(engines, 0)
    seconds = dict.fromkeys(engines, 0.0)
    started: dict[int, float] = {}

    def before(_conn, cursor, *_args) -> None:
        started[id(cursor)] = time.perf_counter()

    for name, engine in engines.items():
        def after(_conn, cursor, *_args, name=name) -> None:
            counts[name] += 1
            seconds[name] += time.perf_counter() - started.pop(id(cursor))
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
    for _ in range(pages):
        assert client.get(URL).status_code == 200
    return {name: f"{counts[name] / pages:.1f} statements, "
                  f"{seconds[name] * 1000 / pages:.1f} ms SQL" for name in engines}


def _copy_database(pair: ReplicaPair, source: str, name: str) -> None:
    admin = sa.create_engine(f"{pair.primary_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            return
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    dump = subprocess.Popen([os.path.join(BIN, "pg_dump"), "-Fc", "-Z0", "-d", source],
                            stdout=subprocess.PIPE)
    subprocess.run([os.path.join(BIN, "pg_restore"), "-d", f"{pair.primary_url}/{name}"],
                   stdin=dump.stdout, check=True)
    dump.wait()
    with admin.connect() as conn:
        conn.execute(sa.text('ANALYZE'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/var/tmp/ciie-bench-replica",
                        help="where the primary and replica clusters live")
    parser.add_argument("--database", default="ciie_bench_full")
    parser.add_argument("--copy-from", help="a database URL to copy when --database is absent")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    pair = ReplicaPair(args.dir, settings="shared_buffers = 512MB\nmax_connections = 100\n")
    pair.ensure()
    if args.copy_from:
        _copy_database(pair, args.copy_from, args.database)
    primary = f"{pair.primary_url}/{args.database}"
    replica = f"{pair.replica_url}/{args.database}"
    subprocess.run([sys.executable, "-m", "flask", "--app", "run", "db", "upgrade"], cwd=ROOT,
                   env=dict(os.environ, DATABASE_URL=primary), check=True)
    pair.wait_streaming()
    print("one page, per engine:", page_statements(primary, replica))
    print(f"{'configuration':58} {'req/s':>7} {'median ms':>10} {'p95 ms':>8} {'errors':>6}")
    for row in measure_replica_throughput(primary, replica, args.seconds, args.threads):
        print(f"{row['what']:58} {row['req_s']:7.1f} {row['median_ms']:10.0f} "
              f"{row['p95_ms']:8.0f} {row['errors']:6d}")


if __name__ == "__main__":
    main()
