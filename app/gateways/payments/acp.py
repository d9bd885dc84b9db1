"""UnionPay ACP (全渠道) 5.1.0, the protocol of UnionPay's online products: the QR code
product (`unionpay`) and the B2B corporate online-banking product (`b2b`) both speak it.

Built from UnionPay's own SDKs (sources in tests/data/unionpay-SOURCES.md):

- A message is a set of string fields, posted form-encoded (UTF-8) to
  `/gateway/api/backTransReq.do` (server-to-server transactions), `queryTrans.do` (the
  status query) or, through the payer's browser, `frontTransReq.do`. Empty fields are not
  sent (SDK `AcpService.sign` → `SDKUtil.filterBlank`).
- `signMethod` 01: `certId` is the serial number, in decimal, of the merchant's signing
  certificate; the string to sign is every field but `signature`, sorted by name, written
  `name=value` unescaped and joined with `&` (`SDKUtil.coverMap2String`); the signature is
  base64 of RSA PKCS#1 v1.5 with SHA-256 over the UTF-8 *lowercase hex SHA-256 digest* of
  that string (`SecureUtil.sha256X16` then `signBySoft256`).
- UnionPay's synchronous answers are `name=value&…` with the values *not* URL-encoded
  (`SDKUtil.parseQString`, which also keeps `{…}` and `[…]` values whole); its notifications
  to `backUrl` are ordinary form posts. Both carry `signPubKeyCert`, the PEM of UnionPay's
  signing certificate, which must chain to the configured middle and root certificates, be
  valid now, and name 中国银联股份有限公司 as the third `@`-part of its CN
  (`CertUtil.verifyCertificate`); the signature is checked with its key as above.
- A refund (`txnType` 04) names the payment by `origQryId` (UnionPay's `queryId` of it) and
  has an `orderId` and `txnTime` of its own; `txnTime` must be the time of sending. Its
  answer `respCode` 00 only means "accepted", 03/04/05 "unknown yet": the query
  (`txnType` 00, by orderId + txnTime) tells the outcome in `origRespCode`.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import sqlalchemy as sa
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from flask import Request, Response, current_app, has_request_context
from flask_babel import gettext as _

from app import models as m
from app.clock import SHANGHAI, now
from app.extensions import db
from app.gateways.payments.base import (
    GatewayError,
    InvalidNotification,
    Link,
    PaymentGateway,
    RefundAnswer,
    VerifiedNotification,
    fen_from_text,
    notified_amount,
    notify_url,
)

VERSION = "5.1.0"
SIGN_METHOD = "01"  # RSA with the merchant's certificate
UNIONPAY_CN = "中国银联股份有限公司"
FORM = "application/x-www-form-urlencoded;charset=UTF-8"
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
FRONT_PATH = "/gateway/api/frontTransReq.do"
# respCode / origRespCode: 00 success; 03, 04, 05 not known yet (query again later).
UNKNOWN_YET = frozenset({"03", "04", "05"})
# origRespCode in a query answer that also mean "ask again later" (UnionPay's QR demo,
# Form_6_3_Query); respCode 34 of the query itself: no such transaction at UnionPay.
QUERY_AGAIN = UNKNOWN_YET | {"01", "12", "34", "60"}
NO_SUCH_TRANSACTION = "34"


# --------------------------------------------------------------------------------------------
# Keys and certificates
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningIdentity:
    """The merchant's signing key and its certificate (whose serial is the certId)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def cert_id(self) -> str:
        return str(self.certificate.serial_number)


def load_signing_identity(data: bytes, password: str | None) -> SigningIdentity:
    """The key and certificate from a PKCS#12 file (UnionPay's .pfx, as issued by CFCA) or
    from a PEM file holding both."""
    secret = password.encode() if password else None
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=secret)
        certificate = x509.load_pem_x509_certificate(data)
    else:
        try:
            key, certificate, _extra = pkcs12.load_key_and_certificates(data, secret)
        except ValueError as exc:
            raise GatewayError(f"signing certificate unreadable: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or certificate is None:
        raise GatewayError("an RSA key with its certificate is required")
    if certificate.public_key().public_numbers() != key.public_key().public_numbers():
        raise GatewayError("the signing certificate is not the key's")
    return SigningIdentity(key, certificate)


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate file in PEM (UnionPay's .cer files are PEM) or DER."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """`child` carries a valid signature of `issuer`'s key. Verified with the key itself
    rather than `verify_directly_issued_by`, which refuses SHA-1: UnionPay's CFCA chains are
    signed with SHA-1 (tests/data/unionpay/)."""
    key = issuer.public_key()
    if child.issuer != issuer.subject or not isinstance(key, rsa.RSAPublicKey) \
            or child.signature_hash_algorithm is None:
        return False
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(),
                   child.signature_hash_algorithm)
    except InvalidSignature:
        return False
    return True


def _valid_at(cert: x509.Certificate, moment: datetime) -> bool:
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc


def unionpay_identity(cert: x509.Certificate) -> str:
    """The owner named in a UnionPay certificate's CN, `041@<id>@<owner>@<serial>`."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    parts = str(names[0].value).split("@") if names else []
    return parts[2] if len(parts) > 2 else ""


def trusted_signing_cert(pem: str, middle: x509.Certificate, root: x509.Certificate,
                         moment: datetime) -> x509.Certificate | None:
    """UnionPay's signing certificate from a message, if it is one: it chains through the
    configured middle certificate to the configured root, all valid at `moment`, and it
    belongs to UnionPay (SDK `CertUtil.verifyCertificate`, with the CN always checked)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    if not all(_valid_at(c, moment) for c in (cert, middle, root)):
        return None
    if not (_signed_by(cert, middle) and _signed_by(middle, root) and _signed_by(root, root)):
        return None
    if unionpay_identity(cert) != UNIONPAY_CN:
        return None
    return cert


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------

def signing_string(params: Mapping[str, str]) -> str:
    """Every field but `signature`, sorted, `name=value` joined with `&` (unescaped)."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def _digest(params: Mapping[str, str]) -> bytes:
    return hashlib.sha256(signing_string(params).encode("utf-8")).hexdigest().encode()


def signature_of(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    """The `signature` of these fields (signMethod 01, see the module doc)."""
    return base64.b64encode(key.sign(_digest(params), padding.PKCS1v15(),
                                     hashes.SHA256())).decode()


def sign_message(params: Mapping[str, str], identity: SigningIdentity) -> dict[str, str]:
    """The message as sent: empty fields dropped, `certId` and `signature` added."""
    message = {k: v for k, v in params.items() if v != ""}
    message["certId"] = identity.cert_id
    message["signature"] = signature_of(message, identity.key)
    return message


def signed_by_unionpay(params: Mapping[str, str], middle: x509.Certificate,
                       root: x509.Certificate, moment: datetime) -> bool:
    """An answer's or notification's signature is UnionPay's (see the module doc)."""
    if params.get("version") != VERSION or params.get("signMethod") != SIGN_METHOD:
        return False
    cert = trusted_signing_cert(params.get("signPubKeyCert", ""), middle, root, moment)
    key = cert.public_key() if cert is not None else None
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(base64.b64decode(params.get("signature", ""), validate=True),
                   _digest(params), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_answer(text: str) -> dict[str, str]:
    """UnionPay's synchronous answer `a=1&b={x=1&y=2}&c=…` as fields (SDK
    `SDKUtil.parseQString`): values are not URL-encoded, `{…}` and `[…]` stay whole."""
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    fields: dict[str, str] = {}
    key: str | None = None
    value: list[str] = []
    closing = ""
    for char in text:
        if closing:
            value.append(char)
            if char == closing:
                closing = ""
        elif char in "{[":
            closing = "}" if char == "{" else "]"
            value.append(char)
        elif key is None and char == "=":
            key, value = "".join(value), []
        elif char == "&":
            if key is None:
                fields["".join(value)] = ""
            else:
                fields[key] = "".join(value)
            key, value = None, []
        else:
            value.append(char)
    if key is None:
        if value:
            fields["".join(value)] = ""
    else:
        fields[key] = "".join(value)
    return fields


def txn_time(moment: datetime) -> str:
    """ACP's `txnTime`: Beijing time, YYYYMMDDhhmmss."""
    return moment.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S")


# --------------------------------------------------------------------------------------------
# The first txnTime of a request, kept across retries
# --------------------------------------------------------------------------------------------

def first_txn_time(channel: m.PaymentChannel, order_id: str) -> str | None:
    with db.engine.connect() as connection:
        return connection.scalar(sa.select(m.AcpRequest.txn_time).where(
            m.AcpRequest.channel == channel, m.AcpRequest.order_id == order_id))


def remember_txn_time(channel: m.PaymentChannel, order_id: str, moment: str) -> None:
    """Kept in a transaction of its own, committed before the request leaves: a request
    lost on the way (or a job that dies after sending) is still asked about on the retry."""
    table = m.AcpRequest.__table__
    with db.engine.begin() as connection:
        updated = connection.execute(table.update().where(
            table.c.channel == channel, table.c.order_id == order_id
        ).values(txn_time=moment)).rowcount
        if not updated:
            connection.execute(table.insert().values(channel=channel, order_id=order_id,
                                                     txn_time=moment))


# --------------------------------------------------------------------------------------------
# The adapter both products share
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AcpSettings:
    """Our merchant number and signing identity, UnionPay's chain, where to reach it."""

    merchant_id: str
    identity: SigningIdentity
    middle_cert: x509.Certificate
    root_cert: x509.Certificate
    # The gateway's base URL: https://gateway.95516.com (test: gateway.test.95516.com).
    api_url: str
    # Where the payer's browser posts front transactions (B2B): <api_url>/…/frontTransReq.do.
    front_url: str
    # Our public base URL (PAYMENT_NOTIFY_BASE_URL), for the backUrl of refunds sent outside
    # a request; inside one, the request's host serves.
    notify_base: str | None = None


def read_file_setting(config: Mapping[str, Any], name: str) -> bytes:
    """A `*_FILE` setting that must be there, read as bytes (certificates may be binary)."""
    path = config.get(name)
    if not path:
        raise GatewayError(f"{name} is not configured")
    with open(path, "rb") as fh:
        return fh.read()


def acp_settings(config: Mapping[str, Any], prefix: str) -> AcpSettings:
    """The settings `<prefix>_MER_ID`, `_SIGN_CERT_FILE`, `_SIGN_CERT_PASSWORD`,
    `_MIDDLE_CERT_FILE`, `_ROOT_CERT_FILE` and `_API_URL` of config.py."""
    for name in ("MER_ID", "API_URL"):
        if not config.get(f"{prefix}_{name}"):
            raise GatewayError(f"{prefix}_{name} is not configured")
    return AcpSettings(
        config[f"{prefix}_MER_ID"],
        load_signing_identity(read_file_setting(config, f"{prefix}_SIGN_CERT_FILE"),
                              config.get(f"{prefix}_SIGN_CERT_PASSWORD")),
        load_certificate(read_file_setting(config, f"{prefix}_MIDDLE_CERT_FILE")),
        load_certificate(read_file_setting(config, f"{prefix}_ROOT_CERT_FILE")),
        config[f"{prefix}_API_URL"], config[f"{prefix}_API_URL"].rstrip("/") + FRONT_PATH,
        config.get("PAYMENT_NOTIFY_BASE_URL"))


class AcpGateway(PaymentGateway):
    """What the QR code and B2B products share: signed messages, verified answers and
    notifications, refunds by origQryId settled through the query."""

    biz_type: ClassVar[str]
    channel_type: ClassVar[str]

    def __init__(self, settings: AcpSettings, link: Link) -> None:
        self.settings = settings
        self.link = link

    def _fields(self, txn_type: str, txn_sub_type: str, moment: str, **fields: str
                ) -> dict[str, str]:
        return {"version": VERSION, "encoding": "UTF-8", "signMethod": SIGN_METHOD,
                "txnType": txn_type, "txnSubType": txn_sub_type, "bizType": self.biz_type,
                "channelType": self.channel_type, "accessType": "0",
                "merId": self.settings.merchant_id, "txnTime": moment, **fields}

    def _signed(self, fields: Mapping[str, str]) -> dict[str, str]:
        return sign_message(fields, self.settings.identity)

    def _genuine(self, params: Mapping[str, str]) -> bool:
        return params.get("merId") == self.settings.merchant_id and signed_by_unionpay(
            params, self.settings.middle_cert, self.settings.root_cert, now())

    def _call(self, path: str, fields: Mapping[str, str]) -> dict[str, str]:
        """Post a signed message; UnionPay's answer once its signature checks out."""
        answer = self.link.send("POST", self.settings.api_url.rstrip("/") + path,
                                {"Content-Type": FORM},
                                urlencode(self._signed(fields)).encode())
        values = parse_answer(answer.text)
        if answer.status != 200 or not self._genuine(values):
            raise GatewayError(f"unsigned or unverifiable answer (HTTP {answer.status})")
        return values

    def verify_notification(self, request: Request) -> VerifiedNotification:
        # As UnionPay's demo BackRcvResponse: the posted fields, empty ones left out.
        params = {k: v for k, v in request.form.items() if v != ""}
        if not self._genuine(params):
            raise InvalidNotification("bad signature, untrusted certificate or another "
                                      "merchant")
        number, query_id = params.get("orderId"), params.get("queryId")
        if not number or not query_id:
            raise InvalidNotification("orderId or queryId missing")
        # A consumption (txnType 01) that succeeded (00, or A6: succeeded with a defect, as
        # UnionPay's demo counts it). A refund's notification (04) is acknowledged and changes
        # nothing: the refund is settled through the query.
        paid = params.get("txnType") == "01" and params.get("respCode") in ("00", "A6")
        return VerifiedNotification(number, query_id,
                                    notified_amount(fen_from_text, params.get("txnAmt")), paid)

    def acknowledge(self) -> Response:
        return Response("ok", 200, mimetype="text/plain")

    def reject(self) -> Response:
        # Anything but HTTP 200 makes UnionPay send the notification again.
        return Response("fail", 400, mimetype="text/plain")

    def query(self, order_id: str, moment: str) -> dict[str, str]:
        """The status query of our transaction `order_id` sent at `moment` (txnType 00)."""
        fields = self._fields("00", "00", moment, orderId=order_id)
        # The query names the product's transaction but is one service for all of them.
        fields["bizType"] = "000000"
        return self._call(QUERY_PATH, fields)

    def _settled(self, refund_number: str, moment: str, amount_fen: int
                 ) -> RefundAnswer | None:
        """What became of the refund of `amount_fen` sent under `refund_number` at `moment`;
        None if UnionPay has no such transaction (it never arrived)."""
        answer = self.query(refund_number, moment)
        code, message = answer.get("respCode"), answer.get("respMsg", "")
        if code == NO_SUCH_TRANSACTION:
            return None
        if code in UNKNOWN_YET:
            return RefundAnswer("pending", None, message)
        if code != "00":
            raise GatewayError(f"refund query refused: {code}: {message}")
        if answer.get("orderId") != refund_number:
            raise GatewayError("the query answered about another transaction")
        if answer.get("txnAmt", str(amount_fen)) != str(amount_fen):
            return RefundAnswer("failed", None, _("This refund number was already used for "
                                                  "another amount."))
        result, detail = answer.get("origRespCode"), answer.get("origRespMsg", "")
        if result == "00":
            return RefundAnswer("done", answer.get("queryId"), detail)
        if result in QUERY_AGAIN:
            return RefundAnswer("pending", answer.get("queryId"), detail)
        return RefundAnswer("failed", None, f"{result}: {detail}")

    def _back_url(self) -> str:
        """backUrl, also outside a request (rq jobs refund): then under `notify_base`."""
        if has_request_context():
            return notify_url(self.channel)
        if not self.settings.notify_base:
            raise GatewayError("PAYMENT_NOTIFY_BASE_URL is not configured (a UnionPay refund "
                               "names its backUrl)")
        return self.settings.notify_base.rstrip("/") + current_app.url_map.bind("").build(
            "PaymentNotifyView.notify", {"channel": self.channel.value})

    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        """Refund by origQryId (txnType 04). A refund sent before under this number is asked
        about first, never sent twice; an accepted one is asked about at once."""
        earlier = first_txn_time(self.channel, refund_number)
        if earlier is not None:
            settled = self._settled(refund_number, earlier, amount_fen)
            if settled is not None:
                return settled
        moment = txn_time(now())
        remember_txn_time(self.channel, refund_number, moment)
        answer = self._call(BACK_PATH, self._fields(
            "04", "00", moment, orderId=refund_number, txnAmt=str(amount_fen),
            currencyCode="156", origQryId=payment.provider_trade_no or "",
            backUrl=self._back_url()))
        code, message = answer.get("respCode"), answer.get("respMsg", "")
        if code == "00":
            return self._settled(refund_number, moment, amount_fen) or RefundAnswer(
                "pending", None, message)
        if code in UNKNOWN_YET:
            return RefundAnswer("pending", None, message)
        return RefundAnswer("failed", None, f"{code}: {message}")
