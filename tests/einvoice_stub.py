"""A loopback stand-in for Nuonuo's open platform (诺税通 SaaS), for the tests only: it checks
what the SDK really sends and answers in the platform's shapes (sources:
tests/data/einvoice-SOURCES.md).

Every call to /open/v1/services is checked as the gateway does: the public parameters in the
query string (senid of 32 characters, nonce of 8 digits, timestamp within 10 minutes, appkey),
the headers (accessToken, method, X-Nuonuo-Sign) and the signature, recomputed here with its
own copy of the secret: Base64(HMAC-SHA1(appSecret, "a=services&l=v1&p=open&k=<appKey>
&i=<senid>&n=<nonce>&t=<timestamp>&f=<body>")). A wrong signature is answered 070601, as the
gateway does. The issued files are served over HTTPS from the same loopback server, with a
certificate of a test CA (trustme) the client trusts through REQUESTS_CA_BUNDLE.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import ssl
import threading
import time
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from reportlab.pdfgen import canvas

APP_KEY = "SD63236305"
APP_SECRET = "SDDED2523BED4643"
ACCESS_TOKEN = "2d484e3c9f1b4a47b5d7pdui"
SIGNATURE_MISMATCH = "070601"
CLOCK_SKEW = 600


def signature(secret: str, app_key: str, senid: str, nonce: str, timestamp: str,
              body: str) -> str:
    """The platform's signature, written here from its documentation (not the SDK's code)."""
    message = f"a=services&l=v1&p=open&k={app_key}&i={senid}&n={nonce}&t={timestamp}&f={body}"
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha1)
                            .digest()).decode()


@dataclass
class Call:
    """One request the stub took: what the SDK sent."""

    method: str
    content: dict[str, Any]
    headers: dict[str, str]
    params: dict[str, str]
    signed: bool


@dataclass
class Issued:
    order_no: str
    serial: str
    amount: Decimal
    number: str
    order: dict[str, Any]
    # Queries answered "20 开票中" before the invoice is issued.
    polls_left: int = 0
    status: str = "2"
    fail_cause: str = ""


@dataclass
class Form:
    bill_id: str
    content: dict[str, Any]
    status: str
    red_serial: str | None = None


@dataclass
class Platform:
    """What the platform holds, and how the test wants it to answer next."""

    base_url: str = ""
    calls: list[Call] = field(default_factory=list)
    invoices: dict[str, Issued] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # The test's choices: queries answered "issuing" first; the invoice fails with a cause;
    # the red-letter form's status (01 needs no confirmation, 02 waits for the buyer,
    # 05 the buyer denied it); the files issued beside the PDF.
    polls: int = 0
    fail_cause: str = ""
    form_status: str = "01"
    kinds: tuple[str, ...] = ("pdf", "ofd", "xml")
    # An issued invoice's amount as the platform reports it, when the test wants another.
    reported_amount: str | None = None
    sequence: int = 0

    def reset(self) -> None:
        self.calls.clear()
        self.invoices.clear()
        self.forms.clear()
        self.files.clear()
        self.polls, self.fail_cause, self.form_status = 0, "", "01"
        self.reported_amount = None
        self.kinds = ("pdf", "ofd", "xml")

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def file_bytes(self, serial: str, kind: str, number: str) -> bytes:
        if kind == "pdf":
            buffer = io.BytesIO()
            page = canvas.Canvas(buffer)
            page.drawString(72, 720, f"PLATFORM-ISSUED {number}")
            page.save()
            return buffer.getvalue()
        if kind == "ofd":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as ofd:
                ofd.writestr("OFD.xml", f"<ofd:OFD DocType='OFD'>{number}</ofd:OFD>")
            return buffer.getvalue()
        return f"<?xml version='1.0' encoding='UTF-8'?><EInvoice><Number>{number}</Number>" \
               f"</EInvoice>".encode()

    def issue(self, order_no: str, amount: Decimal, order: dict[str, Any]) -> Issued:
        self.sequence += 1
        invoice = Issued(order_no=order_no, serial=f"2212{self.sequence:016d}", amount=amount,
                         number=f"2231200000{self.sequence:010d}", order=order,
                         polls_left=self.polls)
        if self.fail_cause:
            invoice.status, invoice.fail_cause = "22", self.fail_cause
        self.invoices[order_no] = invoice
        return invoice

    def result_row(self, invoice: Issued) -> dict[str, Any]:
        row: dict[str, Any] = {"serialNo": invoice.serial, "orderNo": invoice.order_no,
                               "orderAmount": self.reported_amount or str(invoice.amount)}
        if invoice.polls_left > 0:
            invoice.polls_left -= 1
            return {**row, "status": "20", "statusMsg": "开票中"}
        if invoice.status == "22":
            return {**row, "status": "22", "statusMsg": "开票失败",
                    "failCause": invoice.fail_cause}
        for kind in self.kinds:
            name = f"{invoice.serial}.{kind}"
            self.files[name] = self.file_bytes(invoice.serial, kind, invoice.number)
            row[f"{kind}Url"] = f"{self.base_url}/files/{name}"
        return {**row, "status": "2", "statusMsg": "开票完成（最终状态）",
                "invoiceNo": invoice.number, "allElectronicInvoiceNumber": invoice.number,
                "invoiceCode": "", "invoiceTime": 1662336000000,
                "invoiceKind": "电子发票(普通发票)",
                "invoiceType": "2" if invoice.amount < 0 else "1"}

    def answer(self, method: str, content: dict[str, Any]) -> dict[str, Any]:
        if method == "nuonuo.OpeMplatform.requestBillingNew":
            order = content["order"]
            if order["orderNo"] in self.invoices:
                return {"code": "E9106", "describe": "订单编号或流水号不能重复"}
            missing = [k for k in ("orderNo", "invoiceDate", "buyerName", "salerTaxNum",
                                   "clerk", "invoiceType", "invoiceDetail") if not order.get(k)]
            if missing:
                return {"code": "E9101", "describe": f"缺少必填参数 {missing}"}
            amount = sum(Decimal(d["taxIncludedAmount"]) for d in order["invoiceDetail"])
            for d in order["invoiceDetail"]:
                if Decimal(d["taxExcludedAmount"]) + Decimal(d["tax"]) != \
                        Decimal(d["taxIncludedAmount"]):
                    return {"code": "E9102", "describe": "不含税金额+税额不等于含税金额"}
            invoice = self.issue(order["orderNo"], amount, order)
            return {"code": "E0000", "describe": "开具成功",
                    "result": {"invoiceSerialNum": invoice.serial}}
        if method == "nuonuo.OpeMplatform.queryInvoiceResult":
            wanted = content.get("orderNos") or content.get("serialNos") or []
            found = [i for i in self.invoices.values()
                     if i.order_no in wanted or i.serial in wanted]
            if not found:
                return {"code": "E9500", "describe": "发票不存在"}
            return {"code": "E0000", "describe": "获取成功",
                    "result": [self.result_row(i) for i in found]}
        if method == "nuonuo.OpeMplatform.saveInvoiceRedConfirm":
            bill_id = content.get("billId")
            if bill_id in self.forms:
                return {"code": "E9999", "describe": "红字确认单申请号重复"}
            blue = next((i for i in self.invoices.values()
                         if i.number == content.get("blueElecInvoiceNumber")), None)
            missing = [k for k in ("blueInvoiceLine", "applySource", "sellerTaxNo", "buyerName",
                                   "redReason") if not content.get(k)]
            if missing:
                return {"code": "E9101", "describe": f"缺少必填参数 {missing}"}
            if blue is None or content.get("applySource") != "0":
                return {"code": "E9999", "describe": "未找到对应蓝票"}
            form = Form(bill_id, content, self.form_status)
            self.forms[bill_id] = form
            if form.status == "01":
                red = self.issue(content["orderNo"], -blue.amount, content)
                form.red_serial = red.serial
            return {"code": "E0000", "describe": "成功", "result": bill_id}
        if method == "nuonuo.OpeMplatform.queryInvoiceRedConfirm":
            form = self.forms.get(content.get("billId"))
            rows = [] if form is None else [{
                "billId": form.bill_id, "billNo": f"31{form.bill_id[-14:]}",
                "billStatus": form.status, "applySource": "0",
                "billMessage": "购方否认" if form.status == "05" else "",
                "blueInvoiceNumber": form.content["blueElecInvoiceNumber"],
                "invoiceSerialNum": form.red_serial or "", "openStatus": "1"
                if form.red_serial else "0"}]
            return {"code": "E0000", "describe": "查询成功",
                    "result": {"total": len(rows), "list": rows}}
        return {"code": "E9999", "describe": f"未知方法 {method}"}


def _handler(platform: Platform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            name = urlsplit(self.path).path.rsplit("/", 1)[-1]
            if not self.path.startswith("/files/") or name not in platform.files:
                self._send(404, b"not found", "text/plain")
                return
            self._send(200, platform.files[name], "application/octet-stream")

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if parts.path != "/open/v1/services":
                self._send(404, b"not found", "text/plain")
                return
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            text = body.decode("utf-8")
            method = self.headers.get("method") or ""
            expected = signature(APP_SECRET, params.get("appkey", ""), params.get("senid", ""),
                                 params.get("nonce", ""), params.get("timestamp", ""), text)
            signed = (
                hmac.compare_digest(expected, self.headers.get("X-Nuonuo-Sign") or "")
                and params.get("appkey") == APP_KEY
                and len(params.get("senid", "")) == 32
                and len(params.get("nonce", "")) == 8 and params["nonce"].isdigit()
                and abs(time.time() - int(params.get("timestamp") or 0)) < CLOCK_SKEW
                and self.headers.get("accessToken") == ACCESS_TOKEN
                and (self.headers.get("Content-Type") or "").startswith("application/json"))
            content = json.loads(text) if text else {}
            platform.calls.append(Call(method, content, dict(self.headers.items()), params,
                                       signed))
            if not signed:
                answer = {"code": SIGNATURE_MISMATCH, "describe": "签名不匹配"}
            else:
                answer = platform.answer(method, content)
            self._send(200, json.dumps(answer, ensure_ascii=False).encode(),
                       "application/json;charset=UTF-8")

    return Handler


class Stub:
    """The platform on https://127.0.0.1:<port>, its CA's bundle in `ca_file`."""

    def __init__(self, ca_dir: str) -> None:
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.ca_file = f"{ca_dir}/einvoice-stub-ca.pem"
        ca.cert_pem.write_to_path(self.ca_file)
        self.platform = Platform()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.platform))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.platform.base_url = self.url
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def settings(self) -> dict[str, str]:
        """The app's settings for this platform (the secrets as files, as in production)."""
        return {"EINVOICE_PLATFORM": "nuonuo", "NUONUO_URL": f"{self.url}/open/v1/services",
                "NUONUO_APP_KEY": APP_KEY, "NUONUO_APP_SECRET": APP_SECRET,
                "NUONUO_ACCESS_TOKEN": ACCESS_TOKEN, "NUONUO_CLERK": "王开票",
                "NUONUO_FILE_HOSTS": "127.0.0.1", "NUONUO_TIMEOUT": "10"}
