"""E-invoices issued by the invoicing platform (Nuonuo's open platform, through its SDK
nuonuo-sdk) against a loopback HTTPS stub (tests/einvoice_stub.py) that checks the signature
and the fields of every call and answers as the platform documents: the unit asks, the
platform issues, the unit downloads exactly the PDF, OFD and XML the platform issued; voiding
goes through the red-letter confirmation form; a refusal is the unit's to see; a wrong key
issues nothing. Production refuses the sandbox and missing keys, and serves only the
platform's files; the sandbox marks every page of its specimens 样票 / SPECIMEN."""
from __future__ import annotations

import io
import os
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import current_app
from nuonuo.signing import sign as sdk_sign
from pypdf import PdfReader

from app import create_app
from app import models as m
from app.extensions import db
from app.scoping.actor import actor_for_user
from app.workflow import invoices
from tests.conftest import ROOT, UNIT_A, UNIT_B, base_config, text_of
from tests.einvoice_stub import APP_SECRET, Stub, signature
from tests.test_invoices import (
    all_invoices,
    ask,
    audit,
    demo_order,
    pay_by_qr,
    special_buyer,
    unit_a,
)

IS = m.InvoiceStatus
BILLING = "nuonuo.OpeMplatform.requestBillingNew"
QUERY = "nuonuo.OpeMplatform.queryInvoiceResult"
RED_FORM = "nuonuo.OpeMplatform.saveInvoiceRedConfirm"
# The signature vector Nuonuo's official Python sample (nuonuo-sdk-python 2.0.0) computes, as
# recorded in github.com/jellyfrank/nuonuo-sdk docs/api-contract.md (synthetic inputs).
VECTOR = {"secret": "secret", "app_key": "app", "senid": "a" * 32, "nonce": "12345678",
          "timestamp": "1700000000", "content": '{"name":"中文"}'}
VECTOR_SIGNATURE = "4BzcKzrcoqxPis0W/W3X2ae0uIo="


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    running = Stub(str(tmp_path_factory.mktemp("einvoice-ca")))
    yield running
    running.stop()


@pytest.fixture
def platform(stub, configure, monkeypatch):
    """The app issues e-invoices through the stub; the SDK trusts the stub's test CA."""
    stub.platform.reset()
    for name, value in stub.settings().items():
        configure(name, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", stub.ca_file)
    return stub.platform


@pytest.fixture
def configure(app, data_app, monkeypatch):
    """Change a setting of the app and of the tests' own app (which runs the jobs again)."""
    def change(name: str, value) -> None:
        for each in (app, data_app):
            monkeypatch.setitem(each.config, name, value)
    return change


def request_e_invoice(world, login) -> m.Invoice:
    order = pay_by_qr(world)
    response = ask(login(UNIT_A), order, kind="e_normal", buyer_name=unit_a(world).name,
                   buyer_tax_id=UNIT_A)
    assert response.status_code == 302
    [invoice] = all_invoices()
    return invoice


def run_job(invoice_id: int) -> str:
    """The job as rq runs it again (the stub keeps answering "issuing" until told)."""
    try:
        return invoices.make_pdf(invoice_id)
    except invoices.EInvoicePending:
        return "pending"
    finally:
        db.session.expire_all()


def stored(key: str) -> bytes:
    with open(os.path.join(current_app.config["UPLOAD_FOLDER"], key), "rb") as fh:
        return fh.read()


def issued_e_invoice(world, login, platform) -> m.Invoice:
    invoice = request_e_invoice(world, login)
    assert invoice.status is IS.issued, platform.calls
    return invoice


# ------------------------------------------------------------------ the protocol -----------

def test_signature_is_the_platforms_published_vector():
    """Contract: the stub's check (written from the documentation) and the SDK's signing both
    give the official sample's signature for the published inputs."""
    v = VECTOR
    assert signature(v["secret"], v["app_key"], v["senid"], v["nonce"], v["timestamp"],
                     v["content"]) == VECTOR_SIGNATURE
    assert sdk_sign(v["secret"], v["app_key"], v["senid"], v["nonce"], v["content"],
                    v["timestamp"]) == VECTOR_SIGNATURE


def test_the_unit_gets_the_invoice_the_platform_issued(login, world, platform, smtp_server):
    platform.polls = 1  # the first query after submitting answers "20 开票中"
    invoice = request_e_invoice(world, login)
    # Submitted, not issued yet: the platform's serial is kept, no number, no file.
    assert (invoice.status, invoice.einvoice_platform, invoice.number) == \
        (IS.requested, "nuonuo", None)
    assert invoice.platform_order_no == f"CIIE{invoice.id:016d}"
    [billing] = platform.of(BILLING)
    assert billing.signed and billing.headers["accessToken"] and billing.params["appkey"]
    order = billing.content["order"]
    assert order["orderNo"] == invoice.platform_order_no
    assert (order["buyerName"], order["buyerTaxNum"]) == (unit_a(world).name, UNIT_A)
    assert order["salerTaxNum"] == current_app.config["INVOICE_SELLER_TAX_ID"]
    assert (order["invoiceType"], order["invoiceLine"], order["pushMode"]) == ("1", "pc", "-1")
    assert order["clerk"] == "王开票" and "O2022000001" in order["remark"]
    [line] = order["invoiceDetail"]
    assert line["goodsName"] == "专业观众证件费" and line["taxRate"] == "0.06"
    assert Decimal(line["taxIncludedAmount"]) == Decimal("200.00") == \
        Decimal(line["taxExcludedAmount"]) + Decimal(line["tax"])
    assert invoice.platform_serial == platform.invoices[order["orderNo"]].serial

    # The job runs again (rq's retry): now the platform has issued it.
    assert run_job(invoice.id) == "done"
    assert len(platform.of(BILLING)) == 1  # never submitted twice
    [invoice] = all_invoices()
    issued = platform.invoices[invoice.platform_order_no]
    assert (invoice.status, invoice.number) == (IS.issued, issued.number)
    assert invoice.issued_at.year == 2022
    for kind in ("pdf", "ofd", "xml"):
        assert stored(getattr(invoice, f"{kind}_key")) == \
            platform.files[f"{issued.serial}.{kind}"]
    assert ("issue", "requested", "issued", "system") in audit(invoice.id)

    client = login(UNIT_A)
    listing = client.get("/unit/invoices/list/").text
    for kind in ("pdf", "ofd", "xml"):
        key = getattr(invoice, f"{kind}_key")
        assert f"/unit/invoices/download/{key}" in listing
        response = client.get(f"/unit/invoices/download/{key}")
        assert response.status_code == 200
        assert response.data == platform.files[f"{issued.serial}.{kind}"]
        assert f"invoice-{issued.number}.{kind}" in response.headers["Content-Disposition"]
    assert "下载 OFD" in text_of(client.get("/unit/invoices/list/"))
    # The platform's PDF, not one drawn here.
    pdf = PdfReader(io.BytesIO(stored(invoice.pdf_key)))
    assert "PLATFORM-ISSUED" in pdf.pages[0].extract_text()
    # The unit's e-mail names the platform's number.
    assert any(issued.number in mail.get_body().get_content()
               for mail in smtp_server.wait_for(1))

    # Another unit reaches none of the files; finance reaches all.
    other, finance = login(UNIT_B), login("finance")
    for kind in ("pdf", "ofd", "xml"):
        key = getattr(invoice, f"{kind}_key")
        assert other.get(f"/unit/invoices/download/{key}").status_code == 404
        assert finance.get(f"/finance/invoices/download/{key}").status_code == 200


def test_a_wrong_secret_issues_nothing_and_the_request_waits(login, world, platform,
                                                             configure):
    configure("NUONUO_APP_SECRET", APP_SECRET + "x")
    invoice = request_e_invoice(world, login)
    [call] = platform.calls
    assert not call.signed and not platform.invoices
    # Our settings are wrong, not the invoice: it waits for the next try, unrejected.
    assert (invoice.status, invoice.einvoice_platform, invoice.reject_reason) == \
        (IS.requested, None, None)
    configure("NUONUO_APP_SECRET", APP_SECRET)
    assert run_job(invoice.id) == "done"
    assert all_invoices()[0].status is IS.issued


def test_files_come_only_from_the_hosts_finance_allowed(login, world, platform, configure):
    configure("NUONUO_FILE_HOSTS", "inv.jss.com.cn")
    invoice = request_e_invoice(world, login)
    assert (invoice.status, invoice.pdf_key, invoice.number) == (IS.requested, None, None)
    configure("NUONUO_FILE_HOSTS", "127.0.0.1")
    assert run_job(invoice.id) == "done"


def test_an_invoice_other_than_the_one_asked_for_is_not_taken(login, world, platform):
    platform.reported_amount = "100.00"  # the platform reports another amount than 200.00
    invoice = request_e_invoice(world, login)
    assert (invoice.status, invoice.number, invoice.pdf_key) == (IS.requested, None, None)
    platform.reported_amount = None
    assert run_job(invoice.id) == "done"


def test_the_platforms_refusal_rejects_the_request_with_its_reason(login, world, platform):
    platform.fail_cause = "购方名称与税号不匹配"
    invoice = request_e_invoice(world, login)
    assert invoice.status is IS.rejected and invoice.number is None
    assert "购方名称与税号不匹配" in invoice.reject_reason
    listing = text_of(login(UNIT_A).get("/unit/invoices/list/"))
    assert "已驳回" in listing
    # The unit may ask again (with corrected data): a new order number at the platform.
    platform.fail_cause = ""
    order = demo_order(world)
    assert ask(login(UNIT_A), order, kind="e_normal", buyer_name=unit_a(world).name,
               buyer_tax_id=UNIT_A).status_code == 302
    first, second = all_invoices()
    assert second.status is IS.issued and second.platform_order_no != first.platform_order_no


# ------------------------------------------------------------------ red-letter reversals ---

def void(login, invoice_id: int):
    return login(UNIT_A).action("/unit/invoices", "request_void", [invoice_id],
                                reason="抬头需要更换")


def test_voiding_goes_through_the_red_letter_form(login, world, platform):
    original = issued_e_invoice(world, login, platform)
    assert void(login, original.id).status_code == 302
    [form] = platform.of(RED_FORM)
    first, reversal = all_invoices()
    assert form.signed and form.content["blueElecInvoiceNumber"] == original.number
    assert (form.content["applySource"], form.content["billId"], form.content["orderNo"]) == \
        ("0", reversal.platform_order_no, reversal.platform_order_no)
    assert form.content["sellerTaxNo"] == current_app.config["INVOICE_SELLER_TAX_ID"]
    # The form needed no confirmation: the platform issued the red invoice, negative amount.
    red = platform.invoices[reversal.platform_order_no]
    assert red.amount == Decimal("-200.00")
    assert (reversal.status, reversal.number, reversal.reversal_of_id) == \
        (IS.issued, red.number, first.id)
    assert stored(reversal.pdf_key) == platform.files[f"{red.serial}.pdf"]
    assert first.status is IS.voided
    assert ("reverse", "void_requested", "voided", "system") in audit(first.id)


def test_a_denied_red_letter_form_leaves_the_invoice_issued(login, world, platform):
    original = issued_e_invoice(world, login, platform)
    platform.form_status = "02"  # waits for the buyer's confirmation
    void(login, original.id)
    first, reversal = all_invoices()
    assert (first.status, reversal.status) == (IS.void_requested, IS.requested)
    assert run_job(reversal.id) == "pending"
    platform.forms[reversal.platform_order_no].status = "05"  # the buyer denied it
    assert run_job(reversal.id) == "refused"
    first, reversal = all_invoices()
    assert reversal.status is IS.rejected and "购方否认" in reversal.reject_reason
    assert first.status is IS.issued
    assert ("keep", "void_requested", "issued", "system") in audit(first.id)
    # The unit may ask again; this time the buyer has nothing to confirm.
    platform.form_status = "01"
    void(login, first.id)
    rows = all_invoices()
    assert [r.status for r in rows] == [IS.voided, IS.rejected, IS.issued]


def test_paper_special_invoices_stay_with_finance(login, world, platform):
    order = pay_by_qr(world)
    assert ask(login(UNIT_A), order, **special_buyer(world)).status_code == 302
    [invoice] = all_invoices()
    invoices.issue_paper(actor_for_user(world.user("finance")), invoice.id, "44001234")
    assert all_invoices()[0].status is IS.issued and not platform.calls


# ------------------------------------------------------------------ production -------------

def test_production_serves_only_what_the_platform_issued(login, world, configure):
    # Made by the sandbox (the test default): a specimen.
    invoice = request_e_invoice(world, login)
    assert (invoice.status, invoice.einvoice_platform) == (IS.issued, "sandbox")
    client = login(UNIT_A)
    url = f"/unit/invoices/download/{invoice.pdf_key}"
    assert client.get(url).status_code == 200
    configure("EINVOICE_PLATFORM_FILES_ONLY", True)
    assert client.get(url).status_code == 404
    assert url not in client.get("/unit/invoices/list/").text
    assert login("finance").get(f"/finance/invoices/download/{invoice.pdf_key}"
                                ).status_code == 404
    api = login(None)
    headers = api.api_login(UNIT_A)
    assert api.get(f"/api/v1/invoices/{invoice.id}/pdf", headers=headers).status_code == 404
    assert api.get(f"/api/v1/invoices/{invoice.id}", headers=headers
                   ).get_json()["result"]["download_url"] is None
    # A platform's invoice is served.
    db.session.execute(sa.update(m.Invoice).where(m.Invoice.id == invoice.id)
                       .values(einvoice_platform="nuonuo"))
    db.session.commit()
    assert client.get(url).status_code == 200
    assert api.get(f"/api/v1/invoices/{invoice.id}/pdf", headers=headers).status_code == 200


def test_the_sandbox_marks_every_page_of_its_specimens(login, world):
    invoice = request_e_invoice(world, login)
    response = login(UNIT_A).get(f"/unit/invoices/download/{invoice.pdf_key}")
    pages = PdfReader(io.BytesIO(response.data)).pages
    assert pages
    for page in pages:
        assert "样票 / SPECIMEN" in page.extract_text()


def production(database_url, smtp_server, **settings):
    return create_app("production", **{**base_config(database_url, smtp_server.port),
                                       "SECRET_KEY": "a-production-secret-of-32-bytes!!",
                                       **settings})


def test_production_refuses_the_sandbox_and_missing_keys(database_url, smtp_server, stub,
                                                         tmp_path):
    with pytest.raises(RuntimeError) as refused:
        production(database_url, smtp_server, EINVOICE_PLATFORM="sandbox")
    assert "EINVOICE_PLATFORM (the sandbox issues specimens" in str(refused.value)
    settings = {**stub.settings(), "NUONUO_APP_SECRET": None, "NUONUO_ACCESS_TOKEN": None}
    with pytest.raises(RuntimeError) as refused:
        production(database_url, smtp_server, **settings)
    assert "NUONUO_APP_SECRET or NUONUO_APP_SECRET_FILE" in str(refused.value)
    assert "NUONUO_ACCESS_TOKEN or NUONUO_ACCESS_TOKEN_FILE" in str(refused.value)
    # A secret file inside the repository is refused too; one outside it is taken.
    inside = os.path.join(ROOT, "instance", f"nuonuo-secret-{os.getpid()}")
    outside = tmp_path / "nuonuo-secret"
    outside.write_text(APP_SECRET)
    with open(inside, "w") as fh:
        fh.write(APP_SECRET)
    try:
        with pytest.raises(RuntimeError) as refused:
            production(database_url, smtp_server, **{**settings,
                                                     "NUONUO_APP_SECRET_FILE": inside})
        assert "inside the repository" in str(refused.value)
    finally:
        os.remove(inside)
    with pytest.raises(RuntimeError) as refused:
        production(database_url, smtp_server, **{**settings,
                                                 "NUONUO_APP_SECRET_FILE": str(outside),
                                                 "NUONUO_ACCESS_TOKEN": "t"})
    assert "invoicing:" not in str(refused.value)
