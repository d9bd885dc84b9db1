"""What every payment provider's adapter shares: the interface, its errors and answers, the one
HTTP hop to a provider (`Link`), exact money conversion and the RSA helpers.

UnionPay's two products (QR code and B2B) speak UnionPay ACP 5.1.0, in `acp`.

Money is integer fen everywhere; yuan strings are converted exactly with Decimal.
"""
from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Request, Response, current_app, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import Headers

from app import models as m
from app.formatting import fen_to_yuan
from app.formatting import yuan_to_fen as yuan_to_fen  # the one yuan parser, for the providers


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

_FEN = re.compile(r"\d{1,14}")


def yuan_text(fen: int) -> str:
    """Integer fen as the providers' yuan string: 20000 -> "200.00"."""
    return str(fen_to_yuan(fen))


def fen_from_text(text: str | None) -> int:
    """A provider's integer-fen string (UnionPay's txnAmt) as int; anything else is a
    ValueError."""
    if text is None or not _FEN.fullmatch(text):
        raise ValueError(f"malformed fen amount {text!r}")
    return int(text)


def notified_amount(convert: Callable[[str | None], int], text: str | None) -> int:
    """A notification's amount through `convert`; a malformed one makes it invalid."""
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

def read_setting(config: Mapping[str, Any], name: str) -> str:
    """A setting that must be there; `*_FILE` settings name a PEM file to read."""
    value = config.get(name)
    if not value:
        raise GatewayError(f"{name} is not configured")
    if name.endswith("_FILE"):
        with open(value, encoding="utf-8") as fh:
            return fh.read()
    return str(value)


def notify_url(channel: m.PaymentChannel) -> str:
    """The URL providers post notifications to: the configured public base URL of the app, or
    this request's own host."""
    path = url_for("PaymentNotifyView.notify", channel=channel.value)
    base = current_app.config.get("PAYMENT_NOTIFY_BASE_URL")
    if base:
        return base.rstrip("/") + path
    return url_for("PaymentNotifyView.notify", channel=channel.value, _external=True)


def order_subject(order: m.Order) -> str:
    """What the payer sees the payment is for."""
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
        {"qr_code": content} for QR channels; for B2B {"form_action": url, "form_fields":
        {…}}, the form the unit's browser posts to the bank. Asking again for the same
        payment is harmless. Raises GatewayError."""

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
