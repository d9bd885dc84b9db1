"""Notices go out through one rq job per block of ids (a lock's 20,000 notices are 200 jobs):
on real Redis with a real rq worker, the loopback SMTP server and the SMS sandbox. Each notice
is sent once however often its block runs; a failed one gets its own retrying job; the
sweeper finds the blocks Redis lost."""
from __future__ import annotations

import pytest
import redis
import sqlalchemy as sa
from rq import Queue
from rq.registry import ScheduledJobRegistry

from app import create_app
from app import models as m
from app.extensions import db
from app.workflow.notices import SEND_BLOCK, Notice, create_notices, enqueue_sends, send_job_id
from tests.conftest import base_config, free_port, run_worker, sms_messages

NS = m.NotificationStatus
CH = m.NotificationChannel


@pytest.fixture
def redis_app(database_url, smtp_server, redis_url):
    return create_app("test", **{**base_config(database_url, smtp_server.port),
                                 "REDIS_URL": redis_url})


def rq_queue(app, redis_url) -> Queue:
    return Queue(app.config["RQ_QUEUE"], connection=redis.Redis.from_url(redis_url))


def notices_of(world, count: int, prefix: str = "blocks") -> list[Notice]:
    """Every third notice an e-mail, the others SMS, all to one unit."""
    unit = world.unit("徐汇贸易")
    return [Notice(f"{prefix}:{i}", CH.email, unit.id, f"unit{i}@example.com", "zh", f"主题 {i}",
                   f"邮件 {i}") if i % 3 == 0 else
            Notice(f"{prefix}:{i}", CH.sms, unit.id, f"+86139{i:08d}", "zh", None, f"短信 {i}")
            for i in range(count)]


def all_notices() -> list[m.Notification]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Notification).order_by(m.Notification.id)))


def test_each_notice_is_sent_once_even_when_its_block_jobs_run_twice(
        redis_app, world, worker_env, smtp_server, redis_url):
    smtp_server.clear()
    with redis_app.app_context():
        created = create_notices(notices_of(world, 250))
        db.session.commit()
        enqueue_sends(created)
        blocks = {nid // SEND_BLOCK for nid in created}
        assert len(blocks) >= 3 and rq_queue(redis_app, redis_url).count == len(blocks)
    assert run_worker(worker_env).returncode == 0
    # The same blocks again (a redelivery, a second enqueue, the sweeper): nothing more goes.
    with redis_app.app_context():
        enqueue_sends(created)
    assert run_worker(worker_env).returncode == 0
    sent = all_notices()
    assert [n.id for n in sent] == created
    assert {(n.status, n.attempts) for n in sent} == {(NS.sent, 1)}
    emails = sorted(n.recipient for n in sent if n.channel is CH.email)
    assert len(smtp_server.wait_for(len(emails))) == len(emails) == 84
    assert sorted(mail["To"] for mail in smtp_server.messages) == emails
    texts = sorted(s["to"] for s in sms_messages())
    assert texts == sorted(n.recipient for n in sent if n.channel is CH.sms)


def test_a_block_leaves_one_time_codes_and_other_blocks_alone(redis_app, world):
    unit = world.unit("徐汇贸易")
    with redis_app.app_context():
        [code] = create_notices([Notice("verify:+8613900000001:1", CH.sms, None,
                                        "+8613900000001", "zh", None, "验证码 ******")])
        [first] = create_notices([Notice("blocks:first", CH.sms, unit.id, "+8613900000002",
                                         "zh", None, "短信")])
        db.session.commit()
        # The code's own job (it holds the code) is not enqueued here: the block must not send
        # the redacted text in its place.
        from app.jobs import send_notifications

        outcome = send_notifications(first // SEND_BLOCK * SEND_BLOCK, first)
    assert outcome == {"sent": 1}
    statuses = {n.id: n.status for n in all_notices()}
    assert statuses == {code: NS.queued, first: NS.sent}
    assert [s["to"] for s in sms_messages()] == ["+8613900000002"]


def test_a_notice_failing_in_its_block_gets_its_own_retrying_job_the_others_go_out(
        redis_app, world, worker_env, redis_url):
    with redis_app.app_context():
        created = create_notices(notices_of(world, 6))
        db.session.commit()
        enqueue_sends(created)
    broken = dict(worker_env, MAIL_PORT=str(free_port()))  # no SMTP server listens there
    assert run_worker(broken).returncode == 0
    notices = all_notices()
    failed = [n for n in notices if n.channel is CH.email]
    assert {(n.status, n.attempts) for n in failed} == {(NS.failed, 1)} and len(failed) == 2
    assert all(n.last_error for n in failed)
    assert {n.status for n in notices if n.channel is CH.sms} == {NS.sent}
    assert len(sms_messages()) == 4
    # Each failed e-mail waits for its own job, on the back-off, with the tries it has left
    # (NOTIFY_RETRY_INTERVALS 10,60,300,900: the first try was the block's).
    queue = rq_queue(redis_app, redis_url)
    waiting = ScheduledJobRegistry(queue=queue).get_job_ids()
    assert sorted(waiting) == sorted(f"notify-{n.id}" for n in failed)
    for notice in failed:
        job = queue.fetch_job(f"notify-{notice.id}")
        assert job.func_name == "app.jobs.send_notification" and job.args == (notice.id,)
        assert job.retries_left == 3 and job.retry_intervals == [60, 300, 900]


def test_the_sweeper_enqueues_the_blocks_redis_lost_and_leaves_the_live_ones(
        redis_app, world, worker_env, smtp_server, redis_url):
    from app.sweeper import sweep

    smtp_server.clear()
    with redis_app.app_context():
        created = create_notices(notices_of(world, 150))
        db.session.commit()
        # Committed, never enqueued (Redis lost them): the sweeper finds every block.
        assert sweep()["notifications"] == 150
        queue = rq_queue(redis_app, redis_url)
        assert sorted(queue.job_ids) == sorted({send_job_id(nid) for nid in created})
        # Their jobs are waiting: sweeping again enqueues nothing.
        assert sweep()["notifications"] == 0
    assert run_worker(worker_env).returncode == 0
    assert {(n.status, n.attempts) for n in all_notices()} == {(NS.sent, 1)}
    with redis_app.app_context():
        assert sweep()["notifications"] == 0
    assert len(smtp_server.wait_for(50)) == 50 and len(sms_messages()) == 100
