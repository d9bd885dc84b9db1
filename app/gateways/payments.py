"""Payment providers behind one adapter interface per channel.

Each adapter turns a pending Payment into what the unit's page needs (`create`), checks a
provider's notification (`verify_notification`), answers it the way the provider expects
(`acknowledge` / `reject`) and sends refunds (`refund`). `gateway_for(channel)` builds the
adapter from the settings in `config.py`, or, with `PAYMENT_SANDBOX` on, from the keys of the
local sandbox (`app.gateways.sandbox`), which plays each provider with its own key pairs.

The adapters are the same code in both modes: only their `Link` (the one HTTP hop to the
provider's API) differs. `HttpLink` speaks HTTPS to the provider; the sandbox's link hands the
very same request bytes to the sandbox in this process. Notifications always come in through
`POST /pay/notify/<channel>`, sandbox or not.

Protocols:

- **Alipay** (python-alipay-sdk, RSA2): requests are signed and answers and notifications
  verified by the SDK (`AliPay.sign_data`, `_verify_and_return_sync_response`, `verify`).
- **WeChat Pay** (wechatpayv3, API v3): requests carry the SDK's `Authorization` header; answers
  and notifications carry `Wechatpay-Signature/Timestamp/Nonce/Serial` (RSA-SHA256 over
  `timestamp\\nnonce\\nbody\\n`), verified by the SDK with the platform public key (public-key
  mode: the SDK never downloads platform certificates); the notification's `resource` is
  AES-256-GCM encrypted with the APIv3 key and decrypted by the SDK (`callback`).
- **UnionPay** and the **B2B bank gateway** have no Python SDK. Both use signed parameters:
  every message is a set of string parameters (form-encoded over HTTP). The string to sign is
  every parameter except the signature field and empty values, sorted by name, written
  `name=value` (raw, not URL-encoded) and joined with `&`, encoded UTF-8; the signature is
  base64 of RSA PKCS#1 v1.5 over SHA-256 of that string. The merchant signs its requests with
  its private key; the provider signs its answers and notifications with its own, and we verify
  them with the provider's public key. UnionPay: signature field `signature`, amounts `txnAmt`
  in fen, answers form-encoded, `respCode` 00 = success, 03/04/05 = still in progress.
  B2B: signature field `sign`, amounts in yuan (`"200.00"`), `status` SUCCESS / PROCESSING /
  FAILED; the unit's browser is sent to the bank's page with the signed parameters.

Money is integer fen everywhere; yuan strings are converted exactly with Decimal.
"""
from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import parse_qsl, urlencode

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Request, Response, current_app, url_for
from flask_babel import gettext as _
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core
from wechatpayv3.type import RequestType
from wechatpayv3.utils import build_authorization
from werkzeug.datastructures import Headers

from app import models as m
from app.clock import now_shanghai
from app.formatting import fen_to_yuan

Ch = m.PaymentChannel
# WeChat Pay asks merchants to refuse notifications whose timestamp is this far from now.
WECHAT_MAX_SKEW_SECONDS = 300


class GatewayError(Exception):
    """The provider refused a request, could not be reached, or answered something we cannot
    trust. Nothing was confirmed; the caller may retry."""


class ProviderUnreachable(GatewayError):
    """No answer from the provider (network, timeout): the request may or may not have
    arrived, so it must be retried with the same idempotency key."""


class InvalidNotification(Exception):
    """A notification that is not from the provider or not well-formed: bad or missing
    signature, another merchant, a stale timestamp, a malformed amount."""


@dataclass(frozen=True)
class VerifiedNotification:
    """What a notification whose signature checked out says."""

    payment_number: str
    provider_trade_no: str
    amount_fen: int
    paid: bool


@dataclass(frozen=True)
class RefundAnswer:
    """The provider's answer to a refund request. "pending": ask again later with the same
    refund number; "failed": the provider refused it for good."""

    status: Literal["done", "pending", "failed"]
    provider_refund_id: str | None
    message: str


# --------------------------------------------------------------------------------------------
# Money and signatures
# --------------------------------------------------------------------------------------------

_YUAN = re.compile(r"\d{1,12}(\.\d{1,2})?")
_FEN = re.compile(r"\d{1,14}")


def yuan_text(fen: int) -> str:
    """Integer fen as the providers' yuan string: 20000 -> "200.00"."""
    return str(fen_to_yuan(fen))


def yuan_to_fen(text: str | None) -> int:
    """A provider's yuan string as integer fen, exactly; anything else is a ValueError."""
    if text is None or not _YUAN.fullmatch(text):
        raise ValueError(f"malformed yuan amount {text!r}")
    return int(Decimal(text) * 100)


def fen_from_text(text: str | None) -> int:
    """A provider's integer-fen string (UnionPay's txnAmt) as int; anything else is a
    ValueError."""
    if text is None or not _FEN.fullmatch(text):
        raise ValueError(f"malformed fen amount {text!r}")
    return int(text)


def _notified_amount(convert: Callable[[str | None], int], text: str | None) -> int:
    try:
        return convert(text)
    except ValueError as exc:
        raise InvalidNotification(str(exc)) from exc


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GatewayError("an RSA private key is required")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise GatewayError("an RSA public key is required")
    return key


def rsa_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    """base64 of RSA PKCS#1 v1.5 over SHA-256 of the UTF-8 text."""
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, text: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def signing_string(params: Mapping[str, str], sign_field: str) -> str:
    """The signed-parameter string of UnionPay and the B2B gateway (see the module doc)."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params)
                    if k != sign_field and params[k] != "")


def sign_params(params: Mapping[str, str], key: rsa.RSAPrivateKey,
                sign_field: str) -> dict[str, str]:
    """The parameters with their signature added."""
    signed = dict(params)
    signed[sign_field] = rsa_sign(key, signing_string(params, sign_field))
    return signed


def params_signed_by(params: Mapping[str, str], key: rsa.RSAPublicKey, sign_field: str) -> bool:
    signature = params.get(sign_field, "")
    return bool(signature) and rsa_verify(key, signing_string(params, sign_field), signature)


# --------------------------------------------------------------------------------------------
# The one HTTP hop to a provider's API
# --------------------------------------------------------------------------------------------

@dataclass
class LinkResponse:
    status: int
    headers: Headers
    text: str


class Link(Protocol):
    """Carries one request to the provider's API and brings back its answer."""

    def send(self, method: str, url: str, headers: Mapping[str, str],
             body: bytes) -> LinkResponse: ...


class HttpLink:
    """The production link: HTTPS to the provider, with a timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def send(self, method: str, url: str, headers: Mapping[str, str],
             body: bytes) -> LinkResponse:
        request = urllib.request.Request(url, data=body or None, method=method,
                                         headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return LinkResponse(answer.status, Headers(list(answer.headers.items())),
                                    answer.read().decode("utf-8", errors="replace"))
        except urllib.error.HTTPError as exc:
            # A 4xx/5xx is an answer too; the adapter decides what it means.
            return LinkResponse(exc.code, Headers(list(exc.headers.items())),
                                exc.read().decode("utf-8", errors="replace"))
        except OSError as exc:  # URLError, timeouts, refused connections
            raise ProviderUnreachable(f"{url}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlipaySettings:
    app_id: str
    app_private_key: str
    alipay_public_key: str


@dataclass(frozen=True)
class WechatSettings:
    mchid: str
    appid: str
    cert_serial_no: str
    private_key: str
    apiv3_key: str
    platform_public_key: str
    platform_public_key_id: str


@dataclass(frozen=True)
class SignedParamsSettings:
    """UnionPay and B2B: our merchant id, our key, the provider's key, where to reach it."""

    merchant_id: str
    private_key: str
    provider_public_key: str
    api_url: str
    # B2B only: the bank's page the unit's browser is sent to.
    pay_url: str = ""


def notify_url(channel: m.PaymentChannel) -> str:
    """The URL providers post notifications to: the configured public base URL of the app, or
    this request's own host."""
    path = url_for("PaymentNotifyView.notify", channel=channel.value)
    base = current_app.config.get("PAYMENT_NOTIFY_BASE_URL")
    if base:
        return base.rstrip("/") + path
    return url_for("PaymentNotifyView.notify", channel=channel.value, _external=True)


def _subject(order: m.Order) -> str:
    return _("CIIE badge fees, order %(number)s", number=order.number)


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------

class PaymentGateway(ABC):
    """One provider. Adapters hold no state between calls and are cheap to build."""

    channel: ClassVar[m.PaymentChannel]

    @abstractmethod
    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        """Open the payment at the provider (called while serving the unit's request):
        {"qr_code": content} for QR channels, {"redirect_url": url} for B2B. Asking again for
        the same payment is harmless. Raises GatewayError."""

    @abstractmethod
    def verify_notification(self, request: Request) -> VerifiedNotification:
        """Check the notification's signature and form; raises InvalidNotification."""

    @abstractmethod
    def acknowledge(self) -> Response:
        """The answer that tells the provider the notification was taken."""

    @abstractmethod
    def reject(self) -> Response:
        """The answer that tells the provider it was not (it will retry a genuine one)."""

    @abstractmethod
    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        """Refund part or all of a confirmed payment. Idempotent on `refund_number`: asking
        again never refunds twice. Raises GatewayError when no answer can be trusted."""


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

    channel = Ch.alipay
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
        answer = self._call(self.client.api_alipay_trade_precreate, subject=_subject(order),
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
                                    _notified_amount(yuan_to_fen, data.get("total_amount")),
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

    channel = Ch.wechat

    def __init__(self, settings: WechatSettings, link: Link) -> None:
        self.settings = settings
        self.client = _LinkedWeChatPay(
            link, wechatpay_type=WeChatPayType.NATIVE, mchid=settings.mchid,
            private_key=settings.private_key, cert_serial_no=settings.cert_serial_no,
            appid=settings.appid, apiv3_key=settings.apiv3_key,
            public_key=settings.platform_public_key,
            public_key_id=settings.platform_public_key_id)

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        status, text = self.client.pay(description=_subject(order), out_trade_no=payment.number,
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


class _SignedParamsGateway(PaymentGateway):
    """The signed-parameter protocol shared by UnionPay and the B2B gateway."""

    sign_field: ClassVar[str]
    merchant_field: ClassVar[str]

    def __init__(self, settings: SignedParamsSettings, link: Link) -> None:
        self.settings = settings
        self.link = link
        self.private_key = load_private_key(settings.private_key)
        self.provider_key = load_public_key(settings.provider_public_key)

    def _signed(self, params: Mapping[str, str]) -> dict[str, str]:
        return sign_params(params, self.private_key, self.sign_field)

    def _genuine(self, params: Mapping[str, str]) -> bool:
        return params_signed_by(params, self.provider_key, self.sign_field) and \
            params.get(self.merchant_field) == self.settings.merchant_id

    def _call(self, path: str, params: Mapping[str, str]) -> dict[str, str]:
        """POST signed parameters; the answer's parameters once their signature checks out."""
        answer = self.link.send(
            "POST", self.settings.api_url.rstrip("/") + path,
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            urlencode(self._signed(params)).encode())
        values = dict(parse_qsl(answer.text, keep_blank_values=True))
        if not self._genuine(values):
            raise GatewayError(f"unsigned or unverifiable answer (HTTP {answer.status})")
        return values

    def _notification(self, request: Request) -> dict[str, str]:
        params = request.form.to_dict()
        if not self._genuine(params):
            raise InvalidNotification("bad signature or another merchant")
        return params


class UnionPayGateway(_SignedParamsGateway):
    """UnionPay consumer-scanned QR (txnType 01/07) and refunds (txnType 04)."""

    channel = Ch.unionpay
    sign_field = "signature"
    merchant_field = "merId"
    PENDING_CODES = ("03", "04", "05")

    def _base(self, txn_type: str, txn_sub_type: str) -> dict[str, str]:
        return {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "RSA-SHA256",
                "txnType": txn_type, "txnSubType": txn_sub_type, "bizType": "000000",
                "channelType": "08", "accessType": "0", "merId": self.settings.merchant_id,
                "txnTime": now_shanghai().strftime("%Y%m%d%H%M%S"), "currencyCode": "156"}

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        answer = self._call("/gateway/api/backTransReq.do", {
            **self._base("01", "07"), "orderId": payment.number,
            "txnAmt": str(payment.amount_fen), "orderDesc": _subject(order),
            "backUrl": notify_url(self.channel)})
        if answer.get("respCode") != "00" or not answer.get("qrCode"):
            raise GatewayError(answer.get("respMsg") or "QR code refused")
        return {"qr_code": answer["qrCode"]}

    def verify_notification(self, request: Request) -> VerifiedNotification:
        params = self._notification(request)
        number, query_id = params.get("orderId"), params.get("queryId")
        if not number or not query_id:
            raise InvalidNotification("orderId or queryId missing")
        return VerifiedNotification(number, query_id,
                                    _notified_amount(fen_from_text, params.get("txnAmt")),
                                    params.get("txnType") == "01"
                                    and params.get("respCode") == "00")

    def acknowledge(self) -> Response:
        return Response("ok", 200, mimetype="text/plain")

    def reject(self) -> Response:
        return Response("fail", 400, mimetype="text/plain")

    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        answer = self._call("/gateway/api/backTransReq.do", {
            **self._base("04", "00"), "orderId": refund_number,
            "origQryId": payment.provider_trade_no or "", "txnAmt": str(amount_fen)})
        code, message = answer.get("respCode"), answer.get("respMsg", "")
        if code == "00":
            return RefundAnswer("done", answer.get("queryId"), message)
        if code in self.PENDING_CODES:
            return RefundAnswer("pending", answer.get("queryId"), message)
        return RefundAnswer("failed", None, f"{code}: {message}")


class B2BGateway(_SignedParamsGateway):
    """A bank's corporate (B2B) online-banking gateway: the unit pays from its company account
    on the bank's page; the bank notifies us server to server."""

    channel = Ch.b2b
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
            "subject": _subject(order), "notify_url": notify_url(self.channel),
            "return_url": url_for("UnitPaymentView.payment", payment_id=payment.id,
                                  _external=True)})
        return {"redirect_url": self.settings.pay_url + "?" + urlencode(params)}

    def verify_notification(self, request: Request) -> VerifiedNotification:
        params = self._notification(request)
        number, serial = params.get("order_no"), params.get("bank_serial")
        if not number or not serial:
            raise InvalidNotification("order_no or bank_serial missing")
        return VerifiedNotification(number, serial,
                                    _notified_amount(yuan_to_fen, params.get("amount")),
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


# --------------------------------------------------------------------------------------------
# Building an adapter
# --------------------------------------------------------------------------------------------

def _read(config: Mapping[str, Any], name: str) -> str:
    """A setting that must be there; `*_FILE` settings name a PEM file to read."""
    value = config.get(name)
    if not value:
        raise GatewayError(f"{name} is not configured")
    if name.endswith("_FILE"):
        with open(value, encoding="utf-8") as fh:
            return fh.read()
    return str(value)


def production_gateway(channel: m.PaymentChannel, config: Mapping[str, Any],
                       link: Link) -> PaymentGateway:
    """The adapter for the real provider, from the settings in config.py."""
    if channel is Ch.alipay:
        return AlipayGateway(AlipaySettings(
            _read(config, "ALIPAY_APP_ID"), _read(config, "ALIPAY_APP_PRIVATE_KEY_FILE"),
            _read(config, "ALIPAY_PUBLIC_KEY_FILE")), link)
    if channel is Ch.wechat:
        return WechatPayGateway(WechatSettings(
            _read(config, "WECHATPAY_MCHID"), _read(config, "WECHATPAY_APPID"),
            _read(config, "WECHATPAY_CERT_SERIAL_NO"), _read(config, "WECHATPAY_PRIVATE_KEY_FILE"),
            _read(config, "WECHATPAY_APIV3_KEY"), _read(config, "WECHATPAY_PUBLIC_KEY_FILE"),
            _read(config, "WECHATPAY_PUBLIC_KEY_ID")), link)
    if channel is Ch.unionpay:
        return UnionPayGateway(SignedParamsSettings(
            _read(config, "UNIONPAY_MER_ID"), _read(config, "UNIONPAY_PRIVATE_KEY_FILE"),
            _read(config, "UNIONPAY_PUBLIC_KEY_FILE"), _read(config, "UNIONPAY_API_URL")), link)
    if channel is Ch.b2b:
        return B2BGateway(SignedParamsSettings(
            _read(config, "B2B_MERCHANT_ID"), _read(config, "B2B_PRIVATE_KEY_FILE"),
            _read(config, "B2B_PUBLIC_KEY_FILE"), _read(config, "B2B_API_URL"),
            _read(config, "B2B_PAY_URL")), link)
    raise GatewayError(f"no online gateway for {channel.value}")


def gateway_for(channel: m.PaymentChannel | str) -> PaymentGateway:
    """The adapter of an online channel: the sandbox's when PAYMENT_SANDBOX is on."""
    channel = m.PaymentChannel(channel)
    config = current_app.config
    if config["PAYMENT_SANDBOX"]:
        from app.gateways.sandbox import current_sandbox

        return current_sandbox().gateway(channel)
    return production_gateway(channel, config, HttpLink(config["PAYMENT_TIMEOUT"]))
