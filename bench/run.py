"""Expo-scale benchmark: the same measurements on a 1% and a full-size database, one table.

    .venv/bin/python bench/run.py                # build both databases (a few minutes), measure
    .venv/bin/python bench/run.py --reuse        # measure the databases an earlier run built
    .venv/bin/python bench/run.py --scales 0.01  # only the small one
    .venv/bin/python bench/run.py --json out.json  # the figures as JSON too

Every list page is measured beside its peer, a plain Flask-AppBuilder ModelView over the same
tables (bench/peer.py), with the time its SQL took; throughput is loaded by wrk (bench/load.py).
Needs PostgreSQL (TEST_PG_SERVER, default postgresql://postgres@127.0.0.1:5432), Redis
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/14, flushed) and wrk (apt-get install wrk).
Never part of the test suite.
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
from bench.load import load, login_cookie, serve  # noqa: E402
from bench.peer import NAME_SEARCHED, add_peer_views, granted  # noqa: E402
from bench.peer import PREFIX as PEER  # noqa: E402
from tests.conftest import UNIT_A, Client  # noqa: E402

PG_SERVER = os.environ.get("TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# Databases are <prefix>_full and <prefix>_0_01: another prefix keeps a second copy apart.
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "ciie_bench")
NOW = datetime.fromisoformat("2022-09-15T10:00:00+08:00")
PS = m.PersonStatus
PAGE_RUNS = 20
LOAD_CLIENTS = 8


def database_url(scale: float) -> str:
    return f"{PG_SERVER}/{DB_PREFIX}_{'full' if scale >= 1 else str(scale).replace('.', '_')}"


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
        # The app's keys seal the generated numbers.
        return generate(url, scale)


# ---- measuring ------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


PAGES = [
    # (label, login, url, the peer's url: bench/peer.py, or None where plain FAB has none)
    ("delegation persons", "sh-delegation", "/delegation/persons/list/",
     f"{PEER}/delegation-persons/list/"),
    ("delegation persons, filtered", "sh-delegation",
     "/delegation/persons/list/?_flt_0_status=awaiting_payment&_flt_0_tag=visitor",
     f"{PEER}/delegation-persons/list/?_flt_0_status=awaiting_payment&_flt_0_tag=visitor"),
    ("delegation persons, name search", "sh-delegation",
     f"/delegation/persons/list/?_flt_2_person_name={NAME_SEARCHED}",
     f"{PEER}/delegation-persons-named/list/"),
    # Exact number searches, typed as people type them ({…}: a generated Shanghai person's).
    ("delegation persons, ID number search", "sh-delegation",
     "/delegation/persons/list/?_flt_0_person_id_search={id_number}", None),
    ("delegation persons, mobile search", "sh-delegation",
     "/delegation/persons/list/?_flt_0_person_mobile_search={mobile}", None),
    ("delegation units, submitted", "sh-delegation",
     "/delegation/units/list/?_flt_0_status=submitted",
     f"{PEER}/delegation-units/list/?_flt_0_status=submitted"),
    ("finance transfer queue", "finance", "/finance/transfers/list/?_flt_0_status=pending",
     f"{PEER}/finance-transfers/list/?_flt_0_status=pending"),
    ("reviewer queue", "reviewer", "/review/queue/list/", f"{PEER}/review-queue/list/"),
    ("unit persons", UNIT_A, "/unit/persons/list/", f"{PEER}/unit-persons/list/"),
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


class SqlMeter:
    """The statements the app's engine sends while the block runs (executemany counts once)
    and the time they took: from the cursor's execute to its return, which with psycopg
    includes the rows' transfer; turning rows into objects is Python's share."""

    def __init__(self, app) -> None:
        with app.app_context():
            self.engine = db.engine
        self.statements = 0
        self.seconds = 0.0

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements += 1
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.seconds += time.perf_counter() - conn.info["bench_started"].pop()

    def __enter__(self) -> SqlMeter:
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)


def _page_figures(samples: list[tuple[float, float, int]]) -> dict:
    """Median and p95 of the page, median of its SQL and of the rest (page − SQL, per
    request), the most statements one request sent."""
    pages = [page for page, _, _ in samples]
    return {"median_ms": statistics.median(pages) * 1000,
            "p95_ms": percentile(pages, 0.95) * 1000,
            "sql_ms": statistics.median(sql for _, sql, _ in samples) * 1000,
            "python_ms": statistics.median(page - sql for page, sql, _ in samples) * 1000,
            "statements": max(count for _, _, count in samples)}


def measure_pages(app) -> list[dict]:
    """Each page and its peer: one warm-up each, then PAGE_RUNS requests of both, taking
    turns, so that a busy moment of the machine falls on both alike."""
    rows = []
    clients: dict[str, Client] = {}
    numbers = searched_numbers(app)
    with granted(app, sorted({username for _, username, _, _ in PAGES})):
        for label, username, url, peer in PAGES:
            url = url.format(**numbers)
            if username not in clients:
                clients[username] = Client(app, username)
            client = clients[username]
            urls = [url] + ([peer] if peer else [])
            responses = [client.get(u) for u in urls]
            for u, response in zip(urls, responses, strict=True):
                assert response.status_code == 200, (u, response.status_code)
            samples: list[list[tuple[float, float, int]]] = [[] for _ in urls]
            for _ in range(PAGE_RUNS):
                for u, taken in zip(urls, samples, strict=True):
                    with SqlMeter(app) as meter:
                        start = time.perf_counter()
                        status = client.get(u).status_code
                        elapsed = time.perf_counter() - start
                    assert status == 200, (u, status)
                    taken.append((elapsed, meter.seconds, meter.statements))
            row = {"what": label, **_page_figures(samples[0]),
                   "rows": _rows(responses[0].data.decode())}
            if peer:
                fab = _page_figures(samples[1])
                row["peer"] = fab
                row["ratio"] = row["median_ms"] / fab["median_ms"]
            rows.append(row)
    return rows


def _rows(html: str) -> str:
    """The record count the page's header showed: exact, or "more than" the list's limit."""
    found = re.search(r"(?:Record Count|记录数目):</strong>\s*([^<]*?)\s*<", html)
    if found is None:
        return "–"
    number = int(re.sub(r"\D", "", found.group(1)) or 0)
    return f"{number:,} rows" if found.group(1).isdigit() else f"> {number:,} rows"


def _timed(app, call: Callable[[], Any]) -> tuple[float, int, Any]:
    with SqlMeter(app) as meter:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
    return elapsed, meter.statements, result


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


# (label, login, path) of the pages loaded under gunicorn.
LOADED = [
    ("persons list", "sh-delegation", "/delegation/persons/list/"),
    ("unit persons", UNIT_A, "/unit/persons/list/"),
    ("reviewer queue", "reviewer", "/review/queue/list/"),
]


def throughput_rows(bases: list[str], seconds: float, clients: int = LOAD_CLIENTS,
                    setup: str = "gunicorn -w 2") -> list[dict]:
    """Requests a second of each loaded page, logged in as its user, `clients` connections
    spread over the servers at `bases` (one, or several: app processes, a replica)."""
    rows = []
    for label, username, path in LOADED:
        result = load(bases, path, login_cookie(bases[0], username), clients, seconds)
        rows.append({"what": f"{label} under load ({clients} clients, {setup})",
                     "median_ms": result["p50_ms"], "p95_ms": result["p95_ms"],
                     "statements": None,
                     "rows": f"{result['req_s']:.1f} req/s, "
                             f"{result['not_200'] + result['socket_errors']} errors, "
                             f"wrk {result['generator_cpu']:.1%} of a core"})
    return rows


def measure_throughput(scale: float, seconds: float) -> list[dict]:
    """The loaded pages served by gunicorn (2 sync workers) on loopback."""
    with serve(database_url(scale), workers=2, env={"CIIE_NOW": NOW.isoformat()}) as base:
        return throughput_rows([base], seconds)


# ---- the table ------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


PAGE_HEADER = ("page", "median ms", "p95 ms", "SQL ms", "Python ms", "statements", "result",
               "FAB median ms", "FAB p95 ms", "FAB statements", "ours / FAB")


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def print_table(results: dict[float, dict[str, list[dict]]], built: dict[float, Any],
                about: dict[str, str]) -> None:
    """The tables in bench/README.md's Markdown: pages beside their peer, one table a size;
    then export, throughput, notices and batches with both sizes side by side."""
    scales = sorted(results)
    print()
    print(f"Measured on {about['date']} at commit {about['commit']} with `{about['command']}`; "
          f"machine: {about['machine']}.")
    for scale in scales:
        info = built.get(scale)
        if info:
            print(f"- scale {scale:g}: built in {info['seconds']:.0f} s: " + ", ".join(
                f"{k} {v:,}" for k, v in info["rows"].items()))
    for scale in scales:
        print(f"\nList pages at scale {scale:g} (SQL ms and Python ms: medians of the SQL inside "
              "the page and of the page minus its SQL; FAB: plain ModelView, bench/peer.py):\n")
        print(_line(list(PAGE_HEADER)))
        print(_line(["---"] * len(PAGE_HEADER)))
        for r in results[scale]["pages"]:
            fab = r.get("peer")
            print(_line([r["what"], _fmt(r["median_ms"], 1), _fmt(r["p95_ms"], 1),
                         _fmt(r["sql_ms"], 1), _fmt(r["python_ms"], 1), _fmt(r["statements"]),
                         r["rows"]] + ([_fmt(fab["median_ms"], 1), _fmt(fab["p95_ms"], 1),
                                        _fmt(fab["statements"]), f"{r['ratio']:.2f}"]
                                       if fab else ["–"] * 4)))
    print()
    header = ["measurement"] + [f"{label} ({s:g})" for s in scales
                                for label in ("median ms", "p95 ms", "statements", "result")]
    print(_line(header))
    print(_line(["---"] * len(header)))
    for index, row in enumerate(results[scales[0]]["other"]):
        cells = []
        for s in scales:
            r = results[s]["other"][index]
            cells += [_fmt(r["median_ms"], 1), _fmt(r["p95_ms"], 1), _fmt(r["statements"]),
                      str(r["rows"])]
        what = re.sub(r" \([\d,]+[^)]*\)$", "", row["what"]) if len(scales) > 1 else row["what"]
        print(_line([what] + cells))
    if len(scales) > 1:
        small, full = scales[0], scales[-1]
        print("\np95 at full size against p95 at 1%:\n")
        for a, b in zip(results[small]["pages"], results[full]["pages"], strict=True):
            print(f"- {a['what']}: p95 ratio {b['p95_ms'] / a['p95_ms']:.2f}, statements "
                  f"{a['statements']} → {b['statements']}")


def _about(argv: list[str]) -> dict[str, str]:
    """When, where and on what code the run measured (the README's history needs all)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "commit": commit + (" + uncommitted changes" if changed else ""),
            "command": " ".join([".venv/bin/python", "bench/run.py", *argv]),
            "machine": f"{platform.node()} · {os.cpu_count()} cores · Python "
                       f"{platform.python_version()} · {_pg_version()}"}


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
    parser.add_argument("--load-seconds", type=float, default=8.0,
                        help="seconds of load for each loaded page (after 1 s of warm-up)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if args.export is not None:
        export_child(args.export)
        return
    about = _about(sys.argv[1:])
    built: dict[float, Any] = {}
    results: dict[float, dict[str, list[dict]]] = {}
    for scale in [float(s) for s in args.scales.split(",")]:
        if not args.reuse:
            start = time.perf_counter()
            rows = build(scale)
            built[scale] = {"seconds": time.perf_counter() - start, "rows": rows}
            print(f"built scale {scale:g} in {built[scale]['seconds']:.0f} s", flush=True)
        app = bench_app(database_url(scale))
        # Before the app's first request: Flask takes no new routes after it.
        add_peer_views(app)
        clock.set_now(NOW)
        pages = measure_pages(app)
        print(f"pages measured at {scale:g}", flush=True)
        other = [export_in_child(scale)]
        if not args.skip_load:
            other += measure_throughput(scale, args.load_seconds)
        other.append(measure_notices(scale))
        # Batches change the data: they come last (re-run without --reuse to measure again).
        other += measure_batches(scale)
        results[scale] = {"pages": pages, "other": other}
    print_table(results, built, about)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({**about, "built": {f"{s:g}": b for s, b in built.items()},
                       "results": {f"{s:g}": r for s, r in results.items()}}, file,
                      ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
