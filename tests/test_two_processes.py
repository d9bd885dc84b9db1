"""The production shape: app processes with no local state (sessions in signed cookies, rate
limits and codes in Redis, uploads and the payment sandbox on shared paths), an rq worker,
PostgreSQL. Two gunicorn processes serve one user: a login, a lock with its payment notice and
a payment notification work across them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import redis
import requests
import sqlalchemy as sa

from app import models as m
from app.demo import DEMO_PASSWORD
from app.extensions import db
from tests.conftest import DEMO_NOW, ROOT, SMS_OUTBOX, UNIT_A, free_port, run_worker


@pytest.fixture
def servers(database_url, redis_url, smtp_server, world, tmp_path):
    env = dict(os.environ)
    env.update({
        "CIIE_CONFIG": "development", "SECRET_KEY": "two-processes-share-this-secret-key!",
        "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url, "AUTH_RATE_LIMIT": "3 per 1 minute",
        "CIIE_NOW": DEMO_NOW.isoformat(), "MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port), "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "PAYMENT_SANDBOX_DIR": str(tmp_path / "payment-sandbox"), "SMS_OUTBOX": SMS_OUTBOX,
        "PYTHONPATH": ROOT,
    })
    env.pop("CIIE_INSTANCE_DIR", None)
    ports = [free_port(), free_port()]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "run:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    deadline = time.time() + 60
    for url in urls:
        while True:
            try:
                if requests.get(url + "/login/", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.time() < deadline, "gunicorn did not start"
            time.sleep(0.3)
    worker_env = dict(env, FLASK_APP="run.py")
    yield urls, worker_env
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def csrf(session: requests.Session, url: str) -> str:
    page = session.get(url).text
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"',
                     page).group(1)


def log_in(session: requests.Session, base: str, username: str) -> None:
    token = csrf(session, base + "/login/")
    response = session.post(base + "/login/", data={
        "username": username, "password": DEMO_PASSWORD, "csrf_token": token},
        allow_redirects=False)
    assert response.status_code == 302, response.text[:500]


def action(session: requests.Session, base: str, route: str, name: str, ids: list[int]):
    token = csrf(session, base + route + "/list/")
    return session.post(base + route + "/action_post", data={
        "csrf_token": token, "action": name, "rowid": [str(i) for i in ids]},
        allow_redirects=False)


def test_login_lock_and_payment_across_two_processes(servers, world, smtp_server):
    (first, second), worker_env = servers

    # A session opened on one process is valid on the other (nothing kept in a process).
    delegation = requests.Session()
    log_in(delegation, first, "sh-delegation")
    assert "欢迎" in delegation.get(second + "/").text

    # Approve on the first, tag and lock on the second; the notice goes through Redis.
    xuhui = world.registration("徐汇贸易")
    assert action(delegation, first, "/delegation/units", "approve_units",
                  [xuhui.id]).status_code == 302
    zhao = world.person("赵敏")
    action(delegation, second, "/delegation/persons", "tag_visitor", [zhao.id])
    action(delegation, second, "/delegation/persons", "lock_persons", [zhao.id])
    db.session.expire_all()
    assert world.person("赵敏").status is m.PersonStatus.awaiting_payment
    assert run_worker(worker_env).returncode == 0
    assert any(msg["Subject"] == "进博会证件费待支付" for msg in smtp_server.wait_for(2))

    # The unit opens an Alipay payment on the first process; the payer's phone pays on the
    # second, whose notification confirms it; the first sees the order paid.
    unit = requests.Session()
    log_in(unit, first, UNIT_A)
    order = db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()
    token = csrf(unit, f"{first}/unit/orders/pay/{order.id}")
    page = unit.post(f"{first}/unit/orders/pay/{order.id}/start",
                     data={"csrf_token": token, "channel": "alipay"})
    payment = db.session.scalars(sa.select(m.Payment).where(m.Payment.order_id == order.id)
                                 ).one()
    assert payment.number in page.text
    phone = requests.Session()
    sandbox_page = f"{second}/sandbox/pay/qr/alipay/{payment.number}"
    phone.post(sandbox_page, data={"csrf_token": csrf(phone, sandbox_page)})
    status = unit.get(f"{first}/unit/orders/pay/payment/{payment.id}/status").json()
    assert status["paid"] and status["order_status"] == "paid"

    # Login attempts are counted in Redis, whichever process answers them (the limit is 3 a
    # minute from one address: start the count afresh, the logins above counted too).
    redis.Redis.from_url(worker_env["REDIS_URL"]).flushdb()
    intruder = requests.Session()
    codes = []
    for base in (first, second, first, second):
        token = csrf(intruder, base + "/login/")
        codes.append(intruder.post(base + "/login/", data={
            "username": UNIT_A, "password": "wrong", "csrf_token": token},
            allow_redirects=False).status_code)
    assert codes == [401, 401, 401, 429]
