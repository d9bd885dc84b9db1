"""Delegations tag persons and lock them; badge-reuse persons may only be upgraded; every
refusal names its reason and changes nothing; each lock tells each unit once what to pay."""
from __future__ import annotations

import re
from datetime import datetime

import pytest
import sqlalchemy as sa

from app import clock, create_app
from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import persons as person_flow
from app.workflow.locking import lock_notices
from tests.conftest import (
    UNIT_A,
    UNIT_B,
    Client,
    base_config,
    run_worker,
    sms_messages,
    statements_of,
    text_of,
)

PS = m.PersonStatus
T = m.Tag


def approve(login, world, name_part: str, delegation: str = "sh-delegation") -> None:
    registration = world.registration(name_part)
    login(delegation).action("/delegation/units", "approve_units", [registration.id])


def act(client: Client, action: str, ids: list[int]) -> str:
    response = client.action("/delegation/persons", action, ids)
    assert response.status_code == 302
    return text_of(client.get(response.headers["Location"]))


def state(world, name: str) -> tuple:
    db.session.expire_all()
    pr = world.person(name)
    return pr.status, pr.tag


@pytest.fixture
def reuse_persons(world):
    """黄磊 (4th-edition staff badge) and 何静 (visitor badge) carried forward by unit A with
    badge reuse and submitted: both wait for the lock with their old tag."""
    actor = actor_for_user(world.user(UNIT_A))
    ids = {p.name: p.id for p in db.session.scalars(
        sa.select(m.Person).where(m.Person.name.in_(["黄磊", "何静"])))}
    new = person_flow.carry_forward_persons(actor, list(ids.values()), list(ids.values()))
    person_flow.submit_persons(actor, new)
    return new


def test_tagging_and_locking_a_batch(login, world, smtp_server):
    approve(login, world, "徐汇贸易")
    zhao, sun = world.person("赵敏"), world.person("孙磊")
    client = login("sh-delegation")
    assert "已完成 1 条记录" in act(client, "tag_visitor", [zhao.id])
    act(client, "tag_staff", [sun.id])
    assert state(world, "赵敏") == (PS.submitted, T.visitor)
    page = act(client, "lock_persons", [zhao.id, sun.id])
    assert "已完成 2 条记录" in page
    assert state(world, "赵敏") == (PS.awaiting_payment, T.visitor)
    assert state(world, "孙磊") == (PS.awaiting_review, T.staff)
    batch = db.session.scalars(sa.select(m.LockBatch)).one()
    assert batch.person_count == 2 and world.person("赵敏").lock_batch_id == batch.id

    # One e-mail and one SMS to the unit, listing only who must pay.
    [mail] = mails(smtp_server, "进博会证件费待支付", expected=2)
    body = mail.get_content()
    assert "赵敏" in body and "孙磊" not in body and "2022-10-12" in body and "2022-10-15" in body
    [sms] = sms_messages()
    assert sms["to"] == world.registration("徐汇贸易").contact_mobile and "赵敏" in sms["text"]
    audit = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.action == "lock", m.AuditEvent.record_id == zhao.id)).one()
    assert (audit.from_state, audit.to_state, audit.actor_name) == (
        "submitted", "awaiting_payment", "sh-delegation")

    # Never twice for the same lock, and the tag cannot change after it.
    from app.workflow.notices import create_notices

    assert create_notices(lock_notices(batch, batch_edition(batch))) == []
    assert "已锁定" in act(client, "tag_vip", [zhao.id])
    assert state(world, "赵敏") == (PS.awaiting_payment, T.visitor)


def mails(smtp_server, subject: str, expected: int) -> list:
    """The messages with this subject, once `expected` messages in all have arrived."""
    return [msg for msg in smtp_server.wait_for(expected) if msg["Subject"] == subject]


def batch_edition(batch: m.LockBatch) -> m.Edition:
    return db.session.get(m.Edition, batch.edition_id)


def test_refusals_name_their_reason_row_by_row(login, world):
    zhao, sun = world.person("赵敏"), world.person("孙磊")   # unit B not approved yet
    wang = world.person("王伟")                              # unit A, locked long ago
    client = login("sh-delegation")
    page = act(client, "tag_visitor", [zhao.id, wang.id])
    assert "以下 2 条记录未处理" in page and "单位尚未审核通过" in page and "已锁定" in page
    approve(login, world, "徐汇贸易")
    page = act(client, "lock_persons", [zhao.id, sun.id])
    assert "请先标注人员标签" in page
    assert state(world, "赵敏") == (PS.submitted, None)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.LockBatch)) == 0


def test_upgrade_rules_for_reused_badges(login, world, reuse_persons, smtp_server):
    approve_a = world.registration("浦东医疗")   # already approved
    assert approve_a.status is m.UnitStatus.approved
    client = login("sh-delegation")
    assert state(world, "黄磊") == (PS.awaiting_lock, T.staff)
    huang, he = world.person("黄磊"), world.person("何静")
    assert "只能升级" in act(client, "tag_visitor", [huang.id])          # never down
    assert state(world, "黄磊") == (PS.awaiting_lock, T.staff)
    act(client, "tag_vip", [huang.id])                                    # staff → VIP
    assert state(world, "黄磊") == (PS.awaiting_lock, T.vip)
    act(client, "tag_staff", [he.id])                                     # visitor → staff
    assert "只能升级" in act(client, "tag_visitor", [he.id])             # and not back
    assert state(world, "何静") == (PS.awaiting_lock, T.staff)
    act(client, "lock_persons", [huang.id, he.id])
    assert state(world, "黄磊") == (PS.awaiting_review, T.vip)
    # The unit is told the upgraded badges will be made anew (no payment notice: no visitor).
    [mail] = mails(smtp_server, "复用证件的人员标签已升级", expected=1)
    assert "黄磊" in mail.get_content() and "何静" in mail.get_content()


def test_a_reused_vip_keeps_its_tag(login, world):
    huang = db.session.scalars(sa.select(m.Person).where(m.Person.name == "黄磊")).one()
    db.session.execute(sa.update(m.Badge).where(m.Badge.person_id == huang.id)
                       .values(tag=T.vip))
    db.session.commit()
    actor = actor_for_user(world.user(UNIT_A))
    [new] = person_flow.carry_forward_persons(actor, [huang.id], [huang.id])
    person_flow.submit_persons(actor, [new])
    client = login("sh-delegation")
    for action in ("tag_visitor", "tag_staff", "tag_vip"):
        page = act(client, action, [new])
        assert "复用的 VIP 证件不能修改人员标签" in page, action
    assert state(world, "黄磊") == (PS.awaiting_lock, T.vip)


def test_tagging_and_locking_stop_at_the_deadline(login, world):
    approve(login, world, "徐汇贸易")
    zhao = world.person("赵敏")
    clock.set_now(datetime.fromisoformat("2022-10-01T08:00:00+08:00"))
    client = login("sh-delegation")
    for action in ("tag_visitor", "lock_persons"):
        assert "已于 2022-09-30 23:59（北京时间）截止" in act(client, action, [zhao.id])
    assert state(world, "赵敏") == (PS.submitted, None)


def test_only_the_managing_delegation_tags_and_locks(login, world):
    approve(login, world, "徐汇贸易")
    approve(login, world, "生物制药", delegation="med-delegation")
    zhao, zhou = world.person("赵敏"), world.person("周杰")
    # Pudong may not touch Xuhui's persons; Shanghai only reads the rolled-up industry unit.
    assert login("sh-pudong").action("/delegation/persons", "tag_vip",
                                     [zhao.id]).status_code == 404
    assert login("sh-delegation").action("/delegation/persons", "tag_vip",
                                         [zhou.id]).status_code == 404
    assert login(UNIT_B).action("/delegation/persons", "tag_vip", [zhao.id]).status_code == 403
    assert state(world, "赵敏") == (PS.submitted, None)
    assert state(world, "周杰") == (PS.submitted, None)
    act(login("med-delegation"), "tag_vip", [zhou.id])
    assert state(world, "周杰") == (PS.submitted, T.vip)


def test_large_batches_run_as_a_task_with_a_progress_page(database_url, smtp_server, redis_url,
                                                          login, world, worker_env):
    approve(login, world, "徐汇贸易")
    zhao, sun = world.person("赵敏"), world.person("孙磊")
    redis_app = create_app("test", **{**base_config(database_url, smtp_server.port),
                                      "REDIS_URL": redis_url, "BATCH_INLINE_MAX": 1})
    client = Client(redis_app, "sh-delegation")
    response = client.action("/delegation/persons", "tag_vip", [zhao.id, sun.id])
    task_url = response.headers["Location"]
    assert re.search(r"/tasks/\d+$", task_url)
    assert client.get(task_url + "/status").json["status"] == "queued"
    assert state(world, "赵敏") == (PS.submitted, None)
    assert run_worker(worker_env).returncode == 0
    status = client.get(task_url + "/status").json
    assert status["status"] == "done" and status["percent"] == 100
    assert status["result"] == {"done": 2, "refused": []}
    assert state(world, "赵敏") == (PS.submitted, T.vip)
    # The task and its report belong to the user who started it.
    assert Client(redis_app, "zj-delegation").get(task_url + "/status").status_code == 404


def persons_of(world, name_part: str, count: int, prefix: str) -> list[int]:
    """`count` extra submitted persons of a unit, inserted directly (test data)."""
    registration = world.registration(name_part)
    ids = []
    for i in range(count):
        number = f"S{prefix}{i:06d}"
        person = m.Person(unit_id=registration.unit_id, name=f"{prefix}{i:03d}",
                          gender=m.Gender.male, id_type=m.IdType.passport, id_number=number)
        pr = m.PersonRegistration(edition_id=registration.edition_id, person=person,
                                  unit_registration_id=registration.id,
                                  id_key=f"passport:{number}", status=PS.submitted,
                                  entry_days=1)
        db.session.add(pr)
        db.session.flush()
        ids.append(pr.id)
    db.session.commit()
    return ids


def test_batches_cost_the_same_statements_for_few_or_many_rows(app, login, world):
    approve(login, world, "徐汇贸易")
    few, many = persons_of(world, "徐汇贸易", 3, "A"), persons_of(world, "徐汇贸易", 60, "B")
    client = login("sh-delegation")
    costs = {}
    for name, ids in (("few", few), ("many", many)):
        costs[name] = tuple(len(statements_of(lambda ids=ids, action=action: client.action(
            "/delegation/persons", action, ids))) for action in ("tag_visitor", "lock_persons"))
    assert costs["few"] == costs["many"], costs
    db.session.expire_all()
    assert {world.person("B059").status, world.person("A000").status} == {
        PS.awaiting_payment}


def test_payment_notices_go_through_redis_and_a_worker_once(database_url, smtp_server,
                                                            redis_url, login, world,
                                                            worker_env):
    approve(login, world, "徐汇贸易")
    smtp_server.clear()
    zhao = world.person("赵敏")
    redis_app = create_app("test", **{**base_config(database_url, smtp_server.port),
                                      "REDIS_URL": redis_url})
    client = Client(redis_app, "sh-delegation")
    client.action("/delegation/persons", "tag_visitor", [zhao.id])
    client.action("/delegation/persons", "lock_persons", [zhao.id])
    queued = db.session.scalars(sa.select(m.Notification).where(
        m.Notification.dedupe_key.like("lock:%"))).all()
    assert {n.channel for n in queued} == {m.NotificationChannel.email,
                                           m.NotificationChannel.sms}
    assert smtp_server.messages == []
    assert run_worker(worker_env).returncode == 0
    [mail] = mails(smtp_server, "进博会证件费待支付", expected=1)
    assert "赵敏" in mail.get_content()
    assert [s["to"] for s in sms_messages()] == [world.registration("徐汇贸易").contact_mobile]
    db.session.expire_all()
    assert {n.status for n in queued} == {m.NotificationStatus.sent}
    # A second worker run (a redelivery) sends nothing more.
    assert run_worker(worker_env).returncode == 0
    assert len(smtp_server.messages) == 1 and len(sms_messages()) == 1
