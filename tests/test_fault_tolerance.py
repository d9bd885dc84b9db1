"""Fault tolerance: Redis that does not answer, a worker killed mid-task, retries that fire.

Real services only: "Redis is down" is a REDIS_URL on a free port with nothing listening; the
workers are real rq processes (one of them killed with signal 9); the SMTP servers are aiosmtpd
on loopback, one of them started only after the first send failed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from app import create_app
from app import models as m
from app.extensions import db
from tests.conftest import (
    ROOT,
    Client,
    Mailbox,
    base_config,
    free_port,
    run_worker,
    sms_messages,
    text_of,
)
from tests.test_registration import RETURNING
from tests.test_tag_and_lock import approve, persons_of

NS = m.NotificationStatus
TS = m.TaskStatus
PS = m.PersonStatus
DEFERRED = "队列恢复后"   # "… will go out as soon as the queue is back"


@pytest.fixture
def dead_redis_app(database_url, smtp_server):
    """The app as production runs it (limiter, queue and codes on Redis), with a Redis that
    does not answer."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    return create_app("test", **{**base_config(database_url, smtp_server.port),
                                 "REDIS_URL": url, "RATELIMIT_STORAGE_URI": url})


def live_redis_app(database_url, smtp_server, redis_url, **config: Any):
    return create_app("test", **{**base_config(database_url, smtp_server.port),
                                 "REDIS_URL": redis_url, **config})


def run_sweep(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "ciie", "sweep"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def start_worker(env: dict) -> subprocess.Popen:
    """A long-running worker (with its scheduler) in its own process group."""
    return subprocess.Popen([sys.executable, "-m", "flask", "ciie", "worker"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    """Warm shutdown of the worker and its scheduler; the group is killed if it lingers."""
    try:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    try:  # the scheduler child outlives a killed worker: end it too
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        db.session.expire_all()
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def notifications(**where: Any) -> list[m.Notification]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Notification).filter_by(**where)
                                   .order_by(m.Notification.id)))


def lock_notices() -> list[m.Notification]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Notification).where(
        m.Notification.dedupe_key.like("lock:%"))))


# ------------------------------------------------------------------ Redis does not answer --

def test_logins_and_pages_work_while_redis_does_not_answer(dead_redis_app, world):
    client = Client(dead_redis_app, "sh-delegation")      # the web login (asserts its 302)
    assert client.get("/").status_code == 200
    assert client.get("/delegation/units/list/").status_code == 200
    headers = Client(dead_redis_app).api_login("sh-delegation")   # the API login (asserts 200)
    assert client.http.get("/api/v1/units/", headers=headers).status_code == 200


def test_a_lock_while_redis_is_down_is_done_says_so_and_its_notices_go_out_once_later(
        dead_redis_app, login, world, worker_env, smtp_server):
    approve(login, world, "徐汇贸易")
    smtp_server.clear()
    zhao = world.person("赵敏")
    client = Client(dead_redis_app, "sh-delegation")
    client.action("/delegation/persons", "tag_visitor", [zhao.id])
    response = client.action("/delegation/persons", "lock_persons", [zhao.id])
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert "已完成 1 条记录" in page and DEFERRED in page
    db.session.expire_all()
    assert world.person("赵敏").status is PS.awaiting_payment
    assert {n.status for n in lock_notices()} == {NS.queued} and len(lock_notices()) == 2

    # Redis is back: the sweeper enqueues what is still queued, a worker sends it.
    swept = run_sweep(worker_env)
    assert swept.returncode == 0, swept.stderr
    assert run_worker(worker_env).returncode == 0
    assert {n.status for n in lock_notices()} == {NS.sent}
    assert len(smtp_server.wait_for(1)) == 1 and len(sms_messages()) == 1
    # Sweeping again (the timer fires every minute) sends nothing twice.
    assert run_sweep(worker_env).returncode == 0
    assert run_worker(worker_env).returncode == 0
    assert len(smtp_server.messages) == 1 and len(sms_messages()) == 1
    assert {n.attempts for n in lock_notices()} == {1}


def test_an_export_while_redis_is_down_waits_for_the_queue_and_runs_when_it_is_back(
        dead_redis_app, world, worker_env):
    client = Client(dead_redis_app, "sh-delegation")
    response = client.post("/delegation/persons/export")
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert DEFERRED in page
    [task] = db.session.scalars(sa.select(m.BackgroundTask)).all()
    assert task.status is TS.queued

    assert run_sweep(worker_env).returncode == 0
    assert run_worker(worker_env).returncode == 0
    db.session.expire_all()
    task = db.session.get(m.BackgroundTask, task.id)
    assert task.status is TS.done and task.file_key


def test_a_code_asked_while_redis_is_down_answers_try_again_and_leaves_nothing(
        dead_redis_app, world, smtp_server):
    response = Client(dead_redis_app).post("/register/returning", data={
        "login": RETURNING, "step": "send_email"})
    assert response.status_code == 503
    assert "请稍后重试" in text_of(response)
    assert notifications() == [] and smtp_server.messages == []


# ------------------------------------------------------------------ a worker killed -------

def test_a_task_whose_worker_is_killed_fails_visibly_and_its_owner_runs_it_again(
        database_url, smtp_server, redis_url, login, world, worker_env):
    approve(login, world, "徐汇贸易")
    ids = persons_of(world, "徐汇贸易", 30, "K")
    login("sh-delegation").action("/delegation/persons", "tag_visitor", ids)
    redis_app = live_redis_app(database_url, smtp_server, redis_url, BATCH_INLINE_MAX=1,
                               TASK_HEARTBEAT_TIMEOUT=3)
    client = Client(redis_app, "sh-delegation")
    response = client.action("/delegation/persons", "lock_persons", ids)
    task_url = response.headers["Location"]
    task_id = int(task_url.rsplit("/", 1)[1])

    # A row held by another transaction keeps the worker inside the lock until it is killed.
    blocker = db.engine.connect()
    held = blocker.begin()
    blocker.execute(sa.select(m.PersonRegistration.id).where(
        m.PersonRegistration.id == ids[-1]).with_for_update())
    worker = start_worker(dict(worker_env, TASK_HEARTBEAT_INTERVAL="1"))
    try:
        wait_for(lambda: db.session.get(m.BackgroundTask, task_id).status is TS.running)
        wait_for(lambda: db.session.get(m.BackgroundTask, task_id).heartbeat_at)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop_worker(worker)
        held.rollback()
        blocker.close()

    status = wait_for(lambda: (s := client.get(task_url + "/status").json)["status"]
                      == "failed" and s, timeout=30)
    assert status["result"] == {"stalled": True}
    page = text_of(client.get(task_url))
    assert "后台进程中断" in page and "重新运行" in page
    # The lock rolled back with the worker's transaction: nothing was locked.
    db.session.expire_all()
    assert {db.session.get(m.PersonRegistration, i).status for i in ids} == {PS.submitted}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.LockBatch)) == 0

    # Only its owner may run it again; then a worker finishes it.
    assert Client(redis_app, "zj-delegation").post(task_url + "/run-again").status_code == 404
    assert client.post(task_url + "/run-again").status_code == 302
    assert client.get(task_url + "/status").json["status"] == "queued"
    result = run_worker(worker_env)
    assert result.returncode == 0, result.stderr
    status = client.get(task_url + "/status").json
    assert status["status"] == "done" and status["result"]["done"] == 30
    db.session.expire_all()
    assert {db.session.get(m.PersonRegistration, i).status for i in ids} == {
        PS.awaiting_payment}
    assert client.post(task_url + "/run-again").status_code == 409


# ------------------------------------------------------------------ retries that fire -----

def test_a_failed_e_mail_is_retried_by_the_workers_scheduler_and_sent_once(
        database_url, smtp_server, redis_url, world, worker_env):
    from aiosmtpd.controller import Controller

    redis_app = live_redis_app(database_url, smtp_server, redis_url,
                               NOTIFY_RETRY_INTERVALS="3,3,3,3")
    xuhui = world.registration("徐汇贸易")
    Client(redis_app, "sh-delegation").action("/delegation/units", "reject_units", [xuhui.id],
                                              reason="不符合条件")
    port = free_port()   # nothing listens there yet
    worker = start_worker(dict(worker_env, MAIL_PORT=str(port)))
    mailbox = Mailbox()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mailbox.handle(envelope)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    try:
        [failed] = wait_for(lambda: notifications(status=NS.failed))
        assert failed.attempts == 1 and failed.last_error
        controller.start()        # the mail server is back before the retry fires
        [sent] = wait_for(lambda: notifications(status=NS.sent), timeout=60)
        assert sent.attempts == 2 and sent.last_error is None
        time.sleep(4)             # a further retry would have fired by now
    finally:
        stop_worker(worker)
        controller.stop()
    assert len(mailbox.messages) == 1 and mailbox.messages[0]["To"] == xuhui.contact_email
    assert notifications()[0].attempts == 2


def add_notice(unit: m.Unit, key: str, status: NS, recipient: str, attempts: int) -> int:
    notice = m.Notification(dedupe_key=key, channel=m.NotificationChannel.email,
                            unit_id=unit.id, recipient=recipient, language="zh",
                            subject="进博会证件费待支付", body="请支付证件费。", status=status,
                            attempts=attempts, last_error="Connection refused")
    db.session.add(notice)
    db.session.commit()
    return notice.id


def test_finance_sees_failed_notices_and_sends_one_again_once(login, world, smtp_server):
    unit = world.unit("徐汇贸易")
    failed = add_notice(unit, "lock:1:1:email", NS.failed, "failed@xuhui.example", 5)
    add_notice(unit, "lock:2:1:email", NS.sent, "sent@xuhui.example", 1)
    code = add_notice(unit, "verify:1:email:ab12", NS.failed, "code@xuhui.example", 5)
    finance = login("finance")
    page = text_of(finance.get("/finance/notifications/list/"))
    assert "failed@xuhui.example" in page
    assert "sent@xuhui.example" not in page and "code@xuhui.example" not in page

    response = finance.action("/finance/notifications", "resend_notifications", [failed])
    assert response.status_code == 302
    assert "已完成 1 条记录" in text_of(finance.get(response.headers["Location"]))
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "failed@xuhui.example"
    [notice] = notifications(id=failed)
    assert notice.status is NS.sent and notice.attempts == 6
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent).where(
        m.AuditEvent.record_type == "notification", m.AuditEvent.action == "resend")) == 1

    # A sent notice is never sent again; a one-time code is not finance's to send.
    again = finance.action("/finance/notifications", "resend_notifications", [failed])
    assert "以下 1 条记录未处理" in text_of(finance.get(again.headers["Location"]))
    assert finance.action("/finance/notifications", "resend_notifications",
                          [code]).status_code == 404
    assert len(smtp_server.messages) == 1
    # Other roles do not reach the list.
    for other in ("sh-delegation", "reviewer"):
        assert login(other).get("/finance/notifications/list/").status_code in (302, 403)
