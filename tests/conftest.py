"""Real-service fixtures: a fresh PostgreSQL database per run, Redis, an SMTP server on loopback,
an rq worker, a live server and Chromium. Each test starts from the demo world, on a business
clock set to 15 September 2022 (before the 5th edition's deadlines)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer

from app import clock, create_app
from app import models as m
from app.demo import DEMO_PASSWORD
from app.extensions import db

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_SERVER = os.environ.get("TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DEMO_NOW = datetime.fromisoformat("2022-09-15T10:00:00+08:00")
SMS_OUTBOX = os.path.join(ROOT, "instance", f"test-sms-{os.getpid()}.jsonl")
# Tables that hold permissions and roles: kept between tests (created once by `ciie init`).
KEEP_TABLES = {"ab_permission", "ab_view_menu", "ab_permission_view", "ab_role",
               "ab_permission_view_role", "alembic_version"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def recorded_statements():
    """The SQL statements sent while the block runs, each once (an executemany counts once),
    as a list filled in place."""
    seen: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", note)


def statements_of(call) -> list[str]:
    """The SQL statements one call sends."""
    with recorded_statements() as seen:
        call()
    return seen


def count_statements(call) -> int:
    """How many SQL statements one call sends (an executemany counts once)."""
    return len(statements_of(call))


@contextmanager
def fresh_database(server: str, name: str, ready=None):
    """An empty PostgreSQL database `name` on `server` (its URL), dropped afterwards;
    `ready(name)` is called once it exists (a replica waits for it)."""
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    if ready:
        ready(name)
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url():
    """A fresh PostgreSQL database for this run, dropped at the end."""
    with fresh_database(PG_SERVER, f"ciie_test_{os.getpid()}") as url:
        yield url


@dataclass
class Mailbox:
    """Messages received by the loopback SMTP server."""

    messages: list = field(default_factory=list)

    def handle(self, envelope) -> None:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        deadline = time.time() + timeout
        while len(self.messages) < count and time.time() < deadline:
            time.sleep(0.05)
        return self.messages

    def clear(self) -> None:
        self.messages.clear()


@pytest.fixture(scope="session")
def smtp_server():
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mailbox.handle(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.port = port
    yield mailbox
    controller.stop()


def base_config(database_url: str, smtp_port: int) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "UPLOAD_FOLDER": os.path.join(ROOT, "instance", f"test-uploads-{os.getpid()}"),
        "SMS_OUTBOX": SMS_OUTBOX,
    }


@pytest.fixture(scope="session", autouse=True)
def badge_signing_key():
    """Production starts only with a badge signing key (app/badge_tokens.py): tests that start
    it use the development key under instance/, made here when missing."""
    from app.badge_tokens import generate_key, load_keys
    from config import Config

    if load_keys(Config.BADGE_SIGNING_KEYS_DIR).signing_key is None:
        generate_key(Config.BADGE_SIGNING_KEYS_DIR)


@pytest.fixture(scope="session")
def app(database_url, smtp_server):
    from flask_migrate import upgrade

    from app.cli import sync_roles

    application = create_app("test", **base_config(database_url, smtp_server.port))
    with application.app_context():
        upgrade()
        sync_roles()
    return application


@pytest.fixture(autouse=True)
def business_clock():
    clock.set_now(DEMO_NOW)
    yield
    clock.set_now(None)


@pytest.fixture(autouse=True)
def clean_database(request):
    """Empty every table but permissions and roles after each test that used the database."""
    yield
    if "app" not in request.fixturenames:
        return
    application = request.getfixturevalue("app")
    with application.app_context():
        db.session.remove()
        tables = [t.name for t in m.metadata.sorted_tables if t.name not in KEEP_TABLES]
        db.session.execute(sa.text(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        db.session.commit()
    if "smtp_server" in request.fixturenames:
        request.getfixturevalue("smtp_server").clear()
    if os.path.exists(SMS_OUTBOX):
        os.remove(SMS_OUTBOX)
    # One-time codes and their counters must not leak from one test into the next.
    application.extensions.pop("ciie_codes", None)
    if "redis_url" in request.fixturenames:
        import redis

        redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()


@dataclass
class World:
    """Handles on the demo data, by the names tests speak of."""

    app: object

    def user(self, username: str) -> m.User:
        return db.session.scalars(sa.select(m.User).where(m.User.username == username)).one()

    def unit(self, name_part: str) -> m.Unit:
        return db.session.scalars(sa.select(m.Unit).where(m.Unit.name.contains(name_part))).one()

    def registration(self, name_part: str) -> m.UnitRegistration:
        """The unit's registration for the current edition."""
        return db.session.scalars(
            sa.select(m.UnitRegistration).join(m.Unit).join(m.Edition)
            .where(m.Unit.name.contains(name_part), m.Edition.is_current)).one()

    def person(self, name: str) -> m.PersonRegistration:
        """The person's registration for the latest edition it registered for."""
        return db.session.scalars(
            sa.select(m.PersonRegistration).join(m.Person).join(m.Edition)
            .where(m.Person.name == name).order_by(m.Edition.number.desc()).limit(1)).one()


UNIT_A = "91310115MA1K4AB30U"   # 上海浦东医疗器械 — Shanghai / Pudong, approved
UNIT_B = "91310104MA1FR0C12P"   # 上海徐汇贸易 — Shanghai / Xuhui, submitted
UNIT_E = "91330100MA27F4F56Q"   # 浙江杭州进出口 — Zhejiang, returned
UNIT_F = "OS2022000001"        # Global Sourcing — overseas, draft


@pytest.fixture(scope="session")
def data_app(app, database_url, smtp_server):
    """A second app on the same database for the tests' own reads and writes. Requests to
    `app` then run in their own app context (own session, g and login), as in production."""
    return create_app("test", **base_config(database_url, smtp_server.port))


@pytest.fixture
def world(app, data_app):
    from app.demo import load_demo

    ctx = data_app.app_context()
    ctx.push()
    load_demo()
    yield World(data_app)
    db.session.remove()
    ctx.pop()


class Client:
    """A test client that logs in like a user and posts forms with a valid CSRF token."""

    def __init__(self, app, username: str | None = None, password: str = DEMO_PASSWORD):
        self.app = app
        self.http = app.test_client()
        self.username = username
        if username:
            response = self.post("/login/", data={"username": username, "password": password})
            assert response.status_code == 302, f"login of {username} failed"

    def csrf_token(self) -> str:
        with self.http.session_transaction() as session:
            if "csrf_token" not in session:
                session["csrf_token"] = os.urandom(20).hex()
            raw = session["csrf_token"]
        return URLSafeTimedSerializer(self.app.secret_key, salt="wtf-csrf-token").dumps(raw)

    def get(self, url: str, **kwargs):
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict | None = None, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token())
        return self.http.post(url, data=data, **kwargs)

    def action(self, view_route: str, action: str, ids: list[int], **extra):
        return self.post(f"{view_route}/action_post",
                         data={"action": action, "rowid": [str(i) for i in ids], **extra})

    def set_language(self, lang: str) -> None:
        self.get(f"/lang/{lang}")

    def api_login(self, username: str, password: str = DEMO_PASSWORD) -> dict:
        response = self.http.post("/api/v1/security/login", json={
            "username": username, "password": password, "provider": "db"})
        assert response.status_code == 200, response.data
        return {"Authorization": f"Bearer {response.json['access_token']}"}


@pytest.fixture
def login(app, world):
    def make(username: str | None) -> Client:
        return Client(app, username)

    return make


def text_of(response) -> str:
    """The visible text of an HTML response, tags stripped and spaces collapsed."""
    html = response.data.decode()
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="session")
def redis_url():
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    conn.ping()
    conn.flushdb()
    yield REDIS_URL
    conn.flushdb()


@pytest.fixture
def worker_env(database_url, smtp_server, redis_url):
    """Environment for an rq worker process on the test database, Redis and SMTP server."""
    env = dict(os.environ)
    env.update({
        "CIIE_CONFIG": "test", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_server.port),
        "FLASK_APP": "run.py", "PYTHONPATH": ROOT, "SMS_OUTBOX": SMS_OUTBOX,
        # The worker runs on the same business clock as the tests.
        "CIIE_NOW": DEMO_NOW.isoformat(),
    })
    return env


def run_worker(env: dict) -> subprocess.CompletedProcess:
    """Run a real rq worker until the queue is empty."""
    return subprocess.run([sys.executable, "-m", "flask", "ciie", "worker", "--burst"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def live_server(app):
    """The app served over HTTP on loopback (for the browser)."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server, world):
    context = browser.new_context(base_url=live_server, locale="zh-CN")
    pg = context.new_page()
    yield pg
    context.close()


def sms_messages() -> list[dict]:
    """What the SMS sandbox 'sent' during this test."""
    import json

    if not os.path.exists(SMS_OUTBOX):
        return []
    with open(SMS_OUTBOX, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
