"""Badge fees: orders, bank transfers checked by finance, bank statements, refunds (never more
than was paid, even when requests race), cancellations and the daily reconciliation."""
from __future__ import annotations

import io
import threading
from datetime import datetime

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from app import clock
from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import payments
from app.workflow.errors import WorkflowError
from tests.conftest import UNIT_A, UNIT_B, Client, text_of
from tests.test_scoping import PDF

PS = m.PersonStatus
FEE = 20000


def order_persons(client: Client, world, *names: str) -> m.Order:
    ids = [world.person(n).id for n in names]
    response = client.action("/unit/persons", "order_badges", ids)
    assert response.status_code == 302, text_of(response)
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Order).order_by(m.Order.id.desc()).limit(1)).one()


def declare_transfer(client: Client, order: m.Order, **changes) -> None:
    data = {"payer_name": "上海浦东医疗器械有限公司", "payer_bank": "工商银行浦东支行",
            "payer_account": "1001 2345 6789", "payer_tax_id": "91310115MA1K4AB30U",
            "remitted_on": "2022-09-14", "voucher": (io.BytesIO(PDF), "voucher.pdf")}
    data.update(changes)
    client.post(f"/unit/order/{order.id}/transfer", data=data,
                content_type="multipart/form-data")


def transfer(order: m.Order) -> m.Payment:
    return db.session.scalars(sa.select(m.Payment).where(m.Payment.order_id == order.id)
                              .order_by(m.Payment.id.desc()).limit(1)).one()


def status(world, name: str) -> m.PersonStatus:
    db.session.expire_all()
    return world.person(name).status


# ------------------------------------------------------------------------------ orders --------

def test_order_is_fee_times_persons_and_cancelling_frees_them(login, world):
    client = login(UNIT_A)
    order = order_persons(client, world, "王伟", "李娜")
    assert (order.amount_fen, order.fee_fen, order.status) == (2 * FEE, FEE, m.OrderStatus.pending)
    assert status(world, "王伟") is PS.in_order
    page = text_of(client.get(f"/unit/order/{order.id}"))
    assert "¥400.00" in page and "王伟" in page
    client.post(f"/unit/order/{order.id}/cancel")
    db.session.expire_all()
    assert order.status is m.OrderStatus.cancelled and status(world, "王伟") is PS.awaiting_payment
    # Freed, they can be ordered again (a person is in at most one active order).
    assert order_persons(client, world, "王伟").amount_fen == FEE


def test_a_person_cannot_be_ordered_twice_or_by_another_unit(login, world):
    client = login(UNIT_A)
    order_persons(client, world, "王伟")
    response = client.action("/unit/persons", "order_badges", [world.person("王伟").id])
    assert "未生成订单" in text_of(client.get(response.headers["Location"])) or \
        response.status_code in (302, 409)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.OrderItem).where(
        m.OrderItem.active.is_(True),
        m.OrderItem.person_registration_id == world.person("王伟").id)) == 1
    assert login(UNIT_B).action("/unit/persons", "order_badges",
                                [world.person("李娜").id]).status_code == 404
    order = db.session.scalars(sa.select(m.Order)).first()
    assert login(UNIT_B).get(f"/unit/order/{order.id}").status_code == 404
    assert login(UNIT_B).post(f"/unit/order/{order.id}/cancel").status_code == 404


# ---------------------------------------------------------------------- bank transfers --------

def test_transfer_confirmed_by_finance_sends_persons_to_review(login, world, smtp_server):
    client = login(UNIT_A)
    order = order_persons(client, world, "王伟", "李娜")
    declare_transfer(client, order)
    payment = transfer(order)
    assert payment.status is m.PaymentStatus.pending and payment.amount_fen == 2 * FEE
    finance = login("finance")
    assert "voucher.pdf" not in text_of(finance.get("/finance/transfers/list/"))
    assert finance.get(f"/finance/transfers/voucher/{payment.id}").data == PDF
    assert login(UNIT_B).get(f"/unit/order/voucher/{payment.id}").status_code == 404
    response = finance.action("/finance/transfers", "confirm_transfers", [payment.id])
    assert "已完成 1 条记录" in text_of(finance.get(response.headers["Location"]))
    db.session.expire_all()
    assert payment.status is m.PaymentStatus.confirmed and order.status is m.OrderStatus.paid
    assert status(world, "王伟") is PS.awaiting_review
    [receipt] = [msg for msg in smtp_server.wait_for(1)
                 if msg["Subject"] == "进博会证件费收款回执"]
    assert "¥400.00" in receipt.get_content()
    # Confirming again changes nothing.
    finance.action("/finance/transfers", "confirm_transfers", [payment.id])
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent).where(
        m.AuditEvent.record_type == "payment", m.AuditEvent.action == "confirm")) == 1


def test_rejected_voucher_can_be_declared_again(login, world):
    client = login(UNIT_A)
    order = order_persons(client, world, "王伟")
    declare_transfer(client, order)
    first = transfer(order)
    finance = login("finance")
    finance.action("/finance/transfers", "reject_transfers", [first.id], reason="凭证不清晰")
    db.session.expire_all()
    assert first.status is m.PaymentStatus.rejected and first.reject_reason == "凭证不清晰"
    assert "凭证不清晰" in text_of(client.get(f"/unit/order/{order.id}"))
    declare_transfer(client, order)
    assert transfer(order).id != first.id and transfer(order).status is m.PaymentStatus.pending


def test_transfer_refusals_change_nothing(login, world):
    client = login(UNIT_A)
    order = order_persons(client, world, "王伟")
    declare_transfer(client, order, voucher=(io.BytesIO(b"not a file"), "v.txt"))
    declare_transfer(client, order, payer_account="")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Payment).where(
        m.Payment.order_id == order.id)) == 0
    clock.set_now(datetime.fromisoformat("2022-10-13T00:00:01+08:00"))
    declare_transfer(client, order)
    page = text_of(client.get(f"/unit/order/{order.id}"))
    assert "转账支付须于 2022-10-12 23:59（北京时间）前完成" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Payment)) == 0
    assert login(UNIT_A).action("/finance/transfers", "confirm_transfers",
                                [1]).status_code == 403


def test_bank_statement_matches_orders_by_number_and_amount(login, world):
    """The whole of statements is in tests/test_bank_statements.py (real-shaped files)."""
    client = login(UNIT_A)
    declared = order_persons(client, world, "王伟")
    declare_transfer(client, declared)
    silent = order_persons(client, world, "李娜")            # paid without a declaration
    wrong = db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()
    csv = ("交易日期,贷方金额,借方金额,对方户名,对方账号,摘要,流水号\n"
           f"2022-09-14,200.00,,浦东医疗,1001,货款 {declared.number},S1\n"
           f"2022-09-14,200.00,,浦东医疗,1001,{silent.number},S2\n"
           f"2022-09-14,150.00,,浦东医疗,1001,{wrong.number},S3\n"
           "2022-09-14,88.00,,someone,9,unrelated,S4\n"
           "2022-09-14,,12.00,,,手续费,S5\n").encode("gbk")
    finance = login("finance")
    response = finance.post("/finance/statements/import",
                            data={"statement": (io.BytesIO(csv), "statement.csv")},
                            content_type="multipart/form-data")
    page = text_of(finance.get(response.headers["Location"]))
    assert "银行流水导入报告" in page and "银行手续费" in page
    db.session.expire_all()
    assert declared.status is m.OrderStatus.paid and silent.status is m.OrderStatus.paid
    assert wrong.status is m.OrderStatus.pending
    # The same file again adds nothing.
    finance.post("/finance/statements/import",
                 data={"statement": (io.BytesIO(csv), "statement.csv")},
                 content_type="multipart/form-data")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.BankStatementLine)) == 4
    # By hand: the amounts must agree.
    line = db.session.scalars(sa.select(m.BankStatementLine).where(
        m.BankStatementLine.amount_fen == 15000)).one()
    response = finance.post(f"/finance/statements/match/{line.id}",
                            data={"order_number": wrong.number})
    assert response.status_code == 409 and "金额不一致" in text_of(response)
    assert line.status is m.StatementLineStatus.unmatched


def test_a_broken_statement_imports_nothing(login, world):
    finance = login("finance")
    bad = b"date,amount,reference,payer_name,payer_account\n2022-09-14,abc,x,y,z\n"
    response = finance.post("/finance/statements/import",
                            data={"statement": (io.BytesIO(bad), "s.csv")},
                            content_type="multipart/form-data")
    assert response.status_code == 400 and "银行流水文件" in text_of(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.BankStatementLine)) == 0


# ----------------------------------------------------------------------------- refunds --------

@pytest.fixture
def paid_and_cancelled(login, world):
    """Unit A paid by transfer for 王伟 and 李娜, then cancelled both."""
    client = login(UNIT_A)
    order = order_persons(client, world, "王伟", "李娜")
    declare_transfer(client, order)
    login("finance").action("/finance/transfers", "confirm_transfers", [transfer(order).id])
    client.action("/unit/persons", "cancel_persons",
                  [world.person("王伟").id, world.person("李娜").id])
    assert status(world, "王伟") is PS.cancelled
    return order


def test_refund_of_cancelled_persons_through_finance(login, world, paid_and_cancelled):
    order = paid_and_cancelled
    client = login(UNIT_A)
    ids = [str(world.person(n).id) for n in ("王伟", "李娜")]
    client.post("/unit/refunds/request", data={"person": ids, "route": "other_account",
                                               "account_name": "浦东医疗", "account_bank": "建行",
                                               "account_no": "6222"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    assert refund.amount_fen == 2 * FEE and refund.route is m.RefundRoute.other_account
    assert transfer(order).refunded_fen == 2 * FEE
    finance = login("finance")
    for action in ("approve_refunds", "execute_refunds", "complete_refunds"):
        finance.action("/finance/refunds", action, [refund.id])
    db.session.expire_all()
    assert refund.status is m.RefundStatus.done
    assert status(world, "王伟") is PS.refunded and status(world, "李娜") is PS.refunded
    assert "已退款" in text_of(client.get("/unit/refunds/list/"))


def test_refund_refused_while_an_invoice_is_active(login, world, paid_and_cancelled):
    db.session.add(m.Invoice(order_id=paid_and_cancelled.id, unit_id=paid_and_cancelled.unit_id,
                             kind=m.InvoiceKind.e_normal, status=m.InvoiceStatus.issued,
                             number="22312000000000000001", amount_fen=2 * FEE,
                             buyer_name="浦东医疗"))
    db.session.commit()
    client = login(UNIT_A)
    response = client.post("/unit/refunds/request",
                           data={"person": [str(world.person("王伟").id)], "route": "original"})
    assert "请先完成退票" in text_of(client.get(response.headers["Location"]))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Refund)) == 0


def test_rejected_refund_releases_the_booked_amount(login, world, paid_and_cancelled):
    client = login(UNIT_A)
    client.post("/unit/refunds/request", data={"person": [str(world.person("王伟").id)],
                                               "route": "original"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    login("finance").action("/finance/refunds", "reject_refunds", [refund.id], reason="重复")
    db.session.expire_all()
    assert refund.status is m.RefundStatus.rejected
    assert transfer(paid_and_cancelled).refunded_fen == 0
    client.post("/unit/refunds/request", data={"person": [str(world.person("王伟").id)],
                                               "route": "original"})
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Refund)) == 2


def test_only_rejected_or_cancelled_paid_persons_are_refundable(login, world):
    client = login(UNIT_A)
    response = client.post("/unit/refunds/request",
                           data={"person": [str(world.person("王伟").id)], "route": "original"})
    assert "王伟: 本单位未为此人员支付证件费" in text_of(client.get(response.headers["Location"]))
    assert login(UNIT_B).post("/unit/refunds/request", data={
        "person": [str(world.person("王伟").id)], "route": "original"}).status_code == 404
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Refund)) == 0


def test_racing_refund_requests_never_refund_more_than_was_paid(app, login, world,
                                                                 paid_and_cancelled):
    ids = [str(world.person(n).id) for n in ("王伟", "李娜")]
    clients = [Client(app, UNIT_A) for _ in range(8)]
    barrier = threading.Barrier(len(clients))

    def ask(client: Client) -> None:
        token = client.csrf_token()
        barrier.wait()
        client.http.post("/unit/refunds/request", data={
            "person": ids, "route": "original", "csrf_token": token})

    threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.session.expire_all()
    refunds = db.session.scalars(sa.select(m.Refund)).all()
    assert len(refunds) == 1 and refunds[0].amount_fen == 2 * FEE
    assert transfer(paid_and_cancelled).refunded_fen == 2 * FEE
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.RefundItem).where(
        m.RefundItem.active.is_(True))) == 2


# --------------------------------------------------------------------- reconciliation --------

def test_daily_reconciliation_matches_the_records(login, world, paid_and_cancelled):
    finance = login("finance")
    page = text_of(finance.get("/finance/reconciliation/?since=2022-09-10&until=2022-09-20"))
    assert "¥400.00" in page
    # The date range is labelled as dates, not as the audit's 原状态/新状态 (issue 13).
    assert "开始日期" in page and "结束日期" in page and "原状态" not in page
    response = finance.get("/finance/reconciliation/export?since=2022-09-10&until=2022-09-20")
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    total = rows[-1]
    assert total[0] == "合计" and float(total[-1]) == 400.0
    day = [r for r in rows if r[0] == "2022-09-15"][0]
    assert float(day[-1]) == 400.0
    confirmed = db.session.scalar(sa.select(sa.func.sum(m.Payment.amount_fen)).where(
        m.Payment.status == m.PaymentStatus.confirmed))
    assert confirmed == 40000
    assert login(UNIT_A).get("/finance/reconciliation/").status_code == 403


def test_payments_of_a_unit_are_its_own(world):
    actor = actor_for_user(world.user(UNIT_B))
    with pytest.raises(WorkflowError):
        payments.cancel_order(actor, db.session.scalars(sa.select(m.Order.id)).first())
