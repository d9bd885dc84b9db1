"""Persons from a spreadsheet at the issue's size: a unit uploads 5,000 persons (an xlsx made
by openpyxl, every ID number distinct and valid), reads the preview, confirms; then uploads
the same file again. Prints one Markdown table: wall and CPU time (this process; PostgreSQL's
share is in its own) of each step, the peak resident memory of the process after each step,
what was added.

    .venv/bin/python bench/person_import.py              # 5,000 rows
    .venv/bin/python bench/person_import.py --rows 2000

Needs PostgreSQL (TEST_PG_SERVER, default postgresql://postgres@127.0.0.1:5432); creates and
drops the database ciie_bench_import. The confirmation runs the task in this process (no
Redis): the same operation a worker runs above the inline limit. Never part of the test suite.
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from openpyxl import Workbook  # noqa: E402
from stdnum.cn import ric  # noqa: E402

from app import clock, create_app  # noqa: E402
from app import models as m  # noqa: E402
from app.extensions import db  # noqa: E402
from bench.run import NOW, PG_SERVER  # noqa: E402
from tests.conftest import UNIT_A, Client  # noqa: E402

DATABASE = "ciie_bench_import"


def sheet(rows: int) -> bytes:
    """`rows` persons of Pudong (address code 310115), born on distinct days: each number gets
    its GB 11643 check character from python-stdnum."""
    book = Workbook(write_only=True)
    persons = book.create_sheet("人员")
    persons.append(["姓名", "性别", "证件类型", "证件号码", "国籍", "手机", "电子邮箱", "职务",
                    "入场日期"])
    born = date(1960, 1, 1)
    for i in range(rows):
        body = f"310115{(born + timedelta(days=i)):%Y%m%d}{i % 900 + 100:03d}"
        persons.append([f"测试{i:05d}", "", "居民身份证", body + ric.calc_check_digit(body + "0"),
                        "CN", f"139{i:08d}", f"p{i}@example.com", "采购", "2022-11-05,2022-11-06"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    rows = parser.parse_args().rows
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    uploads = tempfile.mkdtemp(prefix="ciie-bench-import-")
    try:
        app = create_app("test", SQLALCHEMY_DATABASE_URI=f"{PG_SERVER}/{DATABASE}",
                         REDIS_URL=None, RATELIMIT_STORAGE_URI="memory://", MAIL_BACKEND="log",
                         UPLOAD_FOLDER=uploads, PERSON_IMPORT_MAX_ROWS=max(rows, 5000))
        clock.set_now(NOW)
        with app.app_context():
            from flask_migrate import upgrade

            from app.cli import sync_roles
            from app.demo import load_demo

            upgrade(revision="heads")
            sync_roles()
            load_demo()
            db.session.remove()
        data = sheet(rows)
        client = Client(app, UNIT_A)
        results = []
        for step in ("first upload", "same file again"):
            start, cpu = time.perf_counter(), time.process_time()
            page = client.post("/unit/persons/import/preview", data={
                "person_sheet": (io.BytesIO(data), "bench.xlsx")},
                content_type="multipart/form-data")
            previewed, preview_cpu = time.perf_counter() - start, time.process_time() - cpu
            assert page.status_code == 200, page.data[:300]
            html = page.data.decode()
            pending = html.split('name="pending" value="')[1].split('"')[0]
            preview_mb = peak_mb()
            start, cpu = time.perf_counter(), time.process_time()
            done = client.post("/unit/persons/import/confirm", data={"pending": pending})
            confirmed, confirm_cpu = time.perf_counter() - start, time.process_time() - cpu
            assert done.status_code == 302, done.data[:300]
            with app.app_context():
                record = db.session.scalars(sa.select(m.PersonImport)
                                            .order_by(m.PersonImport.id.desc())).first()
                results.append((step, previewed, preview_cpu, preview_mb, confirmed,
                                confirm_cpu, peak_mb(), record.added, record.unchanged))
        print(f"Persons from a spreadsheet: {rows:,} rows, xlsx of {len(data) / 1024:.0f} KB "
              f"(PostgreSQL, one process, inline task)\n")
        print("| step | preview s | preview CPU s | peak MB | confirm s | confirm CPU s "
              "| peak MB | added | unchanged |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (step, previewed, p_cpu, p_mb, confirmed, c_cpu, c_mb, added,
             unchanged) in results:
            print(f"| {step} | {previewed:.2f} | {p_cpu:.2f} | {p_mb:.0f} | {confirmed:.2f} "
                  f"| {c_cpu:.2f} | {c_mb:.0f} | {added:,} | {unchanged:,} |")
    finally:
        shutil.rmtree(uploads, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
