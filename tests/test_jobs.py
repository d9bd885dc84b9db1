"""Background jobs: on real Redis with a real rq worker and a real SMTP server on loopback;
inline (no Redis) in the embedded default. Jobs are safe to run twice."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app import models as m
from app.extensions import db
from app.queue import job_function
from tests.conftest import Client, base_config, free_port, run_worker

NS = m.NotificationStatus


@pytest.fixture
def redis_app(database_url, smtp_server, redis_url):
    return create_app("test", **{**base_config(database_url, smtp_server.port),
                                 "REDIS_URL": redis_url})


def notifications() -> list[m.Notification]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Notification).order_by(m.Notification.id)))


def test_decision_e_mail_goes_through_redis_and_a_real_worker(redis_app, world, worker_env,
                                                              smtp_server):
    xuhui = world.registration("徐汇贸易")
    client = Client(redis_app, "sh-delegation")
    response = client.action("/delegation/units", "return_units", [xuhui.id],
                             reason="请补充营业执照。")
    assert response.status_code == 302
    [queued] = notifications()
    assert queued.status is NS.queued and smtp_server.messages == []

    result = run_worker(worker_env)
    assert result.returncode == 0, result.stderr
    [sent] = notifications()
    assert sent.status is NS.sent and sent.attempts == 1
    [message] = smtp_server.wait_for(1)
    assert message["To"] == xuhui.contact_email
    assert message["Subject"] == "您的进博会报名已被退回修改"
    assert "请补充营业执照。" in message.get_content()

    # Running the job again (a redelivery) sends nothing more.
    from app.extensions import queue
    from app.jobs import send_notification

    with redis_app.app_context():
        queue.enqueue(send_notification, sent.id)
    assert run_worker(worker_env).returncode == 0
    assert len(smtp_server.messages) == 1
    assert notifications()[0].attempts == 1


def test_a_failed_send_is_recorded_and_left_for_retry(redis_app, world, worker_env,
                                                      smtp_server):
    xuhui = world.registration("徐汇贸易")
    Client(redis_app, "sh-delegation").action("/delegation/units", "reject_units", [xuhui.id],
                                              reason="不符合条件")
    broken = dict(worker_env, MAIL_PORT=str(free_port()))  # nothing listens there
    assert run_worker(broken).returncode == 0
    [failed] = notifications()
    assert failed.status is NS.failed and failed.attempts == 1 and failed.last_error
    assert smtp_server.messages == []


def test_without_redis_jobs_run_inline(app, world, smtp_server):
    xuhui = world.registration("徐汇贸易")
    Client(app, "sh-delegation").action("/delegation/units", "approve_units", [xuhui.id])
    [sent] = notifications()
    assert sent.status is NS.sent
    [message] = smtp_server.wait_for(1)
    assert "T05000002" in message.get_content()


def test_notices_are_never_doubled(app, world, smtp_server):
    from app.workflow.notices import create_notices, unit_decision_notices

    xuhui = world.registration("徐汇贸易")
    Client(app, "sh-delegation").action("/delegation/units", "approve_units", [xuhui.id])
    again = create_notices(unit_decision_notices([xuhui.id], m.UnitStatus.approved))
    db.session.commit()
    assert again == [] and len(notifications()) == 1


def test_worker_needs_redis(worker_env):
    env = dict(worker_env)
    env.pop("REDIS_URL")
    result = run_worker(env)
    assert result.returncode != 0 and "REDIS_URL" in result.stderr


def test_thousands_of_notices_cost_one_insert_and_go_to_redis_with_their_retries(
        redis_app, world, redis_url):
    """A lock over thousands of units: 7,000 notices are 70,000 values, past PostgreSQL's
    65,535-parameter limit for one VALUES list; they go in as one statement, and their send
    jobs reach Redis (in pipelines) with their retry policy. Written again, nothing doubles."""
    import redis
    from rq import Queue

    from app.workflow.notices import SEND_BLOCK, Notice, create_notices, enqueue_sends, send_job_id
    from tests.conftest import count_statements

    unit = world.unit("徐汇贸易")
    notices = [Notice(f"bench:{i}", m.NotificationChannel.sms, unit.id, f"+86139{i:08d}",
                      "zh", None, f"通知 {i}") for i in range(7000)]
    with redis_app.app_context():
        created: list[int] = []
        assert count_statements(lambda: created.extend(create_notices(notices))) == 1
        db.session.commit()
        enqueue_sends(created)
        assert create_notices(notices) == []
        db.session.commit()
    assert len(created) == 7000 and len(notifications()) == 7000
    assert notifications()[6999].recipient == "+8613900006999"
    assert notifications()[0].status is NS.queued and notifications()[0].unit_id == unit.id
    # One send job per block of SEND_BLOCK ids covers every notice, with the retry policy.
    queue = Queue(redis_app.config["RQ_QUEUE"], connection=redis.Redis.from_url(redis_url))
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    assert len(jobs) == len({nid // SEND_BLOCK for nid in created}) < 100
    assert all(any(job.args[0] <= nid <= job.args[1] for job in jobs) for nid in created)
    job = queue.fetch_job(send_job_id(created[-1]))
    assert job.args[0] <= created[-1] <= job.args[1] and job.retries_left == 4
    assert job.func_name == "app.jobs.send_notifications"


def test_the_workflow_names_its_jobs_and_never_imports_them():
    """The workflow enqueues jobs by dotted name, so app.jobs imports the workflow and not the
    other way round (no cycle); every name it uses is a job of app.jobs."""
    root = Path(__file__).parents[1] / "app"
    named = set()
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"app\.jobs\.\w+", node.value):
                named.add(node.value)
            if path.parent.name == "workflow" and isinstance(node, ast.ImportFrom):
                assert node.module != "app.jobs", path
            if path.parent.name == "workflow" and isinstance(node, ast.Import):
                assert "app.jobs" not in [alias.name for alias in node.names], path
    assert named == {"app.jobs.send_notification", "app.jobs.send_notifications",
                     "app.jobs.send_verification_code", "app.jobs.poll_sms_receipts",
                     "app.jobs.send_refund", "app.jobs.make_invoice_pdf"}
    assert all(job_function(name).__module__ == "app.jobs" for name in named)
