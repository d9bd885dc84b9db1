"""Alipay face-to-face QR (python-alipay-sdk, RSA2): requests are signed and answers and
notifications verified by the SDK (`AliPay.sign_data`, `_verify_and_return_sync_response`,
`verify`); only its one HTTP call is carried by our `Link`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from flask import Request, Response

from app import models as m
from app.gateways.payments.base import (
    GatewayError,
    InvalidNotification,
    Link,
    PaymentGateway,
    RefundAnswer,
    VerifiedNotification,
    notified_amount,
    notify_url,
    order_subject,
    read_setting,
    yuan_text,
    yuan_to_fen,
)


@dataclass(frozen=True)
class AlipaySettings:
    app_id: str
    app_private_key: str
    alipay_public_key: str


class _LinkedAliPay(AliPay):
    """python-alipay-sdk's client with its one HTTP call carried by our Link. Signing the
    request and verifying the answer stay the SDK's."""

    def __init__(self, link: Link, **kwargs: Any) -> None:
        self._link = link
        super().__init__(**kwargs)

    def verified_sync_response(self, data: dict, response_type: str) -> dict:
        url = self._gateway + "?" + self.sign_data(data)
        answer = self._link.send("GET", url, {"Accept": "application/json"}, b"")
        return self._verify_and_return_sync_response(answer.text, response_type)


class AlipayGateway(PaymentGateway):
    """Alipay face-to-face QR (alipay.trade.precreate), RSA2."""

    channel = m.PaymentChannel.alipay
    PAID_STATES = ("TRADE_SUCCESS", "TRADE_FINISHED")

    def __init__(self, settings: AlipaySettings, link: Link) -> None:
        self.settings = settings
        self.client = _LinkedAliPay(link, appid=settings.app_id,
                                    app_private_key_string=settings.app_private_key,
                                    alipay_public_key_string=settings.alipay_public_key,
                                    sign_type="RSA2")

    def _call(self, api: Any, **kwargs: Any) -> dict:
        try:
            return api(**kwargs)
        except AliPayValidationError as exc:
            raise GatewayError("Alipay's answer failed its signature check") from exc
        except AliPayException as exc:
            raise GatewayError(str(exc)) from exc

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        answer = self._call(self.client.api_alipay_trade_precreate, subject=order_subject(order),
                            out_trade_no=payment.number,
                            total_amount=yuan_text(payment.amount_fen),
                            notify_url=notify_url(self.channel))
        if answer.get("code") != "10000" or not answer.get("qr_code"):
            raise GatewayError(answer.get("sub_msg") or answer.get("msg") or "precreate failed")
        return {"qr_code": answer["qr_code"]}

    def verify_notification(self, request: Request) -> VerifiedNotification:
        data = request.form.to_dict()
        signature = data.pop("sign", "")
        if not signature:
            raise InvalidNotification("no signature")
        try:
            # The SDK drops sign_type (refusing any but RSA2) and checks the rest, sorted.
            genuine = self.client.verify(data, signature)
        except Exception as exc:  # malformed base64 or key sizes surface as various errors
            raise InvalidNotification(f"signature check failed: {exc}") from exc
        if not genuine:
            raise InvalidNotification("bad signature")
        if data.get("app_id") != self.settings.app_id:
            raise InvalidNotification("notification for another app")
        number, trade_no = data.get("out_trade_no"), data.get("trade_no")
        if not number or not trade_no:
            raise InvalidNotification("out_trade_no or trade_no missing")
        return VerifiedNotification(number, trade_no,
                                    notified_amount(yuan_to_fen, data.get("total_amount")),
                                    data.get("trade_status") in self.PAID_STATES)

    def acknowledge(self) -> Response:
        return Response("success", 200, mimetype="text/plain")

    def reject(self) -> Response:
        return Response("fail", 400, mimetype="text/plain")

    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        try:
            answer = self.client.api_alipay_trade_refund(
                refund_amount=yuan_text(amount_fen), out_trade_no=payment.number,
                out_request_no=refund_number)
        except AliPayValidationError as exc:
            raise GatewayError("Alipay's answer failed its signature check") from exc
        except AliPayException as exc:
            # A gateway-level error_response: the request itself was refused.
            return RefundAnswer("failed", None, str(exc))
        code = answer.get("code")
        message = answer.get("sub_msg") or answer.get("msg") or ""
        if code == "10000":
            return RefundAnswer("done", answer.get("trade_no"), message)
        if code == "20000":  # "service currently unavailable": retry with the same number
            return RefundAnswer("pending", None, message)
        return RefundAnswer("failed", None, message)


def configured(config: Mapping[str, Any], link: Link) -> AlipayGateway:
    """The adapter for the real Alipay, from the settings in config.py."""
    return AlipayGateway(AlipaySettings(
        read_setting(config, "ALIPAY_APP_ID"), read_setting(config, "ALIPAY_APP_PRIVATE_KEY_FILE"),
        read_setting(config, "ALIPAY_PUBLIC_KEY_FILE")), link)
