"""One payment per order (issue 12), over HTTP per role: while a bank transfer waits for finance
the order takes no other way of paying (and a POST that tries anyway is refused, nothing made);
the unit withdraws its declaration (audited, refused from the wrong state and for another
unit's payment); money that still arrives for an order already paid or cancelled — a
provider's signed notice for a withdrawn attempt, a declared transfer finance confirms after
the order was paid another way, a bank line for a paid order — is an overpayment, recorded
once, shown to the unit, listed to finance, refunded through the provider or by bank transfer;
a refused voucher tells the unit by SMS and e-mail with finance's reason.

The notifications are the providers' real shapes, signed by the sandbox as each provider signs
them (Alipay's async notify form, WeChat Pay v3's encrypted resource, UnionPay's and the B2B
bank's signed parameters), posted to the app's notify endpoint."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.scoping.rules import scoped
from app.workflow import payments as flow
from app.workflow.errors import WorkflowError
from tests.conftest import ROOT, UNIT_A, UNIT_B, sms_messages, text_of
from tests.test_gateways import (  # noqa: F401  (fixtures: sandbox, sandbox_dir)
    FEE,
    SUCCESS,
    assert_answer,
    demo_order,
    open_payment,
    payments,
    post,
    sandbox,
    sandbox_dir,
)
from tests.test_scoping import PDF

PayS = m.PaymentStatus
OvS = m.OverpaymentStatus
Ch = m.PaymentChannel


def declare(client, order: m.Order, **changes):
    data = {"payer_name": "上海浦东医疗器械有限公司", "payer_bank": "工商银行浦东支行",
            "payer_account": "1001 2345 6789", "payer_tax_id": "91310115MA1K4AB30U",
            "remitted_on": "2022-09-14", "voucher": (io.BytesIO(PDF), "voucher.pdf")}
    data.update(changes)
    return client.post(f"/unit/order/{order.id}/transfer", data=data,
                       content_type="multipart/form-data")


def flashed(client, response) -> str:
    assert response.status_code == 302, response.data
    return text_of(client.get(response.headers["Location"]))


def overpayments() -> list[m.Overpayment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Overpayment).order_by(m.Overpayment.id)))


def audits(record_type: str, action: str) -> list[m.AuditEvent]:
    return list(db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == record_type, m.AuditEvent.action == action)))


def pay_in_sandbox(app, sandbox, channel: str, number: str):  # noqa: F811
    with app.test_request_context():
        return sandbox.pay(Ch(channel), number)


# ------------------------------------------------------------- a transfer waits ------------

def test_while_a_transfer_waits_the_order_page_offers_nothing_else(login, world):
    unit = login(UNIT_A)
    order = demo_order()
    page = text_of(unit.get(f"/unit/order/{order.id}"))
    assert "提交汇款信息" in page  # before: the transfer form and the online ways are offered
    declare(unit, order)
    html = unit.get(f"/unit/order/{order.id}").data.decode()
    # The declaration, as the unit made it, and only the way to withdraw it.
    waiting = re.search(r'id="transfer-waiting".*?</form>', html, re.S).group(0)
    assert "¥200.00" in waiting and "上海浦东医疗器械有限公司" in waiting
    assert "2022-09-14" in waiting and 'id="waiting-voucher"' in waiting
    assert 'id="withdraw-declaration"' in waiting
    for offer in ('id="pay-online"', 'id="submit-transfer"', 'id="pay-transfer"',
                  'id="cancel-order"'):
        assert offer not in html
    # The online payment page offers no channel either, and says why.
    pay_page = unit.get(f"/unit/orders/pay/{order.id}").data.decode()
    assert 'id="pay-alipay"' not in pay_page and 'id="pay-b2b"' not in pay_page
    assert "该订单的银行转账正在等待财务审核" in text_of(unit.get(f"/unit/orders/pay/{order.id}"))


@pytest.mark.parametrize("channel", ["alipay", "wechat", "unionpay", "b2b"])
def test_starting_another_way_anyway_is_refused_and_nothing_is_made(login, world, channel):
    unit = login(UNIT_A)
    order = demo_order()
    declare(unit, order)
    before = [(p.id, p.status) for p in payments()]
    audit_rows = db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent))
    page = flashed(unit, unit.post(f"/unit/orders/pay/{order.id}/start",
                                   data={"channel": channel}))
    assert "该订单的银行转账正在等待财务审核" in page and "撤回" in page
    page = flashed(unit, declare(unit, order, payer_account="6222 0000 0000 0001"))
    assert "该订单已有转账正在等待财务审核" in page
    assert [(p.id, p.status) for p in payments()] == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent)) == audit_rows


def test_the_unit_withdraws_its_declaration_and_may_then_pay_another_way(login, world):
    unit = login(UNIT_A)
    order = demo_order()
    declare(unit, order)
    [declared] = payments()
    page = flashed(unit, unit.post(f"/unit/order/{order.id}/transfer/{declared.id}/withdraw"))
    assert "转账申报已撤回" in page
    assert payments()[0].status is PayS.withdrawn
    [audit] = [a for a in audits("payment", "withdraw") if a.record_id == declared.id]
    assert (audit.actor_name, audit.from_state, audit.to_state) == (UNIT_A, "pending",
                                                                     "withdrawn")
    # Withdrawn, it cannot be withdrawn again; the order offers every way again.
    page = flashed(unit, unit.post(f"/unit/order/{order.id}/transfer/{declared.id}/withdraw"))
    assert "该申报无法撤回" in page and "已撤回" in page
    assert 'id="pay-online"' in unit.get(f"/unit/order/{order.id}").data.decode()
    unit.post(f"/unit/orders/pay/{order.id}/start", data={"channel": "alipay"})
    assert [p.status for p in payments()] == [PayS.withdrawn, PayS.pending]


def test_withdrawing_is_refused_once_finance_decided(login, world):
    unit = login(UNIT_A)
    finance = login("finance")
    order = demo_order()
    declare(unit, order)
    [rejected] = payments()
    finance.action("/finance/transfers", "reject_transfers", [rejected.id], reason="凭证不清晰")
    page = flashed(unit, unit.post(f"/unit/order/{order.id}/transfer/{rejected.id}/withdraw"))
    assert "该申报无法撤回" in page
    declare(unit, order)
    confirmed = payments()[-1]
    finance.action("/finance/transfers", "confirm_transfers", [confirmed.id])
    page = flashed(unit, unit.post(f"/unit/order/{order.id}/transfer/{confirmed.id}/withdraw"))
    assert "该申报无法撤回" in page
    assert [p.status for p in payments()] == [PayS.rejected, PayS.confirmed]


def test_nobody_else_withdraws_a_units_declaration(login, world):
    unit = login(UNIT_A)
    order = demo_order()
    declare(unit, order)
    [declared] = payments()
    url = f"/unit/order/{order.id}/transfer/{declared.id}/withdraw"
    assert login(UNIT_B).post(url).status_code == 404
    for role in ("sh-delegation", "finance"):
        assert login(role).post(url).status_code in (302, 403)
    # The right payment under another order's number is no withdrawal either.
    other = flow.create_order(actor_for_user(world.user(UNIT_A)), [world.person("王伟").id])
    assert unit.post(f"/unit/order/{other.id}/transfer/{declared.id}/withdraw"
                     ).status_code == 404
    assert payments()[0].status is PayS.pending
    assert audits("payment", "withdraw") == []


# ------------------------------------------------------------- overpayments ----------------

SHAPES = os.path.join(ROOT, "tests", "data", "payments_notify_fields.json")


@pytest.mark.parametrize("channel", ["alipay", "wechat", "unionpay"])
def test_the_notices_these_tests_send_have_the_providers_published_shapes(
        login, world, sandbox, channel):  # noqa: F811
    """tests/data/payments-SOURCES.md: the fields each provider publishes for its
    payment-success notification; the overpayment tests below send exactly such notices."""
    shape = json.load(open(SHAPES, encoding="utf-8"))[channel]
    payment = open_payment(login(UNIT_A), channel)
    note = sandbox.notification(Ch(channel), payment.number)
    if channel == "wechat":
        assert set(shape["headers"]) <= set(note.headers)
        envelope = json.loads(note.body)
        assert set(shape["envelope"]) <= set(envelope)
        resource = envelope["resource"]
        assert set(shape["resource"]) <= set(resource)
        key = AESGCM(sandbox.keys["wechat"]["apiv3_key"].encode())
        transaction = json.loads(key.decrypt(
            resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]),
            resource["associated_data"].encode()))
        assert set(shape["transaction"]) <= set(transaction)
        assert set(shape["amount"]) <= set(transaction["amount"])
        assert transaction["amount"]["total"] == FEE and \
            transaction["out_trade_no"] == payment.number
        values = {**envelope, **resource, **transaction}
    else:
        values = dict(parse_qsl(note.body.decode()))
        assert set(shape["form"]) <= set(values)
    for field, value in shape["values"].items():
        assert values[field] == value, field


PAIRS = [("alipay", "wechat"), ("wechat", "unionpay"), ("unionpay", "alipay"),
         ("b2b", "wechat")]


@pytest.mark.parametrize("first, second", PAIRS)
def test_money_for_a_withdrawn_attempt_of_a_paid_order_is_an_overpayment(
        app, login, world, sandbox, smtp_server, first, second):  # noqa: F811
    unit = login(UNIT_A)
    given_up = open_payment(unit, first)
    paid = open_payment(unit, second)
    assert [p.status for p in payments()] == [PayS.withdrawn, PayS.pending]
    assert pay_in_sandbox(app, sandbox, second, paid.number).status == 200
    assert demo_order().status is m.OrderStatus.paid
    # The unit had paid the first code too: its provider's notice arrives.
    answer = pay_in_sandbox(app, sandbox, first, given_up.number)
    assert answer.status == SUCCESS[first][0]  # taken: the provider stops sending it
    [over] = overpayments()
    trade = sandbox.ledger.trade(Ch(first), given_up.number)
    assert (over.channel.value, over.amount_fen, over.reference, over.payment_id, over.status,
            over.cause) == (first, FEE, trade.trade_no, given_up.id, OvS.received,
                            m.OverpaymentCause.already_paid)
    # One confirmed payment per order still holds; the given-up attempt stays withdrawn.
    assert [(p.number, p.status) for p in payments()] == [
        (given_up.number, PayS.withdrawn), (paid.number, PayS.confirmed)]
    [received] = audits("overpayment", "receive")
    assert received.actor_name == "system" and received.detail["payment"] == given_up.number
    # The provider sends it again: still one overpayment.
    replay = sandbox.notification(Ch(first), given_up.number)
    assert_answer(first, post(app, replay), SUCCESS)
    assert len(overpayments()) == 1
    # The unit reads it on its order page, by e-mail and SMS; finance by e-mail.
    page = text_of(unit.get(f"/unit/order/{demo_order().id}"))
    assert "该订单的款项到账两次" in page and over.number in page and "待退还" in page
    mails = smtp_server.wait_for(3)
    assert any("到账两次" in (msg["Subject"] or "") for msg in mails)
    assert any(over.number in msg.get_content() and msg["To"] != "finance@ciie.local"
               for msg in mails)
    assert any(over.number in sms["text"] for sms in sms_messages())


def deliver_at_once(app, notifications) -> list:
    barrier = threading.Barrier(len(notifications))
    answers: list = [None] * len(notifications)

    def deliver(i, note):
        client = app.test_client()
        barrier.wait()
        answers[i] = client.post(urlsplit(note.url).path, data=note.body, headers=note.headers)

    threads = [threading.Thread(target=deliver, args=(i, n))
               for i, n in enumerate(notifications)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_two_codes_paid_at_the_same_moment_pay_once_and_one_is_refunded(
        app, login, world, sandbox):  # noqa: F811
    unit = login(UNIT_A)
    alipay = open_payment(unit, "alipay")
    wechat = open_payment(unit, "wechat")
    for channel, payment in ((Ch.alipay, alipay), (Ch.wechat, wechat)):
        sandbox.ledger.mark_paid(channel, payment.number)
    answers = deliver_at_once(app, [sandbox.notification(Ch.alipay, alipay.number),
                                    sandbox.notification(Ch.wechat, wechat.number)])
    assert [a.status_code for a in answers] == [200, 200]
    assert len([p for p in payments() if p.status is PayS.confirmed]) == 1
    [over] = overpayments()
    assert over.payment.status is PayS.withdrawn and over.amount_fen == FEE
    # The same overpayment notice twice at once is still one overpayment.
    again = sandbox.notification(over.channel, over.payment.number)
    assert [a.status_code for a in deliver_at_once(app, [again, again])] == [200, 200]
    assert len(overpayments()) == 1


def test_a_transfer_declared_after_a_qr_code_was_shown(app, login, world, sandbox):  # noqa: F811
    """The unit opened a QR code, then declared a transfer (the code gives way), then paid
    the code anyway: the QR money pays the order; the declaration stays with finance, which
    confirms it as money received twice (or rejects it)."""
    unit = login(UNIT_A)
    code = open_payment(unit, "alipay")
    declare(unit, demo_order())
    assert [p.status for p in payments()] == [PayS.withdrawn, PayS.pending]
    pay_in_sandbox(app, sandbox, "alipay", code.number)
    assert demo_order().status is m.OrderStatus.paid
    declared = payments()[1]
    assert declared.status is PayS.pending
    page = text_of(unit.get(f"/unit/order/{demo_order().id}"))
    assert "您的转账正在等待财务审核" in page and "该订单已通过其他方式支付" in page
    finance = login("finance")
    page = flashed(finance, finance.action("/finance/transfers", "confirm_transfers",
                                           [declared.id]))
    assert "已完成 1 条记录" in page
    [over] = overpayments()
    assert (over.channel, over.payment_id, over.amount_fen, over.payer_name) == (
        Ch.transfer, declared.id, FEE, "上海浦东医疗器械有限公司")
    assert [p.status for p in payments()] == [PayS.confirmed, PayS.withdrawn]
    # The bank line of that transfer, imported later, is the same money, not a second one.
    order = demo_order()
    same = flow.record_overpayment(order, channel=Ch.transfer, amount_fen=FEE,
                                   reference="ICBC-20220914-0001",
                                   payer_name="上海浦东医疗器械有限公司")
    db.session.commit()
    assert same.id == over.id and [o.reference for o in overpayments()] == [
        "ICBC-20220914-0001"]


def test_money_for_a_cancelled_order_is_an_overpayment(app, login, world, sandbox):  # noqa: F811
    unit = login(UNIT_A)
    code = open_payment(unit, "wechat")
    unit.post(f"/unit/order/{demo_order().id}/cancel")
    assert demo_order().status is m.OrderStatus.cancelled
    answer = pay_in_sandbox(app, sandbox, "wechat", code.number)
    assert answer.status == 200
    [over] = overpayments()
    assert (over.cause, over.payment_id, over.status) == (
        m.OverpaymentCause.order_cancelled, code.id, OvS.received)
    assert demo_order().status is m.OrderStatus.cancelled
    assert world.person("陈静").status is m.PersonStatus.awaiting_payment


def test_record_overpayment_is_idempotent_per_reference(world):
    order = demo_order()
    with pytest.raises(WorkflowError):  # an order still waiting is paid by the money
        flow.record_overpayment(order, channel=Ch.transfer, amount_fen=FEE, reference="L1")
    db.session.rollback()
    flow.cancel_order(actor_for_user(world.user(UNIT_A)), order.id)
    order = demo_order()
    first = flow.record_overpayment(order, channel=Ch.transfer, amount_fen=FEE,
                                    reference="BOC 2022-10-01 #17", payer_name="浦东医疗")
    again = flow.record_overpayment(order, channel=Ch.transfer, amount_fen=FEE,
                                    reference="BOC 2022-10-01 #17")
    db.session.commit()
    assert first.id == again.id and len(overpayments()) == 1
    other = flow.record_overpayment(order, channel=Ch.transfer, amount_fen=FEE,
                                    reference="BOC 2022-10-01 #18")
    db.session.commit()
    assert other.id != first.id and len(overpayments()) == 2
    with pytest.raises(WorkflowError):
        flow.record_overpayment(order, channel=Ch.transfer, amount_fen=0, reference="X")


def overpaid_by(app, login, sandbox, channel: str) -> m.Overpayment:  # noqa: F811
    unit = login(UNIT_A)
    given_up = open_payment(unit, channel)
    paid = open_payment(unit, "unionpay" if channel != "unionpay" else "alipay")
    pay_in_sandbox(app, sandbox, paid.channel.value, paid.number)
    pay_in_sandbox(app, sandbox, channel, given_up.number)
    [over] = overpayments()
    return over


@pytest.mark.parametrize("channel", ["alipay", "wechat", "b2b"])
def test_finance_lists_an_overpayment_and_refunds_it_through_the_provider(
        app, login, world, sandbox, smtp_server, channel):  # noqa: F811
    over = overpaid_by(app, login, sandbox, channel)
    finance = login("finance")
    listing = text_of(finance.get("/finance/overpayments/list/"))
    assert over.number in listing and "O2022000001" in listing
    home = text_of(finance.get("/"))
    assert "重复到账" in home and "已到账，待退还" in home
    smtp_server.clear()
    page = flashed(finance, finance.action("/finance/overpayments", "refund_online", [over.id]))
    assert "已完成 1 条记录" in page
    [over] = overpayments()
    assert over.status is OvS.refunded and over.refund_reference and over.refunded_at
    number = over.payment.number
    assert sandbox.ledger.refunded_fen(Ch(channel), number) == FEE
    # The paying attempt of the order keeps its money.
    confirmed = [p for p in payments() if p.status is PayS.confirmed]
    assert len(confirmed) == 1 and sandbox.ledger.refunded_fen(
        confirmed[0].channel, confirmed[0].number) == 0
    assert any("已退还" in (msg["Subject"] or "") for msg in smtp_server.wait_for(1))
    assert [a.to_state for a in db.session.scalars(sa.select(m.AuditEvent).where(
        m.AuditEvent.record_type == "overpayment", m.AuditEvent.record_id == over.id)
        .order_by(m.AuditEvent.id))] == ["received", "refund_sent", "refunded"]
    # Refunding again is refused: nothing more goes back.
    page = flashed(finance, finance.action("/finance/overpayments", "refund_online", [over.id]))
    assert "已退款" in page
    assert sandbox.ledger.refunded_fen(Ch(channel), number) == FEE
    assert "已退款" in text_of(login(UNIT_A).get(f"/unit/order/{demo_order().id}"))


def test_a_transfer_overpayment_is_refunded_by_bank_transfer_with_its_reference(
        app, login, world, sandbox):  # noqa: F811
    unit = login(UNIT_A)
    code = open_payment(unit, "alipay")
    declare(unit, demo_order())
    pay_in_sandbox(app, sandbox, "alipay", code.number)
    finance = login("finance")
    finance.action("/finance/transfers", "confirm_transfers", [payments()[1].id])
    [over] = overpayments()
    page = flashed(finance, finance.action("/finance/overpayments", "refund_online", [over.id]))
    assert "银行转账退还" in page
    assert overpayments()[0].status is OvS.received
    page = flashed(finance, finance.action("/finance/overpayments", "refund_by_transfer",
                                           [over.id], reason="  "))
    assert "请填写退款转账的流水号" in page
    assert overpayments()[0].status is OvS.received
    finance.action("/finance/overpayments", "refund_by_transfer", [over.id],
                   reason="中国银行 退款流水 2022100800012")
    [over] = overpayments()
    assert (over.status, over.refund_reference) == (OvS.refunded, "中国银行 退款流水 2022100800012")
    assert "2022100800012" in text_of(unit.get(f"/unit/order/{demo_order().id}"))


def test_only_finance_and_the_unit_itself_see_an_overpayment(app, login, world,
                                                            sandbox):  # noqa: F811
    over = overpaid_by(app, login, sandbox, "wechat")
    for role in (UNIT_A, UNIT_B, "sh-delegation", "sh-pudong", "reviewer"):
        client = login(role)
        response = client.get("/finance/overpayments/list/")
        assert response.status_code in (302, 403), role
        assert over.number not in text_of(response)
        response = client.action("/finance/overpayments", "refund_online", [over.id])
        assert response.status_code in (302, 403), role
    assert overpayments()[0].status is OvS.received
    assert login(UNIT_B).get(f"/unit/order/{demo_order().id}").status_code == 404
    seen = {}
    for name in (UNIT_A, UNIT_B, "sh-delegation", "finance", "admin", "reviewer"):
        actor = actor_for_user(world.user(name))
        seen[name] = db.session.scalar(sa.select(sa.func.count()).select_from(scoped(
            sa.select(m.Overpayment.id), m.Overpayment, actor).subquery()))
    assert seen == {UNIT_A: 1, UNIT_B: 0, "sh-delegation": 0, "finance": 1, "admin": 1,
                    "reviewer": 0}


# ------------------------------------------------------------- the rejected voucher --------

def test_a_rejected_voucher_tells_the_unit_by_sms_and_email_with_the_reason(
        login, world, smtp_server):
    unit = login(UNIT_A)
    order = demo_order()
    declare(unit, order)
    [declared] = payments()
    login("finance").action("/finance/transfers", "reject_transfers", [declared.id],
                            reason="凭证金额与订单不符")
    [mail] = smtp_server.wait_for(1)
    registration = world.registration("浦东医疗")
    assert mail["To"] == (registration.contact_email or registration.unit.email)
    assert mail["Subject"] == "您的转账凭证未通过审核"
    assert "凭证金额与订单不符" in mail.get_content() and order.number in mail.get_content()
    [sms] = [s for s in sms_messages() if "凭证金额与订单不符" in s["text"]]
    assert declared.number in sms["text"]
    # Rejecting it again sends nothing more.
    login("finance").action("/finance/transfers", "reject_transfers", [declared.id],
                            reason="再次")
    assert len(smtp_server.wait_for(2, timeout=1)) == 1
