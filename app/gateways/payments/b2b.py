"""A bank's corporate (B2B) online-banking gateway, over the signed-parameter protocol (see
`base`): signature field `sign`, amounts in yuan (`"200.00"`), `status` SUCCESS / PROCESSING /
FAILED; the unit's browser is sent to the bank's page with the signed parameters."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from flask import Request, Response, url_for

from app import models as m
from app.clock import now_shanghai
from app.gateways.payments.base import (
    InvalidNotification,
    Link,
    RefundAnswer,
    SignedParamsGateway,
    SignedParamsSettings,
    VerifiedNotification,
    notified_amount,
    notify_url,
    order_subject,
    read_setting,
    yuan_text,
    yuan_to_fen,
)


class B2BGateway(SignedParamsGateway):
    """A bank's corporate (B2B) online-banking gateway: the unit pays from its company account
    on the bank's page; the bank notifies us server to server."""

    channel = m.PaymentChannel.b2b
    sign_field = "sign"
    merchant_field = "merchant_id"
    STATUSES: ClassVar[dict[str, Literal["done", "pending", "failed"]]] = {
        "SUCCESS": "done", "PROCESSING": "pending", "FAILED": "failed"}

    def _base(self, service: str) -> dict[str, str]:
        return {"service": service, "merchant_id": self.settings.merchant_id,
                "timestamp": now_shanghai().strftime("%Y-%m-%d %H:%M:%S"),
                "sign_method": "RSA-SHA256"}

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        params = self._signed({
            **self._base("b2b.pay"), "order_no": payment.number,
            "amount": yuan_text(payment.amount_fen), "currency": "CNY",
            "subject": order_subject(order), "notify_url": notify_url(self.channel),
            "return_url": url_for("UnitPaymentView.payment", payment_id=payment.id,
                                  _external=True)})
        return {"redirect_url": self.settings.pay_url + "?" + urlencode(params)}

    def verify_notification(self, request: Request) -> VerifiedNotification:
        params = self._notification(request)
        number, serial = params.get("order_no"), params.get("bank_serial")
        if not number or not serial:
            raise InvalidNotification("order_no or bank_serial missing")
        return VerifiedNotification(number, serial,
                                    notified_amount(yuan_to_fen, params.get("amount")),
                                    params.get("service") == "b2b.notify"
                                    and params.get("status") == "SUCCESS")

    def acknowledge(self) -> Response:
        return Response("SUCCESS", 200, mimetype="text/plain")

    def reject(self) -> Response:
        return Response("FAIL", 400, mimetype="text/plain")

    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        answer = self._call("/refund", {
            **self._base("b2b.refund"), "order_no": payment.number,
            "bank_serial": payment.provider_trade_no or "", "refund_no": refund_number,
            "amount": yuan_text(amount_fen)})
        status = self.STATUSES.get(answer.get("status", ""), "failed")
        return RefundAnswer(status, answer.get("bank_refund_no") or None,
                            answer.get("message", ""))


def configured(config: Mapping[str, Any], link: Link) -> B2BGateway:
    """The adapter for the real bank gateway, from the settings in config.py."""
    return B2BGateway(SignedParamsSettings(
        read_setting(config, "B2B_MERCHANT_ID"), read_setting(config, "B2B_PRIVATE_KEY_FILE"),
        read_setting(config, "B2B_PUBLIC_KEY_FILE"), read_setting(config, "B2B_API_URL"),
        read_setting(config, "B2B_PAY_URL")), link)
