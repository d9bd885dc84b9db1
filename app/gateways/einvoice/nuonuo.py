"""Nuonuo's open platform (诺诺开放平台, 诺税通 SaaS) through the maintained `nuonuo-sdk`
(PyPI nuonuo-sdk 0.2.0, github.com/jellyfrank/nuonuo-sdk): the SDK signs each call
(X-Nuonuo-Sign, Base64 HMAC-SHA1 over "a=services&l=v1&p=open&k=<appKey>&i=<senid>&n=<nonce>
&t=<timestamp>&f=<body>", nuonuo/signing.py) and sends it to /open/v1/services.

Methods and fields as Nuonuo documents them (sources in tests/data/einvoice-SOURCES.md):
- nuonuo.OpeMplatform.requestBillingNew (100607): the blue invoice, `{"order": {...}}`, answers
  `result.invoiceSerialNum`;
- nuonuo.OpeMplatform.queryInvoiceResult: by orderNos or serialNos; `status` 2 issued, 20/21
  issuing, 22 failed, 24 issued but not sealed (asked again with reInvoice), 3/31 voided;
  `allElectronicInvoiceNumber`, `invoiceTime` (epoch ms), pdfUrl / ofdUrl / xmlUrl;
- nuonuo.OpeMplatform.saveInvoiceRedConfirm: the seller's red-letter confirmation form for a
  full reversal (no lines); with an orderNo the platform issues the red invoice itself once the
  form needs no confirmation (01) or both sides confirmed it (04);
- nuonuo.OpeMplatform.queryInvoiceRedConfirm: the form by billId, `result.list[].billStatus`,
  `invoiceSerialNum` of the red invoice once issued.
Business codes: E0000 success, E9106 order number already used (submitted before), E9500 no
such invoice. An unknown outcome (network, unreadable answer) is a PlatformError: the job asks
for the result again and never submits a new order.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from nuonuo import Nuonuo, NuonuoError

from app.clock import SHANGHAI
from app.documents.invoices import lines, split_tax
from app.gateways import secret_setting
from app.gateways.einvoice import FILE_TYPES, InvoiceRequest, Outcome, PlatformError

SUCCESS = "E0000"
DUPLICATE_ORDER = "E9106"
NOT_FOUND = "E9500"
# The open platform's gateway refusing the call itself (070601: signature mismatch, 0701…:
# app key, 0703…: token), as opposed to a business answer (E…).
GATEWAY_CODES = "07"
ISSUED, ISSUING, FAILED, UNSEALED, VOIDED = "2", {"20", "21"}, "22", "24", {"3", "31"}
# Red-letter forms: needing no confirmation, or confirmed by both sides, the red invoice
# follows; waiting (for the buyer, or the bureau); void or refused.
FORM_GOES_AHEAD = {"01", "04"}
FORM_WAITING = {"02", "03", "15"}
SELLER = "0"
# 开票有误: the unit voids an e-invoice to have it made out again, or before a refund.
RED_REASON = "2"
# The files a platform answer names, by kind.
FILE_URLS = {"pdf": "pdfUrl", "ofd": "ofdUrl", "xml": "xmlUrl"}
MAX_FILE_BYTES = 10 * 1024 * 1024
FILE_MAGIC = {"pdf": (b"%PDF-",), "ofd": (b"PK",), "xml": (b"<", b"\xef\xbb\xbf<")}


def _yuan(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def _beijing(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class NuonuoPlatform:
    name = "nuonuo"

    def __init__(self) -> None:
        config = current_app.config
        self.config = config
        self.client = Nuonuo(
            config["NUONUO_APP_KEY"], secret_setting("NUONUO_APP_SECRET"),
            access_token=secret_setting("NUONUO_ACCESS_TOKEN"),
            tax_number=config.get("NUONUO_USER_TAX") or "", base_url=config["NUONUO_URL"],
            timeout=(5, float(config["NUONUO_TIMEOUT"])))
        self.file_hosts = {h.strip().lower() for h in
                           str(config["NUONUO_FILE_HOSTS"]).split(",") if h.strip()}

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One SDK call (a method of the SDK, or a method name for its generic `call`). The
        SDK's errors mean the outcome is unknown; the gateway's own codes (07…: app key,
        token, signature) mean our settings are wrong, not the invoice: both are retried."""
        name = getattr(method, "__qualname__", method)
        try:
            if isinstance(method, str):
                answer = self.client.call(method, *args, **kwargs)
            else:
                answer = method(*args, **kwargs)
        except NuonuoError as exc:
            raise PlatformError(f"{name}: {exc}") from None
        if str(answer.get("code") or "").startswith(GATEWAY_CODES):
            raise PlatformError(f"{name}: the platform's gateway answered {answer.get('code')} "
                                f"{answer.get('describe') or ''} (check the NUONUO_ settings)")
        return answer

    # ------------------------------------------------------------------ blue invoices -------

    def _order(self, request: InvoiceRequest) -> dict[str, Any]:
        config = self.config
        rate = Decimal(config["INVOICE_TAX_RATE"])
        with force_locale("zh"):
            goods = _("Badge fee for professional visitors")
            remark = _("Order %(number)s", number=request.order_number)
        details = []
        for price_fen, quantity in lines(request.amount_fen, request.fee_fen):
            total = price_fen * quantity
            net, tax = split_tax(total, rate)
            detail = {"goodsName": goods, "withTaxFlag": "1", "price": _yuan(price_fen),
                      "num": str(quantity), "taxRate": str(rate),
                      "taxExcludedAmount": _yuan(net), "tax": _yuan(tax),
                      "taxIncludedAmount": _yuan(total), "invoiceLineProperty": "0"}
            if config.get("NUONUO_GOODS_CODE"):
                detail["goodsCode"] = config["NUONUO_GOODS_CODE"]
            details.append(detail)
        address, _space, phone = str(config["INVOICE_SELLER_ADDRESS_PHONE"]).rpartition(" ")
        order = {
            "orderNo": request.order_no, "invoiceDate": _beijing(request.ordered_at),
            "invoiceType": "1", "invoiceLine": config["NUONUO_INVOICE_LINE"],
            "salerTaxNum": config["INVOICE_SELLER_TAX_ID"], "salerTel": phone,
            "salerAddress": address or phone, "salerAccount": config["INVOICE_SELLER_BANK_ACCOUNT"],
            "buyerName": request.buyer_name, "buyerTaxNum": request.buyer_tax_id or "",
            "buyerAddress": request.buyer_address or "", "buyerTel": request.buyer_phone or "",
            "buyerAccount": " ".join(p for p in (request.buyer_bank, request.buyer_account) if p),
            "naturalPersonFlag": "0", "clerk": config["NUONUO_CLERK"],
            # The unit gets our own e-mail and downloads the files from its invoice list.
            "pushMode": "-1", "remark": remark, "invoiceDetail": details,
        }
        if config.get("NUONUO_EXTENSION_NUMBER"):
            order["extensionNumber"] = config["NUONUO_EXTENSION_NUMBER"]
        return order

    def submit(self, request: InvoiceRequest) -> Outcome:
        if request.reverses:
            return self._submit_reversal(request)
        answer = self._call(self.client.nst.issue, self._order(request))
        code = answer.get("code")
        if code == SUCCESS:
            return Outcome("pending", serial=(answer.get("result") or {}).get("invoiceSerialNum"))
        if code == DUPLICATE_ORDER:
            # Submitted before (an earlier try whose answer was lost): its result tells.
            return Outcome("pending")
        return Outcome("refused", reason=f"{code}: {answer.get('describe') or ''}")

    def result(self, request: InvoiceRequest) -> Outcome:
        if request.reverses:
            return self._reversal_result(request)
        return self._invoice(request, order_nos=[request.order_no])

    def _invoice(self, request: InvoiceRequest, **which: list[str]) -> Outcome:
        answer = self._call(self.client.nst.query, **which)
        code = answer.get("code")
        if code == NOT_FOUND:
            return Outcome("pending")
        found = answer.get("result") or []
        if code != SUCCESS or not isinstance(found, list) or not found:
            raise PlatformError(f"queryInvoiceResult answered {code}: {answer.get('describe')}")
        invoice = found[0]
        status = str(invoice.get("status") or "")
        if status == UNSEALED:
            self._call("nuonuo.OpeMplatform.reInvoice",
                       {"fpqqlsh": invoice.get("serialNo") or "", "orderno": request.order_no})
            return Outcome("pending", serial=invoice.get("serialNo"))
        if status == FAILED:
            return Outcome("refused", reason=invoice.get("failCause")
                           or invoice.get("statusMsg") or status)
        if status in VOIDED:
            return Outcome("refused", reason=invoice.get("statusMsg") or status)
        if status != ISSUED:
            return Outcome("pending", serial=invoice.get("serialNo"))
        self._check(request, invoice)
        files = {kind: self._download(invoice[key], kind)
                 for kind, key in FILE_URLS.items() if invoice.get(key)}
        if "pdf" not in files:
            raise PlatformError("the platform issued the invoice without a PDF address")
        moment = invoice.get("invoiceTime")
        return Outcome(
            "issued", number=invoice.get("allElectronicInvoiceNumber") or invoice.get("invoiceNo"),
            serial=invoice.get("serialNo"), files=files,
            issued_at=datetime.fromtimestamp(int(moment) / 1000, timezone.utc) if moment else None)

    def _check(self, request: InvoiceRequest, invoice: dict[str, Any]) -> None:
        """What the platform says it issued must be what we asked for (the SDK's advice: check
        the order, the parties and the amount before taking the files)."""
        expected = Decimal(request.amount_fen) / 100 * (-1 if request.reverses else 1)
        amount = invoice.get("orderAmount")
        if amount is None or Decimal(str(amount)) != expected or not invoice.get(
                "allElectronicInvoiceNumber") and not invoice.get("invoiceNo"):
            raise PlatformError(f"the platform's invoice for {request.order_no} does not match "
                                f"it: amount {amount}, expected {expected}")

    def _download(self, url: str, kind: str) -> bytes:
        """One issued file: HTTPS from a host finance allowed (NUONUO_FILE_HOSTS), no redirects,
        no credentials or proxies from the environment, at most 10 MB, checked by its first
        bytes. As the SDK's nuonuo.documents.download_document does, except that the CA bundle
        is the one REQUESTS_CA_BUNDLE names (the tests' loopback stub) and any port is allowed."""
        parts = urlsplit(url)
        if parts.scheme != "https" or (parts.hostname or "").lower() not in self.file_hosts \
                or parts.username or parts.password:
            raise PlatformError(f"{kind} address not allowed (NUONUO_FILE_HOSTS): {url[:200]}")
        try:
            with requests.Session() as session:
                session.trust_env = False
                with session.get(url, timeout=(5, float(self.config["NUONUO_TIMEOUT"])),
                                 stream=True, allow_redirects=False,
                                 verify=os.environ.get("REQUESTS_CA_BUNDLE") or True) as answer:
                    if answer.status_code != 200:
                        raise PlatformError(f"{kind} download answered {answer.status_code}")
                    data = b""
                    for chunk in answer.iter_content(64 * 1024):
                        data += chunk
                        if len(data) > MAX_FILE_BYTES:
                            raise PlatformError(f"{kind} larger than 10 MB")
        except requests.RequestException as exc:
            raise PlatformError(f"{kind} download failed: {type(exc).__name__}") from None
        if not data.startswith(FILE_MAGIC[kind]):
            raise PlatformError(f"the {kind} download is not {FILE_TYPES[kind]}")
        return data

    # ------------------------------------------------------------------ red-letter reversals -

    def _submit_reversal(self, request: InvoiceRequest) -> Outcome:
        config = self.config
        form = {
            "billId": request.order_no, "blueInvoiceLine": config["NUONUO_INVOICE_LINE"],
            "applySource": SELLER, "blueElecInvoiceNumber": request.reverses,
            "sellerTaxNo": config["INVOICE_SELLER_TAX_ID"],
            "sellerName": config["INVOICE_SELLER_NAME"], "buyerName": request.buyer_name,
            "buyerTaxNo": request.buyer_tax_id or "", "redReason": RED_REASON,
            # The red invoice the platform issues by itself takes this order number.
            "orderNo": request.order_no, "autoInvoice": "1",
        }
        if config.get("NUONUO_EXTENSION_NUMBER"):
            form["extensionNumber"] = config["NUONUO_EXTENSION_NUMBER"]
        answer = self._call("nuonuo.OpeMplatform.saveInvoiceRedConfirm", form)
        if answer.get("code") == SUCCESS or self._form(request) is not None:
            # A form sent again is refused as a duplicate: it exists, so it goes on.
            return Outcome("pending")
        return Outcome("refused", reason=f"{answer.get('code')}: {answer.get('describe') or ''}")

    def _form(self, request: InvoiceRequest) -> dict[str, Any] | None:
        answer = self._call("nuonuo.OpeMplatform.queryInvoiceRedConfirm",
                            {"identity": SELLER, "billId": request.order_no})
        if answer.get("code") != SUCCESS:
            raise PlatformError(f"queryInvoiceRedConfirm answered {answer.get('code')}: "
                                f"{answer.get('describe')}")
        forms = (answer.get("result") or {}).get("list") or []
        return forms[0] if forms else None

    def _reversal_result(self, request: InvoiceRequest) -> Outcome:
        form = self._form(request)
        if form is None:
            return Outcome("pending")
        status = str(form.get("billStatus") or "")
        if status in FORM_WAITING:
            return Outcome("pending")
        if status not in FORM_GOES_AHEAD:
            return Outcome("refused", reason=form.get("billMessage") or f"billStatus {status}")
        if not form.get("invoiceSerialNum"):
            return Outcome("pending")
        return self._invoice(request, serial_nos=[form["invoiceSerialNum"]])
