"""WeChat Pay Native QR (wechatpayv3, API v3): requests carry the SDK's `Authorization` header;
answers and notifications carry `Wechatpay-Signature/Timestamp/Nonce/Serial` (RSA-SHA256 over
`timestamp\\nnonce\\nbody\\n`), verified by the SDK with the platform public key (public-key
mode: the SDK never downloads platform certificates); the notification's `resource` is
AES-256-GCM encrypted with the APIv3 key and decrypted by the SDK (`callback`)."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Request, Response
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core
from wechatpayv3.type import RequestType
from wechatpayv3.utils import build_authorization

from app import models as m
from app.gateways.payments.base import (
    GatewayError,
    InvalidNotification,
    Link,
    PaymentGateway,
    RefundAnswer,
    VerifiedNotification,
    notify_url,
    order_subject,
    read_setting,
)

# WeChat Pay asks merchants to refuse notifications whose timestamp is this far from now.
WECHAT_MAX_SKEW_SECONDS = 300


@dataclass(frozen=True)
class WechatSettings:
    mchid: str
    appid: str
    cert_serial_no: str
    private_key: str
    apiv3_key: str
    platform_public_key: str
    platform_public_key_id: str


class _LinkedCore(Core):
    """wechatpayv3's Core with its HTTP call carried by our Link. The SDK still builds the
    request's Authorization signature and verifies the answer's Wechatpay-Signature."""

    def __init__(self, link: Link, **kwargs: Any) -> None:
        self._link = link
        super().__init__(**kwargs)

    def request(self, path: str, method: RequestType = RequestType.GET, data: Any = None,
                skip_verify: bool = False, sign_data: Any = None, files: Any = None,
                cipher_data: bool = False, headers: dict | None = None) -> tuple[int, str]:
        if files:
            raise GatewayError("file uploads are not used with WeChat Pay here")
        # Byte-identical to what build_authorization signs (json.dumps with its defaults).
        body = json.dumps(data) if data else ""
        sent = {"Content-Type": "application/json", "Accept": "application/json",
                "Wechatpay-Serial": self._public_key_id,
                "Authorization": build_authorization(path, method.value, self._mchid,
                                                     self._cert_serial_no, self._private_key,
                                                     data=sign_data or data),
                **(headers or {})}
        answer = self._link.send(method.value, self._gate_way + path, sent, body.encode())
        if 200 <= answer.status < 300 and not skip_verify \
                and not self._verify_signature(answer.headers, answer.text):
            raise GatewayError("WeChat Pay's answer failed its signature check")
        return answer.status, answer.text


class _LinkedWeChatPay(WeChatPay):
    """WeChatPay in public-key mode (nothing is downloaded at construction) over our Link."""

    def __init__(self, link: Link, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._core = _LinkedCore(
            link, mchid=kwargs["mchid"], cert_serial_no=kwargs["cert_serial_no"],
            private_key=kwargs["private_key"], apiv3_key=kwargs["apiv3_key"],
            public_key=kwargs["public_key"], public_key_id=kwargs["public_key_id"])


class WechatPayGateway(PaymentGateway):
    """WeChat Pay Native (QR), API v3."""

    channel = m.PaymentChannel.wechat

    def __init__(self, settings: WechatSettings, link: Link) -> None:
        self.settings = settings
        self.client = _LinkedWeChatPay(
            link, wechatpay_type=WeChatPayType.NATIVE, mchid=settings.mchid,
            private_key=settings.private_key, cert_serial_no=settings.cert_serial_no,
            appid=settings.appid, apiv3_key=settings.apiv3_key,
            public_key=settings.platform_public_key,
            public_key_id=settings.platform_public_key_id)

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        status, text = self.client.pay(description=order_subject(order),
                                       out_trade_no=payment.number,
                                       amount={"total": payment.amount_fen, "currency": "CNY"},
                                       notify_url=notify_url(self.channel))
        code_url = _json(text).get("code_url") if status == 200 else None
        if not code_url:
            raise GatewayError(f"WeChat Pay refused the order: {status} {text}")
        return {"qr_code": code_url}

    def verify_notification(self, request: Request) -> VerifiedNotification:
        headers = dict(request.headers.items())
        # Only the configured platform key is accepted: an unknown serial would make the SDK
        # go and download certificates for whoever sent it.
        if headers.get("Wechatpay-Serial") != self.settings.platform_public_key_id:
            raise InvalidNotification("unknown platform key serial")
        stamp = headers.get("Wechatpay-Timestamp", "")
        # Real time, not the business clock: the timestamp is the provider's clock.
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > WECHAT_MAX_SKEW_SECONDS:
            raise InvalidNotification("timestamp missing or too far from now")
        try:
            data = self.client.callback(headers, request.get_data(as_text=True))
        except Exception as exc:  # the SDK raises bare Exceptions for unknown algorithms
            raise InvalidNotification(f"callback check failed: {exc}") from exc
        if not data:
            raise InvalidNotification("bad signature or undecryptable resource")
        try:
            resource = data["resource"]
            total = resource["amount"]["total"]
            number, trade_no = resource["out_trade_no"], resource["transaction_id"]
        except (KeyError, TypeError) as exc:
            raise InvalidNotification(f"incomplete resource: {exc}") from exc
        if resource.get("mchid") != self.settings.mchid or \
                resource.get("appid") != self.settings.appid:
            raise InvalidNotification("notification for another merchant")
        if type(total) is not int or total < 0 or not number or not trade_no:
            raise InvalidNotification("malformed amount or numbers")
        paid = data.get("event_type") == "TRANSACTION.SUCCESS" and \
            resource.get("trade_state") == "SUCCESS"
        return VerifiedNotification(str(number), str(trade_no), total, paid)

    def acknowledge(self) -> Response:
        return Response(json.dumps({"code": "SUCCESS", "message": "OK"}), 200,
                        mimetype="application/json")

    def reject(self) -> Response:
        return Response(json.dumps({"code": "FAIL", "message": "notification refused"}), 400,
                        mimetype="application/json")

    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        status, text = self.client.refund(
            out_refund_no=refund_number,
            amount={"refund": amount_fen, "total": payment.amount_fen, "currency": "CNY"},
            transaction_id=payment.provider_trade_no, out_trade_no=payment.number)
        answer = _json(text)
        if status == 200:
            state = answer.get("status")
            if state == "SUCCESS":
                return RefundAnswer("done", answer.get("refund_id"), state)
            if state == "PROCESSING":
                return RefundAnswer("pending", answer.get("refund_id"), state)
            return RefundAnswer("failed", answer.get("refund_id"), str(state))
        message = f"{answer.get('code', status)}: {answer.get('message', text)}"
        # WeChat's 5xx and rate limits mean "try again"; other 4xx are refusals.
        if status >= 500 or status == 429:
            return RefundAnswer("pending", None, message)
        return RefundAnswer("failed", None, message)


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def configured(config: Mapping[str, Any], link: Link) -> WechatPayGateway:
    """The adapter for the real WeChat Pay, from the settings in config.py."""
    return WechatPayGateway(WechatSettings(
        read_setting(config, "WECHATPAY_MCHID"), read_setting(config, "WECHATPAY_APPID"),
        read_setting(config, "WECHATPAY_CERT_SERIAL_NO"),
        read_setting(config, "WECHATPAY_PRIVATE_KEY_FILE"),
        read_setting(config, "WECHATPAY_APIV3_KEY"),
        read_setting(config, "WECHATPAY_PUBLIC_KEY_FILE"),
        read_setting(config, "WECHATPAY_PUBLIC_KEY_ID")), link)
