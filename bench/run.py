"""Expo-scale benchmark: the same measurements on a 1% and a full-size database, one table.

    .venv/bin/python bench/run.py                # build both databases (a few minutes), measure
    .venv/bin/python bench/run.py --reuse        # measure the databases an earlier run built
    .venv/bin/python bench/run.py --scales 0.01  # only the small one

Needs PostgreSQL (TEST_PG_SERVER, default postgresql://postgres@127.0.0.1:5432) and Redis
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/14, flushed). Never part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any, Callable
from urllib.parse import quote

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app import clock, create_app  # noqa: E402
from app import models as m  # noqa: E402
from app.extensions import db  # noqa: E402
from app.scoping.actor import actor_for_user  # noqa: E402
from bench.generate import generate  # noqa: E402
from tests.conftest import UNIT_A, Client, free_port  # noqa: E402
from tests.test_tag_and_lock import count_statements  # noqa: E402

PG_SERVER = os.environ.get("TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
NOW = datetime.fromisoformat("2022-09-15T10:00:00+08:00")
PS = m.PersonStatus
PAGE_RUNS = 20


def database_url(scale: float) -> str:
    return f"{PG_SERVER}/ciie_bench_{'full' if scale >= 1 else str(scale).replace('.', '_')}"


def bench_app(url: str, **extra: Any):
    config = {"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None,
              "RATELIMIT_STORAGE_URI": "memory://", "MAIL_BACKEND": "log",
              "UPLOAD_FOLDER": os.path.join(ROOT, "instance", "bench-uploads"),
              "SMS_OUTBOX": os.path.join(ROOT, "instance", "bench-sms.jsonl")}
    app = create_app("test", **{**config, **extra})
    for name in ("flask_appbuilder", "alembic", "app"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return app


def build(scale: float) -> dict[str, int]:
    """A fresh database: migrations, roles, the demo, then the generated expo."""
    from flask_migrate import upgrade

    from app.cli import sync_roles
    from app.demo import load_demo

    url = database_url(scale)
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    app = bench_app(url)
    with app.app_context():
        upgrade()
        sync_roles()
        clock.set_now(NOW)
        load_demo()
        db.session.remove()
        db.engine.dispose()
    return generate(url, scale)


# ---- measuring ------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


PAGES = [
    # (label, login, url)
    ("delegation persons", "sh-delegation", "/delegation/persons/list/"),
    ("delegation persons, filtered", "sh-delegation",
     "/delegation/persons/list/?_flt_0_status=awaiting_payment&_flt_0_tag=visitor"),
    ("delegation persons, name search", "sh-delegation",
     "/delegation/persons/list/?_flt_2_person_name=王"),
    # Exact number searches, typed as people type them ({…}: a generated Shanghai person's).
    ("delegation persons, ID number search", "sh-delegation",
     "/delegation/persons/list/?_flt_0_person_id_search={id_number}"),
    ("delegation persons, mobile search", "sh-delegation",
     "/delegation/persons/list/?_flt_0_person_mobile_search={mobile}"),
    ("delegation units, submitted", "sh-delegation",
     "/delegation/units/list/?_flt_0_status=submitted"),
    ("finance transfer queue", "finance", "/finance/transfers/list/?_flt_0_status=pending"),
    ("reviewer queue", "reviewer", "/review/queue/list/"),
    ("unit persons", UNIT_A, "/unit/persons/list/"),
]


def searched_numbers(app) -> dict[str, str]:
    """The ID and mobile numbers of the demo unit's newest person (Shanghai), spaced out and
    with +86 as people type them, URL-encoded."""
    with app.app_context():
        id_number, mobile = db.session.execute(
            sa.select(m.Person.id_number, m.Person.mobile).join(m.Unit)
            .where(m.Unit.login == UNIT_A).order_by(m.Person.id.desc()).limit(1)).one()
        db.session.remove()
    national = mobile.removeprefix("+86")
    return {"id_number": quote(f"{id_number[:6]} {id_number[6:14]} {id_number[14:]}"),
            "mobile": quote(f"+86 {national[:3]} {national[3:7]} {national[7:]}")}


def measure_pages(app) -> list[dict]:
    rows = []
    clients: dict[str, Client] = {}
    numbers = searched_numbers(app)
    for label, username, url in PAGES:
        url = url.format(**numbers)
        if username not in clients:
            clients[username] = Client(app, username)
        client = clients[username]
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        found = re.search(r'id="all-matching" data-count="(\d*)"', response.data.decode())
        times, counts = [], []
        for _ in range(PAGE_RUNS):
            responses = []
            start = time.perf_counter()
            counts.append(count_statements(
                app, lambda r=responses, c=client, u=url: r.append(c.get(u))))
            times.append(time.perf_counter() - start)
            assert responses[0].status_code == 200
        rows.append({"what": label, "median_ms": statistics.median(times) * 1000,
                     "p95_ms": percentile(times, 0.95) * 1000, "statements": max(counts),
                     "rows": _rows(found, app.config["LIST_COUNT_LIMIT"])})
    return rows


def _rows(found: re.Match | None, limit: int) -> str:
    """The row count the page showed: exact, or past the list's count limit."""
    if found is None:
        return "–"
    return f"{int(found.group(1)):,} rows" if found.group(1) else f"> {limit:,} rows"


def _timed(app, call: Callable[[], Any]) -> tuple[float, int, Any]:
    results = []
    start = time.perf_counter()
    count = count_statements(app, lambda: results.append(call()))
    return time.perf_counter() - start, count, results[0]


def _user(name: str):
    return actor_for_user(db.session.scalars(sa.select(m.User).where(
        m.User.username == name)).one())


def measure_batches(scale: float) -> list[dict]:
    """The batches as production runs them: set-based SQL, then the notices' send jobs put on
    a real Redis queue (dropped afterwards; sending is the workers' business)."""
    import redis

    from app.workflow import locking, payments, review

    PR, UR = m.PersonRegistration, m.UnitRegistration
    sizes = {"lock": max(50, round(5000 * scale)), "confirm": max(10, round(1000 * scale)),
             "review": max(50, round(5000 * scale))}
    rows = []
    redis.Redis.from_url(REDIS_URL).flushdb()
    app = bench_app(database_url(scale), REDIS_URL=REDIS_URL)
    with app.app_context():
        clock.set_now(NOW)
        delegation, finance, reviewer = (_user(name) for name in
                                         ("sh-delegation", "finance", "reviewer"))
        shanghai = delegation.delegation_id
        lock_ids = list(db.session.scalars(
            sa.select(PR.id).join(UR, UR.id == PR.unit_registration_id)
            .where(UR.delegation_id == shanghai, UR.status == m.UnitStatus.approved,
                   PR.status == PS.submitted, PR.tag.is_not(None))
            .order_by(PR.id).limit(sizes["lock"])))
        transfer_ids = list(db.session.scalars(
            sa.select(m.Payment.id).where(m.Payment.channel == m.PaymentChannel.transfer,
                                          m.Payment.status == m.PaymentStatus.pending)
            .order_by(m.Payment.id).limit(sizes["confirm"])))
        review_ids = list(db.session.scalars(
            sa.select(PR.id).where(PR.status == PS.awaiting_review)
            .order_by(PR.id).limit(sizes["review"])))
        db.session.rollback()
        for label, ids, call in (
            ("batch lock", lock_ids,
             lambda: locking.lock_persons(delegation, lock_ids)),
            ("batch confirm transfers", transfer_ids,
             lambda: payments.confirm_transfers(finance, transfer_ids)),
            ("batch pass review", review_ids,
             lambda: review.pass_persons(reviewer, review_ids)),
        ):
            elapsed, count, result = _timed(app, call)
            rows.append({"what": f"{label} ({len(ids):,})", "median_ms": elapsed * 1000,
                         "p95_ms": None, "statements": count,
                         "rows": f"{len(result.done):,} done"})
            db.session.remove()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return rows


def measure_notices(scale: float) -> dict:
    """Write and enqueue the payment notices of a lock batch over 10,000 units (scaled) on a
    real Redis queue (the rq jobs are then dropped: sending them is the workers' business)."""
    import redis

    from app.workflow.locking import lock_notices
    from app.workflow.notices import create_notices, enqueue_sends

    redis.Redis.from_url(REDIS_URL).flushdb()
    app = bench_app(database_url(scale), REDIS_URL=REDIS_URL)
    with app.app_context():
        clock.set_now(NOW)
        batch = db.session.scalars(sa.select(m.LockBatch).order_by(m.LockBatch.id.desc())
                                   .limit(1)).one()
        edition = db.session.get(m.Edition, batch.edition_id)

        def notify() -> int:
            ids = create_notices(lock_notices(batch, edition))
            db.session.commit()
            enqueue_sends(ids)
            return len(ids)

        elapsed, count, sent = _timed(app, notify)
        units = db.session.scalar(sa.select(sa.func.count(sa.distinct(m.Notification.unit_id)))
                                  .where(m.Notification.dedupe_key.like(f"lock:{batch.id}:%")))
        queued = app.extensions["ciie_queue"].queue.count
        db.session.execute(sa.delete(m.Notification).where(
            m.Notification.dedupe_key.like(f"lock:{batch.id}:%")))
        db.session.commit()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return {"what": f"enqueue lock notices ({units:,} units)", "median_ms": elapsed * 1000,
            "p95_ms": None, "statements": count, "rows": f"{sent:,} notices, {queued:,} jobs"}


def export_in_child(scale: float) -> dict:
    """Run the persons export in a fresh process: its time and the peak memory it added."""
    output = subprocess.run([sys.executable, __file__, "--export", str(scale)], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def export_child(scale: float) -> None:
    from app.exports import PERSONS, write_export
    from app.storage import path_of

    app = bench_app(database_url(scale))
    with app.app_context():
        clock.set_now(NOW)
        actor = _user("sh-delegation")
        db.session.rollback()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        elapsed, count, report = _timed(
            app, lambda: write_export(PERSONS, actor, {"filters": []}, lambda *a: None))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = os.path.getsize(path_of(report["file_key"]))
        os.remove(path_of(report["file_key"]))
    print(json.dumps({"what": f"Excel export ({report['done']:,} persons)",
                      "median_ms": elapsed * 1000, "p95_ms": None, "statements": count,
                      "rows": f"+{(after - before) / 1024:.0f} MiB peak, "
                              f"{size / 1024 / 1024:.1f} MiB file"}))


def measure_throughput(scale: float, seconds: float = 20.0, threads: int = 8) -> dict:
    """Requests per second of one logged-in delegation user's persons list, served by gunicorn
    (2 workers) on loopback; bounded in time and count."""
    import requests

    port = free_port()
    env = dict(os.environ, CIIE_CONFIG="development", DATABASE_URL=database_url(scale),
               SECRET_KEY="benchmark-secret-key-of-32-bytes!!", CIIE_NOW=NOW.isoformat(),
               RATELIMIT_STORAGE_URI="memory://", MAIL_BACKEND="log", PYTHONPATH=ROOT)
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "run:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(base + "/login/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.3)
        session = requests.Session()
        page = session.get(base + "/login/").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        from app.demo import DEMO_PASSWORD

        response = session.post(base + "/login/", allow_redirects=False, data={
            "username": "sh-delegation", "password": DEMO_PASSWORD, "csrf_token": token})
        assert response.status_code == 302
        url = base + "/delegation/persons/list/"
        latencies: list[float] = []
        errors = [0]
        stop_at = time.time() + seconds
        lock = threading.Lock()

        def load() -> None:
            own = requests.Session()
            own.cookies.update(session.cookies)
            for _ in range(10_000):
                if time.time() >= stop_at:
                    break
                start = time.perf_counter()
                ok = own.get(url, timeout=30).status_code == 200
                with lock:
                    latencies.append(time.perf_counter() - start)
                    errors[0] += not ok

        workers = [threading.Thread(target=load) for _ in range(threads)]
        begin = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - begin
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"what": f"persons list under load ({threads} clients, gunicorn -w 2)",
            "median_ms": statistics.median(latencies) * 1000,
            "p95_ms": percentile(latencies, 0.95) * 1000, "statements": None,
            "rows": f"{len(latencies) / wall:.1f} req/s, {errors[0]} errors"}


# ---- the table ------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(results: dict[float, list[dict]], built: dict[float, Any]) -> None:
    scales = sorted(results)
    print()
    print(f"machine: {platform.node()} · {os.cpu_count()} cores · Python "
          f"{platform.python_version()} · {_pg_version()}")
    for scale in scales:
        info = built.get(scale)
        if info:
            print(f"scale {scale:g}: built in {info['seconds']:.0f} s: " + ", ".join(
                f"{k} {v:,}" for k, v in info["rows"].items()))
    header = "| measurement | " + " | ".join(
        f"{label} ({s:g})" for s in scales
        for label in ("median ms", "p95 ms", "statements", "result")) + " |"
    print(header)
    print("|" + "---|" * (1 + 4 * len(scales)))
    for index, row in enumerate(results[scales[0]]):
        cells = []
        for s in scales:
            r = results[s][index]
            cells += [_fmt(r["median_ms"], 1), _fmt(r["p95_ms"], 1), _fmt(r["statements"]),
                      str(r["rows"])]
        what = re.sub(r" \([\d,]+[^)]*\)$", "", row["what"]) if len(scales) > 1 else row["what"]
        print(f"| {what} | " + " | ".join(cells) + " |")
    if len(scales) > 1:
        small, full = scales[0], scales[-1]
        print()
        for a, b in zip(results[small], results[full], strict=True):
            if b["p95_ms"] is not None and a["statements"] is not None:
                print(f"{a['what']}: p95 ratio {b['p95_ms'] / a['p95_ms']:.2f}, statements "
                      f"{a['statements']} → {b['statements']}")


def _pg_version() -> str:
    engine = sa.create_engine(f"{PG_SERVER}/postgres")
    with engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar()
    engine.dispose()
    return f"PostgreSQL {version}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="0.01,1", help="comma-separated sizes (1 = full)")
    parser.add_argument("--reuse", action="store_true", help="measure the databases as built")
    parser.add_argument("--export", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--skip-load", action="store_true", help="no gunicorn load test")
    args = parser.parse_args()
    if args.export is not None:
        export_child(args.export)
        return
    built: dict[float, Any] = {}
    results: dict[float, list[dict]] = {}
    for scale in [float(s) for s in args.scales.split(",")]:
        if not args.reuse:
            start = time.perf_counter()
            rows = build(scale)
            built[scale] = {"seconds": time.perf_counter() - start, "rows": rows}
            print(f"built scale {scale:g} in {built[scale]['seconds']:.0f} s", flush=True)
        app = bench_app(database_url(scale))
        clock.set_now(NOW)
        rows = measure_pages(app)
        print(f"pages measured at {scale:g}", flush=True)
        rows.append(export_in_child(scale))
        if not args.skip_load:
            rows.append(measure_throughput(scale))
        rows.append(measure_notices(scale))
        # Batches change the data: they come last (re-run without --reuse to measure again).
        rows += measure_batches(scale)
        results[scale] = rows
    print_table(results, built)


if __name__ == "__main__":
    main()
