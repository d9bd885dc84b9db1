"""UnionPay ACP (全渠道) 5.1.0, the protocol of the UnionPay QR code and B2B channels (issue 15):
contract tests with messages UnionPay's test environment really sent (tests/data/unionpay/,
sources in tests/data/unionpay-SOURCES.md), checked against UnionPay's published test
certificate chain; then the sandbox, which speaks the same protocol with a chain of its own:
refunds by origQryId, settled through the query, never sent twice."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from flask import request

from app import clock
from app import models as m
from app.extensions import db
from app.gateways.payments import GatewayError, InvalidNotification, ProviderUnreachable, acp
from app.gateways.payments.base import LinkResponse
from app.sandbox.simulator import PaymentSandbox, SandboxLink
from tests.conftest import UNIT_A, UNIT_B, Client
from tests.test_browser_smoke import log_in

DATA = Path(__file__).parent / "data" / "unionpay"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
NOTICE = (DATA / "notice-20220908.form").read_text().strip()
NOTICE_FIELDS = dict(parse_qsl(NOTICE, keep_blank_values=True))
# The merchant, order and trade of that notice (UnionPay's shared test merchant).
TEST_MERCHANT = "777290058167151"
NOTICE_ORDER, NOTICE_QUERY_ID = "yansongda20220908132206", "782209081322060674028"
Ch = m.PaymentChannel


def unionpay_test_settings(prefix: str, root: Path = DATA / "acp_test_root.cer") -> dict:
    """The settings of a merchant of UnionPay's test environment: its test signing
    certificate, UnionPay's test middle and root certificates."""
    return {f"{prefix}_MER_ID": TEST_MERCHANT,
            f"{prefix}_API_URL": "https://gateway.test.95516.com",
            f"{prefix}_SIGN_CERT_FILE": str(DATA / "acp_test_sign_2021.pfx"),
            f"{prefix}_SIGN_CERT_PASSWORD": "000000",
            f"{prefix}_MIDDLE_CERT_FILE": str(DATA / "acp_test_middle.cer"),
            f"{prefix}_ROOT_CERT_FILE": str(root)}


@pytest.fixture
def configure(app, data_app):
    """Set settings on both apps (the served one and the tests' own) for one test."""
    saved = [(a, dict(a.config)) for a in (app, data_app)]

    def apply(**settings):
        for a in (app, data_app):
            a.config.update(settings)
    yield apply
    for a, config in saved:
        a.config.clear()
        a.config.update(config)


@pytest.fixture
def test_environment(configure):
    """The real adapters (no sandbox), configured as a merchant of UnionPay's test
    environment, for both channels."""
    configure(PAYMENT_SANDBOX=False, **unionpay_test_settings("UNIONPAY"),
              **unionpay_test_settings("B2B"))


def demo_order() -> m.Order:
    db.session.expire_all()
    return db.session.scalars(sa.select(m.Order).where(m.Order.number == "O2022000001")).one()


def notice_payment(channel: Ch) -> m.Payment:
    """The pending payment the test environment's notice is about (1 fen)."""
    payment = m.Payment(number=NOTICE_ORDER, order_id=demo_order().id, channel=channel,
                        status=m.PaymentStatus.pending, amount_fen=1)
    db.session.add(payment)
    db.session.commit()
    return payment


def payment_state(number: str) -> tuple:
    db.session.expire_all()
    payment = db.session.scalars(sa.select(m.Payment).where(m.Payment.number == number)).one()
    audits = db.session.scalar(sa.select(sa.func.count()).select_from(m.AuditEvent))
    return payment.status, payment.provider_trade_no, audits


def notify(app, channel: Ch, body: str):
    return app.test_client().post(f"/pay/notify/{channel.value}", data=body.encode(),
                                  headers=FORM)


def one_character_changed(text: str) -> str:
    """`text` with the character in its middle replaced by another of the same kind."""
    i = len(text) // 2
    c = text[i]
    other = {True: "0123456789", False: "abcdefghijklmnopqrstuvwxyz"}[c.isdigit()]
    replacement = next(x for x in (other if c.isalnum() else "A") if x != c.lower())
    return text[:i] + replacement + text[i + 1:]


# --------------------------------------------------------------------------------------------
# UnionPay's own messages
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", [Ch.unionpay, Ch.b2b])
def test_a_notice_of_unionpays_test_environment_confirms_its_payment(app, world,
                                                                     test_environment, channel):
    """UnionPay's backUrl notice as its test environment posted it (form-encoded UTF-8,
    signed under a certificate chaining to UnionPay's test root) confirms the payment; the
    B2B product speaks the same protocol (the notice itself is of the gateway product)."""
    notice_payment(channel)
    answer = notify(app, channel, NOTICE)
    assert (answer.status_code, answer.data) == (200, b"ok")
    status, trade_no, _audits = payment_state(NOTICE_ORDER)
    assert (status, trade_no) == (m.PaymentStatus.confirmed, NOTICE_QUERY_ID)
    assert demo_order().status is m.OrderStatus.paid


def test_one_character_changed_anywhere_in_the_notice_is_refused(app, world, test_environment):
    notice_payment(Ch.unionpay)
    before = payment_state(NOTICE_ORDER)
    for name, value in NOTICE_FIELDS.items():
        for changed in ({**NOTICE_FIELDS, name: one_character_changed(value)},
                        {(one_character_changed(k) if k == name else k): v
                         for k, v in NOTICE_FIELDS.items()}):
            answer = notify(app, Ch.unionpay, urlencode(changed))
            assert (answer.status_code, answer.data) == (400, b"fail"), name
    assert payment_state(NOTICE_ORDER) == before
    # The unchanged notice still confirms: the refusals were about the changes.
    assert notify(app, Ch.unionpay, NOTICE).status_code == 200
    assert payment_state(NOTICE_ORDER)[0] is m.PaymentStatus.confirmed


def test_a_chain_that_does_not_end_in_our_root_is_refused(app, world, configure,
                                                          test_environment, tmp_path):
    notice_payment(Ch.unionpay)
    before = payment_state(NOTICE_ORDER)
    other = PaymentSandbox(str(tmp_path / "other"))
    (tmp_path / "other-root.cer").write_text(other.acp_keys["root"])
    # UnionPay's genuine notice, but our configured root is another one.
    configure(**unionpay_test_settings("UNIONPAY", root=tmp_path / "other-root.cer"))
    assert notify(app, Ch.unionpay, NOTICE).status_code == 400
    # A notice signed under a chain of someone's own, with UnionPay's name in the CN, and
    # UnionPay's root configured: refused too.
    configure(**unionpay_test_settings("UNIONPAY"))
    with app.test_request_context():
        forged = other.notification(Ch.unionpay, NOTICE_ORDER, amount_fen=1,
                                    notify_url="http://localhost/pay/notify/unionpay")
    forged_fields = {**dict(parse_qsl(forged.body.decode())), "merId": TEST_MERCHANT}
    forged_fields["signature"] = acp.signature_of(forged_fields, other._unionpay_identity.key)
    assert acp.unionpay_identity(other._unionpay_identity.certificate) == acp.UNIONPAY_CN
    assert notify(app, Ch.unionpay, urlencode(forged_fields)).status_code == 400
    assert payment_state(NOTICE_ORDER) == before
    # With that root configured, the same notice would pass: the root made the difference.
    (tmp_path / "other-middle.cer").write_text(other.acp_keys["middle"])
    configure(**{**unionpay_test_settings("UNIONPAY", root=tmp_path / "other-root.cer"),
                 "UNIONPAY_MIDDLE_CERT_FILE": str(tmp_path / "other-middle.cer")})
    assert notify(app, Ch.unionpay, urlencode(forged_fields)).status_code == 200


def test_a_certificate_under_our_root_that_is_not_unionpays_is_refused(app, world, tmp_path):
    """UnionPay's name must be the owner in the CN (SDK CertUtil.verifyCertificate): a
    merchant's certificate from the same CA does not speak for UnionPay."""
    box = PaymentSandbox(str(tmp_path / "box"))
    gateway = box.gateway(Ch.unionpay)
    merchant_id, merchant = box.acp_merchant(Ch.unionpay)
    fields = {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "01",
              "txnSubType": "07", "bizType": "000000", "accessType": "0", "merId": merchant_id,
              "orderId": "P2022000001", "txnTime": "20220915100000", "txnAmt": "20000",
              "queryId": "912345678901234567890", "respCode": "00", "respMsg": "success"}

    def signed_by(identity: acp.SigningIdentity) -> dict:
        pem = identity.certificate.public_bytes(serialization.Encoding.PEM).decode()
        signed = {**fields, "signPubKeyCert": pem}
        return {**signed, "signature": acp.signature_of(signed, identity.key)}

    assert acp.unionpay_identity(merchant.certificate) != acp.UNIONPAY_CN
    with app.test_request_context(method="POST", data=signed_by(merchant)):
        with pytest.raises(InvalidNotification):
            gateway.verify_notification(request)
    with app.test_request_context(method="POST", data=signed_by(box._unionpay_identity)):
        assert gateway.verify_notification(request).paid


def test_an_expired_unionpay_certificate_is_refused(app, world, test_environment):
    """The test environment's signing certificate was valid until 2025-07-31."""
    notice_payment(Ch.unionpay)
    clock.set_now(datetime(2025, 8, 1, tzinfo=timezone.utc))
    assert notify(app, Ch.unionpay, NOTICE).status_code == 400
    assert payment_state(NOTICE_ORDER)[0] is m.PaymentStatus.pending


@pytest.mark.parametrize("name, fields, kind", [
    ("answer-refund-20240105.txt", 17, ("04", "00")),
    ("answer-query-20240105.txt", 26, ("01", "01"))])
def test_answers_of_unionpays_test_environment_parse_and_verify(name, fields, kind):
    """Synchronous answers come unescaped (`+`, `/`, `=` and CRLF inside values): parsed as
    the SDK parses them, they verify; one character changed, they do not."""
    text = (DATA / name).read_bytes().decode("utf-8")  # CRLF kept
    answer = acp.parse_answer(text)
    assert len(answer) == fields and (answer["txnType"], answer["txnSubType"]) == kind
    assert answer["respMsg"] == "成功[0000000]" and answer["merId"] == TEST_MERCHANT
    assert "\r\n" in answer["signPubKeyCert"] and "+" in answer["signature"]
    middle = acp.load_certificate((DATA / "acp_test_middle.cer").read_bytes())
    root = acp.load_certificate((DATA / "acp_test_root.cer").read_bytes())
    sent = datetime(2024, 1, 5, 9, 0, tzinfo=timezone.utc)
    assert acp.signed_by_unionpay(answer, middle, root, sent)
    for key, value in answer.items():
        assert not acp.signed_by_unionpay({**answer, key: one_character_changed(value)},
                                          middle, root, sent), key


def test_requests_are_signed_byte_for_byte_as_an_accepted_implementation_signs_them():
    """A refund request signed with UnionPay's test merchant certificate: certId is its
    serial in decimal, and the signature is identical to the one yansongda/pay computed for
    the same fields (RSA-SHA256 over the SHA-256 hex digest of the sorted fields)."""
    expected = dict(parse_qsl((DATA / "request-refund-20240105.form").read_text().strip()))
    identity = acp.load_signing_identity((DATA / "acp_test_sign_2021.pfx").read_bytes(),
                                         "000000")
    fields = {k: v for k, v in expected.items() if k not in ("certId", "signature")}
    signed = acp.sign_message({**fields, "reqReserved": ""}, identity)
    assert "reqReserved" not in signed  # empty fields are not sent
    assert signed == expected
    # The SDK's own 2014 test certificate (acpsdk.signCert.pwd=000000): the certId UnionPay's
    # documentation shows.
    old = acp.load_signing_identity((DATA / "acp_test_sign.pfx").read_bytes(), "000000")
    assert old.cert_id == "68759663125"
    with pytest.raises(GatewayError):
        acp.load_signing_identity((DATA / "acp_test_sign.pfx").read_bytes(), "123456")


# --------------------------------------------------------------------------------------------
# The sandbox: the same protocol with its own chain
# --------------------------------------------------------------------------------------------

@pytest.fixture
def sandbox(configure, tmp_path):
    configure(PAYMENT_SANDBOX=True, PAYMENT_SANDBOX_DIR=str(tmp_path / "sandbox"))
    return PaymentSandbox(str(tmp_path / "sandbox"))


class RecordingLink(SandboxLink):
    """The sandbox link, keeping the messages sent; `lose` drops the next answer after the
    sandbox took the request (the answer lost on the way back)."""

    def __init__(self, sandbox: PaymentSandbox, channel: Ch) -> None:
        super().__init__(sandbox, channel)
        self.sent: list[dict[str, str]] = []
        self.lose = False

    def send(self, method, url, headers, body) -> LinkResponse:
        self.sent.append({**dict(parse_qsl(body.decode())), "path": urlsplit(url).path})
        answer = super().send(method, url, headers, body)
        if self.lose:
            self.lose = False
            raise ProviderUnreachable("answer lost")
        return answer


def paid(app, sandbox: PaymentSandbox, channel: Ch) -> m.Payment:
    payment = m.Payment(number="P2022000001", order_id=demo_order().id, channel=channel,
                        status=m.PaymentStatus.pending, amount_fen=20000)
    db.session.add(payment)
    db.session.commit()
    with app.test_request_context():
        sandbox.ledger.open_trade(channel, payment.number, 20000,
                                  "http://localhost/pay/notify/" + channel.value)
        assert sandbox.pay(channel, payment.number).status == 200
    db.session.expire_all()
    payment = db.session.get(m.Payment, payment.id)
    assert payment.status is m.PaymentStatus.confirmed and payment.provider_trade_no
    return payment


def recording_gateway(sandbox: PaymentSandbox, channel: Ch):
    gateway = sandbox.gateway(channel)
    gateway.link = RecordingLink(sandbox, channel)
    return gateway, gateway.link


@pytest.mark.parametrize("channel", [Ch.unionpay, Ch.b2b])
def test_a_pending_refund_goes_by_origqryid_and_is_settled_by_the_query(app, world, sandbox,
                                                                        channel):
    payment = paid(app, sandbox, channel)
    gateway, link = recording_gateway(sandbox, channel)
    # ...01: UnionPay accepts it; the query right after says it is still being processed.
    first = gateway.refund(payment, "R2022000001", 5001)
    assert first.status == "pending"
    refund, query = link.sent
    assert refund["path"] == acp.BACK_PATH and query["path"] == acp.QUERY_PATH
    assert (refund["txnType"], refund["txnSubType"], refund["origQryId"], refund["txnAmt"],
            refund["orderId"]) == ("04", "00", payment.provider_trade_no, "5001", "R2022000001")
    assert refund["bizType"] == ("000000" if channel is Ch.unionpay else "000202")
    assert refund["backUrl"].endswith(f"/pay/notify/{channel.value}")
    assert (query["txnType"], query["orderId"], query["txnTime"]) == (
        "00", "R2022000001", refund["txnTime"])
    # Asked again later (rq's retry): only the query goes out, and it says done.
    again = gateway.refund(payment, "R2022000001", 5001)
    assert again.status == "done" and again.provider_refund_id
    assert [s["path"] for s in link.sent[2:]] == [acp.QUERY_PATH]
    assert sandbox.ledger.refunded_fen(channel, payment.number) == 5001
    # The number names that refund: another amount under it is refused, nothing sent.
    assert gateway.refund(payment, "R2022000001", 4000).status == "failed"
    assert [s["txnType"] for s in link.sent].count("04") == 1


def test_a_refund_whose_answer_was_lost_is_asked_about_not_sent_twice(app, world, sandbox):
    payment = paid(app, sandbox, Ch.unionpay)
    gateway, link = recording_gateway(sandbox, Ch.unionpay)
    link.lose = True
    with pytest.raises(ProviderUnreachable):
        gateway.refund(payment, "R2022000001", 20000)
    # The txnTime it was sent with was kept before it left.
    kept = db.session.scalar(sa.select(m.AcpRequest.txn_time).where(
        m.AcpRequest.channel == Ch.unionpay, m.AcpRequest.order_id == "R2022000001"))
    assert kept == link.sent[0]["txnTime"]
    assert gateway.refund(payment, "R2022000001", 20000).status == "done"
    assert [s["txnType"] for s in link.sent] == ["04", "00"]
    assert sandbox.ledger.refunded_fen(Ch.unionpay, payment.number) == 20000


def test_a_refund_unionpay_never_received_is_sent_again_with_a_new_txntime(app, world,
                                                                           sandbox):
    payment = paid(app, sandbox, Ch.unionpay)
    gateway, link = recording_gateway(sandbox, Ch.unionpay)
    with pytest.raises(ProviderUnreachable):  # ...03: the sandbox's outage, nothing taken
        gateway.refund(payment, "R2022000001", 5003)
    clock.set_now(clock.now() + timedelta(minutes=1))
    with pytest.raises(ProviderUnreachable):
        gateway.refund(payment, "R2022000001", 5003)
    first, query, second = link.sent
    assert (first["txnType"], query["txnType"], second["txnType"]) == ("04", "00", "04")
    assert query["txnTime"] == first["txnTime"] != second["txnTime"]


def test_finance_refunds_a_unionpay_payment_through_its_provider(app, login, world, sandbox):
    """Over HTTP as finance: executed, the refund goes to UnionPay and is settled (accepted,
    then the query says done) in the same job."""
    client = login(UNIT_A)
    response = client.post(f"/unit/orders/pay/{demo_order().id}/start",
                           data={"channel": "unionpay"})
    assert response.status_code == 302
    page = client.get(response.location).data.decode()
    qr = urlsplit(re.search(r'href="([^"]+)"[^>]*id="sandbox-open"', page).group(1)).path
    assert Client(app).post(qr).status_code == 200  # the payer's phone pays
    db.session.expire_all()
    payment = db.session.scalars(sa.select(m.Payment)).one()
    assert payment.status is m.PaymentStatus.confirmed
    chen = db.session.scalars(sa.select(m.PersonRegistration).join(m.Person)
                              .where(m.Person.name == "陈静")).one()
    client.action("/unit/persons", "cancel_persons", [chen.id])
    client.post("/unit/refunds/request", data={"person": [str(chen.id)], "route": "original"})
    refund = db.session.scalars(sa.select(m.Refund)).one()
    finance = login("finance")
    finance.action("/finance/refunds", "approve_refunds", [refund.id])
    finance.action("/finance/refunds", "execute_refunds", [refund.id])
    db.session.expire_all()
    assert refund.status is m.RefundStatus.done and refund.provider_refund_id
    assert sandbox.ledger.refunded_fen(Ch.unionpay, payment.number) == 20000


def test_the_b2b_order_form_is_signed_and_only_its_unit_sees_it(app, login, world, sandbox):
    unit = login(UNIT_A)
    response = unit.post(f"/unit/orders/pay/{demo_order().id}/start", data={"channel": "b2b"})
    page = unit.get(response.location).data.decode()
    form = re.search(r'<form method="post" action="([^"]+)" id="payment-bank-form">(.*?)</form>',
                     page, re.S)
    fields = {k: unescape(v) for k, v in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>', form.group(2))}
    _merchant_id, identity = sandbox.acp_merchant(Ch.b2b)
    assert fields["certId"] == identity.cert_id and "csrf_token" not in fields
    payment_id = db.session.scalars(sa.select(m.Payment.id)).one()
    assert fields["frontUrl"].endswith(f"/pay/return/{payment_id}")
    assert sandbox._merchant_signed(Ch.b2b, fields)
    # Another unit reaches neither the payment page nor its signed form.
    assert login(UNIT_B).get(response.location).status_code == 404


def test_unit_pays_by_b2b_in_chromium(page, world, sandbox):
    """The unit chooses B2B, its browser posts the signed order to UnionPay's page (the
    sandbox's), pays from the company account and comes back to its payment, paid."""
    log_in(page, UNIT_A)
    page.goto("/unit/orders/list/")
    page.click("a.ciie-pay")
    page.wait_for_selector("#pay-order")
    page.click("#pay-b2b")
    page.wait_for_selector("#payment-bank")
    page.click("#payment-bank")
    page.wait_for_selector("#sandbox-pay")
    assert "200.00" in page.inner_text("#sandbox-amount")
    page.click("#sandbox-pay")
    page.wait_for_selector("#payment-paid", timeout=20000)
    assert "/unit/orders/pay/payment/" in page.url
    db.session.expire_all()
    payment = db.session.scalars(sa.select(m.Payment)).one()
    assert (payment.channel, payment.status) == (Ch.b2b, m.PaymentStatus.confirmed)
    assert demo_order().status is m.OrderStatus.paid
