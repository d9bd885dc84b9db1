"""One open payment attempt per order, held by the database (a partial unique index) and by the
workflow; whoever loses a race is told what happened, and by whom."""
from __future__ import annotations

import io
import threading

import pytest
import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, Client, text_of
from tests.test_money import declare_transfer, order_persons
from tests.test_scoping import PDF

PayS = m.PaymentStatus


def payments_of(order: m.Order) -> list[m.Payment]:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Payment).where(m.Payment.order_id == order.id)
                              .order_by(m.Payment.id)).all()


def in_parallel(calls) -> list:
    barrier = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        answers[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_parallel_transfer_declarations_leave_one_pending_payment(app, login, world):
    order = order_persons(login(UNIT_A), world, "王伟")
    clients = [Client(app, UNIT_A) for _ in range(3)]

    def declare(client: Client):
        token = client.csrf_token()
        return lambda: client.http.post(
            f"/unit/order/{order.id}/transfer", content_type="multipart/form-data",
            data={"payer_name": "上海浦东医疗器械有限公司", "payer_bank": "工商银行浦东支行",
                  "payer_account": "1001 2345 6789", "remitted_on": "2022-09-14",
                  "voucher": (io.BytesIO(PDF), "voucher.pdf"), "csrf_token": token})

    answers = in_parallel([declare(c) for c in clients])
    assert all(a.status_code < 500 for a in answers)
    assert [p.status for p in payments_of(order)] == [PayS.pending]
    # One is told its transfer was declared; the losers that a transfer waits for finance.
    pages = [text_of(c.get(f"/unit/order/{order.id}")) for c in clients]
    assert sum("汇款信息已提交" in p for p in pages) == 1
    assert sum("该订单已有转账正在等待财务审核" in p for p in pages) == 2


def test_the_database_refuses_a_second_open_payment(app, login, world):
    order = order_persons(login(UNIT_A), world, "王伟")
    for number, status in (("PX1", PayS.pending), ("PX2", PayS.created)):
        db.session.add(m.Payment(number=number, order_id=order.id,
                                 channel=m.PaymentChannel.transfer, status=status,
                                 amount_fen=order.amount_fen))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_finance_racing_finance_one_confirms_the_other_is_told_by_whom(app, login, world):
    unit = login(UNIT_A)
    order = order_persons(unit, world, "王伟")
    declare_transfer(unit, order)
    [payment] = payments_of(order)
    officers = [Client(app, "finance") for _ in range(2)]

    def confirm(client: Client):
        token = client.csrf_token()
        return lambda: client.http.post("/finance/transfers/action_post", data={
            "action": "confirm_transfers", "rowid": [str(payment.id)], "csrf_token": token})

    answers = in_parallel([confirm(c) for c in officers])
    assert all(a.status_code == 302 for a in answers)
    assert [p.status for p in payments_of(order)] == [PayS.confirmed]
    pages = [text_of(c.get("/finance/transfers/list/")) for c in officers]
    assert sum("已完成 1 条记录" in p for p in pages) == 1
    # The other is told it was already confirmed, and by whom: not "nothing to do".
    loser = next(p for p in pages if "已完成 1 条记录" not in p)
    assert "状态为“已确认”时不能进行此操作（finance 于" in loser
    confirmations = db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent).where(
        m.AuditEvent.record_type == "payment", m.AuditEvent.record_id == payment.id,
        m.AuditEvent.action == "confirm"))
    assert confirmations == 1


def test_confirming_an_already_confirmed_transfer_names_who_did_it(app, login, world):
    unit = login(UNIT_A)
    order = order_persons(unit, world, "王伟")
    declare_transfer(unit, order)
    [payment] = payments_of(order)
    finance = login("finance")
    finance.action("/finance/transfers", "confirm_transfers", [payment.id])
    response = finance.action("/finance/transfers", "confirm_transfers", [payment.id])
    page = text_of(finance.get(response.headers["Location"]))
    assert "状态为“已确认”时不能进行此操作（finance 于" in page


def test_choosing_another_online_channel_withdraws_the_open_attempt(app, login, world):
    unit = login(UNIT_A)
    order = order_persons(unit, world, "王伟")
    unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "alipay"})
    unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "wechat"})
    attempts = payments_of(order)
    assert [(p.channel.value, p.status) for p in attempts] == [
        ("alipay", PayS.withdrawn), ("wechat", PayS.pending)]
    # The same channel again shows the same attempt (same QR code), not a third one.
    unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "wechat"})
    assert len(payments_of(order)) == 2
    withdrawn = db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "payment", m.AuditEvent.record_id == attempts[0].id,
        m.AuditEvent.to_state == "withdrawn")).one()
    assert withdrawn.actor_name == UNIT_A


def test_an_online_payment_waits_while_a_transfer_is_with_finance(app, login, world):
    unit = login(UNIT_A)
    order = order_persons(unit, world, "王伟")
    declare_transfer(unit, order)
    response = unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "alipay"})
    assert response.status_code == 302
    assert "撤回" in text_of(unit.get(response.headers["Location"]))
    assert [p.channel for p in payments_of(order)] == [m.PaymentChannel.transfer]
    # The unit withdraws its declaration; then it may pay another way.
    [declared] = payments_of(order)
    unit.post(f"/unit/order/{order.id}/transfer/{declared.id}/withdraw")
    assert payments_of(order)[0].status is PayS.withdrawn
    unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "alipay"})
    assert [p.status for p in payments_of(order)] == [PayS.withdrawn, PayS.pending]


def test_another_unit_cannot_withdraw_a_transfer(app, login, world):
    unit = login(UNIT_A)
    order = order_persons(unit, world, "王伟")
    declare_transfer(unit, order)
    [declared] = payments_of(order)
    other = login("91310104MA1FR0C12P")
    assert other.post(f"/unit/order/{order.id}/transfer/{declared.id}/withdraw"
                      ).status_code == 404
    assert login("finance").post(f"/unit/order/{order.id}/transfer/{declared.id}/withdraw"
                                 ).status_code in (302, 403)
    assert payments_of(order)[0].status is PayS.pending
