"""Online payments through the provider adapters and the local sandbox, over HTTP, on
PostgreSQL: each channel end to end, forged / altered / replayed / misdirected notifications,
two identical notifications at once, refunds, scoping, deadlines, the production switches."""
from __future__ import annotations

import base64
import http.server
import json
import logging
import re
import socket
import sqlite3
import threading
from datetime import datetime
from html import unescape
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app import clock
from app import models as m
from app.extensions import db
from app.gateways import payments as gw
from app.sandbox.simulator import NotifyRequest, PaymentSandbox
from app.scoping.actor import actor_for_user
from app.workflow.payments import cancel_order
from tests.conftest import UNIT_A, UNIT_B, Client, free_port

QR = ["alipay", "wechat", "unionpay"]
ALL = QR + ["b2b"]
FEE = 20000  # the demo order O2022000001: one person (陈静) at the 5th edition's fee
# The field that holds the amount and the payment number in each provider's notification.
AMOUNT_FIELD = {"alipay": ("total_amount", "2.00"), "unionpay": ("txnAmt", "200"),
                "b2b": ("txnAmt", "200")}
NUMBER_FIELD = {"alipay": "out_trade_no", "unionpay": "orderId", "b2b": "orderId"}
SUCCESS = {"alipay": (200, "success"), "wechat": (200, '{"code": "SUCCESS", "message": "OK"}'),
           "unionpay": (200, "ok"), "b2b": (200, "ok")}
FAILURE = {"alipay": (400, "fail"), "wechat": (400, None), "unionpay": (400, "fail"),
           "b2b": (400, "fail")}


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("payment-sandbox"))


@pytest.fixture(autouse=True)
def sandbox(app, data_app, sandbox_dir):
    """Both apps (the served one and the tests' own) use one sandbox directory, as processes
    do; its books are emptied after each test (payment numbers restart with the database)."""
    saved = [(a, a.config["PAYMENT_SANDBOX"], a.config["PAYMENT_SANDBOX_DIR"])
             for a in (app, data_app)]
    for a in (app, data_app):
        a.config.update(PAYMENT_SANDBOX=True, PAYMENT_SANDBOX_DIR=sandbox_dir)
    box = PaymentSandbox(sandbox_dir)
    yield box
    with sqlite3.connect(box.ledger.path) as ledger:
        ledger.execute("DELETE FROM trade")
        ledger.execute("DELETE FROM refund")
    for a, on, directory in saved:
        a.config.update(PAYMENT_SANDBOX=on, PAYMENT_SANDBOX_DIR=directory)


@pytest.fixture
def notify_log(caplog):
    """The notify endpoint's log. Alembic's fileConfig (the app fixture migrates) disables the
    loggers that exist by then; this one is switched back on for the test."""
    logger = logging.getLogger("app.views.payments")
    disabled, logger.disabled = logger.disabled, False
    caplog.set_level(logging.INFO, logger=logger.name)
    yield caplog
    logger.disabled = disabled


def logged(caplog, level: int, words: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == level and words in r.getMessage())


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def demo_order() -> m.Order:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()


def payments() -> list[m.Payment]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(m.Payment).order_by(m.Payment.id)))


def state(world) -> tuple:
    """Everything a notification may change: payments, the order, the person, the receipts."""
    db.session.expire_all()
    order = demo_order()
    return (order.status, [(p.number, p.status, p.provider_trade_no) for p in payments()],
            world.person("陈静").status,
            db.session.scalar(sa.select(sa.func.count()).select_from(m.Notification)),
            audit_count())


def audit_count(action: str | None = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(m.AuditEvent)
    if action:
        stmt = stmt.where(m.AuditEvent.action == action)
    return db.session.scalar(stmt)


def start(client: Client, channel: str, order_id: int | None = None):
    return client.post(f"/unit/orders/pay/{order_id or demo_order().id}/start",
                       data={"channel": channel})


def open_qr_payment(client: Client, channel: str) -> tuple[m.Payment, str]:
    """The unit chooses a QR channel and sees the code: (payment, the sandbox page's path)."""
    response = start(client, channel)
    assert response.status_code == 302, response.data
    page = client.get(response.location)
    html = page.data.decode()
    assert page.status_code == 200 and 'id="payment-qr"' in html
    assert re.search(r'src="data:image/svg\+xml', html)
    link = re.search(r'href="([^"]+)"[^>]*id="sandbox-open"', html).group(1)
    payment = payments()[-1]
    assert response.location.endswith(f"/unit/orders/pay/payment/{payment.id}")
    return payment, urlsplit(link).path


def bank_form(html: str) -> tuple[str, dict[str, str]]:
    """The B2B form of the payment page: where it posts and its (signed) fields."""
    form = re.search(r'<form method="post" action="([^"]+)" id="payment-bank-form">(.*?)</form>',
                     html, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>',
                             form.group(2)))
    return form.group(1), {k: unescape(v) for k, v in fields.items()}


def open_payment(client: Client, channel: str) -> m.Payment:
    """The unit opens a payment of any online channel; the provider's books hold it."""
    if channel in QR:
        return open_qr_payment(client, channel)[0]
    response = start(client, channel)
    assert response.status_code == 302
    action, fields = bank_form(client.get(response.location).data.decode())
    # The browser posts the signed order to UnionPay's page (the sandbox's here), no token.
    assert client.post(action, data=fields, csrf=False).status_code == 200
    return payments()[-1]


def post(app, notification: NotifyRequest):
    """A provider's notification, as it arrives over HTTP."""
    return app.test_client().post(urlsplit(notification.url).path, data=notification.body,
                                  headers=notification.headers)


def assert_answer(channel: str, response, expected: dict) -> None:
    status, body = expected[channel]
    assert response.status_code == status, response.data
    if body is not None:
        assert response.data.decode() == body
    if channel == "wechat" and expected is FAILURE:
        assert response.json["code"] == "FAIL"


def altered(sandbox: PaymentSandbox, channel: str, notification: NotifyRequest, field: str,
            value) -> NotifyRequest:
    """The notification with one field changed after the provider signed it. For WeChat the
    field is inside the encrypted resource: re-encrypted with the APIv3 key (as someone who
    stole that key could), the body no longer matches the platform's signature."""
    if channel != "wechat":
        params = dict(parse_qsl(notification.body.decode()))
        params[field] = value
        return NotifyRequest(notification.url, notification.headers, urlencode(params).encode())
    key = AESGCM(sandbox.keys["wechat"]["apiv3_key"].encode())
    envelope = json.loads(notification.body)
    res = envelope["resource"]
    plain = json.loads(key.decrypt(res["nonce"].encode(), base64.b64decode(res["ciphertext"]),
                                   res["associated_data"].encode()))
    if field == "amount":
        plain["amount"]["total"] = value
    else:
        plain[field] = value
    res["ciphertext"] = base64.b64encode(key.encrypt(
        res["nonce"].encode(), json.dumps(plain).encode(), res["associated_data"].encode())
    ).decode()
    return NotifyRequest(notification.url, notification.headers,
                         json.dumps(envelope).encode())


def paid_through_sandbox(app, sandbox, client: Client, channel: str) -> m.Payment:
    payment = open_payment(client, channel)
    with app.test_request_context():
        answer = sandbox.pay(m.PaymentChannel(channel), payment.number)
    assert answer.status == 200
    payment = payments()[-1]
    assert payment.status is m.PaymentStatus.confirmed
    return payment


# --------------------------------------------------------------------------------------------
# A whole payment, each channel, through HTTP
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", QR)
def test_qr_payment_through_the_sandbox(app, login, world, smtp_server, channel):
    client = login(UNIT_A)
    client.set_language("en")
    order = demo_order()
    assert order.status is m.OrderStatus.pending and order.amount_fen == FEE
    page = client.get(f"/unit/orders/pay/{order.id}")
    assert page.status_code == 200 and f'id="pay-{channel}"' in page.data.decode()

    payment, sandbox_page = open_qr_payment(client, channel)
    assert payment.status is m.PaymentStatus.pending and payment.amount_fen == FEE
    status_url = f"/unit/orders/pay/payment/{payment.id}/status"
    pending = client.get(status_url).json
    assert (pending["status"], pending["order_status"], pending["paid"]) == (
        "pending", "pending", False)

    # The payer's phone opens the QR code's page (no login) and pays.
    phone = Client(app)
    shown = phone.get(sandbox_page)
    assert shown.status_code == 200 and "200.00" in shown.data.decode()
    paid = phone.post(sandbox_page)
    assert paid.status_code == 200
    assert f"HTTP 200: {SUCCESS[channel][1]}" in paid.data.decode().replace("&#34;", '"')

    payment = payments()[-1]
    assert payment.status is m.PaymentStatus.confirmed and payment.provider_trade_no
    assert payment.confirmed_at is not None
    assert demo_order().status is m.OrderStatus.paid
    assert world.person("陈静").status is m.PersonStatus.awaiting_review
    assert client.get(status_url).json["paid"] is True
    assert 'id="payment-paid"' in client.get(f"/unit/orders/pay/payment/{payment.id}").data.decode()
    assert 'id="pay-refusal"' in client.get(f"/unit/orders/pay/{order.id}").data.decode()

    receipt = db.session.scalars(sa.select(m.Notification).where(
        m.Notification.dedupe_key == f"receipt:{payment.id}")).one()
    assert receipt.status is m.NotificationStatus.sent
    mails = smtp_server.wait_for(1)
    assert len(mails) == 1 and payment.number in mails[0].get_body().get_content()

    actions = set(db.session.execute(sa.select(m.AuditEvent.record_type, m.AuditEvent.action,
                                               m.AuditEvent.actor_name)).all())
    assert {("payment", "start", UNIT_A), ("payment", "notified", "system"),
            ("badge_order", "paid", "system"),
            ("person_registration", "paid", "system")} <= actions


def test_b2b_payment_through_the_bank_sandbox(login, world, smtp_server):
    client = login(UNIT_A)
    order = demo_order()
    response = start(client, "b2b")
    assert response.status_code == 302
    payment = payments()[-1]
    assert payment.channel is m.PaymentChannel.b2b
    assert urlsplit(response.location).path == f"/unit/orders/pay/payment/{payment.id}"
    # The page holds UnionPay's B2B order (ACP 5.1.0, bizType 000202), signed, to post.
    action, params = bank_form(client.get(response.location).data.decode())
    assert action == "/sandbox/pay/bank"
    assert (params["bizType"], params["txnType"], params["txnSubType"], params["txnAmt"],
            params["orderId"]) == ("000202", "01", "01", "20000", payment.number)
    assert params["certId"] and params["signature"]

    bank = client.post(action, data=params, csrf=False)
    assert bank.status_code == 200 and 'id="sandbox-pay"' in bank.data.decode()

    back = client.post(f"/sandbox/pay/bank/{payment.number}")
    assert back.status_code == 302
    # Back through frontUrl, which only leads to the payment's page.
    home = client.get(back.location)
    assert home.status_code == 303
    assert urlsplit(home.location).path == f"/unit/orders/pay/payment/{payment.id}"
    assert 'id="payment-paid"' in client.get(home.location).data.decode()

    payment = payments()[-1]
    assert payment.status is m.PaymentStatus.confirmed and payment.provider_trade_no
    assert demo_order().status is m.OrderStatus.paid
    assert world.person("陈静").status is m.PersonStatus.awaiting_review
    assert len(smtp_server.wait_for(1)) == 1
    assert audit_count("notified") == 1 and order.id

    # Fields changed on the way to the bank (a smaller amount) are not the merchant's.
    params["txnAmt"] = "2"
    assert client.post("/sandbox/pay/bank", data=params, csrf=False).status_code == 400


def test_choosing_again_shows_the_same_payment(login, world):
    client = login(UNIT_A)
    first, _path = open_qr_payment(client, "alipay")
    again, _path = open_qr_payment(client, "alipay")
    assert first.id == again.id and len(payments()) == 1
    open_qr_payment(client, "wechat")
    assert len(payments()) == 2


# --------------------------------------------------------------------------------------------
# Notifications that must change nothing
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ALL)
def test_forged_notification_changes_nothing(app, login, world, sandbox, tmp_path, notify_log,
                                            channel):
    payment = open_payment(login(UNIT_A), channel)
    before = state(world)
    # Signed by someone with keys of their own, in the provider's exact format.
    forger = PaymentSandbox(str(tmp_path / "forger"))
    genuine = sandbox.notification(m.PaymentChannel(channel), payment.number)
    forged = forger.notification(m.PaymentChannel(channel), payment.number,
                                 amount_fen=FEE, notify_url=genuine.url)
    assert_answer(channel, post(app, forged), FAILURE)
    if channel == "wechat":
        # Even under the platform key's serial the signature does not verify.
        headers = {**forged.headers,
                   "Wechatpay-Serial": genuine.headers["Wechatpay-Serial"]}
        assert_answer(channel, post(app, NotifyRequest(forged.url, headers, forged.body)),
                      FAILURE)
    # A genuine one with its signature removed.
    if channel != "wechat":
        params = dict(parse_qsl(genuine.body.decode()))
        params.pop("sign", None)
        params.pop("signature", None)
        stripped = NotifyRequest(genuine.url, genuine.headers, urlencode(params).encode())
        assert_answer(channel, post(app, stripped), FAILURE)
    assert state(world) == before
    assert logged(notify_log, logging.WARNING, f"{channel} notification rejected") == 2


@pytest.mark.parametrize("channel", ALL)
def test_altered_notification_changes_nothing(app, login, world, sandbox, channel):
    client = login(UNIT_A)
    payment = open_payment(client, channel)
    # Another attempt of the same order and channel for the altered number to name (withdrawn:
    # an order has one open attempt at a time).
    other = m.Payment(number="P2022999999", order_id=demo_order().id,
                      channel=m.PaymentChannel(channel), status=m.PaymentStatus.withdrawn,
                      amount_fen=payment.amount_fen)
    db.session.add(other)
    db.session.commit()
    before = state(world)
    genuine = sandbox.notification(m.PaymentChannel(channel), payment.number)
    if channel == "wechat":
        cheaper = altered(sandbox, channel, genuine, "amount", 200)
        renamed = altered(sandbox, channel, genuine, "out_trade_no", other.number)
    else:
        field, value = AMOUNT_FIELD[channel]
        cheaper = altered(sandbox, channel, genuine, field, value)
        renamed = altered(sandbox, channel, genuine, NUMBER_FIELD[channel], other.number)
    assert_answer(channel, post(app, cheaper), FAILURE)
    assert_answer(channel, post(app, renamed), FAILURE)
    assert state(world) == before
    # The untouched notification still pays (so the refusals were about the alterations).
    assert_answer(channel, post(app, genuine), SUCCESS)
    assert demo_order().status is m.OrderStatus.paid


@pytest.mark.parametrize("channel", ALL)
def test_signed_notification_with_another_amount_cannot_pay(app, login, world, sandbox,
                                                            notify_log, channel):
    payment = open_payment(login(UNIT_A), channel)
    before = state(world)
    for amount in (FEE - 1, 1, FEE + 100):
        notification = sandbox.notification(m.PaymentChannel(channel), payment.number,
                                            amount_fen=amount)
        assert_answer(channel, post(app, notification), FAILURE)
    after = state(world)
    assert after[:4] == before[:4]
    assert audit_count("notification_refused") == 3
    assert logged(notify_log, logging.WARNING, f"{channel} notification refused") == 3


@pytest.mark.parametrize("channel", ALL)
def test_notification_for_an_unknown_payment_changes_nothing(app, login, world, sandbox,
                                                             channel):
    payment = open_payment(login(UNIT_A), channel)
    before = state(world)
    url = sandbox.ledger.trade(m.PaymentChannel(channel), payment.number).notify_url
    unknown = sandbox.notification(m.PaymentChannel(channel), "P2022999999", amount_fen=FEE,
                                   notify_url=url)
    assert_answer(channel, post(app, unknown), FAILURE)
    # Sent to another channel's endpoint, a genuine notification is not that provider's.
    elsewhere = "alipay" if channel != "alipay" else "wechat"
    genuine = sandbox.notification(m.PaymentChannel(channel), payment.number)
    misrouted = NotifyRequest(genuine.url.replace(channel, elsewhere), genuine.headers,
                              genuine.body)
    assert post(app, misrouted).status_code == 400
    assert state(world) == before


@pytest.mark.parametrize("channel", ALL)
def test_replayed_notification_changes_nothing_and_is_acknowledged(app, login, world,
                                                                   smtp_server, sandbox,
                                                                   notify_log, channel):
    payment = open_payment(login(UNIT_A), channel)
    notification = sandbox.notification(m.PaymentChannel(channel), payment.number)
    assert_answer(channel, post(app, notification), SUCCESS)
    after_first = state(world)
    assert after_first[0] is m.OrderStatus.paid
    for _ in range(2):
        # The provider was not sure we got it: the same bytes again. Taken, changes nothing.
        assert_answer(channel, post(app, notification), SUCCESS)
    assert state(world) == after_first
    assert len(smtp_server.wait_for(1)) == 1
    assert logged(notify_log, logging.INFO, "repeated; already confirmed") == 2


def test_stale_wechat_notification_is_refused(app, login, world, sandbox, monkeypatch):
    payment = open_payment(login(UNIT_A), "wechat")
    before = state(world)
    import app.sandbox.simulator as sandbox_module

    real = sandbox_module.time.time
    monkeypatch.setattr(sandbox_module.time, "time", lambda: real() - 600)
    old = sandbox.notification(m.PaymentChannel.wechat, payment.number)
    monkeypatch.undo()
    assert_answer("wechat", post(app, old), FAILURE)
    assert state(world) == before


@pytest.mark.parametrize("channel", ALL)
def test_notification_for_a_cancelled_order_pays_nothing_and_is_refunded(app, login, world,
                                                                        sandbox, channel):
    client = login(UNIT_A)
    payment = open_payment(client, channel)
    cancel_order(actor_for_user(world.user(UNIT_A)), demo_order().id)
    assert world.person("陈静").status is m.PersonStatus.awaiting_payment
    before = state(world)
    with app.test_request_context():
        answer = sandbox.pay(m.PaymentChannel(channel), payment.number)
    # Taken (the provider stops sending it): the money is an overpayment to refund (issue 12),
    # not a notice refused for ever.
    assert (answer.status, answer.text) == (SUCCESS[channel][0],
                                           SUCCESS[channel][1] or answer.text)
    after = state(world)
    assert after[:3] == before[:3]
    assert after[0] is m.OrderStatus.cancelled
    # Its open attempt went with it (withdrawn, audited), and the late money pays nothing.
    assert payments()[-1].status is m.PaymentStatus.withdrawn
    over = db.session.scalars(sa.select(m.Overpayment)).one()
    assert (over.payment_id, over.cause, over.amount_fen) == (
        payment.id, m.OverpaymentCause.order_cancelled, FEE)


def test_notification_that_reports_no_payment_changes_nothing(app, login, world, sandbox):
    payment = open_payment(login(UNIT_A), "alipay")
    before = state(world)
    closed = sandbox.notification(m.PaymentChannel.alipay, payment.number, paid=False)
    assert_answer("alipay", post(app, closed), SUCCESS)
    assert state(world) == before


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_two_identical_notifications_at_once_confirm_once(app, login, world, smtp_server,
                                                          sandbox, channel):
    payment = open_payment(login(UNIT_A), channel)
    notification = sandbox.notification(m.PaymentChannel(channel), payment.number)
    barrier = threading.Barrier(2)
    answers = []

    def deliver():
        client = app.test_client()
        barrier.wait()
        answers.append(post_with(client, notification))

    def post_with(client, n):
        return client.post(urlsplit(n.url).path, data=n.body, headers=n.headers)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 2
    for answer in answers:
        assert_answer(channel, answer, SUCCESS)
    confirmed = [p for p in payments() if p.status is m.PaymentStatus.confirmed]
    assert len(confirmed) == 1
    assert demo_order().status is m.OrderStatus.paid
    assert audit_count("notified") == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent).where(
        m.AuditEvent.action == "paid")) == 2  # the order and its one person, once each
    assert db.session.scalar(sa.select(sa.func.count()).select_from(m.Notification)) == 1
    assert len(smtp_server.wait_for(1)) == 1


# --------------------------------------------------------------------------------------------
# Refunds through the adapters
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ALL)
def test_refunds_are_idempotent_on_their_number(app, login, world, sandbox, channel):
    payment = paid_through_sandbox(app, sandbox, login(UNIT_A), channel)
    ch = m.PaymentChannel(channel)
    gateway = gw.gateway_for(ch)  # outside any request, as in an rq job
    first = gateway.refund(payment, "R2022000001", 10000)
    again = gateway.refund(payment, "R2022000001", 10000)
    assert first.status == again.status == "done"
    assert first.provider_refund_id
    assert sandbox.ledger.refunded_fen(ch, payment.number) == 10000
    assert gateway.refund(payment, "R2022000002", 10000).status == "done"
    assert sandbox.ledger.refunded_fen(ch, payment.number) == FEE
    # Nothing is left to refund.
    assert gateway.refund(payment, "R2022000003", 100).status == "failed"
    assert sandbox.ledger.refunded_fen(ch, payment.number) == FEE


@pytest.mark.parametrize("channel", ALL)
def test_refund_trouble_is_reported_as_pending_failed_or_raised(app, login, world, sandbox,
                                                                channel):
    payment = paid_through_sandbox(app, sandbox, login(UNIT_A), channel)
    ch = m.PaymentChannel(channel)
    gateway = gw.gateway_for(ch)
    # ...01: the provider is still working on it; asking again later finishes it.
    assert gateway.refund(payment, "R1", 5001).status == "pending"
    assert sandbox.ledger.refunded_fen(ch, payment.number) == 0
    assert gateway.refund(payment, "R1", 5001).status == "done"
    assert sandbox.ledger.refunded_fen(ch, payment.number) == 5001
    # ...02: refused for good, and again when asked again.
    refused = gateway.refund(payment, "R2", 5002)
    assert refused.status == "failed" and refused.message
    assert gateway.refund(payment, "R2", 5002).status == "failed"
    # ...03: no answer at all; nothing was recorded, so a retry can go through.
    with pytest.raises(gw.ProviderUnreachable):
        gateway.refund(payment, "R3", 5003)
    assert sandbox.ledger.refunded_fen(ch, payment.number) == 5001
    # The same refund number cannot be reused for another amount.
    assert gateway.refund(payment, "R1", 4000).status == "failed"


# --------------------------------------------------------------------------------------------
# Scope, refusals, switches
# --------------------------------------------------------------------------------------------

def test_another_unit_cannot_open_or_pay_the_order(login, world):
    owner = login(UNIT_A)
    payment, _path = open_qr_payment(owner, "alipay")
    order_id = demo_order().id
    stranger = login(UNIT_B)
    assert stranger.get(f"/unit/orders/pay/{order_id}").status_code == 404
    for channel in ALL:
        assert start(stranger, channel, order_id).status_code == 404
    assert stranger.get(f"/unit/orders/pay/payment/{payment.id}").status_code == 404
    assert stranger.get(f"/unit/orders/pay/payment/{payment.id}/status").status_code == 404
    assert len(payments()) == 1
    # Other roles have no payment pages at all.
    assert login("finance").get(f"/unit/orders/pay/{order_id}").status_code in (302, 403)


def test_refusals_after_the_deadline_and_for_orders_not_pending(login, world):
    client = login(UNIT_A)
    client.set_language("en")
    order_id = demo_order().id
    clock.set_now(datetime.fromisoformat("2022-10-16T00:00:00+08:00"))
    page = client.get(f"/unit/orders/pay/{order_id}").data.decode()
    assert "QR code and B2B payments were due by 2022-10-15 23:59 (Beijing time)" in page
    assert 'id="pay-alipay"' not in page
    refused = client.post(f"/unit/orders/pay/{order_id}/start", data={"channel": "wechat"},
                          follow_redirects=True)
    assert "were due by 2022-10-15 23:59" in refused.data.decode()
    assert payments() == []

    clock.set_now(datetime.fromisoformat("2022-09-15T10:00:00+08:00"))
    cancel_order(actor_for_user(world.user(UNIT_A)), order_id)
    page = client.get(f"/unit/orders/pay/{order_id}").data.decode()
    assert "This order is not waiting for payment." in page
    refused = client.post(f"/unit/orders/pay/{order_id}/start", data={"channel": "alipay"},
                          follow_redirects=True)
    assert "This order is not waiting for payment." in refused.data.decode()
    assert payments() == []
    assert start(client, "transfer", order_id).status_code == 404


def test_no_code_is_shown_after_the_deadline(login, world):
    client = login(UNIT_A)
    client.set_language("en")
    payment, _path = open_qr_payment(client, "unionpay")
    clock.set_now(datetime.fromisoformat("2022-10-16T00:00:00+08:00"))
    page = client.get(f"/unit/orders/pay/payment/{payment.id}").data.decode()
    assert 'id="payment-failure"' in page and 'id="payment-qr"' not in page
    assert "were due by 2022-10-15 23:59" in page
    assert start(client, "unionpay").status_code == 302
    assert len(payments()) == 1


def test_the_order_list_links_to_the_payment_page(login, world):
    html = login(UNIT_A).get("/unit/orders/list/").data.decode()
    assert f'href="/unit/orders/pay/{demo_order().id}"' in html


def test_sandbox_pages_are_gone_when_the_sandbox_is_off(app, login, world, sandbox):
    client = login(UNIT_A)
    payment, path = open_qr_payment(client, "alipay")
    app.config["PAYMENT_SANDBOX"] = False
    anonymous = Client(app)
    assert anonymous.get(path).status_code == 404
    assert anonymous.post(path).status_code == 404
    assert anonymous.get("/sandbox/pay/bank").status_code == 404
    assert anonymous.post(f"/sandbox/pay/bank/{payment.number}").status_code == 404
    # Without provider settings the real gateway cannot be built: nothing is confirmed.
    with app.test_request_context():
        notification = sandbox.notification(m.PaymentChannel.alipay, payment.number)
    assert post(app, notification).status_code == 503
    assert payments()[-1].status is m.PaymentStatus.pending


def test_only_the_notify_endpoint_is_exempt_from_csrf(app, login, world, sandbox):
    client = login(UNIT_A)
    payment, path = open_qr_payment(client, "alipay")
    order_id = demo_order().id
    assert client.post(f"/unit/orders/pay/{order_id}/start", data={"channel": "wechat"},
                       csrf=False).status_code == 400
    assert Client(app).post(path, csrf=False).status_code == 400
    assert client.post("/sandbox/pay/bank/" + payment.number, csrf=False).status_code == 400
    assert len(payments()) == 1 and payments()[0].status is m.PaymentStatus.pending
    notification = sandbox.notification(m.PaymentChannel.alipay, payment.number)
    assert_answer("alipay", post(app, notification), SUCCESS)


def test_unknown_channels_and_transfers_have_no_notify_endpoint(app, world):
    client = app.test_client()
    assert client.post("/pay/notify/transfer", data={}).status_code == 404
    assert client.post("/pay/notify/paypal", data={}).status_code == 404
    assert client.get("/pay/notify/alipay").status_code == 405


def test_production_turns_the_sandbox_off():
    from config import Config, ProductionConfig

    assert ProductionConfig.PAYMENT_SANDBOX is False
    assert Config.PAYMENT_SANDBOX is True


def test_production_adapters_are_built_without_touching_the_network(sandbox, tmp_path,
                                                                    monkeypatch):
    """The real adapters, from PEM files and settings (the sandbox's keys stand in for the
    providers'): building them reads files and loads keys, and opens no connection."""
    keys = sandbox.keys
    files = {}
    for channel in ("alipay", "wechat"):
        for side in ("merchant", "provider"):
            path = tmp_path / f"{channel}-{side}.pem"
            path.write_text(keys[channel][side]["private" if side == "merchant" else "public"])
            files[(channel, side)] = str(path)
    config = {
        "ALIPAY_APP_ID": keys["alipay"]["merchant_id"],
        "ALIPAY_APP_PRIVATE_KEY_FILE": files[("alipay", "merchant")],
        "ALIPAY_PUBLIC_KEY_FILE": files[("alipay", "provider")],
        "WECHATPAY_MCHID": keys["wechat"]["merchant_id"], "WECHATPAY_APPID": "wx1",
        "WECHATPAY_CERT_SERIAL_NO": keys["wechat"]["cert_serial_no"],
        "WECHATPAY_PRIVATE_KEY_FILE": files[("wechat", "merchant")],
        "WECHATPAY_APIV3_KEY": keys["wechat"]["apiv3_key"],
        "WECHATPAY_PUBLIC_KEY_FILE": files[("wechat", "provider")],
        "WECHATPAY_PUBLIC_KEY_ID": keys["wechat"]["public_key_id"],
    }
    acp = sandbox.acp_keys
    for name, text in (("root", acp["root"]), ("middle", acp["middle"])):
        (tmp_path / f"acp-{name}.cer").write_text(text)
    for channel, prefix in (("unionpay", "UNIONPAY"), ("b2b", "B2B")):
        own = acp["merchants"][channel]
        (tmp_path / f"{channel}-sign.pem").write_text(own["key"] + own["cert"])
        config.update({f"{prefix}_MER_ID": own["merchant_id"],
                       f"{prefix}_API_URL": "https://gateway.test.95516.com",
                       f"{prefix}_SIGN_CERT_FILE": str(tmp_path / f"{channel}-sign.pem"),
                       f"{prefix}_MIDDLE_CERT_FILE": str(tmp_path / "acp-middle.cer"),
                       f"{prefix}_ROOT_CERT_FILE": str(tmp_path / "acp-root.cer")})

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was opened")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    link = gw.HttpLink(timeout=1)
    built = {ch: gw.production_gateway(m.PaymentChannel(ch), config, link) for ch in ALL}
    assert isinstance(built["alipay"], gw.AlipayGateway)
    assert isinstance(built["wechat"], gw.WechatPayGateway)
    assert built["b2b"].settings.front_url == \
        "https://gateway.test.95516.com/gateway/api/frontTransReq.do"
    monkeypatch.undo()
    with pytest.raises(gw.GatewayError, match="ALIPAY_APP_ID"):
        gw.production_gateway(m.PaymentChannel.alipay, {}, link)


def test_http_link_carries_requests_and_reports_unreachable_providers():
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201 if body == b"a=1" else 400)
            self.send_header("X-Seen", self.headers.get("X-Test", ""))
            self.end_headers()
            self.wfile.write(b"got " + body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        link = gw.HttpLink(timeout=5)
        url = f"http://127.0.0.1:{server.server_port}/x"
        answer = link.send("POST", url, {"X-Test": "yes"}, b"a=1")
        assert (answer.status, answer.headers.get("x-seen"), answer.text) == (201, "yes",
                                                                               "got a=1")
        refused = link.send("POST", url, {}, b"b=2")
        assert (refused.status, refused.text) == (400, "got b=2")
    finally:
        server.shutdown()
    with pytest.raises(gw.ProviderUnreachable):
        gw.HttpLink(timeout=2).send("GET", f"http://127.0.0.1:{free_port()}/", {}, b"")


def test_yuan_and_fen_are_converted_exactly():
    assert gw.yuan_text(20000) == "200.00" and gw.yuan_text(1) == "0.01"
    assert gw.yuan_to_fen("200.00") == 20000 and gw.yuan_to_fen("0.1") == 10
    assert gw.yuan_to_fen("200") == 20000 and gw.yuan_to_fen("0.29") == 29
    for bad in ("200.001", "-1.00", "1e3", " 1.00", "1,000.00", "", None, "NaN"):
        with pytest.raises(ValueError):
            gw.yuan_to_fen(bad)
    assert gw.fen_from_text("20000") == 20000
    with pytest.raises(ValueError):
        gw.fen_from_text("200.00")


def test_refund_of_an_online_payment_goes_back_through_the_provider(app, login, world, sandbox):
    payment = paid_through_sandbox(app, sandbox, login(UNIT_A), "wechat")
    unit = login(UNIT_A)
    chen = db.session.scalars(sa.select(m.PersonRegistration).join(m.Person)
                              .where(m.Person.name == "陈静")).one()
    unit.action("/unit/persons", "cancel_persons", [chen.id])
    unit.post("/unit/refunds/request", data={"person": [str(chen.id)], "route": "original"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    finance = login("finance")
    finance.action("/finance/refunds", "approve_refunds", [refund.id])
    finance.action("/finance/refunds", "execute_refunds", [refund.id])   # job runs inline
    db.session.expire_all()
    assert refund.status is m.RefundStatus.done and refund.provider_refund_id
    assert sandbox.ledger.refunded_fen(m.PaymentChannel.wechat, payment.number) == FEE
    assert db.session.get(m.PersonRegistration, chen.id).status is m.PersonStatus.refunded
    # Executing again refunds nothing more: the refund is done.
    finance.action("/finance/refunds", "execute_refunds", [refund.id])
    assert sandbox.ledger.refunded_fen(m.PaymentChannel.wechat, payment.number) == FEE
