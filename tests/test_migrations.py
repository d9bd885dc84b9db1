"""Alembic owns the schema: `flask db upgrade` builds an empty database on SQLite and on
PostgreSQL, and the models and the migrations agree (autogenerate finds nothing)."""
from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import models as m
from tests.conftest import ROOT


def diff_against_models(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, m.metadata)
    finally:
        engine.dispose()


def test_postgresql_schema_matches_the_models(app, database_url):
    # The session's database was built by `upgrade()` alone (FAB_CREATE_DB is off).
    assert diff_against_models(database_url) == []
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"ab_user", "ab_role", "unit", "person_registration", "audit_event"} <= tables


def test_flask_db_upgrade_builds_an_empty_sqlite_database(tmp_path):
    path = tmp_path / "fresh.db"
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{path}", FLASK_APP="run.py",
               CIIE_CONFIG="development", PYTHONPATH=ROOT)
    env.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert diff_against_models(f"sqlite:///{path}") == []
    check = subprocess.run([sys.executable, "-m", "flask", "db", "check"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_fab_creates_nothing_behind_alembics_back(tmp_path):
    from app import create_app

    path = tmp_path / "untouched.db"
    create_app("development", SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()
