"""The payment simulator: it plays Alipay, WeChat Pay, UnionPay and the B2B bank.

Used only when `app.sandbox` is registered (`PAYMENT_SANDBOX`: on in development and tests,
off in production). It keeps, under
`PAYMENT_SANDBOX_DIR` (default `instance/payment-sandbox/`, gitignored):

- `keys.json` (mode 0600): for Alipay and WeChat a merchant key pair (ours) and a provider key
  pair (theirs), the merchant ids, and WeChat's APIv3 key and key serials, generated on first
  use. Every app process and worker reads the same file, so the process that shows a QR code,
  the one that receives the notification and the worker that refunds all agree.
- `acp.json` (mode 0600): UnionPay ACP 5.1.0's certificates, made on first use the same way:
  a root -> middle certificate chain of the sandbox's own, UnionPay's signing certificate
  issued by it (CN `041@…@中国银联股份有限公司@…`, as UnionPay's are), and the merchants' signing
  certificates and keys for the QR code (`unionpay`) and B2B (`b2b`) products.
- `ledger.sqlite3`: the provider's own books: trades opened, paid, refunded.

The adapters of `app.gateways.payments` are built with the sandbox's keys and a `SandboxLink`
that hands their request bytes to this module instead of the network. The sandbox checks each
request's merchant signature, answers signed with the provider's key, and signs notifications
exactly as the provider does; they reach the app through its real notify endpoint, where the
same adapter code as in production (the SDKs' own checks for Alipay and WeChat, the ACP
certificate chain for UnionPay and B2B, with the sandbox's root configured) verifies them.

Simulated provider trouble, chosen by the refund amount's last two digits (in fen), so that a
test or a demo can ask for it; real refunds here are whole badge fees and end in 00:

- `...01`: the first request answers "pending" (Alipay: system busy; WeChat: PROCESSING;
  UnionPay and B2B: accepted, and the query right after says origRespCode 05); asking again
  with the same refund number (UnionPay: querying it again): done.
- `...02`: refused for good ("failed"), and refused again if asked again.
- `...03`: the provider cannot be reached: the link raises ProviderUnreachable and nothing is
  recorded, as when a request is lost on the way.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from flask import current_app, url_for
from werkzeug.datastructures import Headers
from werkzeug.test import Client

from app import models as m
from app.clock import now_shanghai
from app.gateways.payments.acp import (
    BACK_PATH,
    NO_SUCH_TRANSACTION,
    QUERY_PATH,
    VERSION,
    AcpSettings,
    SigningIdentity,
    load_signing_identity,
    signature_of,
    signing_string,
    txn_time,
)
from app.gateways.payments.alipay import AlipayGateway, AlipaySettings
from app.gateways.payments.b2b import B2BGateway
from app.gateways.payments.base import (
    LinkResponse,
    PaymentGateway,
    ProviderUnreachable,
    fen_from_text,
    load_private_key,
    load_public_key,
    rsa_sign,
    rsa_verify,
    yuan_text,
    yuan_to_fen,
)
from app.gateways.payments.unionpay import UnionPayGateway
from app.gateways.payments.wechat import WechatPayGateway, WechatSettings

Ch = m.PaymentChannel
# The providers whose sandbox identities are plain RSA key pairs (keys.json).
RSA_CHANNELS = (Ch.alipay, Ch.wechat)
ACP_CHANNELS = (Ch.unionpay, Ch.b2b)
# UnionPay's frontTransReq.do in the sandbox (app.sandbox.views): where the unit's browser
# posts the B2B order.
SANDBOX_BANK_PATH = "/sandbox/pay/bank"
# Never resolved: the sandbox link answers in-process whatever host a request names.
SANDBOX_API_URLS = {Ch.unionpay: "https://unionpay.sandbox.invalid",
                    Ch.b2b: "https://b2b.sandbox.invalid"}
# The backUrl of refunds sent outside a request (the sandbox sends no refund notifications).
SANDBOX_NOTIFY_BASE = "https://ciie.sandbox.invalid"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------

def _key_pair() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {"private": private, "public": public}


def generate_keys() -> dict[str, Any]:
    """A fresh set of sandbox identities: for each provider, our key pair and theirs."""
    keys: dict[str, Any] = {}
    for channel, merchant_id in ((Ch.alipay, "2021000000000001"),
                                 (Ch.wechat, "1900000001")):
        keys[channel.value] = {"merchant_id": merchant_id, "merchant": _key_pair(),
                               "provider": _key_pair()}
    keys[Ch.wechat.value].update({
        "appid": "wx0000000000000001",
        "cert_serial_no": secrets.token_hex(20).upper(),
        "public_key_id": "PUB_KEY_ID_" + secrets.token_hex(16).upper(),
        # APIv3 keys are 32 ASCII characters: the AES-256 key itself.
        "apiv3_key": secrets.token_hex(16),
    })
    return keys


# Validity of the sandbox's certificates: the business clock of the demo and tests (2022)
# and real time both fall inside.
CERT_START = datetime(2000, 1, 1, tzinfo=timezone.utc)
CERT_END = datetime(2099, 12, 31, tzinfo=timezone.utc)


def _pem_key(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _certificate(subject: x509.Name, key: rsa.RSAPrivateKey, issuer: x509.Name,
                 issuer_key: rsa.RSAPrivateKey, ca: bool) -> x509.Certificate:
    usage = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)
    usage.update({"key_cert_sign": True, "crl_sign": True} if ca else
                 {"digital_signature": True, "content_commitment": True})
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(CERT_START).not_valid_after(CERT_END)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**usage), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CIIE payment sandbox"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def generate_acp_chain() -> dict[str, Any]:
    """The sandbox's UnionPay: root -> middle, UnionPay's signing certificate and the
    merchants' (PEM), shaped like CFCA's for UnionPay (tests/data/unionpay/)."""
    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key, middle_key = new_key(), new_key()
    root_name = _name("CIIE Sandbox UnionPay Root CA", "Sandbox")
    middle_name = _name("CIIE Sandbox UnionPay OCA", "Sandbox")
    root = _certificate(root_name, root_key, root_name, root_key, ca=True)
    middle = _certificate(middle_name, middle_key, root_name, root_key, ca=True)

    def identity(common_name: str) -> dict[str, str]:
        key = new_key()
        cert = _certificate(_name(common_name, "Enterprises"), key, middle_name, middle_key,
                            ca=False)
        return {"key": _pem_key(key),
                "cert": cert.public_bytes(serialization.Encoding.PEM).decode()}

    pem = serialization.Encoding.PEM
    return {
        "root": root.public_bytes(pem).decode(), "middle": middle.public_bytes(pem).decode(),
        "unionpay": identity("041@Z00000000SANDBOX@中国银联股份有限公司@00000001"),
        "merchants": {
            Ch.unionpay.value: {"merchant_id": "777290058110048",
                                **identity("041@Z00000000SANDBOX@CIIE QR merchant@00000002")},
            Ch.b2b.value: {"merchant_id": "777290058110097",
                           **identity("041@Z00000000SANDBOX@CIIE B2B merchant@00000003")}},
    }


def load_or_create_keys(path: str, generate: Callable[[], dict[str, Any]] = generate_keys
                        ) -> dict[str, Any]:
    """Read the key file, creating it first (with `generate`) if it is missing. Creation is
    atomic (a complete file is linked into place), so processes starting together all end
    up with one set."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(generate(), fh)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won the race: use its keys
        finally:
            os.remove(temporary)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# --------------------------------------------------------------------------------------------
# The provider's books
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trade:
    channel: str
    out_trade_no: str
    amount_fen: int
    notify_url: str
    return_url: str
    subject: str
    trade_no: str | None


@dataclass(frozen=True)
class RefundRecord:
    status: str  # done, pending, failed
    refund_id: str | None
    message: str
    refunded_fen: int  # of the trade, all done refunds


def _provider_number(channel: Ch) -> str:
    digits = "".join(secrets.choice("0123456789") for _ in range(20))
    prefix = {Ch.alipay: now_shanghai().strftime("%Y%m%d"), Ch.wechat: "4200",
              Ch.unionpay: "9", Ch.b2b: "B2B"}
    return prefix[channel] + digits


class Ledger:
    """Trades and refunds as the provider records them (SQLite, shared by processes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self._connect() as db:
            db.executescript("""
                CREATE TABLE IF NOT EXISTS trade (
                    channel TEXT NOT NULL, out_trade_no TEXT NOT NULL,
                    amount_fen INTEGER NOT NULL, notify_url TEXT NOT NULL,
                    return_url TEXT NOT NULL, subject TEXT NOT NULL, trade_no TEXT,
                    PRIMARY KEY (channel, out_trade_no));
                CREATE TABLE IF NOT EXISTS refund (
                    channel TEXT NOT NULL, refund_no TEXT NOT NULL, out_trade_no TEXT NOT NULL,
                    amount_fen INTEGER NOT NULL, refund_id TEXT NOT NULL, status TEXT NOT NULL,
                    message TEXT NOT NULL, PRIMARY KEY (channel, refund_no));
                CREATE TABLE IF NOT EXISTS acp_refund (
                    channel TEXT NOT NULL, order_id TEXT NOT NULL, txn_time TEXT NOT NULL,
                    queries INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (channel, order_id, txn_time));
            """)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            yield db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One serialised transaction: refunds of one number never race each other."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _trade(row: sqlite3.Row | None) -> Trade | None:
        return Trade(**dict(row)) if row is not None else None

    def open_trade(self, channel: Ch, out_trade_no: str, amount_fen: int, notify_url: str,
                   return_url: str = "", subject: str = "") -> Trade:
        """Open (or re-open) a trade. Asking again for the same amount keeps it as it is, paid
        or not; a different amount replaces it (the merchant's database was reset)."""
        with self._write() as db:
            row = db.execute("SELECT amount_fen FROM trade WHERE channel = ? AND out_trade_no = ?",
                             (channel.value, out_trade_no)).fetchone()
            if row is not None and row["amount_fen"] == amount_fen:
                db.execute("UPDATE trade SET notify_url = ?, return_url = ?, subject = ? "
                           "WHERE channel = ? AND out_trade_no = ?",
                           (notify_url, return_url, subject, channel.value, out_trade_no))
            else:
                db.execute("INSERT OR REPLACE INTO trade VALUES (?, ?, ?, ?, ?, ?, NULL)",
                           (channel.value, out_trade_no, amount_fen, notify_url, return_url,
                            subject))
        trade = self.trade(channel, out_trade_no)
        assert trade is not None
        return trade

    def trade(self, channel: Ch, out_trade_no: str) -> Trade | None:
        with self._connect() as db:
            return self._trade(db.execute(
                "SELECT * FROM trade WHERE channel = ? AND out_trade_no = ?",
                (channel.value, out_trade_no)).fetchone())

    def mark_paid(self, channel: Ch, out_trade_no: str) -> Trade | None:
        """The payer paid: the trade gets the provider's number (once)."""
        with self._write() as db:
            db.execute("UPDATE trade SET trade_no = ? WHERE channel = ? AND out_trade_no = ? "
                       "AND trade_no IS NULL",
                       (_provider_number(channel), channel.value, out_trade_no))
        return self.trade(channel, out_trade_no)

    def out_trade_no(self, channel: Ch, trade_no: str) -> str | None:
        """The merchant's number of a trade named by the provider's (refunds name either)."""
        with self._connect() as db:
            row = db.execute("SELECT out_trade_no FROM trade WHERE channel = ? AND trade_no = ?",
                             (channel.value, trade_no)).fetchone()
        return row[0] if row else None

    def refunded_fen(self, channel: Ch, out_trade_no: str) -> int:
        with self._connect() as db:
            return db.execute("SELECT COALESCE(SUM(amount_fen), 0) FROM refund WHERE channel = ? "
                              "AND out_trade_no = ? AND status = 'done'",
                              (channel.value, out_trade_no)).fetchone()[0]

    def refund(self, channel: Ch, refund_no: str, out_trade_no: str,
               amount_fen: int) -> RefundRecord:
        """Refund once per refund number (see the module doc for the simulated outcomes)."""
        with self._write() as db:
            row = db.execute("SELECT * FROM refund WHERE channel = ? AND refund_no = ?",
                             (channel.value, refund_no)).fetchone()
            if row is not None:
                if row["amount_fen"] != amount_fen or row["out_trade_no"] != out_trade_no:
                    status, refund_id = "failed", None
                    message = "refund number already used for another refund"
                else:
                    status, refund_id, message = row["status"], row["refund_id"], row["message"]
                    if status == "pending":  # the provider finished meanwhile
                        status, message = "done", "refunded"
                        db.execute("UPDATE refund SET status = ?, message = ? WHERE channel = ? "
                                   "AND refund_no = ?", (status, message, channel.value,
                                                         refund_no))
            else:
                status, refund_id, message = self._new_refund(db, channel, refund_no,
                                                              out_trade_no, amount_fen)
            refunded = db.execute(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM refund WHERE channel = ? "
                "AND out_trade_no = ? AND status = 'done'",
                (channel.value, out_trade_no)).fetchone()[0]
        return RefundRecord(status, refund_id, message, refunded)

    def record_acp_refund(self, channel: Ch, order_id: str, moment: str) -> None:
        """UnionPay took a refund request sent under `order_id` at `moment` (txnTime)."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO acp_refund (channel, order_id, txn_time) "
                       "VALUES (?, ?, ?)", (channel.value, order_id, moment))

    def query_acp_refund(self, channel: Ch, order_id: str, moment: str
                         ) -> tuple[RefundRecord, int] | None:
        """What the query of a refund (orderId + txnTime) finds, and its amount; None if
        nothing. A pending refund is done from its second query on (the provider finished
        meanwhile)."""
        with self._write() as db:
            asked = db.execute("SELECT queries FROM acp_refund WHERE channel = ? AND "
                               "order_id = ? AND txn_time = ?",
                               (channel.value, order_id, moment)).fetchone()
            row = db.execute("SELECT * FROM refund WHERE channel = ? AND refund_no = ?",
                             (channel.value, order_id)).fetchone()
            if asked is None or row is None:
                return None
            db.execute("UPDATE acp_refund SET queries = queries + 1 WHERE channel = ? AND "
                       "order_id = ? AND txn_time = ?", (channel.value, order_id, moment))
            status, message = row["status"], row["message"]
            if status == "pending" and asked["queries"] >= 1:
                status, message = "done", "refunded"
                db.execute("UPDATE refund SET status = ?, message = ? WHERE channel = ? AND "
                           "refund_no = ?", (status, message, channel.value, order_id))
        return RefundRecord(status, row["refund_id"], message,
                            self.refunded_fen(channel, row["out_trade_no"])), row["amount_fen"]

    @staticmethod
    def _new_refund(db: sqlite3.Connection, channel: Ch, refund_no: str, out_trade_no: str,
                    amount_fen: int) -> tuple[str, str | None, str]:
        trade = db.execute("SELECT amount_fen, trade_no FROM trade WHERE channel = ? "
                           "AND out_trade_no = ?", (channel.value, out_trade_no)).fetchone()
        if trade is None or trade["trade_no"] is None:
            return "failed", None, "trade not found or not paid"
        taken = db.execute("SELECT COALESCE(SUM(amount_fen), 0) FROM refund WHERE channel = ? "
                           "AND out_trade_no = ? AND status IN ('done', 'pending')",
                           (channel.value, out_trade_no)).fetchone()[0]
        if amount_fen <= 0 or taken + amount_fen > trade["amount_fen"]:
            return "failed", None, "refund amount exceeds what is left of the trade"
        status, message = {1: ("pending", "refund in progress"),
                           2: ("failed", "merchant balance insufficient")}.get(
            amount_fen % 100, ("done", "refunded"))
        refund_id = _provider_number(channel)
        db.execute("INSERT INTO refund VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (channel.value, refund_no, out_trade_no, amount_fen, refund_id, status,
                    message))
        return status, refund_id, message


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NotifyRequest:
    """A notification as the provider would post it."""

    url: str
    headers: dict[str, str]
    body: bytes


class SandboxLink:
    """Carries an adapter's request to the sandbox in this process instead of the network."""

    def __init__(self, sandbox: PaymentSandbox, channel: Ch) -> None:
        self.sandbox = sandbox
        self.channel = channel

    def send(self, method: str, url: str, headers: Mapping[str, str],
             body: bytes) -> LinkResponse:
        return self.sandbox.api(self.channel, method, url, Headers(list(headers.items())), body)


def _simulated_outage(amount_fen: int) -> None:
    if amount_fen % 100 == 3:
        raise ProviderUnreachable("sandbox: simulated provider outage")


class PaymentSandbox:
    """Each provider's side: its keys, its books, its API and its notifications."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @cached_property
    def keys(self) -> dict[str, Any]:
        return load_or_create_keys(os.path.join(self.directory, "keys.json"))

    @cached_property
    def acp_keys(self) -> dict[str, Any]:
        return load_or_create_keys(os.path.join(self.directory, "acp.json"), generate_acp_chain)

    @cached_property
    def acp_root(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.acp_keys["root"].encode())

    @cached_property
    def acp_middle(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.acp_keys["middle"].encode())

    @cached_property
    def _unionpay_identity(self) -> SigningIdentity:
        """UnionPay's own signing key and certificate, as the sandbox plays it."""
        own = self.acp_keys["unionpay"]
        return load_signing_identity((own["key"] + own["cert"]).encode(), None)

    def acp_merchant(self, channel: Ch) -> tuple[str, SigningIdentity]:
        """The merchant number and signing identity of our QR code or B2B merchant."""
        own = self.acp_keys["merchants"][channel.value]
        return own["merchant_id"], load_signing_identity((own["key"] + own["cert"]).encode(),
                                                         None)

    @cached_property
    def ledger(self) -> Ledger:
        os.makedirs(self.directory, exist_ok=True)
        return Ledger(os.path.join(self.directory, "ledger.sqlite3"))

    def _keys(self, channel: Ch) -> dict[str, Any]:
        return self.keys[channel.value]

    @cached_property
    def _provider_keys(self) -> dict[Ch, rsa.RSAPrivateKey]:
        return {ch: load_private_key(self._keys(ch)["provider"]["private"])
                for ch in RSA_CHANNELS}

    @cached_property
    def _merchant_public_keys(self) -> dict[Ch, rsa.RSAPublicKey]:
        return {ch: load_public_key(self._keys(ch)["merchant"]["public"])
                for ch in RSA_CHANNELS}

    # ---- the merchant's side: our adapters, configured with the sandbox's keys ----------

    def gateway(self, channel: Ch) -> PaymentGateway:
        link = SandboxLink(self, channel)
        if channel in ACP_CHANNELS:
            merchant_id, identity = self.acp_merchant(channel)
            settings = AcpSettings(merchant_id, identity, self.acp_middle, self.acp_root,
                                   SANDBOX_API_URLS[channel], front_url=SANDBOX_BANK_PATH,
                                   notify_base=SANDBOX_NOTIFY_BASE)
            return (UnionPayGateway if channel is Ch.unionpay else B2BGateway)(settings, link)
        keys = self._keys(channel)
        ours, theirs = keys["merchant"]["private"], keys["provider"]["public"]
        if channel is Ch.alipay:
            return AlipayGateway(AlipaySettings(keys["merchant_id"], ours, theirs), link)
        if channel is Ch.wechat:
            return WechatPayGateway(WechatSettings(
                keys["merchant_id"], keys["appid"], keys["cert_serial_no"], ours,
                keys["apiv3_key"], theirs, keys["public_key_id"]), link)
        raise ValueError(f"no sandbox for {channel.value}")

    # ---- the provider's API -------------------------------------------------------------

    def api(self, channel: Ch, method: str, url: str, headers: Headers,
            body: bytes) -> LinkResponse:
        if channel in ACP_CHANNELS:
            return self._acp_api(channel, url, body)
        handler = {Ch.alipay: self._alipay_api, Ch.wechat: self._wechat_api}[channel]
        return handler(method, url, headers, body)

    @staticmethod
    def page_url(channel: Ch, out_trade_no: str) -> str:
        """The 'scan with your phone' page the sandbox's QR codes lead to."""
        return url_for("PaymentSandboxView.qr_page", channel=channel.value,
                       number=out_trade_no, _external=True)

    # Alipay: GET gateway.do?<signed parameters>; answers JSON whose response object is signed.

    def _alipay_answer(self, response_key: str, payload: dict[str, str]) -> LinkResponse:
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        signature = rsa_sign(self._provider_keys[Ch.alipay], inner)
        text = f'{{"{response_key}":{inner},"sign":"{signature}"}}'
        return LinkResponse(200, Headers({"Content-Type": "application/json;charset=utf-8"}),
                            text)

    def _alipay_api(self, method: str, url: str, headers: Headers,
                    body: bytes) -> LinkResponse:
        keys = self._keys(Ch.alipay)
        params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        signature = params.pop("sign", "")
        response_key = params.get("method", "").replace(".", "_") + "_response"
        # Alipay checks a request over every parameter but sign (sign_type included), sorted.
        text = "&".join(f"{k}={params[k]}" for k in sorted(params))
        if params.get("app_id") != keys["merchant_id"] or \
                not rsa_verify(self._merchant_public_keys[Ch.alipay], text, signature):
            return self._alipay_answer(response_key, {
                "code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
                "sub_msg": "invalid signature"})
        try:
            biz = json.loads(params.get("biz_content") or "{}")
            if params.get("method") == "alipay.trade.precreate":
                amount = yuan_to_fen(biz.get("total_amount"))
                number = biz["out_trade_no"]
                self.ledger.open_trade(Ch.alipay, number, amount, params.get("notify_url", ""),
                                       subject=biz.get("subject", ""))
                return self._alipay_answer(response_key, {
                    "code": "10000", "msg": "Success", "out_trade_no": number,
                    "qr_code": self.page_url(Ch.alipay, number)})
            if params.get("method") == "alipay.trade.refund":
                amount = yuan_to_fen(biz.get("refund_amount"))
                _simulated_outage(amount)
                record = self.ledger.refund(Ch.alipay, biz["out_request_no"],
                                            biz["out_trade_no"], amount)
                return self._alipay_answer(response_key, self._alipay_refund(biz, record))
        except (AttributeError, KeyError, TypeError, ValueError):  # a malformed biz_content
            pass
        return self._alipay_answer(response_key, {
            "code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_PARAMETER",
            "sub_msg": "invalid parameter"})

    def _alipay_refund(self, biz: dict[str, Any], record: RefundRecord) -> dict[str, str]:
        if record.status == "done":
            trade = self.ledger.trade(Ch.alipay, biz["out_trade_no"])
            return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"],
                    "trade_no": trade.trade_no if trade and trade.trade_no else "",
                    "refund_fee": yuan_text(record.refunded_fen), "fund_change": "Y"}
        if record.status == "pending":
            return {"code": "20000", "msg": "Service Currently Unavailable",
                    "sub_code": "aop.ACQ.SYSTEM_ERROR", "sub_msg": record.message}
        return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_FAILED",
                "sub_msg": record.message}

    def _alipay_notification(self, trade: Trade, amount_fen: int, trade_no: str,
                             paid: bool) -> tuple[dict[str, str], bytes]:
        keys = self._keys(Ch.alipay)
        stamp = now_shanghai().strftime("%Y-%m-%d %H:%M:%S")
        yuan = yuan_text(amount_fen)
        params = {
            "notify_time": stamp, "notify_type": "trade_status_sync",
            "notify_id": uuid.uuid4().hex, "app_id": keys["merchant_id"], "charset": "utf-8",
            "version": "1.0", "sign_type": "RSA2", "trade_no": trade_no,
            "out_trade_no": trade.out_trade_no, "buyer_id": "2088000000000001",
            "trade_status": "TRADE_SUCCESS" if paid else "TRADE_CLOSED",
            "total_amount": yuan, "receipt_amount": yuan, "buyer_pay_amount": yuan,
            "subject": trade.subject, "gmt_create": stamp, "gmt_payment": stamp}
        # Alipay signs notifications over every parameter but sign and sign_type, sorted.
        text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign_type")
        params["sign"] = rsa_sign(self._provider_keys[Ch.alipay], text)
        return {"Content-Type": FORM}, urlencode(params).encode()

    # WeChat Pay API v3: JSON; requests carry an Authorization signature, answers and
    # notifications the Wechatpay-* headers.

    def _wechat_headers(self, body: str) -> dict[str, str]:
        stamp, nonce = str(int(time.time())), secrets.token_hex(16).upper()
        return {"Content-Type": "application/json",
                "Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": rsa_sign(self._provider_keys[Ch.wechat],
                                                f"{stamp}\n{nonce}\n{body}\n"),
                "Wechatpay-Serial": self._keys(Ch.wechat)["public_key_id"],
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def _wechat_answer(self, status: int, payload: dict[str, Any]) -> LinkResponse:
        body = json.dumps(payload, ensure_ascii=False)
        return LinkResponse(status, Headers(self._wechat_headers(body)), body)

    def _wechat_request_signed(self, method: str, url: str, headers: Headers,
                               body: str) -> bool:
        keys = self._keys(Ch.wechat)
        scheme, _space, rest = headers.get("Authorization", "").partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        text = f"{method}\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n{body}\n"
        return (scheme == "WECHATPAY2-SHA256-RSA2048"
                and fields.get("mchid") == keys["merchant_id"]
                and fields.get("serial_no") == keys["cert_serial_no"]
                and rsa_verify(self._merchant_public_keys[Ch.wechat], text,
                               fields.get("signature", "")))

    def _wechat_api(self, method: str, url: str, headers: Headers,
                    body: bytes) -> LinkResponse:
        text = body.decode()
        if not self._wechat_request_signed(method, url, headers, text):
            return self._wechat_answer(401, {"code": "SIGN_ERROR", "message": "bad signature"})
        path = urlsplit(url).path
        try:
            data = json.loads(text or "{}")
            if method == "POST" and path == "/v3/pay/transactions/native":
                total = data["amount"]["total"]
                if type(total) is not int or total <= 0:
                    raise ValueError(total)
                self.ledger.open_trade(Ch.wechat, data["out_trade_no"], total,
                                       data["notify_url"], subject=data.get("description", ""))
                return self._wechat_answer(200, {
                    "code_url": self.page_url(Ch.wechat, data["out_trade_no"])})
            if method == "POST" and path == "/v3/refund/domestic/refunds":
                return self._wechat_refund(data)
        except (KeyError, TypeError, ValueError):
            return self._wechat_answer(400, {"code": "PARAM_ERROR", "message": "bad request"})
        return self._wechat_answer(404, {"code": "NOT_FOUND", "message": "no such API"})

    def _wechat_refund(self, data: dict[str, Any]) -> LinkResponse:
        amount = data["amount"]["refund"]
        if type(amount) is not int:
            raise ValueError(amount)
        _simulated_outage(amount)
        number = self.ledger.out_trade_no(Ch.wechat, data.get("transaction_id") or "") or \
            data.get("out_trade_no") or ""
        record = self.ledger.refund(Ch.wechat, data["out_refund_no"], number, amount)
        if record.status == "failed":
            return self._wechat_answer(403, {"code": "NOT_ENOUGH", "message": record.message})
        trade = self.ledger.trade(Ch.wechat, number)
        return self._wechat_answer(200, {
            "refund_id": record.refund_id, "out_refund_no": data["out_refund_no"],
            "transaction_id": trade.trade_no if trade else "", "out_trade_no": number,
            "channel": "ORIGINAL",
            "status": "SUCCESS" if record.status == "done" else "PROCESSING",
            "amount": {"refund": amount, "total": data["amount"].get("total"),
                       "currency": "CNY"}})

    def _wechat_notification(self, trade: Trade, amount_fen: int, trade_no: str,
                             paid: bool) -> tuple[dict[str, str], bytes]:
        keys = self._keys(Ch.wechat)
        moment = now_shanghai().isoformat(timespec="seconds")
        resource = {
            "mchid": keys["merchant_id"], "appid": keys["appid"],
            "out_trade_no": trade.out_trade_no, "transaction_id": trade_no,
            "trade_type": "NATIVE", "trade_state": "SUCCESS" if paid else "CLOSED",
            "trade_state_desc": "payment succeeded" if paid else "closed", "bank_type": "OTHERS",
            "attach": "", "success_time": moment, "payer": {"openid": "sandbox-openid"},
            "amount": {"total": amount_fen, "payer_total": amount_fen, "currency": "CNY",
                       "payer_currency": "CNY"}}
        nonce = secrets.token_hex(6)  # WeChat's resource nonces are 12 characters
        ciphertext = AESGCM(keys["apiv3_key"].encode()).encrypt(
            nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), b"transaction")
        body = json.dumps({
            "id": str(uuid.uuid4()), "create_time": moment, "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS" if paid else "TRANSACTION.CLOSED",
            "summary": "payment succeeded" if paid else "closed",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(ciphertext).decode(),
                         "associated_data": "transaction", "nonce": nonce}},
            ensure_ascii=False)
        return self._wechat_headers(body), body.encode()

    # UnionPay ACP 5.1.0, both products: form posts in, `name=value&…` answers (not
    # URL-encoded) out, everything signed with certificates (app/gateways/payments/acp.py).

    def _acp_signed(self, fields: Mapping[str, str]) -> dict[str, str]:
        """Signed as UnionPay signs: its certificate goes along as signPubKeyCert (PEM with
        CRLF line ends, as UnionPay's), no certId (tests/data/unionpay/)."""
        cert = self._unionpay_identity.certificate.public_bytes(serialization.Encoding.PEM)
        signed = {k: v for k, v in fields.items() if v != ""}
        signed["signPubKeyCert"] = cert.decode().replace("\n", "\r\n")
        signed["signature"] = signature_of(signed, self._unionpay_identity.key)
        return signed

    def _acp_answer(self, fields: Mapping[str, str]) -> LinkResponse:
        signed = self._acp_signed(fields)
        text = "&".join(f"{k}={v}" for k, v in signed.items())
        return LinkResponse(200, Headers({"Content-Type": "text/plain;charset=UTF-8"}), text)

    def _merchant_signed(self, channel: Ch, params: Mapping[str, str]) -> bool:
        """Signed by our merchant's key under its certId, for its merchant number."""
        merchant_id, identity = self.acp_merchant(channel)
        if params.get("merId") != merchant_id or params.get("certId") != identity.cert_id \
                or params.get("version") != VERSION or params.get("signMethod") != "01":
            return False
        digest = hashlib.sha256(signing_string(params).encode()).hexdigest().encode()
        try:
            identity.certificate.public_key().verify(
                base64.b64decode(params.get("signature", ""), validate=True), digest,
                padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def _acp_api(self, channel: Ch, url: str, body: bytes) -> LinkResponse:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        echo = {k: params.get(k, "") for k in ("version", "encoding", "signMethod", "txnType",
                                                "txnSubType", "bizType", "accessType",
                                                "merId", "orderId", "txnTime")}
        if not self._merchant_signed(channel, params):
            return self._acp_answer({**echo, "respCode": "11",
                                     "respMsg": "验证签名失败[9100004]"})
        path, kind = urlsplit(url).path, (params.get("txnType"), params.get("txnSubType"))
        try:
            if path == QUERY_PATH and kind == ("00", "00"):
                return self._acp_query(channel, echo, params)
            amount = fen_from_text(params.get("txnAmt"))
            if path == BACK_PATH and channel is Ch.unionpay and kind == ("01", "07"):
                self.ledger.open_trade(channel, params["orderId"], amount, params["backUrl"])
                return self._acp_answer({**echo, "respCode": "00", "respMsg": "成功[0000000]",
                                         "qrCode": self.page_url(channel, params["orderId"])})
            if path == BACK_PATH and kind == ("04", "00"):
                _simulated_outage(amount)
                return self._acp_refund(channel, echo, params, amount)
        except (KeyError, ValueError):
            pass
        return self._acp_answer({**echo, "respCode": "10", "respMsg": "报文格式错误[6100030]"})

    def _acp_refund(self, channel: Ch, echo: dict[str, str], params: dict[str, str],
                    amount: int) -> LinkResponse:
        number = self.ledger.out_trade_no(channel, params.get("origQryId", ""))
        if number is None:
            return self._acp_answer({**echo, "respCode": "35",
                                     "respMsg": "原交易不存在或状态不正确[2010002]"})
        record = self.ledger.refund(channel, params["orderId"], number, amount)
        if record.status == "failed":
            return self._acp_answer({**echo, "respCode": "30",
                                     "respMsg": f"交易未通过[{record.message}]"})
        self.ledger.record_acp_refund(channel, params["orderId"], params["txnTime"])
        return self._acp_answer({**echo, "respCode": "00", "respMsg": "成功[0000000]",
                                 "txnAmt": str(amount), "origQryId": params["origQryId"],
                                 "queryId": record.refund_id or ""})

    def _acp_query(self, channel: Ch, echo: dict[str, str],
                   params: dict[str, str]) -> LinkResponse:
        found = self.ledger.query_acp_refund(channel, params["orderId"], params["txnTime"])
        if found is None:
            return self._acp_answer({**echo, "respCode": NO_SUCH_TRANSACTION,
                                     "respMsg": "查无此交易[2600000]"})
        record, amount = found
        result = {"done": ("00", "成功[0000000]"),
                  "pending": ("05", "交易已受理，请稍后查询交易结果[6154037]")}.get(
            record.status, ("30", f"交易未通过[{record.message}]"))
        return self._acp_answer({**echo, "respCode": "00", "respMsg": "成功[0000000]",
                                 "origRespCode": result[0], "origRespMsg": result[1],
                                 "txnAmt": str(amount),
                                 "queryId": record.refund_id or ""})

    def _acp_notification(self, channel: Ch, trade: Trade, amount_fen: int, trade_no: str,
                          paid: bool) -> tuple[dict[str, str], bytes]:
        """The backUrl notification of a payment, field by field as UnionPay's test
        environment sends one (tests/data/unionpay/notice-000201.txt)."""
        moment = now_shanghai()
        fields = {
            "version": VERSION, "encoding": "UTF-8", "signMethod": "01", "txnType": "01",
            "txnSubType": "07" if channel is Ch.unionpay else "01",
            "bizType": "000000" if channel is Ch.unionpay else "000202", "accessType": "0",
            "merId": self.acp_merchant(channel)[0], "orderId": trade.out_trade_no,
            "txnTime": txn_time(moment), "txnAmt": str(amount_fen), "currencyCode": "156",
            "queryId": trade_no, "traceNo": trade_no[-6:],
            "traceTime": moment.strftime("%m%d%H%M%S"), "settleAmt": str(amount_fen),
            "settleCurrencyCode": "156", "settleDate": moment.strftime("%m%d"),
            "respCode": "00" if paid else "01", "respMsg": "success" if paid else "交易失败"}
        return {"Content-Type": FORM}, urlencode(self._acp_signed(fields)).encode()

    def open_b2b(self, params: Mapping[str, str]) -> Trade | None:
        """The unit's browser posted our B2B order to frontTransReq.do: the trade, if the
        order is genuine (signed by our merchant, for it, a B2B consumption, well-formed)."""
        params = dict(params)
        if not self._merchant_signed(Ch.b2b, params) or params.get("bizType") != "000202" \
                or (params.get("txnType"), params.get("txnSubType")) != ("01", "01"):
            return None
        try:
            amount = fen_from_text(params.get("txnAmt"))
        except ValueError:
            return None
        if not params.get("orderId") or not params.get("backUrl"):
            return None
        return self.ledger.open_trade(Ch.b2b, params["orderId"], amount, params["backUrl"],
                                      params.get("frontUrl", ""))

    # ---- paying and notifying -----------------------------------------------------------

    def notification(self, channel: Ch, out_trade_no: str, *, amount_fen: int | None = None,
                     paid: bool = True, notify_url: str | None = None) -> NotifyRequest:
        """The notification the provider sends for a trade, signed as the provider signs it.
        The keyword arguments let tests describe trades the books do not hold (or hold
        differently): they are signed all the same, as a compromised provider would."""
        trade = self.ledger.trade(channel, out_trade_no) or Trade(
            channel.value, out_trade_no, amount_fen or 0, notify_url or "", "", "", None)
        amount = trade.amount_fen if amount_fen is None else amount_fen
        number = trade.trade_no or _provider_number(channel)
        if channel in ACP_CHANNELS:
            headers, body = self._acp_notification(channel, trade, amount, number, paid)
        else:
            build = {Ch.alipay: self._alipay_notification,
                     Ch.wechat: self._wechat_notification}[channel]
            headers, body = build(trade, amount, number, paid)
        return NotifyRequest(notify_url or trade.notify_url, headers, body)

    def pay(self, channel: Ch, out_trade_no: str) -> LinkResponse | None:
        """The payer pays: the trade is marked paid and the notification sent to the merchant.
        None if the books hold no such trade."""
        if self.ledger.mark_paid(channel, out_trade_no) is None:
            return None
        return self.deliver(self.notification(channel, out_trade_no))

    @staticmethod
    def deliver(notification: NotifyRequest) -> LinkResponse:
        """Post the notification to the app's notify URL, through the app's full request
        handling (routing, CSRF exemption, the endpoint, its verification), in this process.
        A fresh app context gives it its own database session, as a separate request has."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        target = urlsplit(notification.url)
        with app.app_context():
            answer = Client(app).open(target.path, base_url=f"{target.scheme}://{target.netloc}",
                                      query_string=target.query, method="POST",
                                      headers=notification.headers, data=notification.body)
            return LinkResponse(answer.status_code, Headers(answer.headers),
                                answer.get_data(as_text=True))


def current_sandbox() -> PaymentSandbox:
    """This app's sandbox (one per key directory, kept for the life of the process)."""
    directory = current_app.config["PAYMENT_SANDBOX_DIR"]
    sandboxes = current_app.extensions.setdefault("ciie_payment_sandboxes", {})
    if directory not in sandboxes:
        sandboxes[directory] = PaymentSandbox(directory)
    return sandboxes[directory]
