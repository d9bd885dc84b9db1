"""Lists, API lists and exports read from a real PostgreSQL streaming replica on loopback
(tests/replica.py starts it with `pg_basebackup -R`); writes, the reads of a request that
wrote, and a user's reads until the replica has replayed that user's last write stay on the
primary; a replica that is stopped or lags leaves the primary to answer, never a 5xx."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from app import create_app
from app import models as m
from app.extensions import db
from app.replica import COOKIE_LSN, EXTENSION, primary_lsn
from tests import replica as clusters
from tests.conftest import base_config, fresh_database, text_of

pytestmark = pytest.mark.skipif(clusters.available() is not None,
                                reason=clusters.available() or "")

DELEGATION_UNITS = "/delegation/units/list/"


@pytest.fixture(scope="module")
def pair():
    pair = clusters.ReplicaPair().ensure()
    yield pair
    pair.stop()


@pytest.fixture(scope="module")
def database_url(pair):
    """This module's database, on the replica's primary (the conftest's is on 5432)."""
    with fresh_database(pair.primary_url, f"ciie_test_replica_{os.getpid()}",
                        ready=pair.wait_database) as url:
        yield url


@pytest.fixture(scope="module")
def app(pair, database_url, smtp_server):
    from flask_migrate import upgrade

    from app.cli import sync_roles

    replica_url = pair.replica_url + "/" + database_url.rsplit("/", 1)[1]
    # The replica's state is read when a test says so (caught_up), not on a clock; a high
    # lag limit, since a paused replay counts as lag from the last replayed commit.
    application = create_app("test", **base_config(database_url, smtp_server.port),
                             DATABASE_REPLICA_URL=replica_url, REPLICA_CHECK_INTERVAL=3600,
                             REPLICA_MAX_LAG=300)
    with application.app_context():
        upgrade()
        sync_roles()
    yield application
    application.extensions[EXTENSION].engine.dispose()


@pytest.fixture(scope="module")
def data_app(app, database_url, smtp_server):
    """The tests' own reads and writes, on the primary only (no replica configured)."""
    return create_app("test", **base_config(database_url, smtp_server.port))


def router(app):
    return app.extensions[EXTENSION]


def caught_up(app) -> None:
    """Let the replica replay everything committed so far and the app know it."""
    with app.app_context():
        assert router(app).wait_replayed(primary_lsn())


@contextmanager
def statements(app) -> Iterator[dict[str, list[str]]]:
    """The SQL each engine ran (the replica's own health check left out)."""
    with app.app_context():
        engines = {"primary": db.engine, "replica": router(app).engine}
    seen: dict[str, list[str]] = {name: [] for name in engines}
    listeners = {}
    for name, engine in engines.items():
        def listener(_conn, _cursor, statement, *_args, name=name):
            if "pg_last_wal_replay_lsn" not in statement:
                seen[name].append(statement)
        listeners[name] = listener
        event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        for name, engine in engines.items():
            event.remove(engine, "before_cursor_execute", listeners[name])


def reading(sql: list[str], table: str) -> list[str]:
    return [s for s in sql if s.lstrip().upper().startswith("SELECT") and table in s]


@contextmanager
def replay_paused(pair) -> Iterator[None]:
    engine = sa.create_engine(f"{pair.replica_url}/postgres", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_wal_replay_pause()"))
        conn.commit()
    try:
        yield
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_wal_replay_resume()"))
            conn.commit()
        engine.dispose()


def units_of(response) -> dict[int, str]:
    assert response.status_code == 200, response.data
    return {row["id"]: row["status"] for row in response.json["result"]}


def test_list_page_and_its_count_read_on_the_replica(app, world, login):
    client = login("sh-delegation")
    caught_up(app)
    with statements(app) as sql:
        page = client.get(DELEGATION_UNITS)
        count = client.get("/delegation/units/count")
    assert page.status_code == 200 and count.status_code == 200
    assert "徐汇贸易" in text_of(page)
    assert reading(sql["replica"], "unit_registration")
    assert not reading(sql["primary"], "unit_registration")
    # Users, roles and permissions are read where they are changed.
    assert reading(sql["primary"], "ab_user") and not reading(sql["replica"], "ab_")
    with app.app_context():
        with router(app).engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT pg_is_in_recovery()"))


def test_api_list_reads_on_the_replica_and_the_item_on_the_primary(app, world, login):
    client = login(None)
    headers = client.api_login("sh-delegation")
    caught_up(app)
    with statements(app) as sql:
        listed = units_of(client.get("/api/v1/units/", headers=headers))
    assert listed and reading(sql["replica"], "unit_registration")
    assert not reading(sql["primary"], "unit_registration")
    with statements(app) as sql:
        assert client.get(f"/api/v1/units/{min(listed)}", headers=headers).status_code == 200
    assert reading(sql["primary"], "unit_registration")
    assert not reading(sql["replica"], "unit_registration")


def test_a_write_and_the_same_users_next_reads_stay_on_the_primary(app, world, login, pair):
    xuhui = world.registration("徐汇贸易").id
    writer, other = login("sh-delegation"), login("sh-delegation")
    writer_token, other_token = writer.api_login("sh-delegation"), other.api_login("sh-delegation")
    caught_up(app)
    with replay_paused(pair):
        with statements(app) as sql:
            response = writer.action("/delegation/units", "approve_units", [xuhui])
        assert response.status_code == 302
        assert not sql["replica"]
        with writer.http.session_transaction() as cookie:
            assert cookie.get(COOKIE_LSN)
        with statements(app) as sql:
            seen = units_of(writer.get("/api/v1/units/", headers=writer_token))
            page = text_of(writer.get(DELEGATION_UNITS))
        # The writer sees the write: the replica has not replayed it, the primary answered.
        assert seen[xuhui] == "approved" and "已完成 1 条记录" in page
        assert not reading(sql["replica"], "unit_registration")
        assert reading(sql["primary"], "unit_registration")
        with statements(app) as sql:
            stale = units_of(other.get("/api/v1/units/", headers=other_token))
        # Another user, who wrote nothing, reads on the replica: the old status still.
        assert reading(sql["replica"], "unit_registration")
        assert stale[xuhui] == "submitted"
    caught_up(app)
    with statements(app) as sql:
        assert units_of(writer.get("/api/v1/units/", headers=writer_token))[xuhui] == "approved"
    # Replayed past the write: the writer reads on the replica again, and the cookie forgets.
    assert reading(sql["replica"], "unit_registration")
    with writer.http.session_transaction() as cookie:
        assert COOKIE_LSN not in cookie
    db.session.expire_all()
    assert world.registration("徐汇贸易").status is m.UnitStatus.approved


def test_a_lagging_replica_leaves_the_primary_to_answer(app, world, login, pair, caplog):
    client = login("sh-delegation")
    caught_up(app)
    with replay_paused(pair):
        # Something is written while the replay is paused: the replica falls behind.
        db.session.execute(sa.update(m.Unit).where(m.Unit.name.contains("浙江"))
                           .values(name=m.Unit.name + "（改）"))
        db.session.commit()
        router(app).max_lag = 0.0
        try:
            with caplog.at_level(logging.WARNING, logger="app.replica"):
                with app.app_context():
                    router(app).check()
            with statements(app) as sql:
                response = client.get(DELEGATION_UNITS)
        finally:
            router(app).max_lag = app.config["REPLICA_MAX_LAG"]
    assert response.status_code == 200
    assert not sql["replica"] and reading(sql["primary"], "unit_registration")
    assert "REPLICA_MAX_LAG" in caplog.text


def test_a_stopped_replica_leaves_the_primary_to_answer(app, world, login, pair, caplog):
    client = login("sh-delegation")
    headers = client.api_login("sh-delegation")
    caught_up(app)
    assert client.get(DELEGATION_UNITS).status_code == 200  # a pooled replica connection
    pair.stop_replica()
    try:
        with caplog.at_level(logging.WARNING, logger="app.replica"):
            with statements(app) as sql:
                page = client.get(DELEGATION_UNITS)
                api = client.get("/api/v1/units/", headers=headers)
                count = client.get("/delegation/units/count")
        assert (page.status_code, api.status_code, count.status_code) == (200, 200, 200)
        assert "徐汇贸易" in text_of(page) and units_of(api)
        assert reading(sql["primary"], "unit_registration")
        assert "read replica not used" in caplog.text
        with app.app_context():
            router(app).check()
        assert not router(app).healthy
    finally:
        pair.start_replica()
    caught_up(app)
    with statements(app) as sql:
        assert client.get(DELEGATION_UNITS).status_code == 200
    assert reading(sql["replica"], "unit_registration")


def test_a_sub_delegation_sees_no_more_on_the_replica_than_on_the_primary(
        app, data_app, world, login):
    from tests.conftest import Client

    on_replica = login(None)
    on_primary = Client(data_app)
    replica_headers = on_replica.api_login("sh-pudong")
    primary_headers = on_primary.api_login("sh-pudong")
    caught_up(app)
    with statements(app) as sql:
        replica_rows = units_of(on_replica.get("/api/v1/units/", headers=replica_headers))
        replica_page = text_of(on_replica.get("/api/v1/persons/?q=(page_size:100)",
                                              headers=replica_headers))
    assert reading(sql["replica"], "unit_registration")
    primary_rows = units_of(on_primary.get("/api/v1/units/", headers=primary_headers))
    assert replica_rows == primary_rows
    assert replica_page == text_of(on_primary.get("/api/v1/persons/?q=(page_size:100)",
                                                  headers=primary_headers))
    # Pudong's units only: Xuhui's unit is in Shanghai's delegation, not in this scope.
    assert world.registration("浦东医疗").id in replica_rows
    assert world.registration("徐汇贸易").id not in replica_rows


def test_an_export_reads_on_the_replica(app, world):
    from app.tasks import run_task

    # The queued task an export page creates; the worker's job then runs it.
    task = m.BackgroundTask(operation="export_units", user_id=world.user("sh-delegation").id,
                            params={"filters": [], "language": "zh"}, total=0, processed=0,
                            status=m.TaskStatus.queued)
    db.session.add(task)
    db.session.commit()
    with app.app_context(), statements(app) as sql:
        outcome = run_task(task.id)
        db.session.remove()
    assert outcome == "done"
    task_id = task.id
    with app.app_context():
        assert db.session.get(m.BackgroundTask, task_id).status is m.TaskStatus.done
    assert reading(sql["replica"], "unit_registration")
    assert not reading(sql["primary"], "unit_registration")


def test_every_list_page_of_every_role_reads_its_rows_on_the_replica(app, world, login):
    """Each list, count and API list an account of each role may open: 200, its rows read on
    the replica, nothing but the security tables read on the primary."""
    with app.test_request_context():
        from flask import url_for

        urls = sorted(url_for(endpoint) for endpoint in router(app).endpoints
                      if not app.url_map._rules_by_endpoint[endpoint][0].arguments)
    # One account of each role: a role's accounts open the same pages.
    users = {user.roles[0].name: user.username for user in reversed(
        db.session.scalars(sa.select(m.User).order_by(m.User.id)).all()) if user.roles}
    opened = set()
    for username in users.values():
        client = login(username)
        headers = client.api_login(username)
        caught_up(app)
        for url in urls:
            with statements(app) as sql:
                response = client.get(url, headers=headers if "/api/" in url else {})
            if response.status_code != 200:
                assert response.status_code in (302, 401, 403, 404), (username, url)
                continue
            opened.add(url)
            on_primary = [s for s in sql["primary"] if not reading([s], "ab_")]
            assert not on_primary, (username, url, on_primary)
            assert reading(sql["replica"], "FROM"), (username, url)
    assert {"/delegation/persons/list/", "/unit/persons/list/", "/api/v1/persons/"} <= opened


def test_without_a_replica_nothing_changes_and_sqlite_refuses_one(data_app, tmp_path):
    assert EXTENSION not in data_app.extensions
    with pytest.raises(RuntimeError, match="DATABASE_REPLICA_URL needs a PostgreSQL primary"):
        create_app("test", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/ciie.db",
                   DATABASE_REPLICA_URL="postgresql://postgres@127.0.0.1:1/none",
                   UPLOAD_FOLDER=str(tmp_path / "uploads"))
